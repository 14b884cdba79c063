"""Multi-trial NAS entry points: run a search, join one as a worker, write the results.

One Optuna study per search lives in a storage (default: SQLite ``study.db`` in
the run's ``NAS/`` folder; any RDB URL, e.g. PostgreSQL, for a cluster). The
study name is a fingerprint of everything that defines the search (space,
constraints, objective, trial recipe, seed, data shape) but not of
``num_trials``: running again with the same config resumes the study and
completes it up to ``num_trials``; a changed search starts a fresh study.
How trials are counted and how dead workers' trials are redone: see ``study.py``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch

from tinyml_modelzoo.config.schema import NasConfig, TrainingConfig
from tinyml_modelzoo.errors import UserError
from tinyml_modelzoo.zoo.spec import ModelSpec

from . import outputs
from .selection import choose_best, pareto_front
from .space import CandidateSpace
from .study import (POLL_SECONDS, Monitor, fail_stale, forget_inherited_storages, open_study, result_rows, stop_early, study_exists,
                    work)
from .trial import WARM_START_ATTR, SearchSetup, TrialObjective

log = logging.getLogger("tinyml_modelzoo")

WORKER_WAIT_SECONDS = 120.0   # how long run_worker waits for the main run to create the study
FEATURES_FILE = "worker_features.npz"
DEFAULT_DB_NAME = "study.db"


@dataclass(frozen=True)
class MultiTrialResult:
    """``rows``/``frontier``: one dict per trial (the CSV columns plus ``spec``, the candidate's
    ``ModelSpec.to_dict()`` as JSON); ``best_row`` is JSON-safe (no ``spec``, NaN -> None)."""
    best_spec: ModelSpec
    best_row: dict
    rows: tuple[dict, ...]
    frontier: tuple[dict, ...]
    search_seconds: float
    trials_run: int
    stopped_early: bool
    files: dict = field(default_factory=dict)
    samples_per_second: float = 0.0     # training samples (epochs x train size) of this call's trials / search_seconds


# ---- public entry points -------------------------------------------------------------------------

def run_multi_trial(features, nas_cfg: NasConfig, training_cfg: TrainingConfig, device_info, out_dir: Path,
                    seed: int, *, progress: bool = True) -> MultiTrialResult:
    """Search ``nas_cfg.num_trials`` candidates (resuming a study already in the storage) and
    write the NAS/ files into ``out_dir``. Trains on ``features.x_train``, scores on
    ``features.x_val`` (arrays ``(N, C, L)`` float32, labels int64); the test split is never used.
    The best model is not retrained here."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    setup, space = prepare_study(features, nas_cfg, training_cfg, device_info, out_dir, seed)
    workers = 1 if nas_cfg.search_type == "single_trial" else nas_cfg.parallel_trials
    study = open_study(setup, sampler_seed=seed)
    fail_stale(study)
    rows = result_rows(study, setup)
    log.info("multi-trial NAS: %d trials (%d done), %s sampler, %d worker%s, params %d..%d%s, study %s in %s",
             nas_cfg.num_trials, len(rows), nas_cfg.sampler, workers, "s" * (workers > 1), *setup.param_range,
             ", NPU-valid candidates only" if setup.npu else "", setup.study_name, _safe_url(setup.storage_url))
    monitor = Monitor(nas_cfg.num_trials, progress, rows)
    try:
        # The main process is one of the workers: a spawned process pays seconds of start-up
        # (imports), which is what short tiny-ML trials cannot afford N times.
        with _spawned_helpers(setup, features, out_dir, workers):
            study = open_study(setup, sampler_seed=seed + 7919 * len(study.trials))
            work(study, TrialObjective(setup, features, space), setup, monitor, wait_for_others=True)
    finally:
        monitor.close()
    before = {r["trial"] for r in rows}
    rows = result_rows(study, setup)
    seconds = time.perf_counter() - start
    result = _finish(setup, features, out_dir, rows, seconds)
    samples = sum(r["epochs"] for r in rows if r["trial"] not in before) * len(features.y_train)
    return replace(result, samples_per_second=samples / seconds if seconds > 0 else 0.0)


def run_worker(features, nas_cfg: NasConfig, training_cfg: TrainingConfig, device_info, out_dir: Path,
               seed: int) -> int:
    """Join the search of the same config in ``nas_cfg.storage`` and run trials until the study
    reaches ``num_trials`` (or stops early). Returns the number of trials this process ran.

    The main run (``run_multi_trial``) creates the study and writes the result files; a worker
    waits up to ``WORKER_WAIT_SECONDS`` for the study to appear.
    """
    setup, space = resolve_setup(features, nas_cfg, training_cfg, device_info, Path(out_dir), seed)
    deadline = time.monotonic() + WORKER_WAIT_SECONDS
    while not study_exists(setup):
        if time.monotonic() > deadline:
            raise UserError(f"nas.storage: no search {setup.study_name} in {_safe_url(setup.storage_url)}; start "
                            "the main run first, and give the worker the same config (search space, "
                            "param_range, sampler, trial recipe, seed, data)")
        time.sleep(POLL_SECONDS)
    study = open_study(setup, sampler_seed=(seed * 1_000_003 + os.getpid() + time.time_ns()) % 2**31)
    log.info("NAS worker joined study %s in %s", setup.study_name, _safe_url(setup.storage_url))
    return work(study, TrialObjective(setup, features, space), setup, None, wait_for_others=False)


def prepare_study(features, nas_cfg: NasConfig, training_cfg: TrainingConfig, device_info, out_dir: Path,
                  seed: int) -> tuple[SearchSetup, CandidateSpace]:
    """Validate the config, create (or find) the study and enqueue the warm-start trial."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup, space = resolve_setup(features, nas_cfg, training_cfg, device_info, out_dir, seed)
    warm = _warm_start_spec(nas_cfg)
    study = open_study(setup, sampler_seed=seed)
    if warm is not None and not study.trials:
        params = space.params_for(warm) or {}
        study.enqueue_trial(params, user_attrs={WARM_START_ATTR: json.dumps(warm.to_dict())})
        log.info("warm start: trial 0 is %s%s", nas_cfg.initial_architecture,
                 "" if params else " (outside the search space: evaluated as given)")
    return setup, space


def resolve_setup(features, nas_cfg: NasConfig, training_cfg: TrainingConfig, device_info, out_dir: Path,
                  seed: int) -> tuple[SearchSetup, CandidateSpace]:
    if len(features.y_val) == 0:
        raise UserError("dataset.split_factor: the multi-trial search scores candidates on the validation split, "
                        "which is empty; give it a share, e.g. [0.6, 0.2, 0.2]")
    npu = bool(getattr(device_info, "has_npu", False)) if nas_cfg.npu_compatible is None else nas_cfg.npu_compatible
    space = CandidateSpace.from_config(nas_cfg.search_space, npu, getattr(device_info, "npu_rules", None))
    pr = nas_cfg.param_range
    if not (isinstance(pr, (list, tuple)) and len(pr) == 2 and all(isinstance(v, int) for v in pr)
            and 0 <= pr[0] < pr[1]):
        raise UserError(f"nas.param_range: got {pr!r}; expected [min_params, max_params] with 0 <= min < max, "
                        "e.g. [500, 5000]")
    low, high = int(pr[0]), int(pr[1])
    device_max = getattr(device_info, "max_params", None)
    if npu and device_max and high > device_max:
        log.info("nas.param_range maximum %d capped to the device limit of %d parameters", high, device_max)
        high = max(low + 1, int(device_max))
    storage = nas_cfg.storage or f"sqlite:///{(Path(out_dir) / DEFAULT_DB_NAME).resolve()}"
    fingerprint = {"space": asdict(space), "param_range": [low, high], "latency_target": nas_cfg.latency_target,
                   "sampler": nas_cfg.sampler, "weights": [nas_cfg.accuracy_weight, nas_cfg.size_weight,
                                                           nas_cfg.latency_weight],
                   "trial_epochs": nas_cfg.trial_epochs, "training": _recipe(training_cfg), "seed": seed,
                   "data": [int(features.in_channels), int(features.in_length), int(features.num_classes),
                            int(len(features.y_train)), int(len(features.y_val))]}
    digest = hashlib.sha1(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:12]
    setup = SearchSetup(nas_cfg, training_cfg, device_info, seed, npu, (low, high), storage, f"tinyml_nas_{digest}")
    return setup, space


# ---- parallel workers on this machine ------------------------------------------------------------

@contextmanager
def _spawned_helpers(setup: SearchSetup, features, out_dir: Path, workers: int):
    """Start ``workers - 1`` extra processes ('spawn') sharing the storage; the torch threads of
    the machine are split between them and this process for the duration."""
    if workers <= 1:
        yield
        return
    path = out_dir / FEATURES_FILE
    np.savez(path, x_train=features.x_train, y_train=features.y_train, x_val=features.x_val, y_val=features.y_val,
             in_channels=features.in_channels, in_length=features.in_length, num_classes=features.num_classes,
             class_names=np.array([str(c) for c in getattr(features, "class_names", ())]),
             transforms=np.array([str(t) for t in getattr(features, "transforms", ()) or ()]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // workers)
    context = multiprocessing.get_context(_start_method())
    procs = [context.Process(target=_spawned_worker, args=(setup, str(path), index, threads),
                             name=f"nas-worker-{index}") for index in range(1, workers)]
    previous_threads = torch.get_num_threads()
    stopped = set()
    try:
        for proc in procs:
            proc.start()
        torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(previous_threads)
        for proc in procs:
            proc.join(timeout=5)
            # still starting (a spawned worker imports for seconds) or interrupted: no orphans
            if proc.is_alive():
                proc.terminate()
                proc.join()
                stopped.add(proc.name)
        path.unlink(missing_ok=True)
    for proc in procs:
        if proc.name in stopped:
            log.info("NAS worker %s was still running after the search had finished; stopped", proc.name)
        elif proc.exitcode:
            log.warning("NAS worker %s exited with status %s; its trials were redone here", proc.name, proc.exitcode)


def _start_method() -> str:
    """'fork' starts a worker in milliseconds instead of the seconds of imports that 'spawn' costs
    (most of a tiny-ML trial), but it is safe only while this process runs torch single-threaded
    and has no CUDA device: there autograd keeps a thread per device from the first backward on,
    and a forked child's backward fails ("Unable to handle autograd's threading in combination
    with fork-based multiprocessing", seen on an H200 machine)."""
    fork = sys.platform.startswith("linux") and torch.get_num_threads() == 1 and not torch.cuda.is_available()
    return "fork" if fork else "spawn"


def _spawned_worker(setup: SearchSetup, features_path: str, index: int, threads: int) -> None:
    forget_inherited_storages()
    torch.set_num_threads(threads)
    features = load_features_npz(features_path)
    space = CandidateSpace.from_config(setup.nas.search_space, setup.npu,
                                       getattr(setup.device_info, "npu_rules", None))
    existing = len(open_study(setup, setup.seed).trials)
    study = open_study(setup, sampler_seed=setup.seed + 1000 * (index + 1) + 7919 * existing)
    work(study, TrialObjective(setup, features, space), setup, None, wait_for_others=False)


def load_features_npz(path: str | Path) -> SimpleNamespace:
    """The arrays a worker trains on (the FeatureSet fields the search uses)."""
    with np.load(path) as data:
        return SimpleNamespace(x_train=data["x_train"], y_train=data["y_train"], x_val=data["x_val"],
                               y_val=data["y_val"], in_channels=int(data["in_channels"]),
                               in_length=int(data["in_length"]), num_classes=int(data["num_classes"]),
                               class_names=[str(c) for c in data["class_names"]],
                               transforms=[str(t) for t in data["transforms"]])


# ---- results -------------------------------------------------------------------------------------

def _finish(setup: SearchSetup, features, out_dir: Path, rows: list[dict], seconds: float) -> MultiTrialResult:
    nas = setup.nas
    frontier = pareto_front(rows, setup.use_latency)
    best, why = choose_best(rows, nas.accuracy_target)
    files = outputs.write_tables(out_dir, rows, frontier)
    shape = (int(features.in_channels), int(features.in_length))
    files["pareto_plot"] = outputs.plot_pareto(out_dir / "pareto_plot.png", rows, frontier, best,
                                               nas.accuracy_target, setup.param_range)
    if best is None:
        rejected = sum(r["state"] == "rejected" for r in rows)
        raise UserError(f"nas: none of the {len(rows)} trials trained to completion ({rejected} rejected before "
                        f"training; see {files['search_results']}); widen nas.param_range "
                        f"{list(setup.param_range)} or nas.latency_target, or change nas.search_space")
    files["best_model_spec"] = outputs.write_best_spec(out_dir / "best_model_spec.yaml", best, why,
                                                       nas.accuracy_target, shape, int(features.num_classes))
    stopped = len(rows) < nas.num_trials and stop_early(rows, nas)
    log.info("multi-trial NAS: %d trials in %.1f s%s; %d on the Pareto frontier; chosen trial %d (%s): "
             "val acc %.3f, %d params, %s", len(rows), seconds, " (stopped early)" if stopped else "",
             len(frontier), best["trial"], why.replace("_", " "), best["accuracy"], best["params"],
             best["architecture"])
    best_row = _json_safe({k: v for k, v in best.items() if k != "spec"})
    return MultiTrialResult(ModelSpec.from_dict(json.loads(best["spec"])), best_row, tuple(rows), tuple(frontier),
                            seconds, len(rows), stopped, {k: Path(v) for k, v in files.items()})


def _json_safe(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}


def _recipe(cfg: TrainingConfig) -> dict:
    keys = ("batch_size", "learning_rate", "optimizer", "weight_decay", "lr_scheduler", "label_smoothing",
            "augment_shift", "augment_flip", "augment_noise", "augment_mixup", "precise_batchnorm")
    return {k: getattr(cfg, k, None) for k in keys}


def _warm_start_spec(nas: NasConfig) -> Optional[ModelSpec]:
    if not nas.warm_start:
        return None
    if not nas.initial_architecture:
        raise UserError("nas.initial_architecture: required when nas.warm_start is true; give a zoo model name "
                        "such as CLS_2k_NPU (see --list-models)")
    from tinyml_modelzoo.zoo import get_model_spec
    try:
        return get_model_spec(nas.initial_architecture)
    except KeyError as exc:
        raise UserError(f"nas.initial_architecture: {exc.args[0]}") from None


def _safe_url(url: str) -> str:
    """The storage URL without a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
