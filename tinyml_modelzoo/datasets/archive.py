"""Where the dataset lives: resolve ``input_data_path`` and unpack a local .zip safely."""
from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from tinyml_modelzoo.errors import UserError

log = logging.getLogger(__name__)


def resolve_input_path(input_data_path: str, config_dir: Path) -> Path:
    """``input_data_path`` made absolute (relative paths resolve against the config file's folder)."""
    path = Path(input_data_path).expanduser()
    path = path if path.is_absolute() else Path(config_dir) / path
    if not path.exists():
        raise UserError(f"dataset.input_data_path: {path} does not exist; give the dataset folder "
                        "(containing classes/) or a local .zip, relative to the config file or absolute")
    return path


def extract_zip(archive: Path, target: Path) -> Path:
    """Extract ``archive`` into ``target`` (emptied first) and return ``target``.

    Every member is checked before anything is written: absolute names, drive
    letters and ``..`` components are refused (zip-slip), so nothing lands
    outside ``target``.
    """
    if not zipfile.is_zipfile(archive):
        raise UserError(f"{archive}: not a valid zip archive; re-create it (e.g. `zip -r data.zip my_dataset`) "
                        "or point dataset.input_data_path at the unpacked folder")
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member(archive, info.filename)
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            zf.extractall(target)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UserError(f"{archive}: cannot extract ({exc}); re-create the zip or unpack it yourself") from None
    log.info("extracted %s into %s", archive, target)
    return target


def _check_member(archive: Path, name: str) -> None:
    posix = PurePosixPath(name.replace("\\", "/"))
    drive = bool(posix.parts) and ":" in posix.parts[0]  # C:\evil.txt written by Windows zippers
    if posix.is_absolute() or drive:
        raise UserError(f"{archive}: member {name!r} has an absolute path; refusing to extract it "
                        "(zip-slip). Re-create the zip with relative paths")
    if ".." in posix.parts:
        raise UserError(f"{archive}: member {name!r} points outside the extraction folder ('..'); "
                        "refusing to extract it (zip-slip). Re-create the zip with plain relative paths")


def find_dataset_root(folder: Path) -> Path:
    """The folder that holds ``classes/``: ``folder`` itself or its single sub-folder
    (zips usually wrap everything in one top-level directory)."""
    if (folder / "classes").is_dir():
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not is_junk(p.name)] if folder.is_dir() else []
    if len(subdirs) == 1 and (subdirs[0] / "classes").is_dir():
        return subdirs[0]
    raise UserError(f"{folder}: no classes/ folder; expected <dataset>/classes/<class_name>/<file>.csv "
                    "(one folder per class, see docs/dataset_format.md)")


def is_junk(name: str) -> bool:
    """Hidden files and OS droppings that are never data."""
    return name.startswith(".") or name in {"__MACOSX", "Thumbs.db", "desktop.ini"}
