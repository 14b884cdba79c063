"""Scan ``<root>/classes/<class_name>/<file>`` into a sorted file list with labels."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tinyml_modelzoo.datasets.archive import is_junk
from tinyml_modelzoo.datasets.readers import SUPPORTED_EXTENSIONS
from tinyml_modelzoo.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileEntry:
    """One recording file: ``rel`` is its path from the dataset root (``classes/arc/f1.csv``)."""
    rel: str
    label: int
    path: Path


def scan_classes(root: Path) -> tuple[tuple[str, ...], tuple[FileEntry, ...]]:
    """Return ``(class_names, files)``; class names sorted alphabetically give the label indices."""
    classes_dir = root / "classes"
    if not classes_dir.is_dir():
        raise UserError(f"{root}: no classes/ folder; expected {root.name}/classes/<class_name>/<file>.csv "
                        "(see docs/dataset_format.md)")
    entries = sorted(classes_dir.iterdir())
    class_dirs = [p for p in entries if p.is_dir() and not is_junk(p.name)]
    stray = [p.name for p in entries if not p.is_dir() and not is_junk(p.name)]
    if stray:
        log.warning("classes/: ignoring files outside a class folder: %s", ", ".join(stray))
    if len(class_dirs) < 2:
        found = ", ".join(p.name for p in class_dirs) or "none"
        raise UserError(f"{classes_dir}: found {len(class_dirs)} class folder(s) ({found}); a classifier needs "
                        "at least 2: add one sub-folder per class, each with its recordings")
    names = tuple(p.name for p in class_dirs)
    files = [entry for label, folder in enumerate(class_dirs) for entry in _class_files(folder, label)]
    return names, tuple(files)


def _class_files(folder: Path, label: int) -> list[FileEntry]:
    hidden, subdirs, files = [], [], []
    for path in sorted(folder.iterdir()):
        if is_junk(path.name):
            hidden.append(path.name)
        elif path.is_dir():
            subdirs.append(path.name + "/")
        elif path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise UserError(f"classes/{folder.name}/{path.name}: unsupported file type '{path.suffix}'; "
                            f"use one of {', '.join(SUPPORTED_EXTENSIONS)} or move the file out of classes/")
        else:
            files.append(FileEntry(f"classes/{folder.name}/{path.name}", label, path))
    if hidden:
        log.info("classes/%s: skipped hidden files: %s", folder.name, ", ".join(hidden))
    if subdirs:  # may hold data the user expects to be used: say so loudly
        log.warning("classes/%s: skipped sub-folders (recordings must sit directly in the class folder): %s",
                    folder.name, ", ".join(subdirs))
    if not files:
        raise UserError(f"classes/{folder.name}: empty class folder (no .csv, .txt or .npy files); "
                        "add recordings or delete the folder")
    return files
