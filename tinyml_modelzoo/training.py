"""Training stage: fit a model on the train split, choose on validation, refit on train + val.

When the augmentation is left to the defaults, every candidate of
:func:`.recipe.shift_candidates` (time shift on / off for raw inputs) trains
from the same initial weights (the second in a forked process beside the first
when a core is spare: :mod:`.side_fit`) and the one with the best validation
accuracy (ties: lower validation loss) is kept. With ``refit_with_val`` (default) the
chosen recipe then trains once more from those initial weights on train + val
and its last epoch is the model (a third more training data where there are only
tens of recordings: DARTS on the UCR suite 0.874 -> 0.914 test accuracy). With
``precise_batchnorm`` (default) every fit ends by recomputing the batch-norm
statistics on its clean training data (see ``tinyml_torchmodelopt.train.fit``). Writes
``training/`` : ``model.pt``, ``model_spec.yaml``, ``history.csv`` (the chosen
selection run), ``history_refit.csv``, ``training_curves.png`` and
``model.onnx`` (float export checked against PyTorch with onnxruntime).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyml_torchmodelopt.train import EpochRecord, FitResult, fit

from .config.schema import TrainingConfig
from .plots import plot_training_curves
from .progress import progress
from .recipe import describe_device, fit_settings, is_circular, is_time_domain, shift_candidates
from .side_fit import spare_cores, start as start_aside

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
    augment_shift: float = 0.0
    augment_flip: float = 0.0
    candidates: tuple[dict, ...] = field(default_factory=tuple)  # one per trained augmentation
    refit_examples: int = 0  # examples of the train + val refit that made the model (0: no refit)


def train(model: nn.Module, features, cfg: TrainingConfig, out_dir: Path, seed: int) -> TrainResult:
    """Train ``model`` in place on ``features`` (a FeatureSet); leave the final weights in it."""
    torch.manual_seed(seed)
    time_domain = is_time_domain(features)
    if cfg.augment_shift and not time_domain:
        # The default never shifts spectra; a value set by hand does, as asked, but it is rarely meant.
        log.warning("training.augment_shift %.2f rolls every input along its last axis, and these features "
                    "(transforms %s) are not a time series: the shift moves energy between frequency bins. "
                    "Leave augment_shift empty (spectra are then not shifted) unless that is intended.",
                    cfg.augment_shift, "+".join(features.transforms))
    if cfg.augment_flip and not time_domain:
        log.warning("training.augment_flip reverses half the inputs along their last axis, and these features "
                    "(transforms %s) are not a time series: low and high frequency bins swap places. "
                    "Leave augment_flip empty unless that is intended.", "+".join(features.transforms))
    circular = time_domain and is_circular(features.x_train)
    shifts = shift_candidates(cfg, time_domain, circular)
    if circular:
        log.info("the inputs are smooth closed curves (the last sample meets the first, as in unrolled outlines): "
                 "time shift %.2f, %s reversed in time, no validation choice (training.augment_shift and "
                 "augment_flip override)", shifts[0], "none" if cfg.augment_flip is False else "half the examples")
    shifts = shifts if len(features.y_val) else shifts[:1]
    runs = [fit_settings(cfg, seed, time_domain=time_domain, num_train=len(features.y_train), augment_shift=shift,
                         circular=circular) for shift in shifts]
    x_train, y_train = torch.from_numpy(features.x_train), torch.from_numpy(features.y_train)
    x_val, y_val = torch.from_numpy(features.x_val), torch.from_numpy(features.y_val)
    initial = copy.deepcopy(model.state_dict())

    def epoch_logger(epochs: int):
        def on_epoch(record: EpochRecord) -> None:
            advance()
            validation = (f"  val loss {record.val_loss:.4f}  val acc {record.val_accuracy:.3f}"
                          if math.isfinite(record.val_loss) else "")  # the refit on train + val has none
            log.info("epoch %3d/%d  loss %.4f  train acc %.3f%s  lr %.2e", record.epoch, epochs,
                     record.train_loss, record.train_accuracy, validation, record.learning_rate)
        return on_epoch

    refit_n = len(y_train) + len(y_val) if cfg.refit_with_val and len(y_val) else 0
    refit_settings = (fit_settings(cfg, seed, time_domain=time_domain, num_train=refit_n, early_stopping=False,
                                   circular=circular)
                      if refit_n else None)
    start = time.perf_counter()
    total_epochs = sum(r.epochs for r in runs) + (refit_settings.epochs if refit_settings else 0)
    log.info("training on %s: %d epochs in all (%d candidate%s%s)", describe_device(runs[0].device), total_epochs,
             len(runs), "s" if len(runs) > 1 else "", " + refit" if refit_settings else "")
    with progress(total_epochs, "training") as advance:
        results = _fit_candidates(model, initial, runs, (x_train, y_train, x_val, y_val), epoch_logger, advance)
        best = _choose(runs, results)
        result, state = results[best]
        refit = None
        if refit_settings is None:
            model.load_state_dict(state)
        else:
            settings = dataclasses.replace(refit_settings, augment_shift=runs[best].augment_shift)
            log.info("refit on train + val (%d examples) for %d epochs with time shift %.2f%s; the last epoch is "
                     "the model", refit_n, settings.epochs, settings.augment_shift,
                     " and reversal" if settings.augment_flip else "")
            model.load_state_dict(initial)
            refit = fit(model, torch.cat([x_train, x_val]), torch.cat([y_train, y_val]), x_val[:0], y_val[:0],
                        settings, on_epoch=epoch_logger(settings.epochs))
    seconds = time.perf_counter() - start
    model.to("cpu").eval()
    log.info("training done (%.1f s)", seconds)
    candidates = _candidate_records(runs, results)

    weights = out_dir / "model.pt"
    torch.save(model.state_dict(), weights)
    _write_history(result.history, out_dir / "history.csv")
    if refit is not None:
        _write_history(refit.history, out_dir / "history_refit.csv")
    plot_training_curves(result.history, out_dir / "training_curves.png")
    onnx_path, diff = _export_onnx(model, features, out_dir / "model.onnx")
    return TrainResult(result.best_epoch, result.best_val_accuracy, len(result.history), seconds, str(weights),
                       onnx_path, diff, runs[best].augment_shift, runs[best].augment_flip, candidates, refit_n)


def _fit_candidates(model, initial, runs, data, epoch_logger, advance) -> list[tuple[FitResult, dict]]:
    """(fit result, final weights) of every candidate, each fitted from ``initial``. Where cores are
    spare (:func:`.side_fit.spare_cores`) the later candidates run in forked processes alongside the
    first (same results: every fit draws from its own seeded generator); their epochs are not logged."""
    aside = {i: start_aside(f"training candidate {i + 1}", _fit_quietly, model, initial, runs[i], data)
             for i in range(1, min(len(runs), 1 + spare_cores()))}
    aside = {i: run for i, run in aside.items() if run is not None}
    started = time.perf_counter()
    results = []
    try:
        for i, settings in enumerate(runs):
            if len(runs) > 1:
                log.info("training with time-shift augmentation %.2f (candidate %d of %d%s)", settings.augment_shift,
                         i + 1, len(runs), ", in a second process alongside" if i in aside else "")
            # a child runs as long as a fit here; one that hangs (a lock held at the fork) is given up
            forked = aside.pop(i).result(timeout=60 + 2 * (time.perf_counter() - started)) if i in aside else None
            if forked is not None:
                result, weights = forked[0], {k: torch.from_numpy(v) for k, v in forked[1].items()}
                advance(len(result.history))
                log.info("candidate %d: %d epochs, best epoch %d, val acc %.3f", i + 1, len(result.history),
                         result.best_epoch, result.best_val_accuracy)
            else:
                model.load_state_dict(initial)
                result = fit(model, *data, settings, on_epoch=epoch_logger(settings.epochs))
                weights = copy.deepcopy(model.state_dict())
            results.append((result, weights))
    finally:
        for run in aside.values():  # interrupted
            run.stop()
    return results


def _fit_quietly(model, initial, settings, data) -> tuple[FitResult, dict]:
    """A candidate fit in a forked process: no epoch log; the weights as numpy arrays for the pipe."""
    model.load_state_dict(initial)
    result = fit(model, *data, settings)
    return result, {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def _candidate_records(runs, results) -> tuple[dict, ...]:
    return tuple({"augment_shift": r.augment_shift, "best_val_accuracy": round(res.best_val_accuracy, 4),
                  "best_epoch": res.best_epoch} for r, (res, _) in zip(runs, results))


def _choose(runs, results) -> int:
    """Index of the candidate with the best validation score (logged)."""
    best = max(range(len(runs)), key=lambda i: _validation_score(results[i][0]))
    if len(runs) > 1:
        log.info("kept time shift %.2f: validation accuracy %s", runs[best].augment_shift,
                 " vs ".join(f"{c['best_val_accuracy']:.3f} (shift {c['augment_shift']:.2f})"
                             for c in _candidate_records(runs, results)))
    result = results[best][0]
    log.info("best epoch %d: val acc %.3f", result.best_epoch, result.best_val_accuracy)
    return best


def _validation_score(result: FitResult) -> tuple[float, float]:
    """Best validation accuracy, ties broken by the lower validation loss of that epoch."""
    best = result.history[result.best_epoch - 1] if result.history else None
    return (result.best_val_accuracy, -best.val_loss) if best else (float("-inf"), 0.0)


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
