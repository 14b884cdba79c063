"""This library against another DARTS implementation, side by side on identical data.

Both are driven through the same documented API, ``search_and_get_model(args)`` with the
seed README's Namespace (``docs/nas_library.md``), on the same loaders: 1024 synthetic
series (length 256, 1 channel, 3 classes, as ``bench_nas.py``) shaped ``(N, 1, 256, 1)``,
yielding ``(x_raw, x, y)``, half for the weights and half for the alphas, batch 32, the
Memory penalty, ``gpu=0`` (the CPU on a machine without CUDA). The other implementation is any folder holding a ``nas`` package with
that entry point, e.g. TI's ``tinyml_torchmodelopt/nas`` (not part of this repository):

    python benchmarks/bench_vs_reference.py --reference /path/to/tinyml_torchmodelopt/nas
    python benchmarks/bench_vs_reference.py --reference DIR --presets s m --modes first unrolled --repeat 3

Every run is a process of its own (peak RSS per implementation): one search of one epoch
warms up (imports, compiled kernels), then a search of one epoch and one of ``--epochs``
epochs are timed; seconds per epoch = the difference over the extra epochs, so per-call
costs (model construction, the final model) cancel. Whatever an implementation does per
epoch counts (an evaluation pass over the validation set, for instance).
``--cuda-as-cpu`` turns ``.cuda()`` calls into no-ops, for code that hard-codes them, on a
machine without CUDA.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nas import PRESETS as SEARCH_PRESETS, make_data  # noqa: E402  (one preset table, one data set)

# bench_nas's presets (the seed table's rows) under the Namespace's field names
NAMESPACE_FIELDS = dict(layers='nas_layers', nodes_per_layer='nas_nodes_per_layer', init_channels='nas_init_channels',
                        stem_multiplier='nas_stem_multiplier', multiplier='nas_multiplier')
PRESETS = {name: {NAMESPACE_FIELDS[k]: v for k, v in preset.items()} for name, preset in SEARCH_PRESETS.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reference', required=True, type=Path,
                   help="folder of the other implementation's package (holds train_cnn_search.py)")
    p.add_argument('--presets', nargs='+', default=['s', 'm'], choices=sorted(PRESETS))
    p.add_argument('--modes', nargs='+', default=['first', 'unrolled'], choices=['first', 'unrolled'])
    p.add_argument('--epochs', type=int, default=3, help='epochs of the longer timed search (at least 2)')
    p.add_argument('--repeat', type=int, default=1, help='alternate the two implementations N times per configuration')
    p.add_argument('--samples', type=int, default=1024, help='series in the data set (half for the alphas)')
    p.add_argument('--cuda-as-cpu', action='store_true', help='make .cuda() calls no-ops (reference code on a CPU)')
    p.add_argument('--child', nargs=3, metavar=('IMPL', 'PRESET', 'MODE'), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error('--epochs must be at least 2 (the time per epoch is a difference of two searches)')
    if not (args.reference / 'train_cnn_search.py').is_file():
        p.error(f"--reference {args.reference}: no train_cnn_search.py there; give the folder of the other "
                "implementation's nas package")
    if args.child:
        print(json.dumps(run_child(args, *args.child)), flush=True)
        return
    print(f"{'preset':6} {'mode':9} | {'reference s/epoch':>17} {'samples/s':>9} {'RSS MB':>6} | "
          f"{'ours s/epoch':>12} {'samples/s':>9} {'RSS MB':>6} | {'speed ratio':>11}", flush=True)
    for preset in args.presets:
        for mode in args.modes:
            runs = {'reference': [], 'ours': []}
            for _ in range(args.repeat):
                for impl in runs:
                    runs[impl].append(run_in_process(args, impl, preset, mode))
            print_row(preset, mode, runs, args.samples // 2)


def run_in_process(args, impl: str, preset: str, mode: str) -> dict:
    cmd = [sys.executable, __file__, '--reference', str(args.reference), '--epochs', str(args.epochs),
           '--samples', str(args.samples), '--child', impl, preset, mode]
    if args.cuda_as_cpu:
        cmd.append('--cuda-as-cpu')
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{')]
    if done.returncode != 0 or not lines:
        tail = '\n'.join(done.stderr.strip().splitlines()[-8:])
        raise SystemExit(f"{impl} {preset} {mode} failed (exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1])


def print_row(preset: str, mode: str, runs: dict, train_samples: int) -> None:
    ref, ours = (statistics.median(r['seconds_per_epoch'] for r in runs[k]) for k in ('reference', 'ours'))
    rss = {k: max(r['peak_rss_mb'] for r in runs[k]) for k in runs}
    print(f"{preset:6} {mode:9} | {ref:17.3f} {train_samples / ref:9.1f} {rss['reference']:6.0f} | "
          f"{ours:12.3f} {train_samples / ours:9.1f} {rss['ours']:6.0f} | {ref / ours:10.1f}x", flush=True)


def run_child(args, impl: str, preset: str, mode: str) -> dict:
    import torch
    if args.cuda_as_cpu and not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self
        torch.nn.Module.cuda = lambda self, *a, **k: self
    entry = load_reference(args.reference) if impl == 'reference' else ours()
    seconds = {}
    for epochs in (1, 1, args.epochs):  # the first search is the warm-up
        namespace = make_namespace(preset, mode, epochs, args.samples)
        start = time.perf_counter()
        entry(namespace)
        seconds[epochs] = time.perf_counter() - start
    per_epoch = (seconds[args.epochs] - seconds[1]) / (args.epochs - 1)
    if per_epoch <= 0:
        raise SystemExit(f"{impl}: the {args.epochs}-epoch search took no longer than the 1-epoch one "
                         f"({seconds[args.epochs]:.3f} s against {seconds[1]:.3f} s): too little data to time "
                         "an epoch; raise --samples or --epochs")
    return dict(impl=impl, preset=preset, mode=mode, seconds_per_epoch=per_epoch,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def ours():
    sys.path.insert(0, str(ROOT))
    from tinyml_torchmodelopt.nas import search_and_get_model
    return search_and_get_model


def load_reference(folder: Path):
    """``search_and_get_model`` of the package in ``folder``, imported under a name of its own (its
    relative imports then resolve inside it, and nothing clashes with this library)."""
    name = 'reference_nas'
    init = folder / '__init__.py'
    if init.is_file():
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    else:
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    return importlib.import_module(f'{name}.train_cnn_search').search_and_get_model


def make_namespace(preset: str, mode: str, epochs: int, samples: int) -> argparse.Namespace:
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    x, y = make_data(n=samples)
    x = x[..., None]  # (N, 1, L, 1): the documented 4-D layout, which 2-D implementations need
    half = samples // 2
    torch.manual_seed(0)
    train = DataLoader(TensorDataset(x[:half], x[:half], y[:half]), batch_size=32, shuffle=True)
    valid = DataLoader(TensorDataset(x[half:], x[half:], y[half:]), batch_size=32, shuffle=False)
    return argparse.Namespace(
        gpu=0, num_classes=3, in_channels=1, with_input_batchnorm=True, nas_budget=epochs, lr=0.025,
        momentum=0.9, weight_decay=3e-4, grad_clip=5, mode='cnn', arch_learning_rate=3e-4, arch_weight_decay=1e-3,
        nas_optimization_mode='Memory', unrolled=mode == 'unrolled', train_loader=train, valid_loader=valid,
        **PRESETS[preset])


if __name__ == '__main__':
    main()
