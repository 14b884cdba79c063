"""The Optuna study of a search: storage, sampler, pruner, and the loop that runs trials.

Counting: a trial counts once it is COMPLETE (trained, rejected before training
or a reused result) or PRUNED; failed trials do not count. A RUNNING trial whose
heartbeat stopped (its process was killed) is marked failed after
``STALE_SECONDS`` by the next process that looks, and its slot is redone.
"""
from __future__ import annotations

import functools
import logging
import sqlite3
import time
import warnings
from typing import Optional

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from tinyml_modelzoo.config.schema import NasConfig

from .selection import early_stop_reached
from .trial import SearchSetup, SurplusTrial, TrialObjective, row_from_trial

log = logging.getLogger("tinyml_modelzoo")

STALE_SECONDS = 30.0      # a RUNNING trial without a heartbeat for this long belongs to a dead process
POLL_SECONDS = 1.0        # how often a waiting process looks at the storage


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}
_INHERITED: list[optuna.storages.RDBStorage] = []


def forget_inherited_storages() -> None:
    """In a forked worker: open fresh connections instead of the parent's (SQLite must not use a
    connection across fork), and keep the inherited ones referenced so they are never closed here."""
    _INHERITED.extend(_STORAGES.values())
    _STORAGES.clear()


def storage(url: str, local: bool) -> optuna.storages.RDBStorage:
    """One RDB storage per URL and process, with heartbeats (stale-trial detection).
    ``local``: the default run-folder SQLite file (not a user-given URL)."""
    if url in _STORAGES:
        return _STORAGES[url]
    engine: dict = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if local and url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        # Our own run-folder database lives on a local disk: WAL + synchronous=NORMAL makes each of
        # the ~30 commits of a trial cheap and lets local workers read while one writes. A
        # user-given SQLite URL is left alone (WAL does not work on network file systems).
        engine = {"creator": functools.partial(_sqlite_connect, path)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine,
                                         heartbeat_interval=max(1, int(STALE_SECONDS // 4)),
                                         grace_period=int(max(1, STALE_SECONDS)))
    _STORAGES[url] = rdb
    return rdb


def _sqlite_connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=120, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def make_sampler(setup: SearchSetup, seed: int) -> optuna.samplers.BaseSampler:
    n = setup.nas.num_trials
    if setup.nas.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if setup.nas.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, n // 3)))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, n // 3)),
                                          constant_liar=True)


def make_pruner(setup: SearchSetup) -> optuna.pruners.BasePruner:
    if setup.multi_objective:
        return optuna.pruners.NopPruner()
    # Median rule once more than half of the trial epochs ran (the first epochs of a one-cycle
    # schedule say little), after 3 trials; the last epoch is never pruned (see TrialObjective).
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=setup.nas.trial_epochs // 2 + 1)


def open_study(setup: SearchSetup, sampler_seed: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize", "minimize"] + (["minimize"] if setup.use_latency else []) \
        if setup.multi_objective else ["maximize"]
    return optuna.create_study(storage=storage(setup.storage_url, setup.nas.storage is None),
                               study_name=setup.study_name, sampler=make_sampler(setup, sampler_seed % 2**31),
                               pruner=make_pruner(setup),
                               directions=directions, load_if_exists=True)


def study_exists(setup: SearchSetup) -> bool:
    try:
        names = optuna.get_all_study_names(storage=storage(setup.storage_url, setup.nas.storage is None))
    except Exception:   # storage not reachable or not initialised yet
        return False
    return setup.study_name in names


def fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def result_rows(study: optuna.Study, setup: SearchSetup) -> list[dict]:
    rows = (row_from_trial(t, setup) for t in study.get_trials(deepcopy=False))
    return sorted((r for r in rows if r is not None), key=lambda r: r["trial"])


# ---- the trial loop ------------------------------------------------------------------------------

def work(study: optuna.Study, objective: TrialObjective, setup: SearchSetup, monitor: Optional["Monitor"],
          *, wait_for_others: bool) -> int:
    """Run trials until the study has ``num_trials`` (or stops early); returns how many this process ran.

    ``wait_for_others``: when the remaining slots are held by running trials of other
    processes, wait for them (and redo those whose process died) instead of returning.
    """
    nas, ran = setup.nas, 0
    while True:
        rows = result_rows(study, setup)
        if monitor:
            monitor.update(rows)
        if len(rows) >= nas.num_trials or stop_early(rows, nas):
            return ran
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if len(rows) + running >= nas.num_trials:
            if not wait_for_others:
                return ran
            fail_stale(study)
            time.sleep(POLL_SECONDS)
            continue
        study.optimize(objective, n_trials=1, catch=(SurplusTrial,), gc_after_trial=False)
        ran += 1


def stop_early(rows: list[dict], nas: NasConfig) -> bool:
    if not nas.early_stopping:
        return False
    threshold = nas.accuracy_threshold if nas.accuracy_threshold is not None else nas.accuracy_target
    return early_stop_reached(rows, threshold, nas.patience, nas.accuracy_target)


class Monitor:
    """tqdm bar over trials plus one log line per finished trial (from the storage, so it also
    reports trials of other processes)."""

    def __init__(self, total: int, enabled: bool, rows: list[dict]):
        self.total, self.seen = total, {r["trial"] for r in rows}
        self.bar = tqdm(total=total, initial=min(total, len(rows)), desc="NAS trials", unit="trial",
                        disable=not enabled, leave=False)

    def update(self, rows: list[dict]) -> None:
        for row in rows:
            if row["trial"] in self.seen:
                continue
            self.seen.add(row["trial"])
            if self.bar.n < self.total:
                self.bar.update(1)
            latency = "" if row["latency_us"] != row["latency_us"] else f"  latency {row['latency_us']:.0f} us"
            head = f"trial {row['trial']:3d} {row['state']:8s}"
            if row["state"] == "rejected":
                log.info("%s params %7d%s  %s: %s", head, row["params"], latency, row["architecture"], row["reason"])
            else:
                done = f"{row['reason']}" if row["reason"] else f"{row['epochs']} epochs, {row['seconds']:.1f} s"
                log.info("%s val acc %.3f  params %7d  MACs %9d%s  %s  (%s)", head, row["accuracy"], row["params"],
                         row["macs"], latency, row["architecture"], done)

    def close(self) -> None:
        self.bar.close()
