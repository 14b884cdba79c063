"""Testing stage: accuracy, macro-F1, per-class metrics and confusion matrices on the test split.

The test split is first touched here. Writes ``testing/metrics.json``,
``confusion_matrix[_int8].csv|png`` and, when asked, ``predictions.csv``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .config.schema import TestingConfig
from .plots import plot_confusion_matrix

log = logging.getLogger("tinyml_modelzoo")


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    f1: float
    per_class: dict
    confusion: list

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "f1": self.f1, "per_class": self.per_class,
                "confusion_matrix": self.confusion}


@dataclass(frozen=True)
class TestResult:
    float_metrics: Optional[Metrics]
    int8_metrics: Optional[Metrics]
    num_samples: int

    def to_summary(self) -> dict:
        out: dict = {"num_samples": self.num_samples}
        if self.float_metrics:
            out.update(accuracy=self.float_metrics.accuracy, f1=self.float_metrics.f1)
        if self.int8_metrics:
            out.update(accuracy_int8=self.int8_metrics.accuracy, f1_int8=self.int8_metrics.f1)
        return out


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names) -> Metrics:
    """Accuracy, macro-F1 (classes absent from both truth and prediction are skipped) and per-class P/R/F1."""
    n = len(class_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(1).astype(float)
    predicted = confusion.sum(0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    present = (support + predicted) > 0
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(class_names)}
    accuracy = float(tp.sum() / max(1, len(y_true)))
    return Metrics(accuracy, float(f1[present].mean()) if present.any() else 0.0, per_class, confusion.tolist())


def test(predict_float: Optional[Callable[[np.ndarray], np.ndarray]],
         predict_int8: Optional[Callable[[np.ndarray], np.ndarray]], features, cfg: TestingConfig,
         out_dir: Path) -> TestResult:
    """Evaluate predictors (``(N, C, L)`` float32 → logits ``(N, K)``) on the test split."""
    x, y, names = features.x_test, features.y_test, features.class_names
    results: dict[str, Metrics] = {}
    predictions: dict[str, np.ndarray] = {}
    for tag, predict in (("float", predict_float if cfg.test_float else None),
                         ("int8", predict_int8 if cfg.test_quantized else None)):
        if predict is None or len(x) == 0:
            continue
        pred = np.asarray(predict(x)).argmax(1)
        predictions[tag] = pred
        metrics = results[tag] = classification_metrics(y, pred, names)
        suffix = "" if tag == "float" else "_int8"
        matrix = np.asarray(metrics.confusion)
        np.savetxt(out_dir / f"confusion_matrix{suffix}.csv", matrix, fmt="%d", delimiter=",",
                   header=",".join(names), comments="")
        plot_confusion_matrix(matrix, names, out_dir / f"confusion_matrix{suffix}.png",
                              f"test confusion matrix ({tag})")
        log.info("test %s: accuracy %.4f  macro-F1 %.4f  (%d samples)", tag, metrics.accuracy, metrics.f1, len(y))
    (out_dir / "metrics.json").write_text(json.dumps({k: m.to_dict() for k, m in results.items()}, indent=2) + "\n",
                                          encoding="utf-8")
    if cfg.save_predictions and predictions:
        _write_predictions(out_dir / "predictions.csv", features, predictions)
    return TestResult(results.get("float"), results.get("int8"), len(y))


def _write_predictions(path: Path, features, predictions: dict[str, np.ndarray]) -> None:
    names = features.class_names
    header = "id,true," + ",".join(f"pred_{tag}" for tag in predictions)
    rows = [header]
    for i, sample_id in enumerate(features.ids_test):
        preds = ",".join(names[p[i]] for p in predictions.values())
        rows.append(f"\"{sample_id}\",{names[features.y_test[i]]},{preds}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
