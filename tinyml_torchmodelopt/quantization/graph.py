"""A small dataflow IR of 1-D CNNs, captured with ``torch.fx``.

Sequential zoo models and DARTS cells (``torch.cat`` / ``+`` joins) both become a
``Graph``: nodes in topological order, each with an op type, attributes, input
names, float parameters and its per-sample output shape (``(C, L)`` or ``(F,)``).
The NPU checker reads the traced graph; quantization and code generation read
the folded graph (batch norm folded, ReLU fused, identities removed).

Op types: ``input``, ``conv``, ``bn``, ``relu``, ``maxpool``, ``avgpool``, ``gap``,
``flatten``, ``linear``, ``cat``, ``add``, ``identity`` and ``unsupported``
(traced but not runnable; ``attrs['what']`` says what it was).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

TENSOR_OPS = ("input", "conv", "bn", "relu", "maxpool", "avgpool", "gap", "flatten", "linear",
              "cat", "add", "identity", "unsupported")


@dataclass(frozen=True)
class Node:
    name: str                 # layer name used in reports (module path or fx node name)
    op: str                   # one of TENSOR_OPS
    inputs: tuple[str, ...]
    shape: tuple[int, ...]    # per-sample output shape
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)   # float numpy arrays (weight, bias, scale, shift)
    module_type: str = ""


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    input_name: str
    output_name: str
    input_shape: tuple[int, int]

    def node(self, name: str) -> Node:
        return self._index()[name]

    def _index(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def unsupported(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "unsupported"]


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().double().numpy()


def _module_node(name: str, m: nn.Module, inputs: tuple[str, ...], shape) -> Node:
    kind = type(m).__name__
    if isinstance(m, nn.Conv1d):
        ok = m.padding_mode == "zeros" and m.dilation[0] == 1 and not isinstance(m.padding, str)
        if not ok:
            return Node(name, "unsupported", inputs, shape, {"what": f"{kind} (dilation/padding mode)"}, {}, kind)
        bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels)
        attrs = dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel=m.kernel_size[0],
                     stride=m.stride[0], padding=m.padding[0], groups=m.groups, relu=False)
        return Node(name, "conv", inputs, shape, attrs, {"weight": _np(m.weight), "bias": bias}, kind)
    if isinstance(m, nn.BatchNorm1d):
        var = m.running_var if m.running_var is not None else torch.ones(m.num_features)
        mean = m.running_mean if m.running_mean is not None else torch.zeros(m.num_features)
        scale = 1.0 / np.sqrt(_np(var) + m.eps)
        if m.affine:
            scale = scale * _np(m.weight)
        shift = -_np(mean) * scale + (_np(m.bias) if m.affine else 0.0)
        return Node(name, "bn", inputs, shape, {"channels": m.num_features}, {"scale": scale, "shift": shift}, kind)
    if isinstance(m, nn.ReLU):
        return Node(name, "relu", inputs, shape, {}, {}, kind)
    if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)):
        k = _int(m.kernel_size)
        s = _int(m.stride) if m.stride is not None else k
        attrs = dict(kernel=k, stride=s, padding=_int(m.padding))
        if m.ceil_mode or (isinstance(m, nn.MaxPool1d) and _int(m.dilation) != 1):
            return Node(name, "unsupported", inputs, shape, {"what": f"{kind} (ceil_mode/dilation)"}, {}, kind)
        if isinstance(m, nn.AvgPool1d):
            attrs["count_include_pad"] = bool(m.count_include_pad)
            return Node(name, "avgpool", inputs, shape, attrs, {}, kind)
        return Node(name, "maxpool", inputs, shape, attrs, {}, kind)
    if isinstance(m, nn.AdaptiveAvgPool1d) and _int(m.output_size) == 1:
        return Node(name, "gap", inputs, shape, {}, {}, kind)
    if isinstance(m, nn.Flatten):
        return Node(name, "flatten", inputs, shape, {}, {}, kind)
    if isinstance(m, nn.Linear):
        bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_features)
        attrs = dict(in_features=m.in_features, out_features=m.out_features, relu=False)
        return Node(name, "linear", inputs, shape, attrs, {"weight": _np(m.weight), "bias": bias}, kind)
    if isinstance(m, (nn.Identity, nn.Dropout)):
        return Node(name, "identity", inputs, shape, {}, {}, kind)
    return Node(name, "unsupported", inputs, shape, {"what": kind}, {}, kind)


def _int(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def trace_graph(model: nn.Module, input_shape: tuple[int, int]) -> Graph:
    """Trace ``model`` (eval mode, input ``(N, C, L)``) into a ``Graph``.

    Never raises for an unknown layer: it becomes an ``unsupported`` node so the
    NPU checker can report it. Raises ValueError when ``torch.fx`` cannot trace.
    """
    was_training = model.training
    model.eval()
    try:
        gm = fx.symbolic_trace(model)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        ShapeProp(gm).propagate(torch.zeros((1, *input_shape), device=device))
    except Exception as exc:  # fx raises many types; the message is what matters
        raise ValueError(f"cannot trace {type(model).__name__} with torch.fx: {exc}") from None
    finally:
        model.train(was_training)
    modules = dict(gm.named_modules())
    nodes: list[Node] = []
    alias: dict[str, str] = {}          # fx node name -> IR node name
    input_name = output_name = ""
    for n in gm.graph.nodes:
        meta = n.meta.get("tensor_meta")
        shape = tuple(int(d) for d in meta.shape[1:]) if hasattr(meta, "shape") else ()
        tensor_args = tuple(alias[a.name] for a in n.args if isinstance(a, fx.Node) and a.name in alias)
        if n.op == "placeholder":
            input_name = n.name
            nodes.append(Node(n.name, "input", (), tuple(input_shape)))
            alias[n.name] = n.name
        elif n.op == "output":
            out = n.args[0]
            output_name = alias.get(out.name, "") if isinstance(out, fx.Node) else ""
        elif n.op == "call_module":
            node = _module_node(str(n.target), modules[n.target], tensor_args, shape)
            nodes.append(node)
            alias[n.name] = node.name
        elif n.op in ("call_function", "call_method"):
            if not hasattr(meta, "shape"):
                continue   # shape arithmetic (size(), getattr, getitem): not a tensor
            node = _function_node(n, tensor_args, shape, alias)
            if node is not None:
                nodes.append(node)
                alias[n.name] = node.name
        else:  # get_attr and friends: a raw tensor inside the graph
            nodes.append(Node(n.name, "unsupported", (), shape, {"what": f"{n.op} {n.target}"}))
            alias[n.name] = n.name
    if not output_name:
        raise ValueError("the traced model does not return a single tensor")
    shapes = {n.name: n.shape for n in nodes}
    for i, n in enumerate(nodes):   # nn.Flatten(2) on (N, C, L) is a no-op; other partial flattens are not ours
        if n.op == "flatten" and len(n.shape) != 1:
            same = n.inputs and shapes[n.inputs[0]] == n.shape
            nodes[i] = replace(n, op="identity") if same else replace(
                n, op="unsupported", attrs={"what": f"{n.module_type or 'flatten'} to shape {n.shape}"})
    return Graph(tuple(nodes), input_name, output_name, (int(input_shape[0]), int(input_shape[1])))


def _function_node(n: fx.Node, inputs: tuple[str, ...], shape, alias) -> Node | None:
    target = n.target
    if target in (operator.add, torch.add, "add"):
        scalars = [a for a in n.args if not isinstance(a, fx.Node)]
        if scalars and all(s == 0 for s in scalars) and len(inputs) == 1:
            return Node(n.name, "identity", inputs, shape)        # sum() starts from 0
        if len(inputs) == 2 and not scalars:
            return Node(n.name, "add", inputs, shape)
    if target is torch.cat or target == "cat":
        tensors = n.args[0] if n.args else n.kwargs.get("tensors")
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
        if dim in (1, -2) and all(isinstance(t, fx.Node) for t in tensors):
            return Node(n.name, "cat", tuple(alias[t.name] for t in tensors), shape)
    if target in (torch.flatten, "flatten", "view", "reshape") and len(shape) == 1:
        return Node(n.name, "flatten", inputs[:1], shape)
    if target in (F.relu, torch.relu, "relu"):
        return Node(n.name, "relu", inputs, shape)
    if target == "contiguous":
        return Node(n.name, "identity", inputs, shape)
    return Node(n.name, "unsupported", inputs, shape, {"what": getattr(target, "__name__", str(target))})


# --------------------------------------------------------------------- folding
def fold_graph(graph: Graph) -> Graph:
    """Deployment form: identities removed, BN folded into the preceding conv or
    linear (exact in float), any other BN (e.g. the input BN) turned into a
    1x1 depthwise conv, ReLU fused into its producer when it is the only consumer.

    An input BN is *not* folded into the first conv: the conv's zero padding
    would then pad raw zeros instead of normalised zeros, which is inexact at the
    sequence edges. A per-channel affine (1x1 depthwise conv) keeps it exact.
    Raises ValueError on unsupported nodes.
    """
    bad = graph.unsupported()
    if bad:
        raise ValueError("unsupported layers: " + ", ".join(f"{n.name} ({n.attrs.get('what')})" for n in bad))
    nodes = list(graph.nodes)
    out = graph.output_name

    def rename(old: str, new: str) -> None:
        nonlocal out
        for i, n in enumerate(nodes):
            if old in n.inputs:
                nodes[i] = replace(n, inputs=tuple(new if x == old else x for x in n.inputs))
        out = new if out == old else out

    def get(name: str) -> Node:
        return next(p for p in nodes if p.name == name)

    def sole_consumer(name: str):
        users = [n for n in nodes if name in n.inputs]
        return users[0] if len(users) == 1 and name != out else None

    for name in [n.name for n in nodes if n.op == "identity"]:
        n = get(name)
        nodes.remove(n)
        rename(n.name, n.inputs[0])
    for name in [n.name for n in nodes if n.op == "bn"]:
        n = get(name)
        prev = get(n.inputs[0])
        scale, shift = n.params["scale"], n.params["shift"]
        if prev.op in ("conv", "linear") and sole_consumer(prev.name) is n and not prev.attrs["relu"]:
            w = prev.params["weight"] * scale.reshape((-1,) + (1,) * (prev.params["weight"].ndim - 1))
            b = prev.params["bias"] * scale + shift
            nodes[nodes.index(prev)] = replace(prev, params={"weight": w, "bias": b})
            nodes.remove(n)
            rename(n.name, prev.name)
        else:
            c = int(n.attrs["channels"])
            attrs = dict(in_channels=c, out_channels=c, kernel=1, stride=1, padding=0, groups=c, relu=False,
                         from_bn=True)
            nodes[nodes.index(n)] = replace(n, op="conv", attrs=attrs,
                                            params={"weight": scale.reshape(c, 1, 1), "bias": shift})
    for name in [n.name for n in nodes if n.op == "relu"]:
        n = get(name)
        prev = get(n.inputs[0])
        if prev.op in ("conv", "linear", "add") and sole_consumer(prev.name) is n and not prev.attrs.get("relu"):
            nodes[nodes.index(prev)] = replace(prev, attrs={**prev.attrs, "relu": True})
            nodes.remove(n)
            rename(n.name, prev.name)
    return Graph(tuple(nodes), graph.input_name, out, graph.input_shape)
