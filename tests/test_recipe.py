"""Defaults for small data: the batch-size rule, the epoch rule, the time shift of closed curves and per-frame
normalisation of time-domain features."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tinyml_modelzoo.config.schema import FeatureConfig, TrainingConfig
from tinyml_modelzoo.datasets import DatasetSplits, Recording
from tinyml_modelzoo.features import extract_features, resolve_plan
from tinyml_modelzoo import recipe
from tinyml_modelzoo.recipe import (auto_batch_size, batch_size, describe_device, fit_settings, is_circular,
                                    select_device, shift_candidates, training_epochs)

RAW = "Generic_64Input_RAW_64Feature_1Frame"


# ---------------------------------------------------------------- device

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_asking_for_a_gpu_without_cuda_warns_once_and_trains_on_the_cpu(caplog):
    recipe._warn_no_cuda.cache_clear()
    with caplog.at_level(logging.WARNING, logger="tinyml_modelzoo"):
        assert select_device(TrainingConfig(num_gpus=1)) == "cpu"
        assert select_device(TrainingConfig(num_gpus=1)) == "cpu"
        assert select_device(TrainingConfig(num_gpus=0)) == "cpu"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "num_gpus" in warnings[0] and "no CUDA device" in warnings[0]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe_device("cpu") == "CPU (1 thread)"
        torch.set_num_threads(2)
        assert describe_device("cpu") == "CPU (2 threads)"
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- batch size

@pytest.mark.parametrize("num_train, expected", [(10, 8), (72, 9), (120, 15), (200, 25), (512, 64), (5000, 64)])
def test_auto_batch_size_gives_about_8_steps_clipped_to_8_64(num_train, expected):
    assert auto_batch_size(num_train) == expected


def test_batch_size_empty_uses_the_rule_and_a_number_wins():
    assert batch_size(TrainingConfig(batch_size=None), 200) == 25
    assert batch_size(TrainingConfig(batch_size=32), 200) == 32
    assert fit_settings(TrainingConfig(batch_size=None), 0, num_train=400).batch_size == 50
    assert fit_settings(TrainingConfig(batch_size=None), 0).batch_size == 16      # size unknown


# ---------------------------------------------------------------- epochs

@pytest.mark.parametrize("num_train, expected", [(27, 200), (151, 200), (198, 200), (768, 52), (5000, 20),
                                                  (14_310, 20), (20_000, 16), (200_000, 4)])
def test_auto_epochs_see_about_40k_examples_clipped_to_20_200_or_1600_steps(num_train, expected):
    # above ~16000 examples (batch 64) the lower bound is 5000 steps, at least 4 epochs
    assert training_epochs(TrainingConfig(), num_train) == expected


def test_training_epochs_set_by_the_user_win_and_nothing_stops_early_by_default():
    assert training_epochs(TrainingConfig(training_epochs=7), 27) == 7
    settings = fit_settings(TrainingConfig(), 0, num_train=27)
    assert settings.epochs == 200 and settings.early_stopping_patience is None
    assert fit_settings(TrainingConfig(early_stopping_patience=5), 0, num_train=27).early_stopping_patience == 5


# ---------------------------------------------------------------- frame normalisation

def test_frame_normalization_goes_before_concat_of_time_domain_plans_only():
    def plan(name, mode, **kw):
        return resolve_plan(FeatureConfig(feature_extraction_name=name, frame_normalization=mode, **kw)).transforms
    assert plan(RAW, "none") == ("RAW_FE", "CONCAT")
    assert plan(RAW, "normalize") == ("RAW_FE", "NORMALIZE", "CONCAT")
    assert plan(RAW, "dc_remove") == ("RAW_FE", "DC_REMOVE", "CONCAT")
    spectral = "Generic_128Input_FFTBIN_16Feature_1Frame"
    assert plan(spectral, "normalize") == plan(spectral, "none")                  # spectra untouched
    assert plan("Custom_x", "normalize", feat_ext_transform=["RAW_FE", "CONCAT"], frame_size=64) == \
        ("RAW_FE", "CONCAT")                                                      # a list is used as written
    assert FeatureConfig().frame_normalization == "normalize" and FeatureConfig().frame_normalization_keep_raw


def test_frame_normalization_removes_offset_and_gain_of_each_recording():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(64, 2))
    recs = tuple(Recording(f"train/{i}", 0, (g * base + o).astype(np.float32))
                 for i, (g, o) in enumerate([(1.0, 0.0), (3.0, 5.0), (0.2, -7.0)]))
    splits = DatasetSplits("t", ("a",), recs, (), (), 2, "split_factor")
    x = extract_features(splits, FeatureConfig(feature_extraction_name=RAW, frame_normalization="normalize",
                                               frame_normalization_keep_raw=False, normalize=False)).x_train
    np.testing.assert_allclose(x[1], x[0], atol=1e-5)
    np.testing.assert_allclose(x[2], x[0], atol=1e-5)
    np.testing.assert_allclose(x.mean(axis=-1), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=-1), 1, atol=1e-4)


def test_keep_raw_adds_the_unnormalised_channels_first():
    rng = np.random.default_rng(1)
    data = (3.0 * rng.normal(size=(64, 2)) + 5.0).astype(np.float32)
    splits = DatasetSplits("t", ("a",), (Recording("train/0", 0, data),), (), (), 2, "split_factor")
    cfg = FeatureConfig(feature_extraction_name=RAW, frame_normalization="dc_remove",
                        frame_normalization_keep_raw=True, normalize=False)
    x = extract_features(splits, cfg).x_train
    assert x.shape == (1, 4, 64)
    np.testing.assert_allclose(x[0, :2], data.T, rtol=1e-6)
    np.testing.assert_allclose(x[0, 2:], data.T - data.T.mean(axis=1, keepdims=True), atol=1e-5)
    assert resolve_plan(cfg).transforms == ("RAW_FE", "DC_REMOVE", "CONCAT")



# ---------------------------------------------------------------- closed curves

def _closed_curves(n: int = 40, length: int = 200, repeat_start: bool = False) -> np.ndarray:
    """Radius of random leaf-like outlines read from a random start point: (n, 1, length)."""
    rng = np.random.default_rng(1)
    angle = np.linspace(0, 2 * np.pi, length, endpoint=repeat_start)
    rows = [1 + sum(a * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k, a in ((1, 0.3), (2, 0.15), (3, 0.08)))
            + 0.005 * rng.normal(size=length) for _ in range(n)]
    return np.stack(rows)[:, None].astype(np.float32)


def _windows(n: int = 40, length: int = 200) -> np.ndarray:
    """Smooth sensor windows cut at random points of a longer periodic recording."""
    rng = np.random.default_rng(2)
    t = np.arange(length)
    return np.stack([np.sin(2 * np.pi * t / rng.uniform(30, 90) + rng.uniform(0, 2 * np.pi))
                     for _ in range(n)])[:, None].astype(np.float32)


def _rest_motion_rest(n: int = 40, length: int = 150) -> np.ndarray:
    """A smooth movement between two different rest positions (GunPoint-like)."""
    rng = np.random.default_rng(3)
    t = np.linspace(-6, 6, length)
    return np.stack([rng.uniform(0.5, 2) / (1 + np.exp(-t)) + np.exp(-t ** 2) for _ in range(n)])[:, None]


def _whole_cycles(n: int = 40, length: int = 300) -> np.ndarray:
    """Windows holding exactly three cycles of a steady (mains-synchronous) waveform."""
    rng = np.random.default_rng(5)
    t = 2 * np.pi * 3 * np.arange(length) / length
    return np.stack([np.sin(t + p) + 0.3 * np.sin(3 * (t + p)) for p in rng.uniform(0, 2 * np.pi, n)])[:, None]


@pytest.mark.parametrize("make, closed", [
    (lambda: _closed_curves(), True),
    (lambda: _closed_curves(repeat_start=True), True),              # the start point repeated at the end
    (lambda: _closed_curves()[..., None], True),                    # (N, C, L, 1)
    (lambda: np.concatenate([_closed_curves(), np.zeros((40, 1, 200), np.float32)], 1), True),  # a flat channel
    (lambda: _windows(), False),
    (lambda: _rest_motion_rest(), False),
    (lambda: _whole_cycles(), False),                               # closes, but repeats inside the window
    (lambda: np.random.default_rng(4).normal(size=(40, 3, 100)), False),   # noise closes as often as it steps
    (lambda: np.zeros((10, 1, 64)), False),
    (lambda: _closed_curves(length=8), False),                      # too short to tell
])
def test_is_circular_finds_smooth_closed_curves_only(make, closed):
    assert is_circular(make()) is closed


def test_closed_curves_are_shifted_by_half_their_length_without_a_choice():
    cfg = TrainingConfig()
    assert shift_candidates(cfg, time_domain=True) == (0.1, 0.0)
    assert shift_candidates(cfg, time_domain=True, circular=True) == (0.5,)
    assert shift_candidates(cfg, time_domain=False, circular=True) == (0.0,)
    assert shift_candidates(TrainingConfig(augment_shift=0.2), time_domain=True, circular=True) == (0.2,)
    assert fit_settings(cfg, 0, circular=True).augment_shift == 0.5


@pytest.mark.parametrize("flip, circular, time_domain, expected", [
    (None, True, True, 0.5), (None, False, True, 0.0), (None, True, False, 0.0),
    (False, True, True, 0.0), (True, False, True, 0.5), (True, False, False, 0.5)])
def test_closed_curves_are_also_reversed_unless_the_user_says_otherwise(flip, circular, time_domain, expected):
    settings = fit_settings(TrainingConfig(augment_flip=flip), 0, circular=circular, time_domain=time_domain)
    assert settings.augment_flip == expected
