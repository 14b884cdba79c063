"""benchmarks/bench_vs_reference.py: another implementation side by side through the documented API."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
import bench_vs_reference  # noqa: E402

FAKE_ENTRY = '''
import time
import torch
from .helpers import width  # a relative import, as a real package has


def search_and_get_model(args):
    for _ in range(args.nas_budget):
        for x_raw, x, y in args.train_loader:
            assert x.shape[1:] == (1, 256, 1) and x_raw.shape == x.shape and y.dim() == 1
            torch.zeros(1).cuda()  # hard-coded, as in code written for a GPU
        time.sleep(0.05)
    return torch.nn.Linear(width(), 3)
'''


def _fake_reference(root: Path, entry: str = FAKE_ENTRY) -> Path:
    package = root / 'nas'
    package.mkdir()
    (package / '__init__.py').write_text('')
    (package / 'helpers.py').write_text('def width():\n    return 4\n')
    (package / 'train_cnn_search.py').write_text(entry)
    return package


def test_side_by_side_row_for_a_reference_package(tmp_path, capsys):
    package = _fake_reference(tmp_path)
    bench_vs_reference.main(['--reference', str(package), '--presets', 's', '--modes', 'first', '--epochs', '3',
                             '--samples', '512', '--cuda-as-cpu'])  # enough data that an epoch is measurable
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ['preset', 'mode'] and len(lines) == 2
    fields = lines[1].replace('|', ' ').split()
    assert fields[:2] == ['s', 'first']
    reference_seconds, ours_seconds, ratio = float(fields[2]), float(fields[5]), float(fields[8].rstrip('x'))
    assert 0.04 < reference_seconds < 5  # the fake sleeps 0.05 s per epoch
    assert ours_seconds > 0 and ratio == pytest.approx(reference_seconds / ours_seconds, rel=0.1, abs=0.06)


def test_a_reference_that_fails_is_reported_with_its_error(tmp_path):
    package = _fake_reference(tmp_path, 'def search_and_get_model(args):\n    raise RuntimeError("no GPU found")\n')
    with pytest.raises(SystemExit, match='(?s)reference s first failed.*no GPU found'):
        bench_vs_reference.main(['--reference', str(package), '--presets', 's', '--modes', 'first',
                                 '--epochs', '2', '--samples', '64'])


def test_a_folder_without_the_entry_point_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_vs_reference.main(['--reference', str(tmp_path), '--presets', 's'])
    assert 'no train_cnn_search.py' in capsys.readouterr().err


def test_an_epoch_too_short_to_time_is_reported(tmp_path):
    entry = 'import time\n\ndef search_and_get_model(args):\n    time.sleep(0.2 if args.nas_budget == 1 else 0.0)\n'
    package = _fake_reference(tmp_path, entry)
    with pytest.raises(SystemExit, match='(?s)reference s first failed.*too little data to time an epoch'):
        bench_vs_reference.main(['--reference', str(package), '--presets', 's', '--modes', 'first',
                                 '--epochs', '2', '--samples', '64'])
