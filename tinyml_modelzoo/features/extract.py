"""The feature stage: recordings → normalised example arrays ``(N, C, L)`` per split."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from tinyml_modelzoo.config.schema import FeatureConfig
from tinyml_modelzoo.datasets import SPLITS, DatasetSplits, Recording
from tinyml_modelzoo.errors import UserError
from tinyml_modelzoo.features.plan import KEY, FeaturePlan, features_per_frame, raw_channel_plan, resolve_plan
from tinyml_modelzoo.features.transforms import apply_transforms
from tinyml_modelzoo.features.windows import example_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Examples per split, ready for a 1-D CNN.

    ``x_*``: ``(N, C, L)`` float32 with C = variables and L = F * K (the K frames'
    features side by side). ``y_*``: ``(N,)`` int64 class indices. ``ids_*``:
    ``"<source>#<window index>"`` per example. ``mean``/``std``: ``(C, 1)``
    per-channel statistics of the *training* features, already applied to every
    split (x = (features - mean) / std); None when normalisation is off.
    """
    x_train: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray
    ids_train: tuple[str, ...]
    ids_val: tuple[str, ...]
    ids_test: tuple[str, ...]
    class_names: tuple[str, ...]
    mean: np.ndarray | None
    std: np.ndarray | None
    transforms: tuple[str, ...]
    frame_size: int
    plan: FeaturePlan | None = None

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def in_length(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_summary(self) -> dict:
        """JSON-ready description: shapes, counts per split and class, the plan."""
        ys = {"train": self.y_train, "val": self.y_val, "test": self.y_test}
        counts = {s: np.bincount(y, minlength=self.num_classes).tolist() for s, y in ys.items()}
        return {"in_channels": self.in_channels, "in_length": self.in_length, "num_classes": self.num_classes,
                "class_names": list(self.class_names), "frame_size": self.frame_size,
                "transforms": list(self.transforms), "normalized": self.mean is not None,
                "examples": {s: int(len(y)) for s, y in ys.items()}, "examples_per_class": counts,
                "plan": self.plan.to_dict() if self.plan else None}


def extract_features(splits: DatasetSplits, cfg: FeatureConfig) -> FeatureSet:
    """Cut, transform and normalise every split by the plan of ``cfg``.

    Normalisation statistics come from the training split only.
    """
    plan = resolve_plan(cfg)
    channels = _channels(cfg.variables, splits.num_variables)
    parts = {s: _split_features(s, splits.split(s), plan, channels) for s in SPLITS}
    mean = std = None
    if plan.normalize:
        train = parts["train"][0].astype(np.float64)
        mean, std = train.mean(axis=(0, 2))[:, None], train.std(axis=(0, 2))[:, None]
        std = np.where(std > 1e-8, std, 1.0)  # a constant channel would divide by ~0: leave its scale alone
        parts = {s: (((x - mean) / std).astype(np.float32), y, ids) for s, (x, y, ids) in parts.items()}
    result = FeatureSet(*(parts[s][0] for s in SPLITS), *(parts[s][1] for s in SPLITS),
                        *(parts[s][2] for s in SPLITS), class_names=splits.class_names,
                        mean=None if mean is None else mean.astype(np.float32),
                        std=None if std is None else std.astype(np.float32),
                        transforms=plan.transforms, frame_size=plan.frame_size, plan=plan)
    log.debug("features: (C, L) = (%d, %d), examples %s", result.in_channels, result.in_length,
             result.to_summary()["examples"])
    return result


def _channels(variables: int | None, available: int) -> int:
    if variables is None:
        return available
    if variables > available:
        raise UserError(f"{KEY}.variables: {variables} requested but the data has {available} variable(s) "
                        f"(columns other than time); set variables to at most {available}")
    return variables


def _split_features(split: str, recordings: tuple[Recording, ...], plan: FeaturePlan, channels: int):
    """Examples of one split: x ``(N, C, L)`` float32, y ``(N,)`` int64, ids."""
    frames, labels, ids, short = [], [], [], []
    for rec in recordings:  # per recording; everything inside is vectorised
        stack = example_frames(rec.data, plan, channels)
        if not len(stack):
            short.append(f"{rec.source} ({len(rec.data)} samples)")
            continue
        frames.append(stack)
        labels.append(np.full(len(stack), rec.label, dtype=np.int64))
        ids.extend(f"{rec.source}#{i}" for i in range(len(stack)))
    if short:
        log.warning("features: %s: skipping %d recording(s) shorter than one example window of %d samples: %s",
                    split, len(short), plan.window, ", ".join(short[:5]) + (" ..." if len(short) > 5 else ""))
    if not frames and (recordings or split == "train"):  # an empty val/test list is the dataset's call
        raise UserError(f"{KEY}: the {split} split has no example: every recording is shorter than one window of "
                        f"{plan.window} samples (frame_size {plan.frame_size} x {plan.num_frame_concat} frames); "
                        "use a smaller frame_size / fewer frames, or longer recordings")
    if not frames:
        length = features_per_frame(plan) * plan.num_frame_concat
        width = channels * (2 if plan.keep_raw_channels else 1)
        return np.empty((0, width, length), np.float32), np.empty(0, np.int64), ()
    x = np.concatenate([_transformed(chunk, plan) for chunk in _chunks(frames, CHUNK_VALUES // frames[0][0].size)])
    _check_finite(x, ids, split, plan)
    return x, np.concatenate(labels), tuple(ids)


# Transforms run over this many input values at a time: a spectrum keeps several float64 and
# complex copies of its input alive (FFT, magnitude, dB), so 14 000 windows of 3 x 1024 samples
# transformed at once peaked at 2.3 GB for 21 MB of features.
CHUNK_VALUES = 2 ** 22


def _chunks(stacks: list[np.ndarray], rows: int):
    """The examples of ``stacks`` in order, about ``rows`` (at least one) at a time."""
    batch, count = [], 0
    for stack in stacks:
        for start in range(0, len(stack), max(1, rows)):
            batch.append(stack[start:start + max(1, rows)])
            count += len(batch[-1])
            if count >= rows:
                yield np.concatenate(batch)
                batch, count = [], 0
    if batch:
        yield np.concatenate(batch)


def _transformed(frames: np.ndarray, plan: FeaturePlan) -> np.ndarray:
    """Frames ``(N, C, K, frame)`` -> features ``(N, C', K * F)`` float32 (non-finite values kept)."""
    with np.errstate(all="ignore"):  # non-finite results are reported by the caller, with the example
        stacked = frames.astype(np.float64)
        x = apply_transforms(stacked, plan)
        raw_plan = raw_channel_plan(plan)
        if raw_plan is not None:  # (N, C, K, F) -> (N, 2C, K, F): raw channels, then normalised ones
            x = np.concatenate([apply_transforms(stacked, raw_plan), x], axis=1)
        x = x.reshape(*x.shape[:2], -1)  # CONCAT: (N, C, K, F) -> (N, C, K * F)
        x = x * (1.0 if plan.scale is None else plan.scale) + (0.0 if plan.offset is None else plan.offset)
        return x.astype(np.float32)


def _check_finite(x: np.ndarray, ids: list[str], split: str, plan: FeaturePlan) -> None:
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        raise UserError(f"{KEY}: transforms {list(plan.transforms)} give NaN/inf for {int(bad.sum())} {split} "
                        f"example(s), first {ids[int(np.argmax(bad))]} (e.g. LOG_DB of a silent frame with "
                        "log_threshold 0); raise log_threshold or check the transform list")
