"""Training stage: fit a model on the train split, choose the best epoch on validation.

Writes ``training/`` : ``model.pt`` (state dict of the best epoch),
``model_spec.yaml``, ``history.csv``, ``training_curves.png`` and ``model.onnx``
(float export checked against PyTorch with onnxruntime).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyml_torchmodelopt.train import EpochRecord, fit

from .config.schema import TrainingConfig
from .plots import plot_training_curves
from .progress import progress
from .recipe import fit_settings, is_time_domain

log = logging.getLogger("tinyml_modelzoo")


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    seconds: float
    weights_path: str
    onnx_path: str | None
    onnx_max_abs_diff: float | None


def train(model: nn.Module, features, cfg: TrainingConfig, out_dir: Path, seed: int) -> TrainResult:
    """Train ``model`` in place on ``features`` (a FeatureSet); leave the best-validation weights in it."""
    torch.manual_seed(seed)
    settings = fit_settings(cfg, seed, time_domain=is_time_domain(features), num_train=len(features.y_train))
    x_train, y_train = torch.from_numpy(features.x_train), torch.from_numpy(features.y_train)
    x_val, y_val = torch.from_numpy(features.x_val), torch.from_numpy(features.y_val)

    def on_epoch(record: EpochRecord) -> None:
        advance()
        log.info("epoch %3d/%d  loss %.4f  train acc %.3f  val loss %.4f  val acc %.3f  lr %.2e",
                 record.epoch, settings.epochs, record.train_loss, record.train_accuracy, record.val_loss,
                 record.val_accuracy, record.learning_rate)

    start = time.perf_counter()
    with progress(settings.epochs, "training") as advance:
        result = fit(model, x_train, y_train, x_val, y_val, settings, on_epoch=on_epoch)
    seconds = time.perf_counter() - start
    model.to("cpu").eval()
    log.info("best epoch %d: val acc %.3f (%.1f s)", result.best_epoch, result.best_val_accuracy, seconds)

    weights = out_dir / "model.pt"
    torch.save(model.state_dict(), weights)
    _write_history(result.history, out_dir / "history.csv")
    plot_training_curves(result.history, out_dir / "training_curves.png")
    onnx_path, diff = _export_onnx(model, features, out_dir / "model.onnx")
    return TrainResult(result.best_epoch, result.best_val_accuracy, len(result.history), seconds, str(weights),
                       onnx_path, diff)


def _write_history(history, path: Path) -> None:
    lines = ["epoch,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate"]
    lines += [f"{r.epoch},{r.train_loss:.6f},{r.train_accuracy:.6f},{r.val_loss:.6f},{r.val_accuracy:.6f},"
              f"{r.learning_rate:.6g}" for r in history]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _export_onnx(model: nn.Module, features, path: Path) -> tuple[str | None, float | None]:
    """Float ONNX export, verified with onnxruntime on real validation/training samples."""
    from tinyml_torchmodelopt.onnx_export import export_onnx
    source = features.x_val if len(features.x_val) else features.x_train
    example = torch.from_numpy(np.ascontiguousarray(source[:16]))
    diff = export_onnx(model, example, path)
    log.info("ONNX export %s: max |onnxruntime - torch| = %.2e", path.name, diff)
    return str(path), float(diff)
