"""Feature stage: preset parsing, transforms, windowing, normalisation, learnability."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyml_modelzoo.config.schema import DatasetConfig, FeatureConfig
from tinyml_modelzoo.datasets import DatasetSplits, Recording, load_dataset
from tinyml_modelzoo.errors import UserError
from tinyml_modelzoo.features import TRANSFORMS, extract_features, parse_feature_preset, resolve_plan
from tinyml_modelzoo.zoo.spec import Conv, GlobalAvgPool, MaxPool, ModelSpec, build_model


def splits_of(train, val=(), test=(), classes=("a", "b")) -> DatasetSplits:
    """DatasetSplits from ``(label, data (T, C))`` pairs."""
    def recs(items, split):
        return tuple(Recording(f"{split}/{i}", label, np.asarray(d, np.float32)) for i, (label, d) in enumerate(items))
    channels = np.asarray(train[0][1]).shape[1]
    return DatasetSplits("t", classes, recs(train, "train"), recs(val, "val"), recs(test, "test"), channels,
                         "split_factor")


def noise(length: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(length, channels))


# ---------------------------------------------------------------- presets

@pytest.mark.parametrize("name, frame, features, frames, kind", [
    ("Generic_256Input_RAW_256Feature_1Frame", 256, 256, 1, "RAW"),
    ("Generic_512Input_RAW_128Feature_1Frame", 512, 128, 1, "RAW"),
    ("Generic_1024Input_FFTBIN_64Feature_8Frame", 128, 64, 8, "FFTBIN"),
    ("FFT1024Input_256Feature_1Frame_Full_Bandwidth", 1024, 256, 1, "FFT"),
    ("generic_128input_fft_32feature_2frame", 64, 32, 2, "FFT"),
])
def test_preset_names_parse(name, frame, features, frames, kind):
    plan = parse_feature_preset(name)
    assert (plan.frame_size, plan.feature_size_per_frame, plan.num_frame_concat, plan.kind) == \
        (frame, features, frames, kind)
    assert all(t in TRANSFORMS for t in plan.transforms)


def test_raw_and_fft_transform_lists():
    assert parse_feature_preset("Generic_256Input_RAW_256Feature_1Frame").transforms == ("RAW_FE", "CONCAT")
    assert "BINNING" in parse_feature_preset("Generic_1024Input_FFTBIN_64Feature_8Frame").transforms
    assert "BINNING" in parse_feature_preset("FFT1024Input_256Feature_1Frame_Full_Bandwidth").transforms
    assert "TRUNCATE" in parse_feature_preset("FFT1024Input_256Feature_1Frame").transforms


@pytest.mark.parametrize("name", ["Generic_256Input_WAVELET_32Feature_1Frame", "hello",
                                  "Generic_100Input_RAW_10Feature_3Frame"])
def test_bad_preset_name_lists_pattern_and_custom(name):
    with pytest.raises(UserError) as err:
        parse_feature_preset(name)
    message = str(err.value)
    assert name in message and "Generic_<N>Input_" in message
    if "WAVELET" in name:
        assert "Custom_" in message and "Generic_256Input_RAW_256Feature_1Frame" in message


def test_config_overrides_preset_values():
    plan = resolve_plan(FeatureConfig(feature_extraction_name="Generic_256Input_RAW_256Feature_1Frame",
                                      frame_size=128, feature_size_per_frame=64, stride_size=0.5, num_frame_concat=2))
    assert (plan.frame_size, plan.feature_size_per_frame, plan.num_frame_concat, plan.window, plan.hop) == \
        (128, 64, 2, 256, 128)


def test_custom_preset_and_its_errors():
    plan = resolve_plan(FeatureConfig(feature_extraction_name="Custom_spectrum", frame_size=64,
                                      feature_size_per_frame=8, feat_ext_transform=["fft_fe", "FFT_POS_HALF",
                                                                                    "DC_REMOVE", "ABS", "BINNING"]))
    assert plan.transforms[0] == "FFT_FE" and plan.stride_size == 0.5  # spectral default
    with pytest.raises(UserError, match="feat_ext_transform"):
        resolve_plan(FeatureConfig(feature_extraction_name="Custom_x", frame_size=64))
    with pytest.raises(UserError, match="frame_size"):
        resolve_plan(FeatureConfig(feature_extraction_name="Custom_x", feat_ext_transform=["RAW_FE"]))
    with pytest.raises(UserError) as err:
        resolve_plan(FeatureConfig(feature_extraction_name="Custom_x", frame_size=64, feat_ext_transform=["WAVELET"]))
    assert "WAVELET" in str(err.value) and "FFT_FE" in str(err.value) and "LOG_DB" in str(err.value)


def test_too_many_features_for_the_frame_is_a_user_error():
    with pytest.raises(UserError, match="feature_size_per_frame"):
        resolve_plan(FeatureConfig(feature_extraction_name="Generic_256Input_FFTBIN_200Feature_1Frame"))
    with pytest.raises(UserError, match="ABS"):  # complex output
        resolve_plan(FeatureConfig(feature_extraction_name="Custom_x", frame_size=8, feat_ext_transform=["FFT_FE"]))


# ---------------------------------------------------------------- transforms and shapes

def test_fft_features_match_numpy_reference_for_a_pure_sine():
    frame, bin_index = 128, 10
    t = np.arange(frame * 4)
    # a little noise keeps every bin far above float round-off, so dB values compare exactly
    sine = (3.0 * np.sin(2 * np.pi * bin_index * t / frame) + 0.01 * noise(len(t))[:, 0])[:, None]
    sine = sine.astype(np.float32)
    cfg = FeatureConfig(feature_extraction_name="Generic_128Input_FFT_64Feature_1Frame", normalize=False,
                        stride_size=1.0)
    features = extract_features(splits_of([(0, sine), (1, sine)]), cfg)
    x = features.x_train
    assert x.shape == (8, 1, 64)
    spectrum = np.abs(np.fft.fft(sine[:frame, 0].astype(np.float64)))[1:65]  # bins 1..64 (DC dropped)
    reference = 20 * np.log10(spectrum + 1e-12)
    np.testing.assert_allclose(x[0, 0], reference, rtol=1e-4, atol=1e-3)
    assert np.argmax(x[0, 0]) + 1 == bin_index  # feature k is FFT bin k + 1
    assert x[0, 0].max() == pytest.approx(20 * np.log10(3.0 * frame / 2), abs=0.05)


def test_fftbin_averages_bins_and_concatenates_frames():
    cfg = FeatureConfig(feature_extraction_name="Generic_512Input_FFTBIN_16Feature_4Frame", normalize=False)
    data = noise(1024)
    x = extract_features(splits_of([(0, data), (1, data)]), cfg).x_train
    assert x.shape == (6, 1, 64)  # window 512, hop 256 (spectral default) → 3 examples per file
    frame = data[128:256, 0]  # example 0, frame 1
    spectrum = np.abs(np.fft.fft(frame))[1:65].reshape(16, 4).mean(axis=1)
    np.testing.assert_allclose(x[0, 0, 16:32], 20 * np.log10(spectrum + 1e-12), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ["Generic_256Input_FFTBIN_16Feature_4Frame", "Generic_64Input_RAW_64Feature_1Frame"])
def test_features_transformed_in_chunks_equal_one_pass(monkeypatch, name):
    import tinyml_modelzoo.features.extract as extract
    cfg = FeatureConfig(feature_extraction_name=name, frame_normalization="normalize", frame_normalization_keep_raw=True)
    splits = splits_of([(k % 2, noise(300 + 37 * k, 2, seed=k)) for k in range(5)])
    whole = extract_features(splits, cfg)
    monkeypatch.setattr(extract, "CHUNK_VALUES", 3 * whole.x_train[0].size)  # chunks cut across recordings
    chunked = extract_features(splits, cfg)
    assert len(whole.x_train) > 6
    np.testing.assert_array_equal(chunked.x_train, whole.x_train)
    assert chunked.ids_train == whole.ids_train and chunked.y_train.tolist() == whole.y_train.tolist()


def test_raw_downsampling_frame_skip_scale_and_ids():
    data = np.arange(64, dtype=float)[:, None] * np.array([1.0, -1.0, 5.0])
    cfg = FeatureConfig(feature_extraction_name="Custom_raw", feat_ext_transform=["RAW_FE", "CONCAT"], frame_size=8,
                        feature_size_per_frame=2, num_frame_concat=2, frame_skip=2, variables=2, scale=2.0,
                        offset=1.0, normalize=False)
    fs = extract_features(splits_of([(0, data), (1, data)]), cfg)
    assert fs.x_train.shape == (4, 2, 4) and fs.in_channels == 2 and fs.in_length == 4
    # example 0: frames [0:8] and [16:24] (skip 2), each averaged into 2 values, then * 2 + 1
    np.testing.assert_allclose(fs.x_train[0, 0], np.array([1.5, 5.5, 17.5, 21.5]) * 2 + 1)
    np.testing.assert_allclose(fs.x_train[0, 1], -np.array([1.5, 5.5, 17.5, 21.5]) * 2 + 1)
    assert fs.ids_train[:3] == ("train/0#0", "train/0#1", "train/1#0")
    assert fs.y_train.tolist() == [0, 0, 1, 1] and fs.y_train.dtype == np.int64
    assert fs.to_summary()["examples"] == {"train": 4, "val": 0, "test": 0}


def test_variables_more_than_data_is_a_user_error():
    with pytest.raises(UserError, match="variables"):
        extract_features(splits_of([(0, noise(300)), (1, noise(300))]), FeatureConfig(variables=3))


def test_log_db_of_raw_negative_values_reports_the_example():
    cfg = FeatureConfig(feature_extraction_name="Custom_x", frame_size=16, feat_ext_transform=["RAW_FE", "NORMALIZE",
                                                                                               "LOG_DB"])
    # LOG_DB takes |x|, so this is finite; a zero threshold with an all-zero frame is not
    zeros = np.zeros((32, 1))
    with pytest.raises(UserError, match="train/0#0"):
        extract_features(splits_of([(0, zeros), (1, zeros)]), dataclasses.replace(cfg, log_threshold=0.0,
                                                                                 feat_ext_transform=["RAW_FE", "LOG_DB"]))
    assert np.isfinite(extract_features(splits_of([(0, noise(32)), (1, noise(32))]), cfg).x_train).all()


# ---------------------------------------------------------------- normalisation and short recordings

def test_normalisation_uses_the_training_split_only():
    train = [(0, noise(512, 2, 1)), (1, noise(512, 2, 2) * 3 + 1)]
    cfg = FeatureConfig(frame_normalization="none")
    one = extract_features(splits_of(train, val=[(0, noise(256, 2, 3))], test=[(1, noise(512, 2, 4))]), cfg)
    changed_test = [(1, noise(512, 2, 5) * 100 + 50)]
    two = extract_features(splits_of(train, val=[(0, noise(256, 2, 3))], test=changed_test), cfg)
    assert one.mean.shape == (2, 1) and one.std.shape == (2, 1)
    np.testing.assert_array_equal(one.mean, two.mean)
    np.testing.assert_array_equal(one.std, two.std)
    np.testing.assert_allclose(one.x_train.mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(one.x_train.std(axis=(0, 2)), 1, atol=1e-4)
    np.testing.assert_allclose(one.x_test[0], (noise(512, 2, 4).T[:, :256] - one.mean) / one.std, atol=1e-4)
    off = extract_features(splits_of(train), FeatureConfig(normalize=False, frame_normalization="none"))
    assert off.mean is None and off.std is None


def test_short_recording_is_skipped_with_a_warning(caplog):
    splits = splits_of([(0, noise(512)), (1, noise(512)), (1, noise(100))])
    with caplog.at_level(logging.WARNING):
        fs = extract_features(splits, FeatureConfig())
    assert len(fs.x_train) == 4 and "train/2" in caplog.text and "100 samples" in caplog.text


def test_split_with_only_short_recordings_is_a_user_error():
    splits = splits_of([(0, noise(512)), (1, noise(512))], test=[(0, noise(100))])
    with pytest.raises(UserError) as err:
        extract_features(splits, FeatureConfig())
    assert "test split" in str(err.value) and "smaller frame_size" in str(err.value)


def test_empty_val_split_gives_empty_arrays():
    fs = extract_features(splits_of([(0, noise(512)), (1, noise(512))]), FeatureConfig())
    assert fs.x_val.shape == (0, 2, 256) and fs.y_val.shape == (0,) and fs.ids_val == ()


# ---------------------------------------------------------------- hello_world end to end

def test_hello_world_is_learnable_by_a_1k_cnn():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    splits = load_dataset(DatasetConfig(hello_world_files_per_class=24), 0, Path("."), None)
    fs = extract_features(splits, FeatureConfig())
    assert (fs.in_channels, fs.in_length, fs.num_classes) == (2, 256, 4)      # raw + frame-normalised
    spec = ModelSpec((Conv(8, 5, stride=2), MaxPool(2), Conv(16, 5, stride=2), MaxPool(2), Conv(16, 3),
                      GlobalAvgPool()))
    model = build_model(spec, fs.in_channels, fs.in_length, fs.num_classes)
    assert sum(p.numel() for p in model.parameters()) < 2000
    x, y = torch.from_numpy(fs.x_train), torch.from_numpy(fs.y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(8):
        for batch in torch.randperm(len(y)).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(fs.x_test)).argmax(1).numpy() == fs.y_test).mean()
    assert accuracy >= 0.85


def test_docs_list_every_transform():
    text = (Path(__file__).resolve().parents[1] / "docs" / "feature_extraction.md").read_text()
    missing = [name for name in TRANSFORMS if f"`{name}`" not in text]
    assert not missing, f"docs/feature_extraction.md does not describe {missing}"
