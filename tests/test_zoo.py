"""Model zoo tests, generated from the registry."""
import pytest
import torch

from tinyml_modelzoo.devices import get_device
from tinyml_modelzoo.npu import check_npu
from tinyml_modelzoo.zoo import (Conv, GlobalAvgPool, Linear, MaxPool, ModelSpec, build_model, fit_to_length,
                                 get_entry, get_model_spec, list_models, register_model)
from tinyml_torchmodelopt.profile import profile_model

MODELS = list_models()
NOMINAL = {"CLS_100_NPU": 100, "CLS_500_NPU": 500, "CLS_1k_NPU": 1000, "CLS_2k_NPU": 2000, "CLS_4k_NPU": 4000,
           "CLS_6k_NPU": 6000, "CLS_13k_NPU": 13000, "CLS_20k_NPU": 20000}


def test_registry_has_the_issue_models():
    assert set(NOMINAL) <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_forward_shapes(name):
    model = build_model(get_model_spec(name), 1, 256, 4)
    assert model(torch.randn(3, 1, 256)).shape == (3, 4)
    assert build_model(get_model_spec(name), 3, 512, 2)(torch.randn(2, 3, 512)).shape == (2, 2)


@pytest.mark.parametrize("name", [n for n in MODELS if n in NOMINAL])
def test_size_matches_name(name):
    params = profile_model(build_model(get_model_spec(name), 1, 256, 4), (1, 256)).params
    assert 0.4 * NOMINAL[name] <= params <= 1.6 * NOMINAL[name], params


@pytest.mark.parametrize("name", [n for n in MODELS if get_entry(n).npu_ready])
def test_npu_ready_models_pass_the_npu_check(name):
    model = build_model(get_model_spec(name), 1, 256, 4)
    report = check_npu(model, (1, 256), get_device("F28P55"))
    assert report.ok, report.format_table()


@pytest.mark.parametrize("name", [n for n in MODELS if get_entry(n).npu_ready])
@pytest.mark.parametrize("length", [16, 24, 32])
def test_npu_ready_models_fitted_to_short_inputs_pass_the_npu_check(name, length):
    spec = fit_to_length(get_model_spec(name), length)
    model = build_model(spec, 1, length, 4)
    report = check_npu(model, (1, length), get_device("F28P55"))
    assert report.ok, report.format_table()
    if any(isinstance(layer, GlobalAvgPool) for layer in spec.layers):  # the same weights as drawn
        assert profile_model(model, (1, length)).params == \
            profile_model(build_model(get_model_spec(name), 1, 256, 4), (1, 256)).params


def test_fit_to_length_removes_only_the_downsampling_that_does_not_fit():
    spec = get_model_spec("CLS_4k_NPU")  # conv s2, pool 2, conv s2, conv, conv s2, gap
    assert fit_to_length(spec, 256) == spec
    short = fit_to_length(spec, 24)      # 24 -> 12 -> 6 -> 3 -> 3 -> (2: too short) s1 -> 3
    assert [getattr(layer, "stride", None) for layer in short.layers] == [2, None, 2, 1, 1, None]
    assert len(short.layers) == len(spec.layers)
    assert [type(layer).__name__ for layer in fit_to_length(spec, 8).layers] == ["Conv", "Conv", "Conv", "Conv",
                                                                                 "GlobalAvgPool"]


def test_exact_param_and_mac_count():
    spec = ModelSpec((Conv(4, 5, stride=2), MaxPool(2), Conv(8, 3), GlobalAvgPool(), Linear(16)))
    model = build_model(spec, 1, 64, 3)
    prof = profile_model(model, (1, 64))
    conv1 = 4 * 5 + 2 * 4            # weights (no bias: BN follows) + BN affine
    conv2 = 8 * 4 * 3 + 2 * 8
    fc1, fc = 8 * 16 + 16, 16 * 3 + 3
    assert prof.params == conv1 + conv2 + fc1 + fc
    # conv1: 32 outputs x 4 ch x 5 taps; pool -> 16; conv2: 16 x 8 x (4*3); fc: in*out
    assert prof.macs == 32 * 4 * 5 + 16 * 8 * 12 + 8 * 16 + 16 * 3


def test_spec_round_trip_and_errors():
    spec = get_model_spec("CLS_2k_NPU")
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown layer type"):
        ModelSpec.from_dict({"layers": [{"type": "lstm"}]})
    with pytest.raises(ValueError, match="shrinks below 1"):
        build_model(ModelSpec((MaxPool(4),) * 3), 1, 16, 2)


def test_unknown_name_and_duplicates():
    with pytest.raises(KeyError, match="CLS_1k_NPU"):
        get_entry("CLS_1k_NP")
    with pytest.raises(ValueError, match="twice"):
        register_model("CLS_1k_NPU", size_class="s")(lambda: None)
