"""Import a float ONNX model of the supported operator set into the IR.

Supported (as written by ``torch.onnx.export`` for our models): Conv (1-D),
BatchNormalization, Relu, MaxPool, AveragePool, GlobalAveragePool,
ReduceMean over the last axis (keepdims), Flatten, Reshape to (N, -1), Gemm,
MatMul (+ Add of a constant bias), Concat on axis 1, Add, Identity, Dropout.
Input ``(N, C, L)`` with static C and L. Anything else: ``UserError``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyml_torchmodelopt.quantization.graph import Graph, Node

from ..errors import UserError

SUPPORTED = ("Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean",
             "Flatten", "Reshape", "Gemm", "MatMul", "Concat", "Add", "Identity", "Dropout")
# shape arithmetic that exporters write in front of a Reshape (onnxruntime folds it into constants)
SHAPE_ARITHMETIC = ("Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Slice", "Cast", "ConstantOfShape")


def _attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pool_len(length: int, k: int, s: int, p: int) -> int:
    return (length + 2 * p - k) // s + 1


def _reshape(full: tuple[int, ...], target) -> list[int]:
    """ONNX Reshape semantics (0 copies a dim, -1 is inferred) for a batch-1 ``full`` shape."""
    out = [full[i] if int(v) == 0 else int(v) for i, v in enumerate(target)]
    if -1 in out:
        known = int(np.prod([v for v in out if v != -1]))
        out[out.index(-1)] = int(np.prod(full)) // max(known, 1)
    return out


def _fold_shapes(model):
    """Fix the batch to 1 and let onnxruntime's basic optimizer fold shape arithmetic
    (Shape/Slice/Gather feeding a Reshape) into constants; the ops stay standard ONNX."""
    import tempfile

    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "folded.onnx")
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def _check_operators(model, path: Path, allowed: tuple[str, ...]) -> None:
    bad = sorted({n.op_type for n in model.graph.node if n.op_type not in allowed})
    if bad:
        raise UserError(f"{path.name}: unsupported ONNX operators {', '.join(bad)}; "
                        f"supported: {', '.join(SUPPORTED)}")


def import_onnx(path: str | Path) -> Graph:
    """Read ``path`` into a ``Graph`` (float parameters, per-sample shapes)."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise UserError(f"compilation.model_path: {path} does not exist; give the path of a float .onnx model")
    try:
        raw = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise UserError(f"compilation.model_path: {path} is not a readable ONNX model ({exc})") from None
    try:
        model = _fold_shapes(raw)
    except Exception as exc:  # noqa: BLE001 - the file parses, but onnxruntime cannot load it
        import onnxruntime
        _check_operators(raw, path, SUPPORTED + SHAPE_ARITHMETIC)  # an operator we reject anyway is the news
        opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in raw.opset_import)
        raise UserError(f"compilation.model_path: {path} (ONNX IR version {raw.ir_version}, opset {opsets}) "
                        f"does not load in onnxruntime {onnxruntime.__version__} ({exc}); export it with "
                        f"opset 17 (torch.onnx.export(..., opset_version=17)) or upgrade onnxruntime") from None
    _check_operators(model, path, SUPPORTED + ("Constant",))
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(_attrs(n)["value"])
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        raise UserError(f"{path.name}: expected one (N, C, L) input, found {len(inputs)}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 3 or not dims[1] or not dims[2]:
        raise UserError(f"{path.name}: input must be (N, C, L) with fixed C and L; got {dims}")
    in_name = inputs[0].name
    nodes = [Node(in_name, "input", (), (dims[1], dims[2]))]
    shape = {in_name: (dims[1], dims[2])}
    alias: dict[str, str] = {in_name: in_name}

    def add(name: str, op: str, ins, shp, attrs=None, params=None, kind=""):
        nodes.append(Node(name, op, tuple(ins), tuple(int(v) for v in shp), attrs or {}, params or {}, kind))
        shape[name] = tuple(int(v) for v in shp)
        return name

    for i, n in enumerate(g.node):
        if n.op_type == "Constant":
            continue
        a = _attrs(n)
        name = n.name or f"{n.op_type.lower()}_{i}"
        data = [alias[x] for x in n.input if x in alias]
        src = data[0] if data else None
        t = n.op_type
        if t in ("Identity", "Dropout"):
            alias[n.output[0]] = src
            continue
        c, length = (shape[src] + (1,))[:2] if src else (0, 0)
        if t == "Conv":
            w = consts[n.input[1]].astype(np.float64)
            if w.ndim != 3 or any(d != 1 for d in a.get("dilations", [1])):
                raise UserError(f"{path.name}: {name}: only 1-D convs without dilation are supported")
            pads = a.get("pads", [0, 0])
            if pads[0] != pads[-1]:
                raise UserError(f"{path.name}: {name}: asymmetric padding {pads} is not supported")
            k, s, groups = w.shape[2], a.get("strides", [1])[0], a.get("group", 1)
            b = consts[n.input[2]].astype(np.float64) if len(n.input) > 2 else np.zeros(w.shape[0])
            attrs = dict(in_channels=c, out_channels=w.shape[0], kernel=k, stride=s, padding=pads[0],
                         groups=groups, relu=False)
            out = add(name, "conv", [src], (w.shape[0], _pool_len(length, k, s, pads[0])), attrs,
                      {"weight": w, "bias": b}, "Conv")
        elif t == "BatchNormalization":
            gamma, beta, mean, var = (consts[x].astype(np.float64) for x in n.input[1:5])
            scale = gamma / np.sqrt(var + a.get("epsilon", 1e-5))
            out = add(name, "bn", [src], shape[src], {"channels": c},
                      {"scale": scale, "shift": beta - mean * scale}, "BatchNormalization")
        elif t == "Relu":
            out = add(name, "relu", [src], shape[src], {}, {}, "Relu")
        elif t in ("MaxPool", "AveragePool"):
            k, s = a["kernel_shape"][0], a.get("strides", [1])[0]
            p = a.get("pads", [0, 0])[0]
            if a.get("ceil_mode", 0):
                raise UserError(f"{path.name}: {name}: ceil_mode pools are not supported")
            attrs = dict(kernel=k, stride=s, padding=p)
            if t == "AveragePool":
                attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
            out = add(name, "maxpool" if t == "MaxPool" else "avgpool", [src], (c, _pool_len(length, k, s, p)),
                      attrs, {}, t)
        elif t in ("GlobalAveragePool", "ReduceMean"):
            axes = a.get("axes") or (list(consts[n.input[1]]) if len(n.input) > 1 else [2])
            if t == "ReduceMean" and (list(axes) not in ([2], [-1]) or not a.get("keepdims", 1)):
                raise UserError(f"{path.name}: {name}: ReduceMean only over the last axis with keepdims")
            out = add(name, "gap", [src], (c, 1), {}, {}, t)
        elif t in ("Flatten", "Reshape"):
            target = _reshape((1,) + shape[src], consts.get(n.input[1], [])) if t == "Reshape" else []
            if (t == "Reshape" and target[1:] == list(shape[src])) or (t == "Flatten" and a.get("axis", 1) != 1
                                                                        and len(shape[src]) == 1):
                alias[n.output[0]] = src   # a reshape to the same per-sample shape
                continue
            if (t == "Reshape" and len(target) != 2) or (t == "Flatten" and a.get("axis", 1) != 1):
                raise UserError(f"{path.name}: {name}: only Flatten/Reshape to (N, features) is supported")
            out = add(name, "flatten", [src], (int(np.prod(shape[src])),), {}, {}, t)
        elif t in ("Gemm", "MatMul"):
            w = consts[n.input[1]].astype(np.float64)
            if t == "MatMul" or not a.get("transB", 0):
                w = w.T
            if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
                raise UserError(f"{path.name}: {name}: Gemm with alpha/beta/transA is not supported")
            b = consts[n.input[2]].astype(np.float64).reshape(-1) if len(n.input) > 2 else np.zeros(w.shape[0])
            attrs = dict(in_features=w.shape[1], out_features=w.shape[0], relu=False)
            out = add(name, "linear", [src], (w.shape[0],), attrs, {"weight": w, "bias": b}, t)
        elif t == "Concat":
            if a.get("axis") not in (1, -2):
                raise UserError(f"{path.name}: {name}: Concat only on the channel axis (1)")
            out = add(name, "cat", data, (sum(shape[d][0] for d in data),) + shape[data[0]][1:], {}, {}, t)
        elif t == "Add":
            const = [x for x in n.input if x in consts]
            if const and len(data) == 1 and nodes[-1].name == src and nodes[-1].op == "linear":
                last = nodes[-1]   # MatMul + Add(bias)
                nodes[-1] = Node(last.name, last.op, last.inputs, last.shape, last.attrs,
                                 {**last.params, "bias": last.params["bias"] + consts[const[0]].reshape(-1)},
                                 last.module_type)
                alias[n.output[0]] = last.name
                continue
            if len(data) != 2:
                raise UserError(f"{path.name}: {name}: Add of a constant is only supported as a Linear bias")
            out = add(name, "add", data, shape[data[0]], {}, {}, t)
        else:  # pragma: no cover - filtered above
            raise UserError(f"{path.name}: unsupported operator {t}")
        alias[n.output[0]] = out
    if len(g.output) != 1 or g.output[0].name not in alias:
        raise UserError(f"{path.name}: expected one output tensor")
    return Graph(tuple(nodes), in_name, alias[g.output[0].name], (dims[1], dims[2]))
