"""3-tap max / average pools on the last axis with hand-written backward passes (search supernet).

PyTorch's CPU max pool is fast only without indices and its average pool is
slow on (C, N, L) rows of a few hundred samples; here the backward passes (and
the average pool) are three shifted slices of the padded input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _pool_taps(xp: torch.Tensor, stride: int, L_out: int):
    span = stride * (L_out - 1) + 1
    return [xp[..., t:t + span:stride] for t in range(3)]


_WINDOW_COUNT: dict = {}


def _window_count(L: int, stride: int, like: torch.Tensor) -> torch.Tensor:
    """Inputs inside each 3-window: the divisor of count_include_pad=False average pooling."""
    key = (L, stride, like.dtype, like.device)
    if key not in _WINDOW_COUNT:
        starts = torch.arange(0, L, stride) - 1
        count = (starts + 3).clamp(max=L) - starts.clamp(min=0)
        _WINDOW_COUNT[key] = count.to(like.dtype).to(like.device)
    return _WINDOW_COUNT[key]


def pool3_forward(x: torch.Tensor, kind: str, stride: int) -> torch.Tensor:
    """3-tap ``'max'`` or ``'avg'`` pool (padding 1, count_include_pad=False) on the last axis."""
    if kind == 'max':
        return F.max_pool1d(x, 3, stride, 1)
    L = x.shape[-1]
    a, b, c = _pool_taps(F.pad(x, (1, 1)), stride, (L - 1) // stride + 1)
    return torch.add(a, b).add_(c).div_(_window_count(L, stride, x))


def pool3_backward(g: torch.Tensor, x: torch.Tensor, out: torch.Tensor, kind: str, stride: int) -> torch.Tensor:
    """Gradient of :func:`pool3_forward` w.r.t. x (max: to the first maximum of each window, as PyTorch)."""
    L, L_out = x.shape[-1], g.shape[-1]
    gxp = g.new_zeros(*x.shape[:-1], L + 2)
    slots = _pool_taps(gxp, stride, L_out)
    if kind == 'max':
        a, b, _ = _pool_taps(F.pad(x, (1, 1), value=float('-inf')), stride, L_out)
        first = a == out
        ga = torch.where(first, g, 0.0)
        gb = torch.where((b == out) & ~first, g, 0.0)
        slots[0].add_(ga)
        slots[1].add_(gb)
        slots[2].add_(g - ga - gb)
    else:
        gi = g / _window_count(L, stride, g)
        for slot in slots:
            slot.add_(gi)
    return gxp[..., 1:L + 1]
