"""The CLS_*_NPU classifiers: our own NPU-valid 1-D CNNs.

Names give the approximate parameter count for a 1-channel, 256-feature input
and 4 classes. Every model obeys the F28P55 NPU rules: the first conv has one
input channel and kernel <= 8, every conv has channel counts that are multiples
of 4 and kernel <= 7 with stride 1 or 2, max pools are <= 4 wide, and the
classifier sees >= 16 features. Strided convs and pools shrink the sequence
early, which keeps MACs (and NPU latency) low.
"""
from __future__ import annotations

from .registry import register_model
from .spec import Conv, GlobalAvgPool, MaxPool, ModelSpec


def _cnn(name: str, *layers) -> ModelSpec:
    return ModelSpec(tuple(layers), input_batchnorm=False, name=name)


@register_model("CLS_100_NPU", size_class="xs", description="2 convs of 4 channels, flatten to 16 features")
def cls_100() -> ModelSpec:
    return _cnn("CLS_100_NPU", Conv(4, 3, stride=2), MaxPool(4), Conv(4, 3, stride=2), MaxPool(4))


@register_model("CLS_500_NPU", size_class="xs", description="3 convs 4-8-16 (last pointwise), global average pool")
def cls_500() -> ModelSpec:
    return _cnn("CLS_500_NPU", Conv(4, 5, stride=2), MaxPool(2), Conv(8, 5, stride=2), Conv(16, 1), GlobalAvgPool())


@register_model("CLS_1k_NPU", size_class="s", description="3 convs 8-12-16, global average pool")
def cls_1k() -> ModelSpec:
    return _cnn("CLS_1k_NPU", Conv(8, 5, stride=2), MaxPool(2), Conv(12, 3, stride=2), Conv(16, 3),
                GlobalAvgPool())


@register_model("CLS_2k_NPU", size_class="s", description="4 convs 8-16-16-16, global average pool")
def cls_2k() -> ModelSpec:
    return _cnn("CLS_2k_NPU", Conv(8, 5, stride=2), MaxPool(2), Conv(16, 3, stride=2), Conv(16, 3),
                Conv(16, 3), GlobalAvgPool())


@register_model("CLS_4k_NPU", size_class="m", description="4 convs 8-16-24-32, global average pool")
def cls_4k() -> ModelSpec:
    return _cnn("CLS_4k_NPU", Conv(8, 7, stride=2), MaxPool(2), Conv(16, 5, stride=2), Conv(24, 3),
                Conv(32, 3, stride=2), GlobalAvgPool())


@register_model("CLS_6k_NPU", size_class="m", description="4 convs 8-16-32-32, global average pool")
def cls_6k() -> ModelSpec:
    return _cnn("CLS_6k_NPU", Conv(8, 7, stride=2), MaxPool(2), Conv(16, 5, stride=2), Conv(32, 3),
                Conv(32, 3, stride=2), GlobalAvgPool())


@register_model("CLS_13k_NPU", size_class="l", description="4 convs 16-32-48-48, global average pool")
def cls_13k() -> ModelSpec:
    return _cnn("CLS_13k_NPU", Conv(16, 7, stride=2), MaxPool(2), Conv(32, 3, stride=2), Conv(48, 3),
                Conv(48, 3, stride=2), GlobalAvgPool())


@register_model("CLS_20k_NPU", size_class="l", description="5 convs 16-32-48-64-64 (last pointwise), global average pool")
def cls_20k() -> ModelSpec:
    return _cnn("CLS_20k_NPU", Conv(16, 7, stride=2), MaxPool(2), Conv(32, 5, stride=2), Conv(48, 3),
                Conv(64, 3, stride=2), Conv(64, 1), GlobalAvgPool())
