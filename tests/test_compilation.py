"""Compilation stage: C99 artifacts, bit-exact host check, memory plan, reports."""
import json
import random
from collections import OrderedDict

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from tinyml_modelzoo.compilation import compile_model, compile_onnx
from tinyml_modelzoo.compilation import host_check as host_check_module
from tinyml_modelzoo.config.schema import CompilationConfig
from tinyml_modelzoo.devices import get_device
from tinyml_modelzoo.errors import UserError
from tinyml_modelzoo.zoo.spec import AvgPool, Conv, GlobalAvgPool, Linear, MaxPool, ModelSpec, build_model
from tinyml_torchmodelopt.quantization import quantize_ptq

from branchy import Branchy, randomize_bn

torch.set_num_threads(1)
F28P55 = get_device("F28P55")
SUMMARY_KEYS = {"npu_compatible", "flash_bytes", "ram_bytes", "latency_us_estimate", "host_check"}
HAS_CC = host_check_module.find_compiler() is not None


def data(shape, classes, n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32), np.arange(n) % classes


def compile_(model, shape, classes, out_dir, device=F28P55, quantized=None):
    x, y = data(shape, classes)
    return compile_model(model, quantized, input_shape=shape, calibration_x=x, golden_x=x, golden_y=y,
                         class_names=[f"class{i}" for i in range(classes)], cfg=CompilationConfig(),
                         device=device, out_dir=out_dir)


def cls_1k():
    spec = ModelSpec((Conv(8, 5, stride=2), MaxPool(2), Conv(12, 3, stride=2), Conv(16, 3), GlobalAvgPool()),
                     input_batchnorm=True, name="cls1k_like")
    return randomize_bn(build_model(spec, 1, 128, 4))


@pytest.mark.skipif(not HAS_CC, reason="no C compiler")
def test_sequential_model_is_bit_exact(tmp_path):
    result = compile_(cls_1k(), (1, 128), 4, tmp_path)
    assert result.host_check == "bit-exact" and result.onnx_int8_check == "bit-exact"
    assert set(result.to_summary()) == SUMMARY_KEYS
    assert result.npu_compatible and result.flash_bytes >= result.weight_bytes > 0
    assert result.ram_bytes >= result.arena_bytes > 0 and result.latency_us_estimate > 100
    assert result.onnx_max_abs_diff < 1e-4 and result.golden_vectors == 8   # 2 per class
    for name in result.files:
        assert (tmp_path / name).is_file(), name
    source = (tmp_path / "artifacts" / "mod.c").read_text()
    assert "malloc" not in source and "static tml_q7_t tml_arena[" in source
    header = (tmp_path / "artifacts" / "mod.h").read_text()
    assert "void tinyml_model_run(const tml_q7_t *input, tml_q7_t *output);" in header
    report = json.loads((tmp_path / "compile_report.json").read_text())
    assert report["host_check"] == "bit-exact"
    assert json.loads((tmp_path / "npu_check.json").read_text())["npu_compatible"] is True


@pytest.mark.skipif(not HAS_CC, reason="no C compiler")
def test_multi_branch_model_is_bit_exact_and_reuses_memory(tmp_path):
    result = compile_(randomize_bn(Branchy()), (3, 40), 3, tmp_path)
    assert result.host_check == "bit-exact" and result.onnx_int8_check == "bit-exact"
    assert result.arena_bytes < result.activation_bytes
    source = (tmp_path / "artifacts" / "mod.c").read_text()
    assert "zero-pad" in source or "zero input channels" in source   # 3 input channels -> 4 for the NPU


@pytest.mark.skipif(not HAS_CC, reason="no C compiler")
def test_given_quantized_model_and_cpu_device(tmp_path):
    model = cls_1k()
    x, _ = data((1, 128), 4)
    q = quantize_ptq(model, torch.tensor(x))
    result = compile_(model, (1, 128), 4, tmp_path, device=get_device("F2837"), quantized=q)
    assert result.host_check == "bit-exact"
    assert result.latency_us_estimate > compile_(model, (1, 128), 4, tmp_path / "npu").latency_us_estimate


def test_npu_violation_raises_and_writes_no_artifacts(tmp_path):
    model = nn.Sequential(OrderedDict([("conv1", nn.Conv1d(1, 6, 9)), ("relu1", nn.ReLU()),
                                       ("gap2", nn.AdaptiveAvgPool1d(1)), ("flatten2", nn.Flatten()),
                                       ("fc", nn.Linear(6, 3))]))
    with pytest.raises(UserError) as err:
        compile_(model, (1, 64), 3, tmp_path)
    assert "conv1" in str(err.value) and "first_conv_kernel" in str(err.value) and "fc" in str(err.value)
    assert (tmp_path / "npu_check.json").is_file() and not (tmp_path / "artifacts").exists()


def test_host_check_skipped_without_compiler(tmp_path, monkeypatch):
    monkeypatch.setattr(host_check_module, "find_compiler", lambda: None)
    assert compile_(cls_1k(), (1, 128), 4, tmp_path).host_check == "skipped: no C compiler"


@pytest.mark.skipif(not HAS_CC, reason="no C compiler")
def test_compile_only_from_onnx(tmp_path):
    model = cls_1k()
    first = compile_(model, (1, 128), 4, tmp_path / "a")
    x, y = data((1, 128), 4)
    result = compile_onnx(tmp_path / "a" / "model_float.onnx", x, golden_x=x, golden_y=y,
                          class_names=list("abcd"), cfg=CompilationConfig(), device=F28P55, out_dir=tmp_path / "b")
    assert result.host_check == "bit-exact" and result.macs == first.macs
    with pytest.raises(UserError, match="calibration"):
        compile_onnx(tmp_path / "a" / "model_float.onnx", None, golden_x=x, golden_y=y, class_names=list("abcd"),
                     cfg=CompilationConfig(), device=F28P55, out_dir=tmp_path / "c")


def test_onnx_with_unsupported_operator_is_a_user_error(tmp_path):
    graph = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8])])
    x, y = data((1, 8), 2)
    # the operator is named whether or not this onnxruntime reads the file's IR version (onnx's
    # newest may be past onnxruntime's: seen with onnx 1.23 and onnxruntime 1.30)
    for ir_version in (8, 99):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = ir_version
        onnx.save(model, str(tmp_path / "m.onnx"))
        with pytest.raises(UserError, match="Sigmoid"):
            compile_onnx(tmp_path / "m.onnx", x, golden_x=x, golden_y=y, class_names=["a", "b"],
                         cfg=CompilationConfig(), device=F28P55, out_dir=tmp_path / "out")


def test_onnx_that_onnxruntime_cannot_load_names_the_versions(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 99
    onnx.save(model, str(tmp_path / "m.onnx"))
    x, y = data((1, 8), 2)
    with pytest.raises(UserError, match=r"IR version 99, opset ai.onnx 17\) does not load in onnxruntime"):
        compile_onnx(tmp_path / "m.onnx", x, golden_x=x, golden_y=y, class_names=["a", "b"],
                     cfg=CompilationConfig(), device=F28P55, out_dir=tmp_path / "out")


def random_spec(rng: random.Random) -> tuple[ModelSpec, int, int]:
    """A random NPU-valid layer spec, its input channels and length."""
    cin, length = rng.choice([1, 1, 2, 3]), rng.choice([32, 48, 64])
    layers, channels = [], cin
    for i in range(rng.randint(1, 3)):
        if i > 0 and channels >= 4 and rng.random() < 0.25:
            layers.append(Conv(channels, rng.choice([3, 5, 7]), stride=rng.choice([1, 2]), groups=channels))
        else:
            channels = rng.choice([4, 8, 12])
            layers.append(Conv(channels, rng.choice([1, 3, 5, 7]), stride=rng.choice([1, 2]),
                               padding=rng.choice([None, None, 0]), bn=rng.random() < 0.8, relu=rng.random() < 0.9))
        if rng.random() < 0.5:
            layers.append(rng.choice([MaxPool(2), MaxPool(3, 2), MaxPool(4), AvgPool(2), AvgPool(3, 1)]))
    if rng.random() < 0.5:
        layers.append(GlobalAvgPool())
    if rng.random() < 0.5:
        layers.append(Linear(rng.choice([16, 24])))
    return ModelSpec(tuple(layers), input_batchnorm=rng.random() < 0.5), cin, length


def property_case(seed: int, tmp_path):
    rng = random.Random(seed)
    while True:
        spec, cin, length = random_spec(rng)
        try:
            model = randomize_bn(build_model(spec, cin, length, 3), seed)
        except ValueError:
            continue
        if all(f.rule != "fc_in_features" for f in _findings(model, (cin, length))):
            break
    result = compile_(model, (cin, length), 3, tmp_path / f"case{seed}")
    assert result.host_check == "bit-exact", spec
    assert result.onnx_int8_check == "bit-exact", spec


def _findings(model, shape):
    from tinyml_modelzoo.npu import check_npu
    return check_npu(model, shape, F28P55).findings


@pytest.mark.skipif(not HAS_CC, reason="no C compiler")
@pytest.mark.parametrize("seed", range(3))
def test_random_valid_specs_are_bit_exact(seed, tmp_path):
    property_case(seed, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_CC, reason="no C compiler")
@pytest.mark.parametrize("seed", range(3, 40))
def test_random_valid_specs_are_bit_exact_slow(seed, tmp_path):
    property_case(seed, tmp_path)


@pytest.mark.skipif(not HAS_CC, reason="no C compiler")
def test_darts_network_is_bit_exact(tmp_path):
    nas = pytest.importorskip("tinyml_torchmodelopt.nas")
    if not hasattr(nas, "NetworkCnn"):
        pytest.skip("NetworkCnn not available")
    normal = [("conv_bn_relu_3x1", 0), ("skip_connect", 1), ("avg_pool_3x1", 0), ("max_pool_3x1", 2),
              ("conv_bn_relu_5x1", 1), ("skip_connect", 3), ("conv_bn_relu_7x1", 2), ("avg_pool_3x1", 4)]
    reduce = [("max_pool_3x1", 0), ("conv_bn_relu_3x1", 1), ("skip_connect", 0), ("avg_pool_3x1", 2),
              ("conv_bn_relu_5x1", 1), ("skip_connect", 2), ("skip_connect", 0), ("max_pool_3x1", 3)]
    genotype = nas.Genotype_CNN(normal, [2, 3, 4, 5], reduce, [2, 3, 4, 5])
    torch.manual_seed(0)
    model = randomize_bn(nas.NetworkCnn(4, 3, 3, genotype, in_channels=2))
    result = compile_(model, (2, 48), 3, tmp_path / "torch")
    assert result.host_check == "bit-exact" and result.onnx_int8_check == "bit-exact"
    assert result.arena_bytes < result.activation_bytes
    x, y = data((2, 48), 3)
    again = compile_onnx(tmp_path / "torch" / "model_float.onnx", x, golden_x=x, golden_y=y,
                         class_names=list("abc"), cfg=CompilationConfig(), device=F28P55, out_dir=tmp_path / "onnx")
    assert again.host_check == "bit-exact" and again.macs == result.macs
