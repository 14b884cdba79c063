"""Primitive operations of the search space: ``OPS[name](C, stride, affine)``.

All ops map ``(N, C, L)`` to ``(N, C, ceil(L / stride))`` and are built only from
standard layers (Conv1d, BatchNorm1d, ReLU, pools, Identity) so that a final
network stays traceable by ``torch.fx`` and maps onto the NPU (conv+bn+relu fuse).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv1d -> BatchNorm1d -> ReLU ('same' padding, no conv bias)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, affine: bool = True, relu: bool = True):
        layers = [nn.Conv1d(C_in, C_out, kernel_size, stride, padding=dilation * (kernel_size // 2),
                            dilation=dilation, bias=False),
                  nn.BatchNorm1d(C_out, affine=affine)]
        if relu:
            layers.append(nn.ReLU(inplace=False))
        super().__init__(*layers)


class SepConv(nn.Sequential):
    """Depthwise kx1 (optionally dilated) -> pointwise 1x1 -> BN -> ReLU."""

    def __init__(self, C: int, kernel_size: int, stride: int, dilation: int = 1, affine: bool = True):
        super().__init__(
            nn.Conv1d(C, C, kernel_size, stride, padding=dilation * (kernel_size // 2),
                      dilation=dilation, groups=C, bias=False),
            nn.Conv1d(C, C, 1, bias=False),
            nn.BatchNorm1d(C, affine=affine),
            nn.ReLU(inplace=False),
        )


class FactorizedReduce(nn.Sequential):
    """Stride-2 1x1 conv -> BN: the reduction-cell 'skip_connect'.

    DARTS concatenates two 1x1 convs on even/odd phases (``x[:, :, 1:]``); the
    slice breaks for odd lengths and for C=1, and is not an NPU layer, so one
    stride-2 pointwise conv (NPU-valid) is used instead.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__(nn.Conv1d(C_in, C_out, 1, stride=2, bias=False),
                         nn.BatchNorm1d(C_out, affine=affine))


class Zero(nn.Module):
    """'none': the edge contributes nothing (never present in a derived model)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride] * 0.0


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine)


OpFactory = Callable[[int, int, bool], nn.Module]

OPS: dict[str, OpFactory] = {
    'none': lambda C, stride, affine: Zero(stride),
    'avg_pool_3x1': lambda C, stride, affine: nn.AvgPool1d(3, stride, padding=1, count_include_pad=False),
    'max_pool_3x1': lambda C, stride, affine: nn.MaxPool1d(3, stride, padding=1),
    'skip_connect': _skip,
    'conv_bn_relu_3x1': lambda C, stride, affine: ConvBNReLU(C, C, 3, stride, affine=affine),
    'conv_bn_relu_5x1': lambda C, stride, affine: ConvBNReLU(C, C, 5, stride, affine=affine),
    'conv_bn_relu_7x1': lambda C, stride, affine: ConvBNReLU(C, C, 7, stride, affine=affine),
    'sep_conv_3x1': lambda C, stride, affine: SepConv(C, 3, stride, affine=affine),
    'sep_conv_5x1': lambda C, stride, affine: SepConv(C, 5, stride, affine=affine),
    'sep_conv_7x1': lambda C, stride, affine: SepConv(C, 7, stride, affine=affine),
    'dil_conv_3x1': lambda C, stride, affine: SepConv(C, 3, stride, dilation=2, affine=affine),
    'dil_conv_5x1': lambda C, stride, affine: SepConv(C, 5, stride, dilation=2, affine=affine),
}

# Primitives that the fast supernet evaluates in batched form (see model_search_cnn): full convs, and
# separable convs (depthwise then pointwise, no nonlinearity between: one conv whose weight is
# pointwise[o, c] * depthwise[c, t]).
CONV_KERNELS = {'conv_bn_relu_3x1': 3, 'conv_bn_relu_5x1': 5, 'conv_bn_relu_7x1': 7}
SEP_CONV_KERNELS = {'sep_conv_3x1': 3, 'sep_conv_5x1': 5, 'sep_conv_7x1': 7}
FUSED_CONV_KERNELS = {**CONV_KERNELS, **SEP_CONV_KERNELS}
PARAMETER_FREE = ('none', 'avg_pool_3x1', 'max_pool_3x1', 'skip_connect')


def check_primitives(primitives) -> list[str]:
    """Validate a primitive list against ``OPS`` (raises ValueError listing the choices)."""
    primitives = list(primitives)
    unknown = [p for p in primitives if p not in OPS]
    if unknown:
        raise ValueError(f"unknown primitives {unknown}; choose from {sorted(OPS)}")
    if len(set(primitives)) != len(primitives):
        raise ValueError(f"duplicate primitives in {primitives}")
    if not [p for p in primitives if p != 'none']:
        raise ValueError("primitives need at least one op besides 'none'")
    return primitives
