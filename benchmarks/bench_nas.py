"""DARTS search speed: seconds per epoch, training samples/s and peak RSS.

1024 synthetic series (length 256, 1 channel, 3 classes), half for the weights and
half for the alphas, batch 32. Presets use the exact arguments of the seed table.

    python benchmarks/bench_nas.py --presets s m l --modes first unrolled --epochs 3
    python benchmarks/bench_nas.py --presets l --modes first --repeat 5
    python benchmarks/bench_nas.py --device cuda --batch-size 32 256 --profile 15

On a shared machine the same run moves by up to 1.5x from one minute to the next:
``--repeat N`` runs every configuration N times, round-robin (so that each sees
several minutes of the machine), and ends with the median and range per configuration.
Before each run a 0.3 s probe times a fixed matmul on one thread and on all of
PyTorch's threads; the last column is their ratio (on the 2-core development VM,
l first-order steps took 119-122 ms in four rounds where it was 1.87-1.91 and
148-170 ms in seven where it was 1.37-1.76: mostly a co-tenant slowing one core).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tinyml_torchmodelopt.nas import SearchSettings, native, search  # noqa: E402

PRESETS = {  # layers, nodes, init channels, stem multiplier, fanout (multiplier)
    's': dict(layers=3, nodes_per_layer=4, init_channels=1, stem_multiplier=3, multiplier=4),
    'm': dict(layers=10, nodes_per_layer=4, init_channels=1, stem_multiplier=3, multiplier=4),
    'l': dict(layers=12, nodes_per_layer=4, init_channels=4, stem_multiplier=3, multiplier=4),
}

JOINT = {'auto': None, 'on': True, 'off': False}


def make_data(n=1024, length=256, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    t = torch.linspace(0, 1, length)
    freq = (y.float() + 1)[:, None] * 5.0
    x = torch.sin(2 * torch.pi * freq * t) + 0.5 * torch.randn(n, length, generator=g)
    return x[:, None, :], y


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--presets', nargs='+', default=['s', 'm', 'l'], choices=sorted(PRESETS))
    p.add_argument('--modes', nargs='+', default=['first', 'unrolled'], choices=['first', 'unrolled'])
    p.add_argument('--epochs', type=int, default=3, help='search epochs per run (the first is warm-up)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--batch-size', type=int, nargs='+', default=[32],
                   help='batch sizes to time (the seed set-up is 32; larger ones show what a GPU can do)')
    p.add_argument('--profile', type=int, default=0, metavar='N',
                   help='profile the last run and print its N most expensive ops (PyTorch profiler)')
    p.add_argument('--penalty', default='Memory', choices=['Memory', 'Compute', 'none'])
    p.add_argument('--partial-channels', type=int, default=1,
                   help='PC-DARTS: 1/K of the channels through the candidate ops (1 = off, the seed algorithm)')
    p.add_argument('--joint', default='auto', choices=['auto', 'on', 'off'],
                   help="first-order: one joint train/valid pass per iteration (auto: by activation size)")
    p.add_argument('--cuda-graphs', default='on', choices=['on', 'off'],
                   help='on a CUDA device: replay the joint pass from a captured CUDA graph')
    p.add_argument('--primitives', nargs='+', default=None,
                   help='candidate ops (names of OPS; default: the seed list PRIMITIVES_CNN)')
    p.add_argument('--repeat', type=int, default=1, metavar='N',
                   help='run every configuration N times, round-robin, then print median and range')
    args = p.parse_args(argv)
    x, y = make_data()
    half = len(x) // 2
    kernels = native.kernels()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, supernet kernels: "
          f"{'compiled' if kernels else 'PyTorch only'} (TINYML_NAS_NATIVE=0 disables the compiled ones)")
    print(f"host: {host_description()}; RSS before the first search {peak_rss_mb():.0f} MB (mostly `import torch`, "
          "which took 218-276 MB in different runs on one machine)")
    print(f"{'preset':6} {'mode':9} {'batch':>5} {'passes':11} {'s/epoch':>8} {'samples/s':>10} {'peak RSS MB':>12} "
          f"{'threads x':>9}")
    configs = [(p, m, b) for p in args.presets for m in args.modes for b in args.batch_size]
    runs = configs * max(1, args.repeat)
    speeds: dict = {c: [] for c in configs}
    for i, (preset, mode, batch) in enumerate(runs):
        train = DataLoader(TensorDataset(x[:half], y[:half]), batch_size=batch, shuffle=True)
        valid = DataLoader(TensorDataset(x[half:], y[half:]), batch_size=batch, shuffle=True)
        settings = SearchSettings(num_classes=3, epochs=args.epochs, unrolled=(mode == 'unrolled'),
                                  optimization_mode=None if args.penalty == 'none' else args.penalty,
                                  device=args.device, joint_passes=JOINT[args.joint],
                                  partial_channels=args.partial_channels, cuda_graphs=args.cuda_graphs == 'on',
                                  **PRESETS[preset],
                                  **({'primitives': tuple(args.primitives)} if args.primitives else {}))
        profiling = args.profile > 0 and i == len(runs) - 1
        scaling = thread_scaling()
        with profiled(profiling, args.device) as prof:
            result = search(train, valid, settings)
        epochs = result.history[1:] or result.history  # skip warm-up epoch when possible
        sec = sum(r.seconds for r in epochs) / len(epochs)
        rss = peak_rss_mb()
        label = preset if args.partial_channels == 1 else f"{preset}/pc{args.partial_channels}"
        print(f"{label:6} {mode:9} {batch:5d} {result.update_scheme:11} {sec:8.3f} {half / sec:10.1f} {rss:12.0f} "
              f"{scaling:9.2f}", flush=True)
        speeds[preset, mode, batch].append(half / sec)
        if profiling:
            key = 'self_cuda_time_total' if args.device.startswith('cuda') else 'self_cpu_time_total'
            print(prof.key_averages().table(sort_by=key, row_limit=args.profile))
    if args.repeat > 1:
        print(f"samples/s over {args.repeat} round-robin runs (peak RSS above is the process's, all runs so far):")
        for (preset, mode, batch), v in speeds.items():
            print(f"{preset:6} {mode:9} {batch:5d}  median {statistics.median(v):8.1f}  range {min(v):8.1f} - "
                  f"{max(v):8.1f}")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def host_description() -> str:
    """CPU model, family / model numbers, vector width and core count. Figures differ between host types:
    on AMD, family 25 is Zen 4 and family 26 Zen 5 (full-width AVX-512)."""
    info: dict = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    flags = info.get('flags', '').split()
    simd = 'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'
    return (f"{info.get('model name', '?')}, family {info.get('cpu family', '?')} model {info.get('model', '?')}, "
            f"{simd}, {os.cpu_count()} cores")


def thread_scaling(seconds: float = 0.15) -> float:
    """Speed of a fixed float32 matmul on all of PyTorch's threads over its speed on one."""
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    threads, rates = torch.get_num_threads(), []
    try:
        for n in (1, threads):
            torch.set_num_threads(n)
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                torch.mm(a, b)
                count += 1
            rates.append(count / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(threads)
    return rates[1] / rates[0]


@contextlib.contextmanager
def profiled(enabled: bool, device: str):
    """The PyTorch profiler around one run (timings under it are slower: profile, then time separately)."""
    if not enabled:
        yield None
        return
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.startswith('cuda'):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        yield prof

if __name__ == '__main__':
    main()
