"""``--nas-worker RUN_DIR``: join the multi-trial search of an existing run from another process.

The worker rebuilds the run's features from the run's saved config (dataset,
split and feature extraction are deterministic given the seed), then calls
``run_worker``. It writes nothing into the run folder: trials go to the shared
storage, and the main run writes the NAS/ files.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from tinyml_modelzoo.errors import UserError

from .search import run_worker

log = logging.getLogger("tinyml_modelzoo")


def join_as_worker(run_path: Path, overrides: list[str]) -> int:
    """Run trials of ``run_path``'s search until it has ``nas.num_trials``; returns the exit status."""
    from tinyml_modelzoo.config import config_from_dict
    from tinyml_modelzoo.config.loader import apply_overrides
    from tinyml_modelzoo.datasets import load_dataset
    from tinyml_modelzoo.devices import get_device
    from tinyml_modelzoo.features import extract_features
    from tinyml_modelzoo.rundir import RunDir

    run = RunDir.open_existing(run_path)
    raw, source = run.config_for_resume()
    apply_overrides(raw, overrides, "--set")
    config = config_from_dict(raw, source if source and source.exists() else run.path / "config_resolved.yaml")
    if not config.nas.enable or config.training.model_name != "auto":
        raise UserError(f"{run.path}: this run does not use the multi-trial search (nas.enable with "
                        "training.model_name: auto); nothing to join")
    if config.common.num_threads:
        torch.set_num_threads(config.common.num_threads)
    config_dir = Path(config.source_path).parent if config.source_path else Path.cwd()
    splits = load_dataset(config.dataset, config.common.seed, config_dir, None)
    features = extract_features(splits, config.data_processing_feature_extraction)
    device = get_device(config.common.target_device)
    ran = run_worker(features, config.nas, config.training, device, run.path / "NAS", config.common.seed)
    log.info("NAS worker done: %d trial%s run here; the main run writes the results", ran, "s" * (ran != 1))
    return 0
