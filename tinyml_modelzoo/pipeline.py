"""The only place that knows the order of stages.

YAML → validated config → data → features → model (zoo, DARTS or multi-trial)
→ train → quantize → test → NPU check + compile → summary.json. Each stage is
called with plain inputs and its own config section; results are recorded in
the run folder so ``--resume`` can skip finished stages.
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from tinyml_torchmodelopt.profile import profile_model

from .config import Config, resolve_path
from .errors import UserError
from .model_specs import build_from_spec_dict, load_spec_file, write_spec_file
from .rundir import RunDir

log = logging.getLogger("tinyml_modelzoo")


@dataclass
class ModelChoice:
    """The network to train and where it came from."""
    model: nn.Module
    name: str
    source: str            # zoo | darts | multi_trial | spec_file
    spec: dict             # model spec file content (kind sequential or darts)
    nas_summary: Optional[dict] = None


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def run_pipeline(config: Config, run: RunDir) -> dict:
    """Run every enabled stage; returns the summary written to ``summary.json``."""
    timer = Timer()
    summary: dict[str, Any] = {"status": "running", "task_type": config.common.task_type,
                               "target_device": config.common.target_device, "run_dir": str(run.path)}
    run.write_summary(summary)
    torch.manual_seed(config.common.seed)
    np.random.seed(config.common.seed)
    # Measured: CLS_4k_NPU trains 5-30x slower with 2 threads than with 1 on a loaded 2-core
    # machine (intra-op threads on tiny tensors wait for each other); users can raise it.
    torch.set_num_threads(config.common.num_threads or 1)
    from .devices import get_device
    device = get_device(config.common.target_device)

    if config.compilation.model_path and not config.training.enable:
        return _compile_only(config, run, device, timer, summary)

    with timer.stage("data"):
        features = _load_features(config, run)
    summary["dataset"] = _dataset_summary(config, features)

    searching = config.training.nas_enabled or config.training.model_name == "auto"
    with timer.stage("nas" if searching else "model"):
        choice = _choose_model(config, features, device, run)
    prof = profile_model(choice.model, (features.in_channels, features.in_length))
    summary["model"] = {"name": choice.name, "source": choice.source, "params": prof.params, "macs": prof.macs}
    if choice.nas_summary:
        summary["nas"] = choice.nas_summary
    log.info("model %s (%s): %d parameters, %d MACs", choice.name, choice.source, prof.params, prof.macs)
    _warn_if_not_npu_ready(choice.model, (features.in_channels, features.in_length), device)

    if not config.training.enable:
        log.info("training.enable is False: nothing more to do")
        return _finish(run, summary, timer)

    with timer.stage("training"):
        summary["training"] = _train(config, run, choice, features)
    if choice.source in ("darts", "multi_trial"):
        _copy_best_model(run, choice)

    quantized = None
    if config.training.quantization == 2:
        with timer.stage("quantization"):
            quantized = _quantize(config, choice.model, features, run)

    if config.testing.enable:
        with timer.stage("testing"):
            summary["test"] = _test(config, run, choice.model, quantized, features)

    if config.compilation.enable:
        with timer.stage("compilation"):
            summary["compilation"] = _compile(config, run, choice.model, quantized, features, device)
    return _finish(run, summary, timer)


# ---- stages ------------------------------------------------------------------------------

def _warn_if_not_npu_ready(model: nn.Module, input_shape: tuple[int, int], device) -> None:
    """Say early (before training) when the model will not pass the NPU check for this input;
    compilation stops on it, and a run without compilation would never tell."""
    if not device.has_npu:
        return
    from .npu import check_npu
    report = check_npu(model, input_shape, device)
    for finding in report.findings:
        log.warning("not NPU-ready for %s: %s: %s: found %s; allowed %s; fix: %s", device.name, finding.layer,
                    finding.rule, finding.found, finding.allowed, finding.fix)


def _load_features(config: Config, run: RunDir):
    from .datasets import load_dataset
    from .features import extract_features
    config_dir = Path(config.source_path).parent if config.source_path else Path.cwd()
    splits = load_dataset(config.dataset, config.common.seed, config_dir, run.path)
    features = extract_features(splits, config.data_processing_feature_extraction)
    _write_feature_stats(features, run.stage_dir("dataset") / "feature_extraction.json")
    log.info("dataset %s: %d classes (%s); train %d, val %d, test %d examples of shape (%d, %d)",
             config.dataset.dataset_name, features.num_classes, ", ".join(features.class_names),
             len(features.y_train), len(features.y_val), len(features.y_test), features.in_channels,
             features.in_length)
    return features


def _write_feature_stats(features, path: Path) -> None:
    """What the device must do before the model: the feature plan and the normalisation
    (x - mean) / std per channel, computed on the training split."""
    data = dict(features.to_summary())
    data["normalization"] = None if features.mean is None else {
        "mean": np.asarray(features.mean).reshape(-1).tolist(), "std": np.asarray(features.std).reshape(-1).tolist(),
        "applies": "x_normalized[c, :] = (x[c, :] - mean[c]) / std[c]"}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _dataset_summary(config: Config, features) -> dict:
    return {"name": config.dataset.dataset_name, "classes": list(features.class_names),
            "features": features.to_summary().get("plan", {}).get("name"),
            "input_shape": [features.in_channels, features.in_length],
            "samples": {"train": int(len(features.y_train)), "val": int(len(features.y_val)),
                        "test": int(len(features.y_test))}}


def _choose_model(config: Config, features, device, run: RunDir) -> ModelChoice:
    t = config.training
    shape = (features.in_channels, features.in_length, features.num_classes)
    if t.nas_enabled:
        from .nas_stage import run_darts
        result = run_darts(features, t, config.common, device, run.stage_dir("NAS"))
        return ModelChoice(result.model, "NAS_darts", "darts", result.spec, result.summary)
    if t.model_name == "auto":
        from .nas_multitrial import run_multi_trial
        result = run_multi_trial(features, config.nas, t, device, run.stage_dir("NAS"), config.common.seed)
        spec = dict(result.best_spec.to_dict(), name="NAS_multi_trial")
        model = build_from_spec_dict(spec, *shape)
        summary = {"mode": "multi_trial", "search_seconds": round(result.search_seconds, 3),
                   "search_samples_per_second": result.samples_per_second,
                   "trials": result.trials_run, "best": result.best_row}
        return ModelChoice(model, "NAS_multi_trial", "multi_trial", spec, summary)
    if t.model_name == "NAS_result":
        path = resolve_path(config, t.model_spec_path)
        spec = load_spec_file(path)
        return ModelChoice(build_from_spec_dict(spec, *shape, source=str(path)), spec.get("name", "NAS_result"),
                           "spec_file", spec)
    from .zoo import describe, fit_to_length, get_model_spec
    drawn = get_model_spec(t.model_name)
    spec_obj = fit_to_length(drawn, features.in_length, device.npu_rules.gap_min_length if device.npu_rules else 1)
    if spec_obj != drawn:
        log.info("%s on %d-sample inputs: downsampling reduced to keep >= %d samples for the global average "
                 "pool: %s", t.model_name, features.in_length, device.npu_rules.gap_min_length, describe(spec_obj))
    return ModelChoice(build_from_spec_dict(spec_obj.to_dict(), *shape), t.model_name, "zoo", spec_obj.to_dict())


def _train(config: Config, run: RunDir, choice: ModelChoice, features) -> dict:
    from .training import train
    out = run.stage_dir("training")
    write_spec_file(choice.spec, out / "model_spec.yaml")
    done = run.finished("training")
    if done and Path(done["weights_path"]).is_file():
        log.info("resume: training already finished; loading %s", done["weights_path"])
        choice.model.load_state_dict(torch.load(done["weights_path"], weights_only=True))
        choice.model.eval()
        return done
    result = train(choice.model, features, config.training, out, config.common.seed)
    record = {"best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
              "epochs_run": result.epochs_run, "seconds": round(result.seconds, 3),
              "weights_path": result.weights_path, "onnx_path": result.onnx_path,
              "onnx_max_abs_diff": result.onnx_max_abs_diff, "augment_shift": result.augment_shift,
              "augment_flip": result.augment_flip, "candidates": list(result.candidates),
              "refit_examples": result.refit_examples}
    run.mark_finished("training", record)
    return record


def _copy_best_model(run: RunDir, choice: ModelChoice) -> None:
    best = run.stage_dir("NAS") / "best_model"
    best.mkdir(exist_ok=True)
    torch.save(choice.model.state_dict(), best / "best_model.pt")
    write_spec_file(choice.spec, best / "model_spec.yaml")


def _quantize(config: Config, model: nn.Module, features, run: RunDir):
    from tinyml_torchmodelopt.quantization import quantize_ptq, quantize_qat
    t = config.training
    x_train = torch.from_numpy(features.x_train)
    if t.quantization_method == "QAT":
        quantized = quantize_qat(model, x_train, torch.from_numpy(features.y_train), epochs=t.qat_epochs,
                                 lr=t.learning_rate * 0.1)
    else:
        quantized = quantize_ptq(model, x_train)
    out = run.stage_dir("training")
    if hasattr(quantized, "save"):
        quantized.save(out / "model_int8.npz")
    log.info("quantized to int8 (%s)", t.quantization_method)
    return quantized


def _test(config: Config, run: RunDir, model: nn.Module, quantized, features) -> dict:
    from tinyml_torchmodelopt.train import predict_logits

    from .testing import test

    def predict_float(x: np.ndarray) -> np.ndarray:
        return predict_logits(model.cpu(), torch.from_numpy(x)).numpy()

    predict_int8 = (lambda x: np.asarray(quantized.predict(x))) if quantized is not None else None
    result = test(predict_float, predict_int8, features, config.testing, run.stage_dir("testing"))
    return result.to_summary()


def _compile(config: Config, run: RunDir, model: nn.Module, quantized, features, device) -> dict:
    from .compilation import compile_model
    golden_x, golden_y = _golden_samples(features)
    result = compile_model(model, quantized, input_shape=(features.in_channels, features.in_length),
                           calibration_x=features.x_train, golden_x=golden_x, golden_y=golden_y,
                           class_names=features.class_names, cfg=config.compilation, device=device,
                           out_dir=run.stage_dir("compilation"))
    return result.to_summary()


def _compile_only(config: Config, run: RunDir, device, timer: Timer, summary: dict) -> dict:
    from .compilation import compile_onnx
    model_path = resolve_path(config, config.compilation.model_path)
    if not config.dataset.enable:
        raise UserError("compilation.model_path: compile-only mode needs calibration data; "
                        "set dataset.enable: True and point the dataset section at representative data")
    with timer.stage("data"):
        features = _load_features(config, run)
    golden_x, golden_y = _golden_samples(features)
    with timer.stage("compilation"):
        result = compile_onnx(model_path, calibration_x=features.x_train, golden_x=golden_x, golden_y=golden_y,
                              class_names=features.class_names, cfg=config.compilation, device=device,
                              out_dir=run.stage_dir("compilation"))
    summary["model"] = {"name": model_path.name, "source": "onnx"}
    summary["compilation"] = result.to_summary()
    return _finish(run, summary, timer)


def _golden_samples(features, per_class: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Two (or more) test samples per class, falling back to validation/training data."""
    xs, ys = [], []
    for label in range(features.num_classes):
        for x, y in ((features.x_test, features.y_test), (features.x_val, features.y_val),
                     (features.x_train, features.y_train)):
            idx = np.flatnonzero(y == label)[:per_class]
            if len(idx):
                xs.append(x[idx]), ys.append(y[idx])
                break
    return np.concatenate(xs), np.concatenate(ys)


def _finish(run: RunDir, summary: dict, timer: Timer) -> dict:
    summary["status"] = "success"
    summary["timings"] = dict(timer.seconds, total=round(sum(timer.seconds.values()), 3))
    run.write_summary(summary)
    run.complete()
    return summary
