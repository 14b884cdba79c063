"""Train/val/test assignment: annotation lists, a seeded stratified split, or a cut in time."""
from __future__ import annotations

import logging
import math
import posixpath
from pathlib import Path
from typing import Sequence

import numpy as np

from tinyml_modelzoo.datasets.recording import SPLITS, Recording
from tinyml_modelzoo.errors import UserError

log = logging.getLogger(__name__)
EXAMPLE_FACTOR = "[0.6, 0.2, 0.2]"


def validate_split_factor(value) -> tuple[float, float, float]:
    """``dataset.split_factor`` as three fractions >= 0 summing to 1 (train > 0)."""
    ok = (isinstance(value, (list, tuple)) and len(value) == 3
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                  for v in value)
          and abs(sum(value) - 1.0) <= 1e-6 and value[0] > 0)
    if not ok:
        raise UserError(f"dataset.split_factor: got {value!r}; expected 3 numbers >= 0 [train, val, test] "
                        f"summing to 1 with train > 0, e.g. {EXAMPLE_FACTOR}")
    return tuple(float(v) for v in value)


def split_counts(n: int, factor: Sequence[float]) -> tuple[int, int, int]:
    """Files of one class per split: rounded fractions; train keeps at least one file and
    a requested val/test split gets one as soon as the class can spare it."""
    n_val, n_test = round(n * factor[1]), round(n * factor[2])
    if factor[2] > 0 and n_test == 0 and n - n_val >= 2:
        n_test = 1
    if factor[1] > 0 and n_val == 0 and n - n_test >= 2:
        n_val = 1
    while n - n_val - n_test < 1:  # give files back to train, larger split first
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def stratified_split(labels: Sequence[int], class_names: Sequence[str], factor: Sequence[float],
                     seed: int) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per item, stratified by class and seeded.

    Each class is shuffled with its own generator ``(seed, class index)`` so adding
    files to one class does not reshuffle the others.
    """
    labels = np.asarray(labels)
    assign = np.zeros(len(labels), dtype=np.int64)
    short = {1: [], 2: []}
    for label, name in enumerate(class_names):  # per class, not per sample
        members = np.nonzero(labels == label)[0]
        order = np.random.default_rng([seed, label]).permutation(members)
        counts = split_counts(len(members), factor)
        assign[order] = np.repeat([0, 1, 2], counts)
        for split in (1, 2):
            if factor[split] > 0 and counts[split] == 0:
                short[split].append(f"{name} ({len(members)} file(s))")
    for split, names in short.items():
        if names:
            log.warning("dataset: too few files for a %s recording in class(es) %s; add recordings "
                        "or change dataset.split_factor", SPLITS[split], ", ".join(names))
    return assign


def read_annotations(root: Path, known: Sequence[str]) -> dict[str, list[str]] | None:
    """Lists in ``<root>/annotations/instances_<split>_list.txt`` as root-relative paths, or
    None when the dataset has none. Lines may be relative to the root or to ``classes/``."""
    folder = root / "annotations"
    paths = {s: folder / f"instances_{s}_list.txt" for s in SPLITS}
    if not any(p.is_file() for p in paths.values()):
        return None
    known_set, seen, lists = set(known), {}, {}
    for split, path in paths.items():
        lists[split] = []
        if not path.is_file():
            log.warning("annotations/%s missing: the %s split is empty", path.name, split)
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            where = f"annotations/{path.name}: line {number}"
            rel = _annotation_path(entry, where, known_set)
            if rel in seen:
                if seen[rel] == split:
                    log.warning("%s: %s listed twice; using it once", where, entry)
                    continue
                raise UserError(f"{where}: {entry!r} is also listed in the {seen[rel]} split; "
                                "a recording must be in exactly one split")
            seen[rel] = split
            lists[split].append(rel)
    if not lists["train"]:
        raise UserError(f"{folder}/instances_train_list.txt: no training files listed; list recordings "
                        "(e.g. classes/<class>/<file>.csv) or delete annotations/ to split by split_factor")
    unused = len(known_set) - len(seen)
    if unused:
        log.info("annotations: %d recording(s) under classes/ are in no list and are not used", unused)
    return lists


def _annotation_path(entry: str, where: str, known: set[str]) -> str:
    """Normalise one list line to a root-relative path of a known recording."""
    posix = entry.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise UserError(f"{where}: {entry!r} is an absolute path; write paths relative to the dataset "
                        "folder, e.g. classes/<class>/<file>.csv")
    normal = posixpath.normpath(posix)
    if normal == ".." or normal.startswith("../"):
        raise UserError(f"{where}: {entry!r} points outside the dataset folder; write paths relative "
                        "to the dataset folder, e.g. classes/<class>/<file>.csv")
    for candidate in (normal, posixpath.normpath("classes/" + normal)):
        if candidate in known:
            return candidate
    raise UserError(f"{where}: {entry!r} does not exist under classes/ (or has an unsupported type); "
                    "fix the path or remove the line")


def write_lists(run_dir: Path | None, lists: dict[str, list[str]]) -> None:
    """Write the split as ``run_dir/dataset/instances_<split>_list.txt`` (re-usable as annotations)."""
    if run_dir is None:
        return
    folder = Path(run_dir) / "dataset"
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        text = "".join(rel + "\n" for rel in lists[split])
        (folder / f"instances_{split}_list.txt").write_text(text, encoding="utf-8")


def cut_within(recordings: Sequence[Recording], factor: Sequence[float]) -> dict[str, tuple[Recording, ...]]:
    """``within_files``: cut every recording in time into consecutive train | val | test
    segments of ``factor`` of its length; a segment's source is ``<path>@<split>``."""
    out = {s: [] for s in SPLITS}
    for rec in recordings:  # per file: a few slices each
        edges = np.round(np.cumsum([0.0, *factor]) * len(rec.data)).astype(int)
        edges[-1] = len(rec.data)
        for i, split in enumerate(SPLITS):
            segment = rec.data[edges[i]:edges[i + 1]]
            if len(segment):
                out[split].append(Recording(f"{rec.source}@{split}", rec.label, segment))
    return {s: tuple(v) for s, v in out.items()}
