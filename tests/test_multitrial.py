"""Multi-trial NAS (tinyml_modelzoo.nas_multitrial) on tiny synthetic features.

One 12-trial search is shared by several tests (module fixture); the others run
a handful of 1-2 epoch trials each. Worker processes use 'spawn', so the helpers
they run live at module level.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
import types
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml

from tinyml_modelzoo.config.schema import NasConfig, SearchSpaceConfig, TrainingConfig
from tinyml_modelzoo.devices import get_device
from tinyml_modelzoo.errors import UserError
from tinyml_modelzoo.nas_multitrial import (CandidateSpace, choose_best, npu_rule_violations, pareto_front,
                                            prepare_study, run_multi_trial, run_worker, score)
from tinyml_modelzoo.nas_multitrial import search as search_module
from tinyml_modelzoo.nas_multitrial import study as study_module
from tinyml_modelzoo.nas_multitrial.selection import early_stop_reached
from tinyml_modelzoo.npu import check_npu
from tinyml_modelzoo.zoo import get_model_spec
from tinyml_modelzoo.zoo.spec import AvgPool, ModelSpec, build_model

F28P55 = get_device("F28P55")


# ---- helpers (module level: spawned processes import them) ----------------------------------------

def synthetic_features(n_train: int = 120, n_val: int = 60, length: int = 64, classes: int = 3, seed: int = 0):
    """Three sine frequencies plus noise, ``(N, 1, L)`` float32 / int64: learnable in 1-2 epochs."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)

    def make(n):
        y = rng.integers(0, classes, n)
        phase = rng.uniform(0, 2 * np.pi, n)
        x = np.sin(2 * np.pi * (2 * (y[:, None] + 1)) * t[None, :] / length + phase[:, None])
        x = x[:, None, :] + 0.3 * rng.standard_normal((n, 1, length))
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = make(n_train)
    x_val, y_val = make(n_val)
    return types.SimpleNamespace(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, in_channels=1,
                                 in_length=length, num_classes=classes, class_names=[f"c{i}" for i in range(classes)])


SMALL_SPACE = SearchSpaceConfig(conv_channels=[4, 8, 12, 16, 24, 32], conv_kernels=[3, 5, 7],
                                num_conv_layers=[2, 3, 4], fc_features=[0, 16])
TRAINING = TrainingConfig(batch_size=32, learning_rate=0.01)


def nas_config(**overrides) -> NasConfig:
    base = NasConfig(enable=True, search_type="single_trial", num_trials=12, trial_epochs=2,
                     param_range=[300, 2500], accuracy_target=0.6, search_space=SMALL_SPACE)
    return replace(base, **overrides)


def non_dominated_trials(table: pd.DataFrame, use_latency: bool = False) -> set[int]:
    """Brute force: completed rows that no other completed row dominates."""
    done = table[table["state"] == "complete"].to_dict("records")
    keep = set()
    for a in done:
        for b in done:
            ge = b["accuracy"] >= a["accuracy"] and b["params"] <= a["params"]
            gt = b["accuracy"] > a["accuracy"] or b["params"] < a["params"]
            if use_latency:
                ge, gt = ge and b["latency_us"] <= a["latency_us"], gt or b["latency_us"] < a["latency_us"]
            if ge and gt:
                break
        else:
            keep.add(int(a["trial"]))
    return keep


def worker_main(features, nas: NasConfig, out_dir: str, seed: int, barrier=None) -> None:
    """What an extra machine runs: join the study and train trials until it is full.
    ``barrier``: start together, so that a slow process start cannot leave one worker idle."""
    torch.set_num_threads(1)
    if barrier is not None:
        barrier.wait(timeout=120)
    run_worker(features, nas, TRAINING, get_device("F28P55"), out_dir, seed)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def features():
    return synthetic_features()


@pytest.fixture(scope="module")
def search(tmp_path_factory, features):
    """One 12-trial NPU search with a narrow param_range and a warm start."""
    torch.set_num_threads(1)
    nas = nas_config(warm_start=True, initial_architecture="CLS_1k_NPU")
    out = tmp_path_factory.mktemp("nas")
    result = run_multi_trial(features, nas, TRAINING, F28P55, out, seed=0, progress=False)
    return types.SimpleNamespace(result=result, out=out, nas=nas, table=pd.read_csv(out / "search_results.csv"))


# ---- the shared 12-trial search ----------------------------------------------------------------------

def test_outputs_exist_and_count_trials(search):
    for name in ("search_results.csv", "pareto_frontier.csv", "best_model_spec.yaml", "pareto_plot.png"):
        assert (search.out / name).is_file(), name
    assert search.result.trials_run == 12 and len(search.table) == 12
    assert search.result.samples_per_second > 0 and search.result.search_seconds > 0
    assert list(search.table["trial"]) == list(range(12))
    assert {"trial", "params", "macs", "latency_us", "accuracy", "architecture", "state"} <= set(search.table)
    assert set(search.table["state"]) <= {"complete", "pruned", "rejected"}


def test_pareto_frontier_is_exactly_the_non_dominated_set(search):
    frontier = pd.read_csv(search.out / "pareto_frontier.csv")
    assert set(frontier["trial"]) == non_dominated_trials(search.table)
    assert {r["trial"] for r in search.result.frontier} == set(frontier["trial"])


def test_no_candidate_outside_param_range_is_trained(search):
    low, high = search.nas.param_range
    outside = search.table[(search.table["params"] < low) | (search.table["params"] > high)]
    assert len(outside) > 0, "the narrow range should force rejections"
    assert set(outside["state"]) == {"rejected"}
    assert outside["accuracy"].isna().all() and (outside["epochs"] == 0).all()
    assert all("param_range" in reason for reason in outside["reason"])


def test_best_is_smallest_model_meeting_accuracy_target(search):
    done = search.table[search.table["state"] == "complete"]
    meeting = done[done["accuracy"] >= search.nas.accuracy_target]
    best = yaml.safe_load((search.out / "best_model_spec.yaml").read_text())
    assert best["source"] == "multi_trial" and best["kind"] == "sequential"
    if len(meeting):
        assert best["metrics"]["val_accuracy"] >= search.nas.accuracy_target
        assert best["metrics"]["params"] == meeting["params"].min()
        assert best["selection"] == "smallest_meeting_accuracy_target"
    assert ModelSpec.from_dict(best) == search.result.best_spec
    assert search.result.best_row["trial"] == best["metrics"]["trial"]
    json.dumps(search.result.best_row)        # goes into summary.json


def test_warm_start_is_trial_zero(search):
    first = search.table.iloc[0]
    assert first["trial"] == 0 and bool(first["warm_start"])
    zoo = get_model_spec("CLS_1k_NPU")
    assert json.loads(search.result.rows[0]["spec"])["layers"] == zoo.to_dict()["layers"]
    assert not search.table["warm_start"].iloc[1:].any()


def test_every_candidate_is_npu_valid(search, features):
    shape = (features.in_channels, features.in_length)
    for row in search.result.rows:
        spec = ModelSpec.from_dict(json.loads(row["spec"]))
        assert npu_rule_violations(spec, features.in_length) == [], row["architecture"]
        report = check_npu(build_model(spec, *shape, features.num_classes), shape, F28P55)
        assert not [f for f in report.findings if f.rule != "max_params"], (row["architecture"], report.findings)


# ---- the candidate space ---------------------------------------------------------------------------

@pytest.mark.parametrize("length", [256, 64, 9])
def test_sampled_npu_candidates_obey_rules_by_construction(length):
    space = CandidateSpace.from_config(SearchSpaceConfig(conv_channels=[3, 4, 6, 8, 16, 32],
                                                         conv_kernels=[3, 5, 7, 9], conv_strides=[1, 2, 3],
                                                         pooling=["none", "max2", "max5", "avg2"],
                                                         fc_features=[0, 8, 16]), npu=True)
    assert 3 not in space.channels and 9 not in space.kernels and 3 not in space.strides
    assert space.pooling == ("none", "max2") and space.fc_features == (0, 16) and min(space.last_channels) >= 16
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=length))
    for _ in range(150):
        spec = space.build_spec(space.suggest(study.ask()), length)
        assert npu_rule_violations(spec, length) == [], spec
        assert not any(isinstance(layer, AvgPool) for layer in spec.layers)
        build_model(spec, 1, length, 4)       # never shrinks below length 1


def test_non_npu_space_keeps_every_choice():
    space = CandidateSpace.from_config(SearchSpaceConfig(conv_channels=[3, 6], pooling=["none", "avg2"]), npu=False)
    assert space.channels == (3, 6) and space.pooling == ("none", "avg2")


def test_bad_search_space_is_a_user_error_naming_the_keys():
    with pytest.raises(UserError) as info:
        CandidateSpace.from_config(SearchSpaceConfig(conv_channels=[3, 5], pooling=["max2", "median3"]), npu=True)
    message = str(info.value)
    assert "nas.search_space.pooling" in message and "median3" in message
    with pytest.raises(UserError, match="nas.search_space.conv_channels"):
        CandidateSpace.from_config(SearchSpaceConfig(conv_channels=[3, 5]), npu=True)


def test_zoo_models_map_into_the_space():
    space = CandidateSpace.from_config(SearchSpaceConfig(), npu=True)
    for name in ("CLS_1k_NPU", "CLS_2k_NPU"):
        spec = get_model_spec(name)
        params = space.params_for(spec)
        assert params is not None, name
        assert space.build_spec(params, 256).layers == spec.layers
    assert space.params_for(get_model_spec("CLS_100_NPU")) is None     # no global pool: evaluated as given


# ---- selection rules -------------------------------------------------------------------------------

def _row(trial, acc, params, latency=100.0, state="complete"):
    return {"trial": trial, "accuracy": acc, "params": params, "latency_us": latency, "state": state,
            "score": acc - params / 1e5}


def test_pareto_front_keeps_ties_and_uses_latency_only_when_asked():
    rows = [_row(0, 0.9, 1000, 300), _row(1, 0.9, 1000, 300), _row(2, 0.8, 2000, 100), _row(3, 0.95, 3000),
            _row(4, 0.99, 500, state="pruned"), _row(5, 0.5, 100, state="rejected")]
    assert [r["trial"] for r in pareto_front(rows, use_latency=False)] == [0, 1, 3]
    assert [r["trial"] for r in pareto_front(rows, use_latency=True)] == [0, 1, 2, 3]


def test_choose_best_prefers_smallest_meeting_target_else_score():
    rows = [_row(0, 0.95, 4000), _row(1, 0.91, 900), _row(2, 0.85, 200)]
    assert choose_best(rows, 0.9) == (rows[1], "smallest_meeting_accuracy_target")
    best, why = choose_best(rows, 0.99)
    assert why == "best_score" and best["trial"] == 0


def test_score_formula():
    kwargs = dict(accuracy_weight=1.0, size_weight=0.5, latency_weight=0.3, param_range=(100, 10000))
    assert score(0.9, 100, 50.0, latency_target=None, **kwargs) == pytest.approx(0.9)
    assert score(0.9, 10000, 50.0, latency_target=None, **kwargs) == pytest.approx(0.4)
    assert score(0.9, 1000, 50.0, latency_target=100.0, **kwargs) == pytest.approx(0.9 - 0.25 - 0.15)


def test_early_stop_rule():
    rows = [_row(0, 0.7, 1000), _row(1, 0.97, 900), _row(2, 0.5, 800), _row(3, 0.96, 2000)]
    assert early_stop_reached(rows, threshold=0.95, patience=2, accuracy_target=0.95)
    assert not early_stop_reached(rows, threshold=0.95, patience=3, accuracy_target=0.95)
    assert not early_stop_reached(rows, threshold=0.99, patience=1, accuracy_target=0.95)


# ---- search behaviour ------------------------------------------------------------------------------

def test_resume_completes_to_num_trials_and_keeps_finished_trials(tmp_path, features, monkeypatch):
    monkeypatch.setattr(study_module, "STALE_SECONDS", 1.0)
    nas4 = nas_config(num_trials=4, trial_epochs=1, param_range=[100, 60000])
    nas8 = replace(nas4, num_trials=8)
    first = run_multi_trial(features, nas4, TRAINING, F28P55, tmp_path, 0, progress=False)
    before = pd.read_csv(tmp_path / "search_results.csv")
    assert first.trials_run == 4 and len(before) == 4

    # A trial left RUNNING by a killed process: its heartbeat goes stale, it is failed and redone.
    setup, _ = prepare_study(features, nas8, TRAINING, F28P55, tmp_path, 0)
    study = optuna.load_study(study_name=setup.study_name, storage=study_module.storage(setup.storage_url, True))
    orphan = study.ask()
    study._storage.record_heartbeat(orphan._trial_id)
    time.sleep(1.5)

    second = run_multi_trial(features, nas8, TRAINING, F28P55, tmp_path, 0, progress=False)
    after = pd.read_csv(tmp_path / "search_results.csv")
    assert second.trials_run == 8 and len(after) == 8
    pd.testing.assert_frame_equal(after.iloc[:4].reset_index(drop=True), before)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert orphan.number not in set(after["trial"])


def test_early_stopping_ends_the_search(tmp_path, features):
    nas = nas_config(num_trials=30, trial_epochs=1, param_range=[100, 60000], early_stopping=True,
                     accuracy_threshold=0.0, patience=2, accuracy_target=None)
    result = run_multi_trial(features, nas, TRAINING, F28P55, tmp_path, 0, progress=False)
    assert result.stopped_early and result.trials_run < 30


def test_nsga2_with_latency_target_rejects_slow_candidates(tmp_path, features):
    nas = nas_config(sampler="nsga2", num_trials=6, trial_epochs=1, param_range=[100, 60000],
                     latency_target=160.0)
    result = run_multi_trial(features, nas, TRAINING, F28P55, tmp_path, 0, progress=False)
    table = pd.read_csv(tmp_path / "search_results.csv")
    assert set(table[table["latency_us"] > 160.0]["state"]) <= {"rejected"}
    frontier = pd.read_csv(tmp_path / "pareto_frontier.csv")
    assert set(frontier["trial"]) == non_dominated_trials(table, use_latency=True)
    assert result.best_row["latency_us"] <= 160.0


def test_random_sampler_and_cpu_device(tmp_path, features):
    nas = nas_config(sampler="random", num_trials=3, trial_epochs=1, param_range=[100, 60000],
                     search_space=SearchSpaceConfig(conv_channels=[3, 6], pooling=["avg2"], num_conv_layers=[2]))
    result = run_multi_trial(features, nas, TRAINING, get_device("F28P65"), tmp_path, 0, progress=False)
    assert result.trials_run == 3 and "avgpool" in " ".join(r["architecture"] for r in result.rows)


def test_empty_validation_split_is_a_user_error(tmp_path, features):
    no_val = types.SimpleNamespace(**dict(vars(features), x_val=features.x_val[:0], y_val=features.y_val[:0]))
    with pytest.raises(UserError, match="validation split"):
        run_multi_trial(no_val, nas_config(num_trials=2), TRAINING, F28P55, tmp_path, 0, progress=False)


def test_impossible_param_range_is_a_user_error(tmp_path, features):
    with pytest.raises(UserError, match="param_range"):
        run_multi_trial(features, nas_config(num_trials=2, param_range=[10, 20]), TRAINING, F28P55, tmp_path, 0,
                        progress=False)
    with pytest.raises(UserError, match="nas.param_range"):
        run_multi_trial(features, nas_config(param_range=[500]), TRAINING, F28P55, tmp_path, 0, progress=False)


# ---- processes ---------------------------------------------------------------------------------------

def test_two_workers_share_one_sqlite_study(tmp_path, features):
    nas = nas_config(num_trials=8, trial_epochs=1, param_range=[100, 60000],
                     storage=f"sqlite:///{tmp_path / 'shared.db'}")
    prepare_study(features, nas, TRAINING, F28P55, tmp_path, 0)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=worker_main, args=(features, nas, str(tmp_path), 0, barrier))
               for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0]
    result = run_multi_trial(features, nas, TRAINING, F28P55, tmp_path, 0, progress=False)  # collects, runs none
    assert result.trials_run == 8
    by_worker = pd.Series([r["worker"] for r in result.rows]).value_counts()
    assert len(by_worker) == 2, by_worker      # both processes contributed


def test_workers_fork_only_without_cuda_and_extra_threads(monkeypatch):
    monkeypatch.setattr(search_module.sys, "platform", "linux")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert search_module._start_method() == "fork"
    # with a CUDA device autograd runs a thread per device, and a forked child's backward fails
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert search_module._start_method() == "spawn"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert search_module._start_method() == "spawn"


def test_parallel_trials_finish(tmp_path, features):
    # a spawned worker (machines with a CUDA device) imports for seconds: enough trials to outlast that
    trials = 6 if search_module._start_method() == "fork" else 60
    nas = nas_config(search_type="multi_trial", parallel_trials=2, num_trials=trials, trial_epochs=1,
                     param_range=[100, 60000])
    result = run_multi_trial(features, nas, TRAINING, F28P55, tmp_path, 0, progress=False)
    assert result.trials_run == trials
    assert not (tmp_path / search_module.FEATURES_FILE).exists()
    here = f"{socket.gethostname()}:{os.getpid()}"
    assert any(r["worker"] != here for r in result.rows)     # the extra worker process ran trials too


@pytest.mark.slow
def test_parallel_speedup_wall_time(tmp_path):
    """8 trials of 4 epochs, parallel_trials 2 vs 1 (prints the times).

    Candidates come from a narrow space (3 convs of 16 channels, kernels and pools vary)
    so both runs train comparable work although their samplers draw different candidates.
    """
    feats = synthetic_features(n_train=1200, n_val=300, length=256)
    space = SearchSpaceConfig(conv_channels=[16], conv_kernels=[3, 5, 7], num_conv_layers=[3], fc_features=[0],
                              conv_strides=[1], pooling=["none", "max2"])
    times, work = {}, {}
    for workers in (1, 2):
        nas = nas_config(search_type="multi_trial", parallel_trials=workers, num_trials=8, trial_epochs=4,
                         param_range=[100, 60000], sampler="random", search_space=space)
        torch.set_num_threads(2)
        start = time.perf_counter()
        result = run_multi_trial(feats, nas, TRAINING, F28P55, tmp_path / f"p{workers}", 0, progress=False)
        times[workers] = time.perf_counter() - start
        work[workers] = sum(r["macs"] * r["epochs"] for r in result.rows) / 1e6
    print(f"\nwall time 8 trials: 1 worker {times[1]:.1f} s ({work[1]:.1f} M MAC-epochs per sample), "
          f"2 workers {times[2]:.1f} s ({work[2]:.1f}), speed-up {times[1] / times[2]:.2f}x")
    assert times[2] < times[1] * 1.5       # spawn start-up (~5 s per process) is paid once
