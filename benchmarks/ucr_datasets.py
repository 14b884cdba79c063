"""Real, public time-series datasets (UCR/UEA archive) in the TI folder format.

Seven small classification problems close to what our users bring: tens to a few
hundred training series, lengths 24 to 1460, 1 to 12 channels (power demand,
appliance current, accelerometer/gyro, motion capture, speech features, outlines).
Copies of them ship inside the ``aeon`` wheel on PyPI; this module reads the
``.ts`` files straight from that wheel (``pip download --no-deps aeon``, nothing is
installed) and writes::

    <root>/<name>/classes/<class>/<split>_<i>.csv        header: ch0,ch1,...
    <root>/<name>/annotations/instances_{train,val,test}_list.txt

The archive's own TEST split is our test split; its TRAIN split is cut per class
(shuffled with ``seed``) into train and val (``VAL_SHARE``). One file is one series
and ``feature_extraction_name`` below uses frame size = series length.

    python benchmarks/ucr_datasets.py --out /tmp/ucr_data
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AEON_VERSION = "1.6.0"
CACHE = Path.home() / ".cache" / "tinyml_modelzoo" / "aeon"
VAL_SHARE = 0.25


@dataclass(frozen=True)
class RealDataset:
    name: str
    archive_name: str      # file stem inside aeon/datasets/data/<folder>/
    folder: str
    length: int
    description: str

    @property
    def feature_extraction_name(self) -> str:
        return f"Generic_{self.length}Input_RAW_{self.length}Feature_1Frame"


DATASETS: dict[str, RealDataset] = {d.name: d for d in [
    RealDataset("ACSF1", "ACSF1", "ACSF1", 1460, "appliance power consumption, 10 appliance types, 1 ch"),
    RealDataset("ArrowHead", "ArrowHead", "ArrowHead", 251, "arrow-head outlines, 3 classes, 36 train series"),
    RealDataset("BasicMotions", "BasicMotions", "BasicMotions", 100, "smartwatch accel + gyro, 4 activities, 6 ch"),
    RealDataset("GunPoint", "GunPoint", "GunPoint", 150, "hand motion capture, gun draw vs point"),
    RealDataset("ItalyPowerDemand", "ItalyPowerDemand", "ItalyPowerDemand", 24, "daily power demand, winter vs summer"),
    RealDataset("JapaneseVowels", "JapaneseVowels_eq", "JapaneseVowels", 25, "12 LPC cepstra of spoken vowels, 9 speakers"),
    RealDataset("OSULeaf", "OSULeaf", "OSULeaf", 427, "leaf outlines, 6 species"),
]}


def aeon_wheel(cache: Path = CACHE) -> Path:
    """The aeon wheel (downloaded once into ``cache`` with pip; no install, no dependencies)."""
    found = sorted(cache.glob(f"aeon-{AEON_VERSION}-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache),
                        f"aeon=={AEON_VERSION}"], check=True)
        found = sorted(cache.glob(f"aeon-{AEON_VERSION}-*.whl"))
    return found[0]


def parse_ts(text: str) -> tuple[np.ndarray, list[str]]:
    """A ``.ts`` file (sktime/aeon format) -> ``(x (N, C, L) float32, labels)``; equal length only."""
    series, labels, in_data = [], [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        series.append([[float(v) for v in d.split(",")] for d in dims])
        labels.append(label.strip())
    return np.asarray(series, dtype=np.float32), labels


def load(spec: RealDataset, wheel: Path | None = None) -> dict[str, tuple[np.ndarray, list[str]]]:
    """``{'TRAIN': (x, labels), 'TEST': (x, labels)}`` read from the aeon wheel."""
    with zipfile.ZipFile(wheel or aeon_wheel()) as zf:
        return {part: parse_ts(zf.read(f"aeon/datasets/data/{spec.folder}/{spec.archive_name}_{part}.ts")
                               .decode("utf-8"))
                for part in ("TRAIN", "TEST")}


def write_dataset(name: str, root: Path, seed: int = 0, wheel: Path | None = None) -> Path:
    """Write ``root/name`` in the TI folder format with train/val/test annotation lists; return it."""
    spec = DATASETS[name]
    parts = load(spec, wheel)
    out = Path(root) / name
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    rng = np.random.default_rng(seed)
    for part, (x, labels) in parts.items():
        labels = np.asarray(labels)
        for cls in sorted(set(labels)):
            idx = np.flatnonzero(labels == cls)
            if part == "TRAIN":
                idx = rng.permutation(idx)
                n_val = int(round(VAL_SHARE * len(idx))) if len(idx) >= 3 else 0
                assignment = [("val" if k < n_val else "train", i) for k, i in enumerate(idx)]
            else:
                assignment = [("test", i) for i in idx]
            folder = out / "classes" / f"class_{cls}"
            folder.mkdir(parents=True, exist_ok=True)
            for split, i in assignment:
                rel = f"classes/class_{cls}/{part.lower()}_{i:04d}.csv"
                header = ",".join(f"ch{c}" for c in range(x.shape[1]))
                np.savetxt(out / rel, x[i].T, delimiter=",", header=header, comments="", fmt="%.7g")
                lists[split].append(rel)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split, paths in lists.items():
        (out / "annotations" / f"instances_{split}_list.txt").write_text("\n".join(sorted(paths)) + "\n")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/ucr_data")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val cut")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--wheel", type=Path, default=None, help="an aeon wheel file (default: pip download)")
    args = p.parse_args(argv)
    for name in args.datasets:
        path = write_dataset(name, Path(args.out), args.seed, args.wheel)
        counts = {s: len((path / "annotations" / f"instances_{s}_list.txt").read_text().split())
                  for s in ("train", "val", "test")}
        print(f"{name:18} {counts}  {DATASETS[name].feature_extraction_name:45} {path}")


if __name__ == "__main__":
    main()
