"""The int8 model and its integer reference (numpy).

Number format (TINPU style): every tensor is int8 with a per-tensor power-of-two
scale, ``real = int * 2**-frac`` (``frac`` = fraction bits, may be negative).
Weights are int8 with their own ``frac``; biases int32 at the accumulator scale
``frac_in + frac_w``. Integer semantics, which the generated C reproduces bit
for bit:

- ``rshift_round(v, s)`` = ``(v + 2**(s-1)) >> s`` with an arithmetic (floor)
  shift, i.e. round half up; ``s == 0`` leaves ``v``.
- conv / linear: int32 ``acc = bias + sum(x * w)`` (zero padding), then
  ``y = sat(rshift_round(acc, shift))`` where ``sat`` clamps to [-128, 127], or to
  [0, 127] when a ReLU is fused.
- max pool: max over the window, padded positions ignored; scale unchanged.
- avg pool / global average pool: integer sum ``S`` over ``n`` elements (``n`` =
  valid elements when ``count_include_pad`` is false), ``y = floor((2S + n) / (2n))``
  (round half up); scale unchanged.
- cat: every input is brought to the coarsest input scale by ``rshift_round``.
- add: inputs are aligned to the finest input scale by left shifts, summed in
  int32, then requantised like a conv (ReLU may be fused).
- flatten: a view, channel-major (index ``c * L + l``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


@dataclass(frozen=True)
class QNode:
    name: str
    op: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    attrs: dict = field(default_factory=dict)
    frac: int = 0                      # fraction bits of the output
    shift: int = 0                     # requantisation right shift (conv, linear, add)
    in_shifts: tuple[int, ...] = ()    # cat: right shifts; add: left shifts, per input
    weight_frac: int = 0
    weight: np.ndarray | None = None   # int8, conv (O, I/groups, K), linear (O, I)
    bias: np.ndarray | None = None     # int32, (O,)


def rshift_round(v: np.ndarray, s: int) -> np.ndarray:
    return v if s <= 0 else (v + (1 << (s - 1))) >> s


def _sat(v: np.ndarray, relu: bool) -> np.ndarray:
    return np.clip(v, 0 if relu else INT8_MIN, INT8_MAX)


def _windows(xp: np.ndarray, kernel: int, stride: int, out_len: int) -> np.ndarray:
    idx = np.arange(out_len)[:, None] * stride + np.arange(kernel)[None, :]
    return xp[:, :, idx]                                   # (N, C, out_len, kernel)


def _out_len(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


def _conv(x: np.ndarray, n: QNode) -> np.ndarray:
    a = n.attrs
    k, s, p, g = a["kernel"], a["stride"], a["padding"], a["groups"]
    batch, cin, length = x.shape
    lout = _out_len(length, k, s, p)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p)))
    cols = _windows(xp, k, s, lout).reshape(batch, g, cin // g, lout, k)
    w = n.weight.astype(np.int64).reshape(g, -1, cin // g, k)
    acc = np.einsum("ngclk,gock->ngol", cols, w).reshape(batch, -1, lout)
    return acc + n.bias.astype(np.int64)[None, :, None]


def _pool(x: np.ndarray, n: QNode) -> np.ndarray:
    a = n.attrs
    k, s, p = a["kernel"], a["stride"], a["padding"]
    lout = _out_len(x.shape[2], k, s, p)
    if n.op == "maxpool":
        xp = np.pad(x, ((0, 0), (0, 0), (p, p)), constant_values=-(1 << 40))
        return _windows(xp, k, s, lout).max(axis=3)
    total = _windows(np.pad(x, ((0, 0), (0, 0), (p, p))), k, s, lout).sum(axis=3)
    if a["count_include_pad"]:
        count = np.full(lout, k, dtype=np.int64)
    else:
        valid = np.pad(np.ones((1, 1, x.shape[2]), dtype=np.int64), ((0, 0), (0, 0), (p, p)))
        count = _windows(valid, k, s, lout).sum(axis=3)[0, 0]
    return (2 * total + count) // (2 * count)


def run_nodes(nodes: tuple[QNode, ...], x: np.ndarray) -> dict[str, np.ndarray]:
    """Integer forward pass; returns every node's output (int64 arrays holding int8 values)."""
    env: dict[str, np.ndarray] = {}
    for n in nodes:
        ins = [env[i] for i in n.inputs]
        relu = bool(n.attrs.get("relu"))
        if n.op == "input":
            y = x.astype(np.int64)
        elif n.op == "conv":
            y = _sat(rshift_round(_conv(ins[0], n), n.shift), relu)
        elif n.op == "linear":
            acc = ins[0] @ n.weight.astype(np.int64).T + n.bias.astype(np.int64)
            y = _sat(rshift_round(acc, n.shift), relu)
        elif n.op in ("maxpool", "avgpool"):
            y = _pool(ins[0], n)
        elif n.op == "gap":
            length = ins[0].shape[2]
            y = (2 * ins[0].sum(axis=2, keepdims=True) + length) // (2 * length)
        elif n.op == "relu":
            y = np.maximum(ins[0], 0)
        elif n.op == "flatten":
            y = ins[0].reshape(ins[0].shape[0], -1)
        elif n.op == "cat":
            y = np.concatenate([_sat(rshift_round(v, s), False) for v, s in zip(ins, n.in_shifts)], axis=1)
        elif n.op == "add":
            acc = sum(v << s for v, s in zip(ins, n.in_shifts))
            y = _sat(rshift_round(acc, n.shift), relu)
        else:
            raise ValueError(f"{n.name}: no integer kernel for op {n.op!r}")
        env[n.name] = y
    return env


class QuantizedModel:
    """An int8 network: integer weights, shifts and the node list (topological order).

    ``run_int8`` is the bit-exact reference for the generated C code and the
    int8 ONNX model. Input ``(N, C, L)`` int8; output int8 logits ``(N, K)`` with
    ``real = int * 2**-output_frac``.
    """

    def __init__(self, nodes: tuple[QNode, ...], input_name: str, output_name: str,
                 input_shape: tuple[int, int]):
        self.nodes = tuple(nodes)
        self.input_name = input_name
        self.output_name = output_name
        self.input_shape = (int(input_shape[0]), int(input_shape[1]))
        index = {n.name: n for n in self.nodes}
        self.input_frac = index[input_name].frac
        self.output_frac = index[output_name].frac
        self.output_shape = index[output_name].shape

    def node(self, name: str) -> QNode:
        return next(n for n in self.nodes if n.name == name)

    @property
    def weight_bytes(self) -> int:
        """Bytes of int8 weights plus int32 biases."""
        return sum(n.weight.size + 4 * n.bias.size for n in self.nodes if n.weight is not None)

    def quantize_input(self, x_float: np.ndarray) -> np.ndarray:
        """``(N, C, L)`` float -> int8, ``floor(x * 2**input_frac + 0.5)`` saturated."""
        x = np.asarray(x_float, dtype=np.float64)
        return np.clip(np.floor(x * 2.0 ** self.input_frac + 0.5), INT8_MIN, INT8_MAX).astype(np.int8)

    def run_int8(self, x_int8: np.ndarray, all_outputs: bool = False):
        x = np.asarray(x_int8)
        if x.dtype != np.int8 or x.shape[1:] != self.input_shape:
            raise ValueError(f"expected int8 input (N, {self.input_shape[0]}, {self.input_shape[1]}), "
                             f"got {x.dtype} {x.shape}")
        env = run_nodes(self.nodes, x)
        if all_outputs:
            return {k: v.astype(np.int8) for k, v in env.items()}
        return env[self.output_name].astype(np.int8)

    def predict(self, x_float: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Dequantized logits of the int8 network, float32 ``(N, K)``, ``batch_size`` examples at a
        time (every node's int64 output is alive during a run: 4770 examples at once took 1 GB)."""
        x_int8 = self.quantize_input(x_float)
        starts = range(0, max(len(x_int8), 1), batch_size)
        y = np.concatenate([self.run_int8(x_int8[i:i + batch_size]) for i in starts])
        return (y.astype(np.float64) * 2.0 ** -self.output_frac).astype(np.float32)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` (arrays plus a JSON description)."""
        arrays = {}
        meta = {"input_name": self.input_name, "output_name": self.output_name,
                "input_shape": list(self.input_shape), "nodes": []}
        for i, n in enumerate(self.nodes):
            d = asdict(n)
            d.pop("weight"), d.pop("bias")
            if n.weight is not None:
                arrays[f"w{i}"], arrays[f"b{i}"] = n.weight, n.bias
            meta["nodes"].append(d)
        path = Path(path)
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | Path) -> "QuantizedModel":
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            nodes = []
            for i, d in enumerate(meta["nodes"]):
                d.update(inputs=tuple(d["inputs"]), shape=tuple(d["shape"]), in_shifts=tuple(d["in_shifts"]))
                if f"w{i}" in data:
                    d.update(weight=data[f"w{i}"].astype(np.int8), bias=data[f"b{i}"].astype(np.int32))
                nodes.append(QNode(**d))
        return cls(tuple(nodes), meta["input_name"], meta["output_name"], tuple(meta["input_shape"]))
