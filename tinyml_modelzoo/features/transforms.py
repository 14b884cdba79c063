"""The feature transforms: one table, the single source of truth for their names.

Every transform maps frames ``(..., frame)`` to ``(..., m)`` for a whole batch
at once (``...`` = examples, channels, frames). The ``plan`` argument supplies
the sizes and LOG_DB constants. The validator, ``docs/feature_extraction.md``
and the extractor all read ``TRANSFORMS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyml_modelzoo.errors import UserError


@dataclass(frozen=True)
class Transform:
    fn: Callable  # (array (..., n), plan) -> array (..., m)
    help: str


def _raw(x, plan):
    """Downsample to ``feature_size_per_frame`` by averaging neighbours (anti-aliasing for free)."""
    size = plan.feature_size_per_frame
    return x if size is None or size == x.shape[-1] else _bin_mean(x, size, "RAW_FE")


def _bin_mean(x: np.ndarray, size: int, who: str) -> np.ndarray:
    """Average ``x`` (..., n) into ``size`` near-equal contiguous groups → (..., size)."""
    n = x.shape[-1]
    if size > n:
        raise UserError(f"data_processing_feature_extraction.feature_size_per_frame: {size} is more than the "
                        f"{n} values {who} receives per frame; use at most {n} or a larger frame_size")
    if n % size == 0:
        return x.reshape(*x.shape[:-1], size, n // size).mean(axis=-1)
    edges = np.linspace(0, n, size + 1).round().astype(int)
    return np.add.reduceat(x, edges[:-1], axis=-1) / np.diff(edges)


def _truncate(x, plan):
    size = plan.feature_size_per_frame
    if size is None:
        return x
    if size > x.shape[-1]:
        raise UserError(f"data_processing_feature_extraction.feature_size_per_frame: {size} is more than the "
                        f"{x.shape[-1]} values TRUNCATE receives per frame; use at most {x.shape[-1]}")
    return x[..., :size]


def _binning(x, plan):
    if plan.feature_size_per_frame is None:
        raise UserError("data_processing_feature_extraction.feature_size_per_frame: BINNING needs it; "
                        "set the number of bins per frame")
    return _bin_mean(x, plan.feature_size_per_frame, "BINNING")


def _dc_remove(x, plan):
    """Spectrum (complex): drop bin 0. Time frames (real): subtract the frame mean.

    Dropping (not zeroing) the DC bin matters: a zero would become a -240 dB
    outlier after LOG_DB. After FFT_POS_HALF (bins 0..n/2) this leaves the n/2
    bins 1..n/2, so a 1024-sample frame still bins evenly into 256 features.
    """
    if np.iscomplexobj(x):
        return x[..., 1:]
    return x - x.mean(axis=-1, keepdims=True)


def _log_db(x, plan):
    magnitude = np.abs(x)
    return plan.log_mul * np.log(magnitude + plan.log_threshold) / np.log(plan.log_base)


def _normalize(x, plan):
    """Per-frame standardisation: removes level and gain differences between frames."""
    x = np.abs(x) if np.iscomplexobj(x) else x
    return (x - x.mean(axis=-1, keepdims=True)) / (x.std(axis=-1, keepdims=True) + 1e-8)


TRANSFORMS: dict[str, Transform] = {
    "RAW_FE": Transform(_raw, "Raw samples; averaged down to feature_size_per_frame when that is smaller."),
    "FFT_FE": Transform(lambda x, p: np.fft.fft(x, axis=-1), "Complex FFT of each frame (frame_size bins)."),
    "FFT_POS_HALF": Transform(lambda x, p: x[..., : x.shape[-1] // 2 + 1],
                              "One-sided spectrum: bins 0 .. n/2 (DC to Nyquist, n/2 + 1 values)."),
    "DC_REMOVE": Transform(_dc_remove, "Remove DC: drop bin 0 of a spectrum, or subtract the mean of a time frame."),
    "ABS": Transform(lambda x, p: np.abs(x), "Magnitude (absolute value)."),
    "BINNING": Transform(_binning, "Average neighbouring bins into feature_size_per_frame bins (whole band)."),
    "TRUNCATE": Transform(_truncate, "Keep the first feature_size_per_frame values (lowest frequencies)."),
    "LOG_DB": Transform(_log_db, "log_mul * log_base-log(|x| + log_threshold); defaults 20, 10, 1e-12 (dB)."),
    "NORMALIZE": Transform(_normalize, "Per-frame standardisation: (x - mean) / std over the frame."),
    "CONCAT": Transform(lambda x, p: x, "Concatenate the frames of an example along L (always done last)."),
}


def apply_transforms(frames: np.ndarray, plan) -> np.ndarray:
    """Run ``plan.transforms`` over frames ``(..., frame_size)`` → real ``(..., F)`` float64."""
    x = frames
    for name in plan.transforms:
        x = TRANSFORMS[name].fn(x, plan)
    if np.iscomplexobj(x):
        raise UserError(f"data_processing_feature_extraction.feat_ext_transform: {list(plan.transforms)} ends with "
                        "a complex spectrum; add ABS (magnitude) or LOG_DB after FFT_FE")
    return x
