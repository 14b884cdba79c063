"""Declarative layer specs: the one representation of a sequential 1-D CNN.

Zoo models, multi-trial NAS candidates and ``best_model_spec.yaml`` files all
describe a network as a ``ModelSpec``; ``build_model`` turns it into an
``nn.Sequential`` of standard PyTorch layers with readable names (``conv1``,
``bn1``, ``relu1``, ``pool2``, ``fc``) that the NPU checker and the compiler
report against. Tensors are laid out ``(N, C, L)``.

The classifier (``Linear`` to ``num_classes``) is appended by ``build_model``;
a spec describes everything before it, so one spec fits any class count.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Literal, Union

from torch import nn


@dataclass(frozen=True)
class Conv:
    """Conv1d (+ BatchNorm1d + ReLU). ``padding=None`` means 'same' (kernel // 2)."""
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int | None = None
    groups: int = 1
    bn: bool = True
    relu: bool = True
    type: Literal["conv"] = "conv"


@dataclass(frozen=True)
class MaxPool:
    kernel: int
    stride: int | None = None  # None: equal to kernel
    type: Literal["maxpool"] = "maxpool"


@dataclass(frozen=True)
class AvgPool:
    kernel: int
    stride: int | None = None
    type: Literal["avgpool"] = "avgpool"


@dataclass(frozen=True)
class GlobalAvgPool:
    type: Literal["gap"] = "gap"


@dataclass(frozen=True)
class Linear:
    """Hidden fully connected layer (+ ReLU). Flattens (C, L) input first."""
    out_features: int
    relu: bool = True
    type: Literal["fc"] = "fc"


Layer = Union[Conv, MaxPool, AvgPool, GlobalAvgPool, Linear]
LAYER_TYPES: dict[str, type] = {"conv": Conv, "maxpool": MaxPool, "avgpool": AvgPool,
                                "gap": GlobalAvgPool, "fc": Linear}


@dataclass(frozen=True)
class ModelSpec:
    """A sequential network: ``layers`` then a Linear classifier.

    ``input_batchnorm`` puts a BatchNorm1d on the raw input (as TI's models do).
    """
    layers: tuple[Layer, ...]
    input_batchnorm: bool = False
    name: str = "custom"

    def to_dict(self) -> dict:
        return {"kind": "sequential", "name": self.name, "input_batchnorm": self.input_batchnorm,
                "layers": [asdict(layer) for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        layers = []
        for index, item in enumerate(data.get("layers") or []):
            item = dict(item)
            kind = item.pop("type", None)
            if kind not in LAYER_TYPES:
                raise ValueError(f"layers[{index}]: unknown layer type {kind!r}; "
                                 f"expected one of {', '.join(LAYER_TYPES)}")
            try:
                layers.append(LAYER_TYPES[kind](**item))
            except TypeError as exc:
                raise ValueError(f"layers[{index}] ({kind}): {exc}") from None
        return cls(tuple(layers), bool(data.get("input_batchnorm", False)), str(data.get("name", "custom")))


def describe(spec: ModelSpec) -> str:
    """Short one-line architecture string, e.g. ``conv(8,k5,s2) maxpool(2) gap fc(3)``."""
    parts = []
    for layer in spec.layers:
        if isinstance(layer, Conv):
            extra = f",s{layer.stride}" if layer.stride != 1 else ""
            extra += f",g{layer.groups}" if layer.groups != 1 else ""
            parts.append(f"conv({layer.out_channels},k{layer.kernel}{extra})")
        elif isinstance(layer, (MaxPool, AvgPool)):
            parts.append(f"{layer.type}({layer.kernel})")
        elif isinstance(layer, GlobalAvgPool):
            parts.append("gap")
        else:
            parts.append(f"fc({layer.out_features})")
    return " ".join(parts)


def fit_to_length(spec: ModelSpec, in_length: int, min_gap_length: int = 3, min_fc_features: int = 16) -> ModelSpec:
    """``spec`` with the downsampling it cannot afford on ``in_length`` samples removed.

    Zoo models are drawn for a few hundred samples; on short windows their strided
    convs and pools would leave too few samples for the head: the F28P55 NPU needs
    more than 2 for a global average pool and at least 16 features for a fully
    connected layer after flattening. Walking the layers up to the head, a stride
    that would go below that becomes 1 and such a pool is dropped; everything
    else stays.
    """
    head = next((i for i, layer in enumerate(spec.layers) if isinstance(layer, (GlobalAvgPool, Linear))),
                len(spec.layers))
    convs = [layer for layer in spec.layers[:head] if isinstance(layer, Conv)]
    if head < len(spec.layers) and isinstance(spec.layers[head], GlobalAvgPool):
        min_length = min_gap_length
    else:
        min_length = -(-min_fc_features // convs[-1].out_channels) if convs else 1
    layers, length = [], in_length
    for layer in spec.layers[:head]:
        if isinstance(layer, Conv):
            padding = layer.kernel // 2 if layer.padding is None else layer.padding
            if layer.stride > 1 and (length + 2 * padding - layer.kernel) // layer.stride + 1 < min_length:
                layer = replace(layer, stride=1)
            length = (length + 2 * padding - layer.kernel) // layer.stride + 1
        elif isinstance(layer, (MaxPool, AvgPool)):
            out = (length - layer.kernel) // (layer.stride or layer.kernel) + 1
            if out < min_length:
                continue
            length = out
        layers.append(layer)
    return replace(spec, layers=tuple(layers) + spec.layers[head:])


def build_model(spec: ModelSpec, in_channels: int, in_length: int, num_classes: int) -> nn.Sequential:
    """Build ``spec`` for inputs ``(N, in_channels, in_length)``; raises ValueError when
    a layer would shrink the sequence below length 1."""
    modules: "OrderedDict[str, nn.Module]" = OrderedDict()
    channels, length, flat = in_channels, in_length, False
    if spec.input_batchnorm:
        modules["input_bn"] = nn.BatchNorm1d(in_channels)
    for index, layer in enumerate(spec.layers, start=1):
        if isinstance(layer, Conv):
            _require(not flat, index, "a conv cannot follow a flattening layer")
            padding = layer.kernel // 2 if layer.padding is None else layer.padding
            modules[f"conv{index}"] = nn.Conv1d(channels, layer.out_channels, layer.kernel, layer.stride,
                                                padding, groups=layer.groups, bias=not layer.bn)
            if layer.bn:
                modules[f"bn{index}"] = nn.BatchNorm1d(layer.out_channels)
            if layer.relu:
                modules[f"relu{index}"] = nn.ReLU()
            channels = layer.out_channels
            length = (length + 2 * padding - layer.kernel) // layer.stride + 1
        elif isinstance(layer, (MaxPool, AvgPool)):
            _require(not flat, index, "a pool cannot follow a flattening layer")
            stride = layer.stride or layer.kernel
            pool = nn.MaxPool1d if isinstance(layer, MaxPool) else nn.AvgPool1d
            modules[f"pool{index}"] = pool(layer.kernel, stride)
            length = (length - layer.kernel) // stride + 1
        elif isinstance(layer, GlobalAvgPool):
            modules[f"gap{index}"] = nn.AdaptiveAvgPool1d(1)
            modules[f"flatten{index}"] = nn.Flatten()
            length, flat = 1, True
        elif isinstance(layer, Linear):
            if not flat:
                modules[f"flatten{index}"] = nn.Flatten()
                channels, length, flat = channels * length, 1, True
            modules[f"fc{index}"] = nn.Linear(channels, layer.out_features)
            if layer.relu:
                modules[f"relu{index}"] = nn.ReLU()
            channels = layer.out_features
        _require(length >= 1, index, f"sequence length shrinks below 1 for input length {in_length}")
    if not flat:
        modules["flatten"] = nn.Flatten()
        channels *= length
    modules["fc"] = nn.Linear(channels, num_classes)
    return nn.Sequential(modules)


def _require(condition: bool, index: int, message: str) -> None:
    if not condition:
        raise ValueError(f"layer {index}: {message}")
