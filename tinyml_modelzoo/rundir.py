"""The run folder: its layout, run.log, stage bookkeeping for --resume, summary.json.

Layout (SPEC.md): ``<output_dir>/<dataset_name>/run/<run_name>/`` holding
``config_resolved.yaml``, ``run.log``, ``summary.json`` and one sub-folder per
stage. While a run is in progress the folder holds a file ``INCOMPLETE``; a
finished run removes it and ``summary.json`` says ``status: success``.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import Config, write_config

LOGGER_NAME = "tinyml_modelzoo"
STATE_FILE = "run_state.json"
INCOMPLETE_FILE = "INCOMPLETE"


@dataclass(frozen=True)
class RunDir:
    path: Path

    # ---- layout -------------------------------------------------------------------
    def stage_dir(self, name: str) -> Path:
        """``NAS``, ``training``, ``testing``, ``compilation`` or ``dataset``; created on demand."""
        folder = self.path / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    # ---- creation and resume --------------------------------------------------------
    @classmethod
    def create(cls, config: Config) -> "RunDir":
        """Make a fresh run folder; an existing folder of the same name is never reused."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_name = config.common.run_name.replace("{date-time}", stamp)
        base = Path(config.common.output_dir).expanduser() / config.dataset.dataset_name / "run"
        path = base / run_name
        suffix = 2
        while path.exists():
            path = base / f"{run_name}-{suffix}"
            suffix += 1
        path.mkdir(parents=True)
        run = cls(path)
        (path / INCOMPLETE_FILE).write_text("This run has not finished. Continue it with:\n"
                                            f"  ./run_tinyml_modelzoo.sh --resume {path}\n")
        write_config(config, path / "config_resolved.yaml")
        run._write_state({"source_config": config.source_path, "finished_stages": {}})
        return run

    @classmethod
    def open_existing(cls, path: str | Path) -> "RunDir":
        path = Path(path)
        if not (path / "config_resolved.yaml").is_file() or not (path / STATE_FILE).is_file():
            from .errors import UserError
            raise UserError(f"{path}: not a run folder (no config_resolved.yaml / {STATE_FILE}); "
                            f"pass the folder printed at the start of the run")
        return cls(path)

    def config_for_resume(self) -> tuple[dict, Path | None]:
        """The resolved config as a dict and the original config file it came from."""
        raw = yaml.safe_load((self.path / "config_resolved.yaml").read_text(encoding="utf-8")) or {}
        source = self._read_state().get("source_config")
        return raw, Path(source) if source else None

    # ---- stage bookkeeping --------------------------------------------------------------
    def finished(self, stage: str) -> dict | None:
        return self._read_state()["finished_stages"].get(stage)

    def mark_finished(self, stage: str, result: dict) -> None:
        state = self._read_state()
        state["finished_stages"][stage] = result
        self._write_state(state)

    def complete(self) -> None:
        (self.path / INCOMPLETE_FILE).unlink(missing_ok=True)

    def _read_state(self) -> dict:
        return json.loads((self.path / STATE_FILE).read_text(encoding="utf-8"))

    def _write_state(self, state: dict) -> None:
        write_json_atomic(self.path / STATE_FILE, state)

    # ---- outputs --------------------------------------------------------------------
    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.summary_path, summary)

    def attach_log(self) -> logging.Handler:
        """Send everything logged (and printed via the logger) to ``run.log`` too."""
        handler = logging.FileHandler(self.path / "run.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger(LOGGER_NAME).addHandler(handler)
        return handler


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value: Any):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
