"""ONNX export of the float model and of the int8 model, checked with onnxruntime.

Float: ``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic batch; the
dynamo exporter is the fallback), then onnxruntime vs PyTorch on the example.

int8: built node by node from a ``QuantizedModel`` with integer ONNX operators so
that onnxruntime reproduces ``QuantizedModel.run_int8`` exactly. ``QLinearConv``
is not used on purpose: it requantises with a float multiplier and rounds half
to even, while TINPU rounds half up after an arithmetic shift. Instead:
``ConvInteger`` / ``MatMulInteger`` give the exact int32 accumulator (int8 data
offset to uint8 with zero point 128), the bias is an int32 ``Add``, and the
requantisation runs in float64 (``Add 2^(s-1)``, ``Mul 2^-s``, ``Floor``,
``Clip``), which is exact for every int32 accumulator. Average pools run
``AveragePool`` in float32 then ``Floor(x + 0.5)``: the window sum and count are
small integers, so the result is exact (a tie ``k + 1/2`` is representable and
any other quotient is at least ``1/(2n)`` away from one).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .quantization.int8 import QuantizedModel

OPSET = 17


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | Path) -> float:
    """Export float ``model`` (eval mode) to ``path``; returns max |onnxruntime - PyTorch|
    on ``example_input`` ``(N, C, L)``. The batch dimension is dynamic."""
    import onnxruntime as ort

    path = Path(path)
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = example_input.detach().float().to(device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=OPSET,
                                  input_names=["input"], output_names=["logits"],
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
            except Exception:  # noqa: BLE001 - the dynamo exporter is the fallback
                torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=max(OPSET, 18),
                                  input_names=["input"], output_names=["logits"],
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
        with torch.no_grad():
            expected = model(x).cpu().numpy()
    finally:
        model.train(was_training)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.cpu().numpy()})[0]
    return float(np.abs(got - expected).max())


class _Builder:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, value: np.ndarray) -> str:
        from onnx import numpy_helper
        self.count += 1
        name = f"c{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        from onnx import helper
        self.count += 1
        out = f"t{self.count}_{op_type}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def cast(self, x: str, to: int) -> str:
        return self.op("Cast", [x], to=to)

    def requant(self, acc_int32: str, shift: int, relu: bool) -> str:
        from onnx import TensorProto as T
        v = self.cast(acc_int32, T.DOUBLE)
        if shift > 0:
            v = self.op("Add", [v, self.const(np.array(2.0 ** (shift - 1)))])
            v = self.op("Floor", [self.op("Mul", [v, self.const(np.array(2.0 ** -shift))])])
        v = self.op("Clip", [v, self.const(np.array(0.0 if relu else -128.0)), self.const(np.array(127.0))])
        return self.cast(v, T.INT8)

    def to_uint8(self, x: str) -> str:
        from onnx import TensorProto as T
        return self.cast(self.op("Add", [self.cast(x, T.INT32), self.const(np.array(128, np.int32))]), T.UINT8)


def export_int8_onnx(qm: QuantizedModel, path: str | Path) -> Path:
    """Write ``qm`` as an integer ONNX model: int8 input ``(N, C, L)`` -> int8 logits."""
    import onnx
    from onnx import TensorProto as T, helper

    b = _Builder()
    env: dict[str, str] = {}
    for n in qm.nodes:
        a = n.attrs
        x = [env[i] for i in n.inputs]
        if n.op == "input":
            y = "input"
        elif n.op == "conv":
            w = b.const((n.weight.astype(np.int32) + 128).astype(np.uint8))
            zp = b.const(np.array(128, np.uint8))
            acc = b.op("ConvInteger", [b.to_uint8(x[0]), w, zp, zp], kernel_shape=[a["kernel"]],
                       strides=[a["stride"]], pads=[a["padding"]] * 2, group=a["groups"])
            acc = b.op("Add", [acc, b.const(n.bias.astype(np.int32).reshape(1, -1, 1))])
            y = b.requant(acc, n.shift, bool(a.get("relu")))
        elif n.op == "linear":
            acc = b.op("MatMulInteger", [x[0], b.const(np.ascontiguousarray(n.weight.T.astype(np.int8)))])
            acc = b.op("Add", [acc, b.const(n.bias.astype(np.int32).reshape(1, -1))])
            y = b.requant(acc, n.shift, bool(a.get("relu")))
        elif n.op == "maxpool":
            y = b.op("MaxPool", [x[0]], kernel_shape=[a["kernel"]], strides=[a["stride"]], pads=[a["padding"]] * 2)
        elif n.op == "avgpool":
            v = b.op("AveragePool", [b.cast(x[0], T.FLOAT)], kernel_shape=[a["kernel"]], strides=[a["stride"]],
                     pads=[a["padding"]] * 2, count_include_pad=int(a["count_include_pad"]))
            y = b.cast(b.op("Floor", [b.op("Add", [v, b.const(np.array(0.5, np.float32))])]), T.INT8)
        elif n.op == "gap":
            length = qm.node(n.inputs[0]).shape[-1]
            s = b.cast(b.op("ReduceSum", [b.cast(x[0], T.INT32), b.const(np.array([2], np.int64))], keepdims=1),
                       T.DOUBLE)
            s = b.op("Add", [b.op("Mul", [s, b.const(np.array(2.0))]), b.const(np.array(float(length)))])
            y = b.cast(b.op("Floor", [b.op("Div", [s, b.const(np.array(2.0 * length))])]), T.INT8)
        elif n.op == "relu":
            y = b.requant(b.cast(x[0], T.INT32), 0, True)
        elif n.op == "flatten":
            y = b.op("Flatten", [x[0]], axis=1)
        elif n.op == "cat":
            parts = [b.requant(b.cast(v, T.INT32), s, False) for v, s in zip(x, n.in_shifts)]
            y = b.op("Concat", parts, axis=1)
        elif n.op == "add":
            terms = [b.op("Mul", [b.cast(v, T.INT32), b.const(np.array(1 << s, np.int32))])
                     for v, s in zip(x, n.in_shifts)]
            y = b.requant(b.op("Add", terms), n.shift, bool(a.get("relu")))
        else:
            raise ValueError(f"{n.name}: no int8 ONNX lowering for op {n.op!r}")
        env[n.name] = y
    b.nodes.append(helper.make_node("Identity", [env[qm.output_name]], ["logits"]))
    c, length = qm.input_shape
    graph = helper.make_graph(
        b.nodes, "tinpu_int8", [helper.make_tensor_value_info("input", T.INT8, ["batch", c, length])],
        [helper.make_tensor_value_info("logits", T.INT8, ["batch", *qm.output_shape])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tinyml_torchmodelopt")
    model.ir_version = 8
    model.metadata_props.add(key="input_frac_bits", value=str(qm.input_frac))
    model.metadata_props.add(key="output_frac_bits", value=str(qm.output_frac))
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def run_int8_onnx(path: str | Path, x_int8: np.ndarray) -> np.ndarray:
    """Run an int8 ONNX model from ``export_int8_onnx`` with onnxruntime."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.asarray(x_int8, dtype=np.int8)})[0]
