"""One trial: sample (or take the warm-start) candidate, cost it, train it, record it.

Costs (params, MACs, latency) are computed before any training; a candidate
outside ``param_range``, over ``latency_target`` or not NPU-valid is recorded
as ``rejected`` and never trained. Everything a trial learns is stored in the
Optuna trial's user attributes, so any process can rebuild the result rows
from the shared storage alone (see ``row_from_trial``).
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Optional

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from tinyml_modelzoo.config.schema import NasConfig, TrainingConfig
from tinyml_modelzoo.recipe import fit_settings, is_circular, is_time_domain
from tinyml_modelzoo.zoo.spec import ModelSpec, build_model, describe
from tinyml_torchmodelopt.profile import profile_model
from tinyml_torchmodelopt.train import fit

from .selection import COMPLETE, PRUNED, REJECTED, score
from .space import CandidateSpace, npu_rule_violations

WARM_START_ATTR = "warm_start_spec"


class SurplusTrial(Exception):
    """A worker asked for a trial after the study already had ``num_trials`` (a benign race)."""


@dataclass(frozen=True)
class SearchSetup:
    """What every process of one search shares (picklable: it is handed to spawned workers)."""
    nas: NasConfig
    training: TrainingConfig
    device_info: Any
    seed: int
    npu: bool
    param_range: tuple[int, int]
    storage_url: str
    study_name: str

    @property
    def multi_objective(self) -> bool:
        return self.nas.sampler == "nsga2"

    @property
    def use_latency(self) -> bool:
        return self.nas.latency_target is not None

    def score(self, accuracy: float, params: int, latency_us: float) -> float:
        n = self.nas
        return score(accuracy, params, latency_us, accuracy_weight=n.accuracy_weight, size_weight=n.size_weight,
                     latency_weight=n.latency_weight, param_range=self.param_range, latency_target=n.latency_target)


def set_violation(trial: optuna.Trial, violation: float) -> None:
    """Record how far the candidate is outside the constraints (0: feasible) for constraint-aware
    samplers. TPE and NSGA-II both rank infeasible trials by their summed violation, so one value
    (relative overshoot of param_range / latency_target, 1 for an invalid candidate) is enough."""
    trial.set_constraint("violation", violation)


def estimate_latency(macs: int, params: int, device_info: Any, npu: bool) -> float:
    """Latency estimate in microseconds from the device registry (NaN when it is unavailable)."""
    try:
        from tinyml_modelzoo.devices import estimate_latency_us
    except ImportError:
        return float("nan")
    return float(estimate_latency_us(macs, params, device_info, npu=npu))


def npu_checker_findings(model: torch.nn.Module, input_shape: tuple[int, int], device_info: Any) -> list[str]:
    """What the project's NPU checker finds wrong with the built model (empty when valid or unavailable)."""
    try:
        from tinyml_modelzoo.npu import check_npu
    except ImportError:
        return []
    report = check_npu(model, input_shape, device_info)
    return [f"{f.layer} {f.rule}: {f.found} (allowed {f.allowed})" for f in report.findings]


class TrialObjective:
    """Callable for ``study.optimize``: returns the score (TPE, random) or
    ``(accuracy, params[, latency_us])`` (NSGA-II)."""

    def __init__(self, setup: SearchSetup, features, space: CandidateSpace):
        self.setup, self.space = setup, space
        self.shape = (int(features.in_channels), int(features.in_length))
        self.num_classes = int(features.num_classes)
        self.x_train, self.y_train = torch.from_numpy(features.x_train), torch.from_numpy(features.y_train)
        self.x_val, self.y_val = torch.from_numpy(features.x_val), torch.from_numpy(features.y_val)
        self.time_domain = is_time_domain(features)
        self.circular = self.time_domain and is_circular(features.x_train)

    def __call__(self, trial: optuna.Trial):
        self._check_not_surplus(trial)
        setup = self.setup
        params = self.space.suggest(trial)      # always sampled, so every trial has a full parameter set
        warm = trial.user_attrs.get(WARM_START_ATTR)
        if warm:
            spec = ModelSpec.from_dict(json.loads(warm))
        else:
            spec = self.space.build_spec(params, self.shape[1], name=f"NAS_trial{trial.number}")
        # Few, batched attribute writes: every write is one storage transaction.
        candidate = {"architecture": describe(spec), "spec": json.dumps(spec.to_dict()), "worker": worker_id(),
                     "params": 0, "macs": 0, "latency_us": None}
        torch.manual_seed(setup.seed + trial.number)     # a trial's weights depend only on its number
        try:
            model = build_model(spec, *self.shape, self.num_classes)
        except ValueError as exc:
            trial.set_user_attr("candidate", candidate)
            return self._reject(trial, f"cannot be built: {exc}", 0, float("nan"), invalid=True)
        cost = profile_model(model, self.shape)
        latency = estimate_latency(cost.macs, cost.params, setup.device_info, setup.npu)
        candidate.update(params=cost.params, macs=cost.macs, latency_us=latency if latency == latency else None)
        trial.set_user_attr("candidate", candidate)
        reason = self._constraint_reason(spec, model, cost.params, latency)
        if reason:
            return self._reject(trial, reason, cost.params, latency, invalid=reason.startswith("not NPU"))
        set_violation(trial, 0.0)
        earlier = self._same_architecture(trial, candidate["spec"])
        if earlier is not None:      # samplers repeat themselves; training it again costs time, not insight
            result = dict(earlier.user_attrs["result"], epochs=0, seconds=0.0,
                          reason=f"same architecture as trial {earlier.number}: result reused")
            trial.set_user_attr("result", result)
            return self._values(result["accuracy"], cost.params, latency)
        return self._train(trial, model, cost.params, latency)

    # -- steps -----------------------------------------------------------------------------------
    def _check_not_surplus(self, trial: optuna.Trial) -> None:
        alive = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        ahead = [t for t in trial.study.get_trials(deepcopy=False, states=alive) if t.number < trial.number]
        if len(ahead) >= self.setup.nas.num_trials:
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"study already has {self.setup.nas.num_trials} trials")

    def _same_architecture(self, trial: optuna.Trial, spec_json: str) -> Optional[FrozenTrial]:
        """An earlier trained trial with exactly these layers (names differ), or None."""
        layers = _layers_of(spec_json)
        for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            candidate, result = other.user_attrs.get("candidate") or {}, other.user_attrs.get("result") or {}
            if other.number != trial.number and result.get("state") == COMPLETE and result.get("epochs") \
                    and _layers_of(candidate.get("spec")) == layers:
                return other
        return None

    def _values(self, accuracy: float, params: int, latency: float):
        if self.setup.multi_objective:
            values = (accuracy, float(params))
            return values + (latency if latency == latency else 0.0,) if self.setup.use_latency else values
        return self.setup.score(accuracy, params, latency)

    def _constraint_reason(self, spec: ModelSpec, model, params: int, latency: float) -> str:
        low, high = self.setup.param_range
        if params < low:
            return f"params {params} < param_range minimum {low}"
        if params > high:
            return f"params {params} > param_range maximum {high}"
        target = self.setup.nas.latency_target
        if target is not None and latency == latency and latency > target:
            return f"latency {latency:.0f} us > latency_target {target:g} us"
        if self.setup.npu:
            problems = npu_rule_violations(spec, self.shape[1], self.space.rules) or \
                npu_checker_findings(model, self.shape, self.setup.device_info)
            if problems:
                return "not NPU-valid: " + "; ".join(problems)
        return ""

    def _reject(self, trial: optuna.Trial, reason: str, params: int, latency: float, *, invalid: bool):
        low, high = self.setup.param_range
        target = self.setup.nas.latency_target
        violation = (max(0.0, (low - params) / max(low, 1)) if params else 0.0) + \
            max(0.0, (params - high) / max(high, 1)) + \
            (max(0.0, (latency - target) / target) if target and latency == latency else 0.0) + \
            (1.0 if invalid or not params else 0.0)
        set_violation(trial, violation)
        trial.set_user_attr("result", {"state": REJECTED, "reason": reason})
        values = self._values(0.0, params, latency)
        return values if self.setup.multi_objective else values - 1.0   # below any trained candidate

    def _train(self, trial: optuna.Trial, model, params: int, latency: float):
        setup = self.setup
        epochs = setup.nas.trial_epochs
        settings = fit_settings(setup.training, setup.seed + trial.number, time_domain=self.time_domain, epochs=epochs,
                                early_stopping=False, num_train=len(self.y_train), circular=self.circular)
        best = [0.0]
        start = time.perf_counter()

        def on_epoch(record) -> None:
            best[0] = max(best[0], record.val_accuracy)
            if setup.multi_objective:          # Optuna cannot prune multi-objective studies
                return
            trial.report(best[0], record.epoch)
            if record.epoch < epochs and trial.should_prune():
                trial.set_user_attr("result", {"state": PRUNED, "accuracy": best[0], "epochs": record.epoch,
                                               "seconds": time.perf_counter() - start})
                raise optuna.TrialPruned(f"val accuracy {best[0]:.3f} after epoch {record.epoch}")

        result = fit(model, self.x_train, self.y_train, self.x_val, self.y_val, settings, on_epoch=on_epoch)
        accuracy = float(result.best_val_accuracy)
        trial.set_user_attr("result", {"state": COMPLETE, "accuracy": accuracy, "epochs": len(result.history),
                                       "seconds": time.perf_counter() - start})
        return self._values(accuracy, params, latency)


def row_from_trial(trial: FrozenTrial, setup: SearchSetup) -> Optional[dict]:
    """The result row of a finished trial (None for running, waiting, failed or surplus ones)."""
    candidate, result = trial.user_attrs.get("candidate"), trial.user_attrs.get("result") or {}
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or not candidate:
        return None
    state = PRUNED if trial.state == TrialState.PRUNED else result.get("state", COMPLETE)
    accuracy = result.get("accuracy")
    params, latency = int(candidate["params"]), candidate.get("latency_us")
    latency = float("nan") if latency is None else round(float(latency), 1)
    trained = state == COMPLETE and accuracy is not None
    return {"trial": trial.number, "state": state, "params": params, "macs": int(candidate["macs"]),
            "latency_us": latency, "accuracy": float(accuracy) if accuracy is not None else float("nan"),
            "score": setup.score(float(accuracy), params, latency) if trained else float("nan"),
            "epochs": int(result.get("epochs") or 0), "seconds": round(float(result.get("seconds") or 0.0), 3),
            "warm_start": bool(trial.user_attrs.get(WARM_START_ATTR)), "architecture": candidate["architecture"],
            "reason": result.get("reason", ""), "worker": candidate.get("worker", ""), "spec": candidate["spec"]}


def _layers_of(spec_json: Optional[str]):
    data = json.loads(spec_json) if spec_json else {}
    return data.get("layers"), data.get("input_batchnorm")


def worker_id() -> str:
    """Which process ran a trial: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"

