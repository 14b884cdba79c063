"""What the generated benchmark suites share: the dataset record, seeded per-recording
generators and the writer of the TI folder layout (``sensor_datasets.py``, ``odd_datasets.py``)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

Recording = tuple[str, np.ndarray, float]


@dataclass(frozen=True)
class DatasetSpec:
    """One benchmark dataset: generator, recommended feature extraction and a one-line story."""
    name: str
    make: Callable[[int], tuple[list[str], list[Recording]]]
    feature_extraction_name: str
    channels: tuple[str, ...]
    description: str


def _rng(seed: int, tag: int, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, tag, i])


def _per_class(classes, n_per_class, tag, seed, one):
    """Call ``one(rng, class_index)`` n_per_class times per class (deterministic order)."""
    recs = []
    for k, cls in enumerate(classes):
        for j in range(n_per_class):
            rng = _rng(seed, tag, k * 10_000 + j)
            x, fs = one(rng, k)
            recs.append((cls, np.asarray(x, dtype=np.float32), fs))
    return list(classes), recs


def write_spec(spec: DatasetSpec, root: Path, seed: int = 0) -> Path:
    """Write ``root/<name>/classes/<class>/<class>_<i>.csv`` (time column + channels); return ``root/<name>``."""
    _, recs = spec.make(seed)
    out = Path(root) / spec.name
    counters: dict[str, int] = {}
    for cls, x, fs in recs:
        i = counters.get(cls, 0)
        counters[cls] = i + 1
        folder = out / "classes" / cls
        folder.mkdir(parents=True, exist_ok=True)
        t = np.arange(len(x)) / fs
        table = np.column_stack([t, x])
        header = ",".join(("time",) + spec.channels)
        np.savetxt(folder / f"{cls}_{i:03d}.csv", table, delimiter=",", header=header, comments="", fmt="%.6g")
    return out


def write_suite_cli(datasets: dict[str, DatasetSpec], doc: str, default_out: str, argv=None) -> None:
    """Command line of a generated suite: write its datasets (all or ``--datasets``) under ``--out``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=default_out)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--datasets", nargs="+", default=list(datasets), choices=list(datasets))
    args = p.parse_args(argv)
    for name in args.datasets:
        path = write_spec(datasets[name], Path(args.out), args.seed)
        n = sum(1 for _ in path.glob("classes/*/*.csv"))
        print(f"{name:16} {n:4d} files  {datasets[name].feature_extraction_name:45} {path}")
