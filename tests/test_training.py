"""Training stage: the augmentation candidates are trained from the same start, validation decides, and the
chosen recipe is refit on train + val."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

import tinyml_modelzoo.training as training
from tinyml_modelzoo.config.schema import FeatureConfig, TrainingConfig
from tinyml_modelzoo.datasets import DatasetSplits, Recording
from tinyml_modelzoo.features import extract_features
from tinyml_torchmodelopt.train import EpochRecord, FitResult

RAW = "Generic_32Input_RAW_32Feature_1Frame"


@pytest.fixture(autouse=True)
def _candidates_fit_in_this_process(monkeypatch):
    """Candidates fit one after the other here (the fake fits below record into this process's
    lists); the forked path has its own tests."""
    monkeypatch.setattr(training, "spare_cores", lambda: 0)


def _features(with_val: bool = True, spectral: bool = False, closed_curves: bool = False):
    rng = np.random.default_rng(0)
    angle = np.linspace(0, 2 * np.pi, 32, endpoint=False)

    def signal():
        if closed_curves:   # outlines read from a random start point: a circular shift changes nothing
            return (1 + 0.3 * np.cos(angle + rng.uniform(0, 2 * np.pi)))[:, None].astype(np.float32)
        return rng.normal(size=(64 if spectral else 32, 1)).astype(np.float32)

    def recs(split, n):
        return tuple(Recording(f"{split}/{i}", i % 2, signal()) for i in range(n))
    splits = DatasetSplits("t", ("a", "b"), recs("train", 8), recs("val", 4) if with_val else (), recs("test", 4),
                           1, "split_factor")
    name = "Generic_64Input_FFTBIN_16Feature_1Frame" if spectral else RAW
    return extract_features(splits, FeatureConfig(feature_extraction_name=name))


class _Probe(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(channels, 2)

    def forward(self, x):
        return self.fc(x.mean(-1)) + self.w


def _fake_fit(val_by_shift: dict, seen: list):
    """A stand-in for tinyml_torchmodelopt.train.fit: checks the start weights, marks the model."""
    def fit(model, x_train, y_train, x_val, y_val, settings, on_epoch=None):
        seen.append((settings.augment_shift, float(model.w.detach()), len(x_train), len(x_val)))
        with torch.no_grad():
            model.w.fill_(settings.augment_shift + 1.0)  # the weights this candidate "learnt"
        acc, loss = val_by_shift[settings.augment_shift]
        return FitResult(1, acc, (EpochRecord(1, 1.0, 0.5, loss, acc, 1e-3),))
    return fit


@pytest.mark.parametrize("val_by_shift, kept", [({0.1: (0.70, 0.5), 0.0: (0.90, 0.6)}, 0.0),
                                                ({0.1: (0.90, 0.5), 0.0: (0.70, 0.4)}, 0.1),
                                                ({0.1: (0.80, 0.7), 0.0: (0.80, 0.4)}, 0.0)])  # tie: lower loss
def test_default_augmentation_trains_both_shifts_and_keeps_the_best_on_validation(
        tmp_path, monkeypatch, val_by_shift, kept):
    features = _features()
    seen: list = []
    monkeypatch.setattr(training, "fit", _fake_fit(val_by_shift, seen))
    monkeypatch.setattr(training, "_export_onnx", lambda *a: (None, None))
    model = _Probe(features.in_channels)
    result = training.train(model, features, TrainingConfig(training_epochs=1, refit_with_val=False), tmp_path,
                            seed=0)
    assert seen == [(0.1, 0.0, 8, 4), (0.0, 0.0, 8, 4)]  # both candidates start from the same weights
    assert result.augment_shift == kept and result.refit_examples == 0
    assert float(model.w.detach()) == pytest.approx(kept + 1.0)  # the kept candidate's weights are the model's
    assert [c["augment_shift"] for c in result.candidates] == [0.1, 0.0]
    assert torch.load(tmp_path / "model.pt", weights_only=True)["w"].item() == pytest.approx(kept + 1.0)


def test_the_chosen_shift_is_refit_on_train_and_val_from_the_same_start(tmp_path, monkeypatch):
    features = _features()
    seen: list = []
    monkeypatch.setattr(training, "fit", _fake_fit({0.1: (0.70, 0.5), 0.0: (0.90, 0.6)}, seen))
    monkeypatch.setattr(training, "_export_onnx", lambda *a: (None, None))
    model = _Probe(features.in_channels)
    result = training.train(model, features, TrainingConfig(training_epochs=1), tmp_path, seed=0)
    # the two candidates on 8 train examples, then shift 0.0 (the better on val) on all 12, without validation
    assert seen == [(0.1, 0.0, 8, 4), (0.0, 0.0, 8, 4), (0.0, 0.0, 12, 0)]
    assert result.refit_examples == 12 and result.augment_shift == 0.0
    assert result.best_val_accuracy == pytest.approx(0.90)  # the selection run's figure
    assert (tmp_path / "history_refit.csv").is_file()


@pytest.mark.parametrize("case", ["user_shift", "no_validation", "spectra"])
def test_one_candidate_when_the_user_sets_the_shift_or_nothing_can_decide(tmp_path, monkeypatch, case):
    features = _features(with_val=case != "no_validation", spectral=case == "spectra")
    seen: list = []
    monkeypatch.setattr(training, "fit", _fake_fit({0.25: (0.5, 1.0), 0.1: (0.5, 1.0), 0.0: (0.5, 1.0)}, seen))
    monkeypatch.setattr(training, "_export_onnx", lambda *a: (None, None))
    cfg = TrainingConfig(training_epochs=1, augment_shift=0.25 if case == "user_shift" else None)
    training.train(_Probe(features.in_channels), features, cfg, tmp_path, seed=0)
    shift = {"user_shift": 0.25, "no_validation": 0.1, "spectra": 0.0}[case]
    refits = [] if case == "no_validation" else [shift]  # nothing to add to the training data without val
    assert [s[0] for s in seen] == [shift] + refits


@pytest.mark.parametrize("user_shift, expected", [(None, 0.5), (0.0, 0.0)])
def test_closed_curves_train_one_candidate_shifted_by_half_their_length_and_flipped(tmp_path, monkeypatch, caplog,
                                                                        user_shift, expected):
    features = _features(closed_curves=True)
    seen: list = []
    monkeypatch.setattr(training, "fit", _fake_fit({expected: (0.5, 1.0)}, seen))
    monkeypatch.setattr(training, "_export_onnx", lambda *a: (None, None))
    with caplog.at_level("INFO", logger=training.log.name):
        result = training.train(_Probe(features.in_channels), features,
                                TrainingConfig(training_epochs=1, augment_shift=user_shift), tmp_path, seed=0)
    assert [s[0] for s in seen] == [expected, expected]      # the one candidate, then its refit on train + val
    assert result.augment_shift == expected and len(result.candidates) == 1
    assert result.augment_flip == 0.5          # closed curves are also traced the other way round
    assert any("smooth closed curves" in r.getMessage() for r in caplog.records)
    assert any("refit" in r.getMessage() and "reversal" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("key, value, spectral, warned", [
    ("augment_shift", 0.1, True, True), ("augment_shift", None, True, False), ("augment_shift", 0.1, False, False),
    ("augment_flip", True, True, True), ("augment_flip", None, True, False), ("augment_flip", True, False, False)])
def test_a_shift_or_flip_set_by_hand_on_spectra_is_warned_about(tmp_path, monkeypatch, caplog, key, value, spectral,
                                                                 warned):
    features = _features(spectral=spectral)
    monkeypatch.setattr(training, "fit", _fake_fit({0.1: (0.5, 1.0), 0.0: (0.5, 1.0)}, []))
    monkeypatch.setattr(training, "_export_onnx", lambda *a: (None, None))
    with caplog.at_level("WARNING", logger=training.log.name):
        training.train(_Probe(features.in_channels), features, TrainingConfig(training_epochs=1, **{key: value}),
                       tmp_path, seed=0)
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"training.{key}" in m and "FFT" in m for m in messages) == warned


def test_real_fit_keeps_a_working_model(tmp_path, caplog):
    features = _features()
    model = _Probe(features.in_channels)
    with caplog.at_level("INFO", logger=training.log.name):
        result = training.train(model, features, TrainingConfig(training_epochs=2), tmp_path, seed=0)
    assert len(result.candidates) == 2 and result.epochs_run == 2 and result.refit_examples == 12
    assert (tmp_path / "history.csv").is_file() and (tmp_path / "model.onnx").is_file()
    assert len((tmp_path / "history_refit.csv").read_text().splitlines()) == 3  # header + the 2 refit epochs
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch")]
    assert len(epochs) == 6 and sum("val acc" in m for m in epochs) == 4  # the 2 refit epochs have no validation
    assert not any("nan" in m for m in epochs)


class _SmallConv(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(channels, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU())
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.body(x).mean(-1))


def _train_small_conv(out_dir, features):
    out_dir.mkdir()
    torch.manual_seed(0)
    model = _SmallConv(features.in_channels)
    result = training.train(model, features, TrainingConfig(training_epochs=3), out_dir, seed=0)
    return result, model.state_dict()


@pytest.fixture
def single_threaded():
    """The pipeline's default (common.num_threads 1), under which the stage forks."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="candidates are forked on Linux only")
def test_a_candidate_fitted_in_a_forked_process_gives_the_same_model(tmp_path, monkeypatch, caplog, single_threaded):
    features = _features()
    here, here_weights = _train_small_conv(tmp_path / "here", features)
    monkeypatch.setattr(training, "spare_cores", lambda: 1)
    with caplog.at_level("INFO", logger=training.log.name):
        forked, forked_weights = _train_small_conv(tmp_path / "forked", features)
    assert "in a second process alongside" in caplog.text and "candidate 2: 3 epochs" in caplog.text
    assert forked.candidates == here.candidates and forked.augment_shift == here.augment_shift
    assert all(torch.equal(forked_weights[k], here_weights[k]) for k in here_weights)  # bit for bit


def _raise(*args):
    raise RuntimeError("out of memory, say")


def _die(*args):
    os._exit(3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="candidates are forked on Linux only")
@pytest.mark.parametrize("failure, message", [(_raise, "RuntimeError: out of memory, say"), (_die, "exit status 3")])
def test_a_failed_forked_candidate_is_fitted_here(tmp_path, monkeypatch, caplog, single_threaded, failure, message):
    features = _features()
    here, here_weights = _train_small_conv(tmp_path / "here", features)
    monkeypatch.setattr(training, "spare_cores", lambda: 1)
    monkeypatch.setattr(training, "_fit_quietly", failure)
    with caplog.at_level("INFO", logger=training.log.name):
        again, again_weights = _train_small_conv(tmp_path / "again", features)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("training candidate 2 failed in its own process" in w and message in w for w in warnings)
    assert again.candidates == here.candidates
    assert all(torch.equal(again_weights[k], here_weights[k]) for k in here_weights)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="candidates are forked on Linux only")
def test_a_candidate_that_cannot_be_forked_is_fitted_here(tmp_path, monkeypatch, caplog, single_threaded):
    import multiprocessing.process

    def no_memory(self):
        raise OSError(12, "Cannot allocate memory")
    features = _features()
    here, here_weights = _train_small_conv(tmp_path / "here", features)
    monkeypatch.setattr(training, "spare_cores", lambda: 1)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", no_memory)
    with caplog.at_level("WARNING", logger=training.log.name):
        again, again_weights = _train_small_conv(tmp_path / "again", features)
    assert "cannot fork a process for training candidate 2 ([Errno 12] Cannot allocate memory)" in caplog.text
    assert again.candidates == here.candidates
    assert all(torch.equal(again_weights[k], here_weights[k]) for k in here_weights)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="candidates are forked on Linux only")
def test_a_forked_run_that_does_not_answer_in_time_is_stopped(caplog, single_threaded):
    import time
    from tinyml_modelzoo.side_fit import SideRun
    run = SideRun("a stuck fit", time.sleep, 60)
    started = time.perf_counter()
    with caplog.at_level("WARNING", logger=training.log.name):
        assert run.result(timeout=1) is None
    assert time.perf_counter() - started < 10 and not run._process.is_alive()
    assert "a stuck fit failed in its own process (no answer within 1 s)" in caplog.text
    assert SideRun("a quick one", sum, [1, 2]).result(timeout=30) == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="candidates are forked on Linux only")
def test_a_forked_run_ends_with_its_parent_even_on_sigkill():
    import subprocess
    import time
    script = ("import os, signal, time\n"
              "from tinyml_modelzoo.side_fit import SideRun\n"
              "run = SideRun('a long fit', time.sleep, 60)\n"
              "time.sleep(0.5)\n"
              "print(run._process.pid, flush=True)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert parent.returncode == -9
    child = int(parent.stdout.split()[0])
    for _ in range(50):  # the kernel signals the orphan at once; it then has to be reaped by init
        if not os.path.exists(f"/proc/{child}") or "Z" in _proc_state(child):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{child}") or "Z" in _proc_state(child)


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_recalibrate_batchnorm_sets_the_statistics_of_the_data_and_changes_nothing_else():
    from tinyml_torchmodelopt.train import recalibrate_batchnorm
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(2), nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4))
    x = 3.0 + 2.0 * torch.randn(10, 2, 16)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "batches" not in k}
    model.eval()
    assert recalibrate_batchnorm(model, x)
    assert not model.training and model[0].momentum == 0.1  # mode and momentum restored
    assert torch.allclose(model[0].running_mean, x.mean((0, 2)), atol=1e-5)
    assert torch.allclose(model[0].running_var, x.var((0, 2)), rtol=1e-4)  # one batch: its unbiased variance
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    recalibrate_batchnorm(model, x, batch_size=5)  # two equal batches: the mean is still exact
    assert torch.allclose(model[0].running_mean, x.mean((0, 2)), atol=1e-5)
    assert not recalibrate_batchnorm(nn.Sequential(nn.Conv1d(2, 2, 1)), x)  # no batch norm: nothing to do


@pytest.mark.parametrize("precise", [True, False])
def test_fit_leaves_batchnorm_statistics_of_the_clean_data_not_of_the_noisy_batches(precise):
    from tinyml_torchmodelopt.train import FitSettings, fit
    torch.manual_seed(0)
    x = torch.randn(64, 1, 32)
    y = (x.mean((1, 2)) > 0).long()
    model = nn.Sequential(nn.BatchNorm1d(1), nn.Flatten(), nn.Linear(32, 2))
    settings = FitSettings(epochs=3, batch_size=16, augment_noise=2.0, precise_batchnorm=precise)
    fit(model, x, y, x[:0], y[:0], settings)
    clean_var = float(x.var())
    if precise:
        assert float(model[0].running_var) == pytest.approx(clean_var, rel=1e-4)
    else:  # the running average saw noise of std 2: variance about 1 + 4
        assert float(model[0].running_var) > 3 * clean_var


def test_mixup_blends_each_example_with_a_partner_and_keeps_the_original_dominant():
    from tinyml_torchmodelopt.train import _mixup
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1).expand(4, 1, 3).contiguous()
    y = torch.tensor([0, 1, 2, 3])
    mixed, partner_y, lam = _mixup(x, y, 0.3, torch.Generator().manual_seed(0))
    assert lam == pytest.approx(0.7)  # folded to the original's side
    expected = 0.7 * x[:, 0, 0] + 0.3 * partner_y.float()  # x holds its own label as value
    assert torch.allclose(mixed[:, 0, 0], expected)
    assert sorted(partner_y.tolist()) == [0, 1, 2, 3]  # a permutation of the batch


def test_fit_with_mixup_is_seeded_and_still_learns():
    from tinyml_torchmodelopt.train import FitSettings, fit
    torch.manual_seed(0)
    x = torch.randn(128, 1, 16)
    y = (x.mean((1, 2)) > 0).long()

    def trained(mixup):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        fit(model, x, y, x, y, FitSettings(epochs=15, batch_size=16, augment_mixup=mixup, seed=3))
        return model

    with_mixup = trained(0.4)
    assert torch.equal(with_mixup[1].weight, trained(0.4)[1].weight)  # same seed, same weights
    assert not torch.equal(with_mixup[1].weight, trained(0.0)[1].weight)  # mixup changes the batches
    assert (with_mixup(x).argmax(1) == y).float().mean() > 0.9


@pytest.mark.parametrize("probability, reversed_share", [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)])
def test_flip_reverses_whole_examples_in_time_with_the_given_probability(probability, reversed_share):
    from tinyml_torchmodelopt.train import FitSettings, _augment
    x = torch.randn(400, 2, 7, generator=torch.Generator().manual_seed(1))
    out = _augment(x, FitSettings(augment_flip=probability), torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, e.flip(-1)) for o, e in zip(out, x)])
    kept = torch.tensor([torch.equal(o, e) for o, e in zip(out, x)])
    assert bool((flipped | kept).all())     # every example whole: reversed along the last axis or untouched
    assert float(flipped.float().mean()) == pytest.approx(reversed_share, abs=0.07)
