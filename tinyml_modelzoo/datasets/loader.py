"""The dataset stage: config → recordings split into train/val/test."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from tinyml_modelzoo.config.schema import DatasetConfig
from tinyml_modelzoo.datasets import hello_world
from tinyml_modelzoo.datasets.archive import extract_zip, find_dataset_root, resolve_input_path
from tinyml_modelzoo.datasets.folder import FileEntry, scan_classes
from tinyml_modelzoo.datasets.readers import read_recording
from tinyml_modelzoo.datasets.recording import SPLITS, DatasetSplits, Recording
from tinyml_modelzoo.datasets.splits import (cut_within, read_annotations, stratified_split,
                                             validate_split_factor, write_lists)
from tinyml_modelzoo.errors import UserError

log = logging.getLogger(__name__)


def load_dataset(cfg: DatasetConfig, seed: int, config_dir: Path, run_dir: Path | None) -> DatasetSplits:
    """Load and split the dataset named by ``cfg``.

    ``hello_world`` without ``input_data_path`` is generated from ``seed``;
    otherwise ``input_data_path`` (relative to ``config_dir``) is a dataset folder
    or a local .zip, extracted into ``run_dir/dataset/extracted`` (a temporary
    folder when ``run_dir`` is None). The split lists are written to
    ``run_dir/dataset/`` when the split is computed. Bad data raises ``UserError``.
    """
    factor = validate_split_factor(cfg.split_factor)
    if cfg.input_data_path is None:
        if cfg.dataset_name != "hello_world":
            raise UserError(f"dataset.input_data_path: missing for dataset '{cfg.dataset_name}'; give the "
                            "dataset folder or .zip, or use dataset_name: hello_world (built in)")
        return _load_hello_world(cfg, factor, seed, run_dir)
    path = resolve_input_path(cfg.input_data_path, Path(config_dir))
    if path.is_dir():
        return _load_folder(cfg, find_dataset_root(path), factor, seed, run_dir)
    if run_dir is not None:
        root = extract_zip(path, Path(run_dir) / "dataset" / "extracted")
        return _load_folder(cfg, find_dataset_root(root), factor, seed, run_dir)
    with tempfile.TemporaryDirectory(prefix="tinyml_dataset_") as tmp:  # all data is read into memory
        root = extract_zip(path, Path(tmp) / "extracted")
        return _load_folder(cfg, find_dataset_root(root), factor, seed, run_dir)


def _load_hello_world(cfg: DatasetConfig, factor, seed: int, run_dir: Path | None) -> DatasetSplits:
    data, labels = hello_world.generate(cfg.hello_world_files_per_class, cfg.hello_world_variables, seed)
    names = hello_world.CLASS_NAMES
    counters = np.zeros(len(names), dtype=int)
    recordings = []
    for array, label in zip(data, labels):  # per recording (a few hundred), not per sample
        recordings.append(Recording(f"hello_world/{names[label]}/{counters[label]}", int(label), array))
        counters[label] += 1
    return _split(cfg, "hello_world", names, recordings, factor, seed, run_dir, "split_factor")


def _load_folder(cfg: DatasetConfig, root: Path, factor, seed: int, run_dir: Path | None) -> DatasetSplits:
    names, files = scan_classes(root)
    lists = read_annotations(root, [f.rel for f in files])
    if lists is None:
        return _split(cfg, cfg.dataset_name, names, _read_all(files), factor, seed, run_dir, "split_factor")
    if cfg.split_type == "within_files":
        log.info("dataset: annotations/ lists found; they define the split (split_type ignored)")
    by_rel = {f.rel: f for f in files}
    splits = {s: _read_all([by_rel[rel] for rel in lists[s]]) for s in SPLITS}
    return _make(cfg.dataset_name, names, splits, "annotations")


def _read_all(files: Sequence[FileEntry]) -> list[Recording]:
    return [Recording(f.rel, f.label, read_recording(f.path, f.rel)) for f in files]


def _split(cfg: DatasetConfig, name: str, names, recordings: list[Recording], factor, seed: int,
           run_dir: Path | None, source: str) -> DatasetSplits:
    if cfg.split_type == "within_files":
        return _make(name, names, cut_within(recordings, factor), source)
    assign = stratified_split([r.label for r in recordings], names, factor, seed)
    splits = {s: [r for r, a in zip(recordings, assign) if a == i] for i, s in enumerate(SPLITS)}
    write_lists(run_dir, {s: [r.source for r in splits[s]] for s in SPLITS})
    return _make(name, names, splits, source)


def _make(name: str, names, splits: dict, source: str) -> DatasetSplits:
    """Check channel counts agree and build the result."""
    everything = [r for s in SPLITS for r in splits[s]]
    by_count: dict[int, str] = {}
    for rec in everything:
        by_count.setdefault(rec.data.shape[1], rec.source)
    if len(by_count) > 1:
        examples = "; ".join(f"{src}: {count} column(s)" for count, src in sorted(by_count.items()))
        raise UserError(f"recordings have different numbers of variables ({examples}); every file must "
                        "have the same data columns (time columns are dropped)")
    result = DatasetSplits(name, tuple(names), *(tuple(splits[s]) for s in SPLITS),
                           num_variables=next(iter(by_count)), split_source=source)
    log.info("dataset %s: recordings %s", name, result.to_summary()["recordings"])
    return result
