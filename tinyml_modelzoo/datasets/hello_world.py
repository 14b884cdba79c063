"""The built-in ``hello_world`` dataset: noisy periodic sensor signals, made from a seed.

Four classes of waveform, each with a random period (16-48 samples), phase,
amplitude, harmonic shape, baseline drift and noise:

- ``burst``: a weak sine carrying short bursts of high-frequency noise (an arcing
  or chattering contact),
- ``sawtooth``: slow rise, sharp fall (a ramp generator),
- ``sine``: a clean sine (a healthy supply),
- ``square``: a soft-clipped sine, ``tanh(k sin)`` (a saturating sensor).

Random phase and period make the classes hard for a linear model on raw
samples (the class templates average out) while a small CNN learns the local
wave shapes. Extra variables are the same process seen on other phases (shifted
by 120 degrees per channel, own gain and noise), as in a 3-phase current sensor.
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES = ("burst", "sawtooth", "sine", "square")
LENGTH = 2048  # samples per recording: 8 windows of 256


def generate(files_per_class: int, variables: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, labels)``: data ``(N, T, C)`` float32, labels ``(N,)`` int64.

    N = 4 * files_per_class, T = LENGTH samples, C = ``variables``. Vectorised
    over all recordings; the same arguments always give the same arrays.
    """
    rng = np.random.default_rng([seed, 0x4E110])  # own stream: not shared with split seeding
    n, t = files_per_class * len(CLASS_NAMES), np.arange(LENGTH)
    labels = np.repeat(np.arange(len(CLASS_NAMES)), files_per_class)
    period = rng.uniform(16.0, 48.0, (n, 1, 1))
    # +-3 % frequency wander so windows are not exact copies of each other
    wander = 0.03 * np.sin(2 * np.pi * t / rng.uniform(LENGTH / 2, 2 * LENGTH, (n, 1, 1)))
    base = rng.uniform(0, 2 * np.pi, (n, 1, 1)) + 2 * np.pi * np.cumsum(1 + wander, axis=-1) / period
    shift = 2 * np.pi / 3 * np.arange(variables)[None, :, None] + rng.normal(0, 0.1, (n, variables, 1))
    # float64 for the phase sum (hundreds of radians), float32 for the big (N, C, T) arrays: speed
    phase = np.mod(base, 2 * np.pi).astype(np.float32) + shift.astype(np.float32)
    wave = np.empty((n, variables, LENGTH), dtype=np.float32)
    for label, make in enumerate((_burst, _sawtooth, _sine, _square)):  # 4 classes, not per sample
        rows = labels == label
        wave[rows] = make(phase[rows], rng)
    amplitude = (rng.uniform(0.7, 1.5, (n, 1, 1)) * rng.uniform(0.7, 1.3, (n, variables, 1))).astype(np.float32)
    offset = rng.uniform(-1, 1, (n, variables, 1)).astype(np.float32)
    drift = (rng.uniform(-1, 1, (n, 1, 1)) * t / LENGTH  # (n, 1, T): shared by all channels
             + 0.5 * np.sin(2 * np.pi * t / rng.uniform(LENGTH, 4 * LENGTH, (n, 1, 1)) + rng.uniform(0, 6.3, (n, 1, 1))))
    sigma = (rng.uniform(0.05, 0.25, (n, 1, 1)) * amplitude).astype(np.float32)
    data = amplitude * wave + (offset + drift.astype(np.float32)) + sigma * _normal(rng, wave.shape)
    return np.ascontiguousarray(data.transpose(0, 2, 1)), labels.astype(np.int64)


def _normal(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _sine(phase: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.sin(phase)


def _square(phase: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = rng.uniform(3.0, 8.0, (phase.shape[0], 1, 1)).astype(np.float32)  # clipping hardness
    return np.tanh(k * np.sin(phase)) / np.tanh(k)


def _sawtooth(phase: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.mod(phase / np.float32(np.pi), np.float32(2.0)) - np.float32(1.0)


def _burst(phase: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Weak sine plus Gaussian-enveloped noise bursts every 50-120 samples."""
    n = phase.shape[0]
    gaps = rng.uniform(50, 120, (n, LENGTH // 50 + 4))
    centres = np.cumsum(gaps, axis=1) - rng.uniform(0, 140, (n, 1))  # (n, B)
    width = rng.uniform(4, 10, (n, 1, 1))
    t = np.arange(LENGTH, dtype=np.float32)
    z = (t[None, None, :] - centres[:, :, None].astype(np.float32)) / width.astype(np.float32)
    envelope = np.exp(-0.5 * np.min(z * z, axis=1))  # (n, T): max over bursts of exp(-z^2 / 2)
    gain = rng.uniform(1.0, 2.0, (n, 1, 1)).astype(np.float32)
    return np.float32(0.4) * np.sin(phase) + _normal(rng, phase.shape) * envelope[:, None, :] * gain
