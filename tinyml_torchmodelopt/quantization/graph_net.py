"""Run a ``Graph`` in float with PyTorch, optionally with fake quantization.

``GraphNet`` owns real ``nn.Conv1d`` / ``nn.Linear`` leaves, so
``tinyml_torchmodelopt.profile.profile_model`` counts it like any model, and its
parameters train (QAT). Layout ``(N, C, L)``.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from .graph import Graph


def fake_quant(x: torch.Tensor, frac: int, bits: int = 8) -> torch.Tensor:
    """Round half up to the grid ``2**-frac`` and saturate; straight-through gradient.

    Half up, as the integer reference and the NPU round (``rshift_round``), not
    ``torch.round``'s half to even: adds and concats requantise by a bit or two,
    so a quarter to a half of their values are ties, and a model fine-tuned or
    corrected against the other rounding meets a bias on the device.
    """
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = torch.clamp(torch.floor(x * 2.0 ** frac + 0.5), lo, hi) * 2.0 ** -frac
    return x + (q - x).detach()


def weight_frac(w: torch.Tensor | float, bits: int = 8) -> int:
    """Largest power-of-two fraction bits that keep ``max|w|`` inside the int range."""
    import math
    m = float(w.detach().abs().max()) if isinstance(w, torch.Tensor) else abs(float(w))
    if m < 1e-12:
        return 0
    return int(math.floor(math.log2((2 ** (bits - 1) - 1) / m)))


class GraphNet(nn.Module):
    """Executes ``graph`` (traced or folded; no unsupported nodes) with one standard
    leaf module per node, so the net is itself traceable by ``trace_graph``."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.layers = nn.ModuleDict()
        self._keys: dict[str, str] = {}
        for i, n in enumerate(graph.nodes):
            m = _leaf(n)
            if m is None:
                continue
            key = re.sub(r"\W", "_", n.name).strip("_") or f"n{i}"
            key = key if key not in self.layers and not hasattr(nn.Module, key) else f"{key}_{i}"
            self.layers[key] = m
            self._keys[n.name] = key
        # act_frac: name -> fraction bits of that node's output; None = float
        self.act_frac: dict[str, int] | None = None
        self.record: dict[str, float] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x)[self.graph.output_name]

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every node's output for input ``x`` (float, or fake-quantized with ``act_frac``)."""
        env: dict[str, torch.Tensor] = {}
        for n in self.graph.nodes:
            env[n.name] = self.node_output(n, env, x)
        return env

    def node_output(self, n, env: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The output of node ``n`` of the graph from the outputs of its inputs in ``env``
        (``x``: the graph's input)."""
        fq = self.act_frac
        ins = [env[i] for i in n.inputs]
        a = n.attrs
        if n.op == "input":
            y = x
        elif n.op in ("conv", "linear"):
            m = self.layers[self._keys[n.name]]
            if fq is None:
                y = m(ins[0])
            else:
                fw = weight_frac(m.weight)
                w = fake_quant(m.weight, fw)
                b = fake_quant(m.bias, fq[n.inputs[0]] + fw, bits=32)
                y = F.conv1d(ins[0], w, b, m.stride, m.padding, groups=m.groups) if n.op == "conv" \
                    else F.linear(ins[0], w, b)
            y = F.relu(y) if a.get("relu") else y
        elif n.name in self._keys:
            y = self.layers[self._keys[n.name]](ins[0])
        elif n.op == "cat":
            y = torch.cat(ins, dim=1)
        elif n.op == "add":
            y = ins[0] + ins[1]
            y = F.relu(y) if a.get("relu") else y
        elif n.op == "identity":
            y = ins[0]
        else:
            raise ValueError(f"{n.name}: cannot run op {n.op!r} ({n.attrs.get('what', '')})")
        if fq is not None and n.name in fq:
            y = fake_quant(y, fq[n.name])
        if self.record is not None:
            self.record[n.name] = max(self.record.get(n.name, 0.0), float(y.detach().abs().max()))
        return y

    def train(self, mode: bool = True) -> "GraphNet":
        super().train(mode)
        for m in self.layers.values():   # BN leaves hold fixed affine terms, never batch statistics
            if isinstance(m, nn.BatchNorm1d):
                m.eval()
        return self

    def calibrate(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
        """Max |value| of every node output over ``x`` (float, no fake quant)."""
        saved, self.act_frac, self.record = self.act_frac, None, {}
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for i in range(0, len(x), batch_size):
                    self(x[i:i + batch_size])
            return dict(self.record)
        finally:
            self.act_frac, self.record = saved, None
            self.train(was_training)


_BN_EPS = 2.0 ** -24


def _leaf(n) -> nn.Module | None:
    a = n.attrs
    if n.op == "conv":
        m = nn.Conv1d(a["in_channels"], a["out_channels"], a["kernel"], a["stride"], a["padding"], groups=a["groups"])
    elif n.op == "linear":
        m = nn.Linear(a["in_features"], a["out_features"])
    elif n.op == "bn":
        # y = x * scale + shift: running mean 0 and var + eps exactly 1 (some PyTorch releases
        # reject eps = 0; 1 - 2**-24 + 2**-24 is exactly 1 in float32 and float64 alike)
        m = nn.BatchNorm1d(a["channels"], eps=_BN_EPS).eval()
        with torch.no_grad():
            m.running_var.fill_(1.0 - _BN_EPS)
            m.weight.copy_(torch.as_tensor(n.params["scale"], dtype=torch.float32))
            m.bias.copy_(torch.as_tensor(n.params["shift"], dtype=torch.float32))
        return m
    elif n.op == "relu":
        return nn.ReLU()
    elif n.op == "maxpool":
        return nn.MaxPool1d(a["kernel"], a["stride"], a["padding"])
    elif n.op == "avgpool":
        return nn.AvgPool1d(a["kernel"], a["stride"], a["padding"], count_include_pad=a["count_include_pad"])
    elif n.op == "gap":
        return nn.AdaptiveAvgPool1d(1)
    elif n.op == "flatten":
        return nn.Flatten()
    else:
        return None
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(n.params["weight"], dtype=torch.float32))
        m.bias.copy_(torch.as_tensor(n.params["bias"], dtype=torch.float32))
    return m
