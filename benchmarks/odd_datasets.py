"""Odd-shaped datasets, the kind a held-out user set may be: many classes, slow patterns,
imbalance, long multichannel recordings. Same layout and writer as ``sensor_datasets.py``.

Each one found a problem (round 8 of docs/benchmarks.md): a 4000-parameter budget that the
40-class classifier ate, a confusion-matrix plot of 5000 x 5000 pixels, cells that cannot
see a 1 Hz period in 128 samples at 100 Hz (a stem pool of 2 fixes it: the default since round 10).

    python benchmarks/bench_accuracy.py --suite odd --methods CLS_4k_NPU DARTS
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dataset_kit import DatasetSpec, Recording, _per_class, _rng, write_spec, write_suite_cli

FS = 100.0


def _sine(rng, length: int, freq: float, channels: int = 1, noise: float = 0.6) -> np.ndarray:
    """Sines of ``freq`` Hz (channel c at freq * (1 + 0.2 c)), random phase, Gaussian noise."""
    t = np.arange(length) / FS
    return np.stack([np.sin(2 * np.pi * freq * (1 + 0.2 * c) * t + rng.uniform(0, 2 * np.pi))
                     + rng.normal(0, noise, length) for c in range(channels)], 1)


def many_shapes(seed: int = 0, n_classes: int = 40, n_per_class: int = 10):
    """40 classes, one smooth random template each (128 samples), shifted by up to 6 samples,
    scaled 0.8-1.2, with noise and an offset: 6 training series per class after the split."""
    templates = []
    for k in range(n_classes):
        walk = np.cumsum(_rng(seed, 90, k).normal(0, 1, 168))
        template = np.convolve(walk, np.ones(9) / 9, mode="same")[20:148]
        templates.append((template - template.mean()) / template.std())

    def one(rng, k):
        x = np.roll(templates[k], rng.integers(-6, 7)) * rng.uniform(0.8, 1.2)
        return (x + rng.normal(0, 0.4, 128) + rng.normal(0, 0.3))[:, None], FS
    return _per_class([f"shape_{k:02d}" for k in range(n_classes)], n_per_class, 91, seed, one)


def many_sines(seed: int = 0, n_classes: int = 40, n_per_class: int = 10):
    """40 sine frequencies 0.7 Hz apart (1-28.3 Hz) in 1.28 s windows: about the FFT's resolution."""
    return _per_class([f"f{k:02d}" for k in range(n_classes)], n_per_class, 92, seed,
                      lambda rng, k: (_sine(rng, 128, 1 + 0.7 * k), FS))


def slow_imbalanced(seed: int = 0, counts=(120, 30, 5)):
    """3 classes of 1, 1.7 and 2.4 Hz in 128 samples (a period is longer than the window's
    first cells can see), 2 channels, 120 / 30 / 5 recordings."""
    classes, recs = [], []
    for k, n in enumerate(counts):
        name = ("common", "rare", "very_rare")[k]
        classes.append(name)
        recs += _per_class([name], n, 93 + k, seed, lambda rng, _, k=k: (_sine(rng, 128, 1 + 0.7 * k, 2), FS))[1]
    return classes, recs


def long_multichannel(seed: int = 0, n_per_class: int = 15):
    """3 classes x 15 recordings of 3000 samples x 12 channels (two 1500-sample windows each)."""
    return _per_class(["a", "b", "c"], n_per_class, 96, seed,
                      lambda rng, k: (_sine(rng, 3000, 1 + 0.7 * k, 12), FS))


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("many_shapes", many_shapes, "Generic_128Input_RAW_128Feature_1Frame", ("ch0",),
                "40 classes of shifted noisy shapes, 10 recordings each"),
    DatasetSpec("many_sines", many_sines, "Generic_128Input_RAW_128Feature_1Frame", ("ch0",),
                "40 sine frequencies 0.7 Hz apart, 10 recordings each"),
    DatasetSpec("slow_imbalanced", slow_imbalanced, "Generic_128Input_RAW_128Feature_1Frame", ("ch0", "ch1"),
                "1-2.4 Hz sines, 2 channels, 120 / 30 / 5 recordings"),
    DatasetSpec("long_multichannel", long_multichannel, "Generic_1500Input_RAW_1500Feature_1Frame",
                tuple(f"ch{c}" for c in range(12)), "3000 x 12 recordings, 1500-sample windows"),
)}


def generate(name: str, seed: int = 0) -> tuple[list[str], list[Recording]]:
    return DATASETS[name].make(seed)


def write_dataset(name: str, root: Path, seed: int = 0) -> Path:
    return write_spec(DATASETS[name], root, seed)


def main(argv=None):
    write_suite_cli(DATASETS, __doc__, "/tmp/odd_data", argv)


if __name__ == "__main__":
    main()
