"""Autograd kernels of the fast supernet on (C, N, L) tensors (CPU-friendly).

The search supernet keeps activations as (C, N, L) instead of (N, C, L): a conv
is then ONE matmul W (C_out, k*C_in) @ patches (k*C_in, N*L_out) instead of N
small batched ones, batch norm is per row, and the weighted sum of candidates
is one matmul. Every function here is checked against the op-by-op reference
(``SearchNetwork.forward(x, naive=True)``) in the tests, outputs and gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# -- "CNL" layout ----------------------------------------------------------------
# The fast path keeps activations as (C, N, L) instead of (N, C, L): a conv is
# then ONE matmul W (C_out, C_in*k) @ patches (C_in*k, N*L_out) instead of N
# small batched ones, batch norm is per row, and the weighted sum of the
# candidates of all outgoing edges of a state is ONE matmul (edges x candidates)
# @ (candidates x C*N*L).

def _patches(x: torch.Tensor, k: int, stride: int, padding: int) -> torch.Tensor:
    """(C, N, L) -> (k*C, N*L_out) im2col patches, rows ordered (tap, channel).

    Tap-major rows make the patches of a centred smaller kernel a contiguous
    row slice, so fused kernels of different sizes share one patch matrix.
    """
    C, N, L = x.shape
    if k == 1 and padding == 0:
        return (x[:, :, ::stride] if stride > 1 else x).reshape(C, -1)
    xp = F.pad(x, (padding, padding)) if padding else x
    cols = xp.unfold(2, k, stride)  # (C, N, L_out, k) view
    return cols.permute(3, 0, 1, 2).reshape(k * C, -1)


class _ConvCNL(torch.autograd.Function):
    """Conv1d without bias on (C, N, L) tensors as im2col + matmuls (fwd and bwd).

    On CPU, oneDNN runs the thin 1-D convs of a tiny-ML supernet (few channels,
    long series) poorly; its backward costs 5-10x its forward. Here one patch
    matrix is built per call and each block of output channels that shares a
    kernel size ``k`` (centred in the stored ``kmax``-tap weight) is one matmul
    on its row slice of the patches: no MACs are spent on the zero taps of the
    fused 3/5/7 kernels. Gradients: matmuls plus kmax shifted adds (col2im).
    """

    @staticmethod
    def forward(ctx, x, weight, blocks, stride: int, padding: int):
        Co, C, kmax = weight.shape
        cols = _patches(x, kmax, stride, padding)
        out = cols.new_empty(Co, cols.shape[1])
        wks = []
        for r0, r1, k in blocks:
            lo = kmax // 2 - k // 2
            wk = weight[r0:r1, :, lo:lo + k].permute(0, 2, 1).reshape(r1 - r0, k * C)
            torch.mm(wk, cols[lo * C:(lo + k) * C], out=out[r0:r1])
            wks.append(wk)
        ctx.save_for_backward(x, *wks)  # patches are recomputed in backward: less memory
        ctx.conf = (stride, padding, x.shape, weight.shape, blocks)
        return out.view(Co, x.shape[1], -1)

    @staticmethod
    def backward(ctx, grad_out):
        x, *wks = ctx.saved_tensors
        s, p, (C, N, L), (Co, _, kmax), blocks = ctx.conf
        Lo = grad_out.shape[-1]
        g = grad_out.reshape(Co, N * Lo)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            gcols = g.new_zeros(kmax * C, N * Lo)
            for (r0, r1, k), wk in zip(blocks, wks):
                lo = kmax // 2 - k // 2
                gcols[lo * C:(lo + k) * C].addmm_(wk.t(), g[r0:r1])
            if kmax == 1 and p == 0 and s == 1:
                grad_x = gcols.view(C, N, L)
            else:
                gcols = gcols.view(kmax, C, N, Lo)
                gxp = g.new_zeros(C, N, L + 2 * p)
                for t in range(kmax):
                    gxp[:, :, t:t + s * (Lo - 1) + 1:s] += gcols[t]
                grad_x = gxp[:, :, p:p + L]
        if ctx.needs_input_grad[1]:
            cols = _patches(x, kmax, s, p)
            grad_w = g.new_zeros(Co, C, kmax)
            for r0, r1, k in blocks:
                lo = kmax // 2 - k // 2
                gk = torch.mm(g[r0:r1], cols[lo * C:(lo + k) * C].t())  # (rows, k*C)
                grad_w[r0:r1, :, lo:lo + k] = gk.view(r1 - r0, k, C).permute(0, 2, 1)
        return grad_x, grad_w, None, None, None


def conv_cnl(x: torch.Tensor, weight: torch.Tensor, blocks=None, stride: int = 1,
             padding: int = 0) -> torch.Tensor:
    """Conv1d (no bias) of a (C, N, L) tensor; returns (C_out, N, L_out).

    ``blocks``: ((row_start, row_end, k), ...) output-channel blocks whose kernel
    is the centred k taps of ``weight`` (default: one block, all taps).
    """
    if blocks is None:
        blocks = ((0, weight.shape[0], weight.shape[2]),)
    return _ConvCNL.apply(x, weight, tuple(blocks), stride, padding)


class _BNReLUMix(torch.autograd.Function):
    """contrib = W @ relu(batchnorm(x)) with x as G groups of C channels, in one node.

    x: (G*C, N*L) conv output; W: (E, G) mixing weights; returns (E, C*N*L).
    Batch norm uses batch statistics without affine terms (as the search BN).
    Only x is saved (normalised and ReLU outputs are recomputed in backward):
    one activation per candidate instead of two (BN input and ReLU output).
    """

    @staticmethod
    def forward(ctx, x, W, relu: bool, eps: float = 1e-5):
        R = x.shape[0]
        y, mean, invstd = torch.native_batch_norm(x.view(1, R, -1), None, None, None, None, True, 0.0, eps)
        r = y.clamp_min_(0) if relu else y
        ctx.save_for_backward(x, mean, invstd, W)
        ctx.relu, ctx.eps = relu, eps
        return torch.mm(W, r.view(W.shape[1], -1))

    @staticmethod
    def backward(ctx, gc):
        x, mean, invstd, W = ctx.saved_tensors
        R = x.shape[0]
        G = W.shape[1]
        y = (x - mean[:, None]) * invstd[:, None]  # recomputed normalised input
        r = y.clamp_min(0) if ctx.relu else y
        grad_W = torch.mm(gc, r.view(G, -1).t()) if ctx.needs_input_grad[1] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            g = torch.mm(W.t(), gc).view_as(x)
            if ctx.relu:
                g = torch.ops.aten.threshold_backward(g, y, 0)
            grad_x = torch.ops.aten.native_batch_norm_backward(g.view(1, R, -1), x.view(1, R, -1), None, None, None,
                                                      mean, invstd, True, ctx.eps,
                                                      [True, False, False])[0].view_as(x)
        return grad_x, grad_W, None, None


def bn_cnl(x: torch.Tensor, bn: nn.BatchNorm1d | None = None) -> torch.Tensor:
    """Batch norm of a (C, N, L) tensor (statistics per channel over N*L, as BatchNorm1d)."""
    C = x.shape[0]
    flat = x.reshape(1, C, -1)
    if bn is None:
        out = F.batch_norm(flat, None, None, training=True, momentum=0.0, eps=1e-5)
    else:
        out = F.batch_norm(flat, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                           bn.training or not bn.track_running_stats, bn.momentum or 0.0, bn.eps)
    return out.view_as(x)


def conv_bn_relu_cnl(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Apply a ConvBNReLU (or stem) nn.Sequential to a (C, N, L) tensor."""
    for m in seq:
        if isinstance(m, nn.Conv1d):
            x = conv_cnl(x, m.weight, None, m.stride[0], m.padding[0])
        elif isinstance(m, nn.BatchNorm1d):
            x = bn_cnl(x, m)
        elif isinstance(m, nn.ReLU):
            x = F.relu(x)
        elif not isinstance(m, nn.Flatten):
            raise TypeError(f"unsupported layer {m}")
    return x


def bn_relu_mix(x: torch.Tensor, W: torch.Tensor, relu: bool) -> torch.Tensor:
    """``W (E, G) @ relu(batchnorm(x))`` for x (G*C, N*L) -> (E, C*N*L); see :class:`_BNReLUMix`."""
    return _BNReLUMix.apply(x, W, relu)
