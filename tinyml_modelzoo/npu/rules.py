"""The NPU rules as data: one ``Rule`` per line of TI's NPU guidelines.

Each rule names the IR op types it applies to (see
``tinyml_torchmodelopt.quantization.graph``), the layer roles it applies to,
and a check that returns ``(found, allowed, fix)`` for a violation or ``None``.
Thresholds come from ``DeviceInfo.npu_rules`` so another device is data too.

Roles of a conv: ``first`` (first conv of the network), ``depthwise``
(groups == in_channels > 1), ``grouped`` (1 < groups < in_channels), ``generic``.
Our choice for multi-variable input: a first conv with more than one input
channel is a generic conv whose input channels the code generator zero-pads up
to a multiple of 4 (zero weights), so its in_channels are not a violation.
A non-global ``AvgPool1d`` is accepted when it can be lowered to a fixed-weight
depthwise conv (kernel <= 7, an NPU stride); the generated code computes it as an
exact rounded average (see ``tinyml_torchmodelopt.quantization.int8``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from tinyml_torchmodelopt.quantization.graph import Node

from ..devices import NpuRules

Violation = Optional[tuple[str, str, str]]   # (found, allowed, fix)


@dataclass(frozen=True)
class Rule:
    name: str
    ops: tuple[str, ...]
    roles: tuple[str, ...]      # conv roles it applies to; ("*",) = all nodes of those ops
    description: str
    check: Callable[[Node, NpuRules], Violation]
    npu_only: bool = True


def conv_role(node: Node, first: bool) -> str:
    a = node.attrs
    if 1 < a["groups"] == a["in_channels"]:
        return "depthwise"
    if a["groups"] > 1:
        return "grouped"
    return "first" if first else "generic"


def _mult(n: int, m: int) -> bool:
    return n % m == 0


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _first_channels(n: Node, r: NpuRules) -> Violation:
    out = n.attrs["out_channels"]
    if _mult(out, r.channel_multiple):
        return None
    return (f"out_channels={out}", f"multiple of {r.channel_multiple}",
            f"use {_round_up(out, r.channel_multiple)} output channels")


def _first_kernel(n: Node, r: NpuRules) -> Violation:
    k, cin = n.attrs["kernel"], n.attrs["in_channels"]
    limit = r.first_conv_max_kernel if cin == 1 else r.conv_max_kernel
    return None if k <= limit else (f"kernel={k}", f"<= {limit}" + ("" if cin == 1 else " (multi-channel input)"),
                                    f"use a kernel of at most {limit}")


def _generic_channels(n: Node, r: NpuRules) -> Violation:
    cin, out = n.attrs["in_channels"], n.attrs["out_channels"]
    if _mult(cin, r.channel_multiple) and _mult(out, r.channel_multiple):
        return None
    return (f"in_channels={cin}, out_channels={out}", f"both multiples of {r.channel_multiple}",
            f"use {_round_up(cin, r.channel_multiple)} -> {_round_up(out, r.channel_multiple)} channels")


def _generic_kernel(n: Node, r: NpuRules) -> Violation:
    k = n.attrs["kernel"]
    return None if k <= r.conv_max_kernel else (f"kernel={k}", f"<= {r.conv_max_kernel}",
                                                f"use a kernel of at most {r.conv_max_kernel}")


def _stride(n: Node, r: NpuRules) -> Violation:
    s = n.attrs["stride"]
    allowed = ", ".join(map(str, r.conv_strides))
    return None if s in r.conv_strides else (f"stride={s}", allowed, "use stride 1 or 2 (add a pool to shrink more)")


def _depthwise(n: Node, r: NpuRules) -> Violation:
    k, cin, out = n.attrs["kernel"], n.attrs["in_channels"], n.attrs["out_channels"]
    if k <= r.depthwise_max_kernel and out == cin:
        return None
    return (f"kernel={k}, out_channels={out}", f"kernel <= {r.depthwise_max_kernel}, out_channels = in_channels",
            "use a smaller kernel / channel multiplier 1")


def _grouped(n: Node, r: NpuRules) -> Violation:
    return (f"groups={n.attrs['groups']} of {n.attrs['in_channels']} channels", "groups 1 or = in_channels",
            "use a generic or a depthwise conv")


def _maxpool(n: Node, r: NpuRules) -> Violation:
    k = n.attrs["kernel"]
    return None if k <= r.maxpool_max_kernel else (f"kernel={k}", f"<= {r.maxpool_max_kernel}",
                                                   f"use max pools of at most {r.maxpool_max_kernel}")


def _avgpool(n: Node, r: NpuRules) -> Violation:
    k, s = n.attrs["kernel"], n.attrs["stride"]
    if k <= r.avgpool_max_kernel and s in r.conv_strides:
        return None
    return (f"kernel={k}, stride={s}", f"kernel <= {r.avgpool_max_kernel}, stride in {r.conv_strides} "
            "(lowered to a fixed-weight depthwise conv)", "use a max pool or global average pool")


def _gap(n: Node, r: NpuRules) -> Violation:
    return None   # checked on the input length by the checker (needs the producer's shape)


def _fc(n: Node, r: NpuRules) -> Violation:
    f = n.attrs["in_features"]
    need = r.fc_min_in_features.get(8, 16)
    return None if f >= need else (f"in_features={f}", f">= {need} (8-bit)", f"feed at least {need} features")


def _unsupported(n: Node, r: NpuRules) -> Violation:
    return (str(n.attrs.get("what", n.module_type)), "a supported layer (docs/deployment.md)",
            "use Conv1d/BatchNorm1d/ReLU/pools/Linear/cat/+")


RULES: tuple[Rule, ...] = (
    Rule("first_conv_channels", ("conv",), ("first",), "first conv: output channels a multiple of 4", _first_channels),
    Rule("first_conv_kernel", ("conv",), ("first",), "first conv: kernel <= 8 (1 input channel)", _first_kernel),
    Rule("conv_channels", ("conv",), ("generic",), "generic/pointwise conv: in and out channels multiples of 4",
         _generic_channels),
    Rule("conv_kernel", ("conv",), ("generic",), "generic conv: kernel <= 7", _generic_kernel),
    Rule("conv_stride", ("conv",), ("first", "generic", "depthwise"), "conv stride 1 or 2", _stride),
    Rule("depthwise_conv", ("conv",), ("depthwise",), "depthwise conv: groups = in channels, kernel <= 7",
         _depthwise),
    Rule("grouped_conv", ("conv",), ("grouped",), "grouped conv other than depthwise is not supported", _grouped),
    Rule("maxpool_kernel", ("maxpool",), ("*",), "max pool kernel <= 4", _maxpool),
    Rule("avgpool_lowering", ("avgpool",), ("*",),
         "average pool other than global: only when lowered to a depthwise conv (kernel <= 7, stride 1/2)", _avgpool),
    Rule("gap_input_length", ("gap",), ("*",), "global average pool needs input length > 2", _gap),
    Rule("fc_in_features", ("linear",), ("*",), "fully connected: >= 16 input features (8-bit)", _fc),
    Rule("unsupported_op", ("unsupported",), ("*",), "only the listed layer types are supported", _unsupported,
         npu_only=False),
)
