"""The training recipe: ``TrainingConfig`` → ``FitSettings``, shared by the training
stage and the multi-trial search so that trials rank candidates the way the final
training will train them."""
from __future__ import annotations

import functools
import logging
from typing import Optional

import numpy as np
import torch

from tinyml_torchmodelopt.train import FitSettings

from .config.schema import TrainingConfig

log = logging.getLogger("tinyml_modelzoo")


def is_time_domain(features) -> bool:
    """True when the features are raw samples (no spectral transform)."""
    return not any("FFT" in str(name) for name in (getattr(features, "transforms", ()) or ()))


def select_device(cfg: TrainingConfig) -> str:
    """``"cuda"`` when ``training.num_gpus`` asks for a GPU and PyTorch sees one, else ``"cpu"``."""
    if cfg.num_gpus == 0:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    _warn_no_cuda()
    return "cpu"


@functools.lru_cache(maxsize=1)
def _warn_no_cuda() -> None:  # once per process: the multi-trial search asks for every trial
    log.warning("training.num_gpus asks for a GPU, but this PyTorch (%s) sees no CUDA device: training on the "
                "CPU. Set num_gpus: 0 to silence this, or install a CUDA build of PyTorch.", torch.__version__)


def describe_device(device: str) -> str:
    """``'CPU (1 thread)'`` or ``'cuda (NVIDIA H200)'``: for the log lines of the search and the training."""
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"


AUTO_BATCH_MIN, AUTO_BATCH_MAX, AUTO_BATCH_DIVISOR = 8, 64, 8


def auto_batch_size(num_train: int) -> int:
    """Batch size for ``num_train`` training examples: about 8 steps per epoch,
    clipped to [8, 64] (tens of recordings need small batches; thousands of windows
    do not need hundreds of steps per epoch)."""
    return int(min(AUTO_BATCH_MAX, max(AUTO_BATCH_MIN, num_train // AUTO_BATCH_DIVISOR)))


def batch_size(cfg: TrainingConfig, num_train: Optional[int]) -> int:
    """``training.batch_size``, or the data-size rule when it is empty (None)."""
    if cfg.batch_size is not None:
        return cfg.batch_size
    return auto_batch_size(num_train) if num_train is not None else AUTO_BATCH_MAX // 4


AUTO_EXAMPLES, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 40_000, 20, 200
AUTO_MIN_STEPS, AUTO_EPOCHS_FLOOR = 5000, 4


def steps_per_epoch(num_train: int, batch: int) -> int:
    """Optimizer steps of one epoch (a last batch of one sample is folded into the previous one)."""
    full, rest = divmod(num_train, batch)
    return max(1, full + (rest > 1))


def training_epochs(cfg: TrainingConfig, num_train: Optional[int]) -> int:
    """``training.training_epochs``, or when empty about ``AUTO_EXAMPLES`` training examples
    seen, clipped to [20, 200] epochs: tens to a few hundred recordings get 200 epochs
    (about 1600 steps with the batch-size rule; they kept improving up to there, while
    the old 60 epochs with early stopping lost 0.02-0.04 accuracy), thousands of
    windows need only a few dozen epochs. Above ~16 000 examples (250 steps of 64 per
    epoch) the lower bound becomes ``AUTO_MIN_STEPS`` steps (at least ``AUTO_EPOCHS_FLOOR``
    epochs) instead of 20 epochs, so the training time stops growing with the data:
    50 000 windows train 7 epochs, not 20. Below that 20 epochs stay: on 14 000 motor
    windows 8 instead of 20 epochs cost 1.2-2.5 points of test accuracy."""
    if cfg.training_epochs is not None:
        return cfg.training_epochs
    if not num_train:
        return AUTO_EPOCHS_MAX // 2
    steps = steps_per_epoch(num_train, batch_size(cfg, num_train))
    least = min(AUTO_EPOCHS_MIN, max(AUTO_EPOCHS_FLOOR, -(-AUTO_MIN_STEPS // steps)))
    return int(min(AUTO_EPOCHS_MAX, max(least, AUTO_EXAMPLES // num_train)))


DEFAULT_TIME_SHIFT = 0.1
CIRCULAR_TIME_SHIFT = 0.5
CIRCULAR_FLIP = 0.5         # share of the examples of closed curves traced the other way round
CIRCULAR_SMOOTHNESS = 0.25  # mean step / standard deviation, median over the rows
CIRCULAR_SEAM_RATIO = 2.0   # seam / the steps next to it, 75th percentile over the rows
CIRCULAR_EDGE_STEPS = 3     # steps at each end that stand for "the steps next to the seam"
CIRCULAR_MAX_REPEAT = 0.95  # autocorrelation peak past the first zero crossing, median over the rows
CIRCULAR_SAMPLE = 1024      # rows looked at (the tests take percentiles: a sample is enough)


def is_circular(x: np.ndarray) -> bool:
    """True when the series are smooth closed curves: a circular shift (``torch.roll``) moves the
    start point and leaves no seam, as for outlines unrolled from an arbitrary start point.

    Three tests over the (series, channel) rows: the rows are smooth (median mean step under a quarter
    of the standard deviation; noise-dominated windows have steps of a standard deviation or more);
    the jump from the last sample to the first is no bigger than about the steps at the two ends (under
    2x for three rows in four); and a row is one loop, not a window holding whole cycles of a repeating
    signal, which would pass the first two tests too (median autocorrelation peak after its first zero
    crossing under 0.95; steady mains cycles reach 0.98-0.99). On our 18 benchmark sets only the two
    outline sets pass (seam ratio ArrowHead 0.77, OSULeaf 0.61; repetition 0.84 and 0.44); the other
    smooth sets, windows cut from longer recordings or motions between two rests, have seam ratios
    of 3.0 (arc_fault) or far more. ``x`` is (N, C, L) or (N, C, L, 1); rows that do not move are ignored.
    """
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim < 2 or x.shape[-1] < 4 * CIRCULAR_EDGE_STEPS or not len(x):
        return False
    rows = x.reshape(-1, x.shape[-1])[:CIRCULAR_SAMPLE].astype(np.float64)
    rows = rows[rows.std(axis=-1) > 0]
    if not len(rows):
        return False
    steps = np.abs(np.diff(rows, axis=-1))
    smoothness = steps.mean(axis=-1) / rows.std(axis=-1)
    edge = np.concatenate([steps[:, :CIRCULAR_EDGE_STEPS], steps[:, -CIRCULAR_EDGE_STEPS:]], axis=1).mean(axis=-1)
    seam = np.abs(rows[:, -1] - rows[:, 0])
    seam_ratio = seam / np.maximum(edge, 1e-6 * rows.std(axis=-1))
    return bool(np.median(smoothness) < CIRCULAR_SMOOTHNESS
                and np.percentile(seam_ratio, 75) < CIRCULAR_SEAM_RATIO
                and np.median(_repetition(rows)) < CIRCULAR_MAX_REPEAT)


def _repetition(rows: np.ndarray) -> np.ndarray:
    """Per row, the highest circular autocorrelation at lags from its first zero crossing to L/2:
    near 1 for a window of whole cycles of a repeating signal, lower for a single loop."""
    centred = rows - rows.mean(axis=-1, keepdims=True)
    spectrum = np.fft.rfft(centred, axis=-1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, n=rows.shape[-1], axis=-1)[:, :rows.shape[-1] // 2 + 1]
    acf = acf / acf[:, :1]
    past_zero = np.maximum.accumulate(acf < 0, axis=-1)       # True from the first negative lag on
    return np.where(past_zero, acf, -1.0).max(axis=-1)      # -1: never crosses zero (no repetition)


def shift_candidates(cfg: TrainingConfig, time_domain: bool, circular: bool = False) -> tuple[float, ...]:
    """Time-shift augmentations the training stage tries (the best on validation is kept).

    Shifting in time is a label-preserving change only for time-domain inputs; a
    spectrum shifted along L would be a different signal, so it is off for those.
    For raw inputs it helps when events may sit anywhere in the window (gestures,
    activities: +0.07 on our sensor benchmark) and hurts badly when the position
    itself tells the class (ACSF1's appliance day profiles: 0.81 without, 0.42
    with), so when the user sets nothing both are trained and validation decides.
    Smooth closed curves (:func:`is_circular`) are shifted by up to half their
    length without a choice: any start point gives the same curve, and validation
    (9 ArrowHead series) cannot pick. With half the examples also reversed
    (:func:`fit_settings`: the mirror image) ArrowHead went 0.780 -> 0.804 and
    OSULeaf 0.881 -> 0.923 over six seeds (rounds 12-13 of docs/benchmarks.md).
    """
    if cfg.augment_shift is not None:
        return (cfg.augment_shift,)
    if not time_domain:
        return (0.0,)
    return (CIRCULAR_TIME_SHIFT,) if circular else (DEFAULT_TIME_SHIFT, 0.0)


def fit_settings(cfg: TrainingConfig, seed: int, *, time_domain: bool = True, epochs: Optional[int] = None,
                 early_stopping: bool = True, num_train: Optional[int] = None,
                 augment_shift: Optional[float] = None, circular: bool = False) -> FitSettings:
    """Config values plus the augmentation defaults tuned for small sensor sets
    (``augment_shift``: one of :func:`shift_candidates`, default the first)."""
    shift = augment_shift if augment_shift is not None else shift_candidates(cfg, time_domain, circular)[0]
    flip = cfg.augment_flip if cfg.augment_flip is not None else (circular and time_domain)
    return FitSettings(epochs=epochs or training_epochs(cfg, num_train), batch_size=batch_size(cfg, num_train),
                       learning_rate=cfg.learning_rate, optimizer=cfg.optimizer, weight_decay=cfg.weight_decay,
                       lr_scheduler=cfg.lr_scheduler, label_smoothing=cfg.label_smoothing,
                       early_stopping_patience=cfg.early_stopping_patience if early_stopping else None,
                       augment_shift=shift, augment_flip=CIRCULAR_FLIP if flip else 0.0,
                       augment_noise=cfg.augment_noise,
                       augment_mixup=cfg.augment_mixup, precise_batchnorm=cfg.precise_batchnorm,
                       seed=seed, device=select_device(cfg))
