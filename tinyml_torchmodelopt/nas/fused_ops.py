"""Autograd kernels of the fast supernet on (C, N, L) tensors (CPU-friendly).

The search supernet keeps activations as (C, N, L) instead of (N, C, L): a conv
is then ONE matmul W (C_out, k*C_in) @ patches (k*C_in, N*L_out) instead of N
small batched ones, batch norm is per row, and the weighted sum of candidates
is one matmul. Every function here is checked against the op-by-op reference
(``SearchNetwork.forward(x, naive=True)``) in the tests, outputs and gradients.

Joint passes (``split``). A first-order DARTS iteration needs grad_w L_train and
grad_alpha L_valid. Both come from ONE forward/backward over the concatenated
batch [train; valid] when

* batch norm keeps separate statistics for the two halves (exactly what two
  separate passes would compute), and
* parameter gradients are taken only from the train columns and mixing-weight
  (alpha) gradients only from the valid columns.

``split`` (the number of leading train samples, or None for an ordinary pass)
tells each kernel so. Activation gradients always flow through both halves.
"""
from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch import nn

from . import native


_EPS = 1e-5


# -- scratch buffers ---------------------------------------------------------------
# The supernet's largest temporaries (im2col patches, recomputed conv outputs and their
# gradients, 0.1-2 MB each) live within one kernel call. Allocated afresh, hundreds of
# them per pass in sizes that differ from state to state interleave with the saved
# activations and fragment glibc's heap: preset l's unrolled search grew to ~620 MB RSS
# for ~390 MB of live tensors. One reused buffer per role keeps them out of the heap.
_SCRATCH = threading.local()


def scratch(role: str, shape, like: torch.Tensor) -> torch.Tensor:
    """A (shape) tensor of ``like``'s dtype for a temporary of ``role``; its contents are undefined.

    The buffer is reused by the next call with the same role (in this thread), so the
    result must not outlive the kernel call that asked for it.
    """
    views = _SCRATCH.__dict__.setdefault('views', {})
    key = (role, like.dtype, like.device, shape)
    view = views.get(key)  # the same shapes recur every step: their views are kept too
    if view is not None:
        return view
    buffers = _SCRATCH.__dict__.setdefault('buffers', {})
    n = math.prod(shape)
    buf = buffers.get(key[:3])
    if buf is None or buf.numel() < n:
        buf = buffers[key[:3]] = like.new_empty(n)
        for old in [k for k in views if k[:3] == key[:3]]:  # views of the replaced buffer
            del views[old]
    view = views[key] = buf[:n].view(shape)
    return view


def release_scratch() -> None:
    """Free this thread's scratch buffers (they are rebuilt on demand)."""
    _SCRATCH.__dict__.pop('buffers', None)
    _SCRATCH.__dict__.pop('views', None)


# -- "CNL" layout ----------------------------------------------------------------

def _patches(x: torch.Tensor, k: int, stride: int, padding: int, n: int | None = None,
             temporary: bool = False) -> torch.Tensor:
    """(C, N, L) -> (k*C, n*L_out) im2col patches of the first n samples (default all), rows (tap, channel).

    Tap-major rows make the patches of a centred smaller kernel a contiguous
    row slice, so fused kernels of different sizes share one patch matrix.
    ``temporary``: the patches die within the caller's kernel call (a :func:`scratch` buffer).
    """
    C, N, L = x.shape
    n = N if n is None else n
    if k == 1 and padding == 0 and stride == 1:  # pointwise: the patches are x itself
        return x.reshape(C, N * L)[:, :n * L]
    K = native.kernels()
    if K is not None and K.supports(x) and x.is_contiguous():
        Lo = (L + 2 * padding - k) // stride + 1
        out = scratch('patches', (k * C, n * Lo), x) if temporary else x.new_empty(k * C, n * Lo)
        K.call('im2col', x.dtype, x, C, N, n, L, k, stride, padding, Lo, out)
        return out
    x = x[:, :n]
    if k == 1 and padding == 0:
        return (x[:, :, ::stride] if stride > 1 else x).reshape(C, -1)
    xp = F.pad(x, (padding, padding)) if padding else x
    cols = xp.unfold(2, k, stride)  # (C, n, L_out, k) view
    return cols.permute(3, 0, 1, 2).reshape(k * C, -1)


def _mm_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, accumulate: bool = False) -> None:
    """out (+)= a @ b with the compiled thin-matrix kernel when it applies (``native/gemm.h``), else PyTorch's.

    The convs' products are thin (tens of rows, thousands of columns), a shape BLAS threads
    poorly; ``a`` may be any strided view, ``b`` and ``out`` need contiguous rows.
    """
    K = native.kernels()
    if K is not None and K.supports(out, a, b) and b.stride(1) == 1 and out.stride(1) == 1:
        K.call('gemm', a.dtype, a, a.stride(0), a.stride(1), a.shape[0], a.shape[1], b, b.stride(0), b.shape[1],
               out, out.stride(0), int(accumulate))
    elif accumulate:
        out.addmm_(a, b)
    else:
        torch.mm(a, b, out=out)


def _mm_nt_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """out = a @ b.t() for a (M, P) and b (N, P) with long rows P: the weight gradients of the convs.

    The compiled kernel (``gemm_nt`` in ``native/gemm.h``) needs rows contiguous along P
    (column slices of larger matrices are fine); PyTorch's product otherwise.
    """
    K = native.kernels()
    if K is not None and K.supports(out, a, b) and a.stride(1) == 1 and b.stride(1) == 1 and out.stride(1) == 1:
        K.call('gemm_nt', a.dtype, a, a.stride(0), a.shape[0], b, b.stride(0), b.shape[0], a.shape[1],
               out, out.stride(0), 0)
    else:
        torch.mm(a, b.t(), out=out)


_BLOCK_TABLES: dict = {}


def _block_table(blocks, largest_first: bool = False) -> torch.Tensor:
    """The conv blocks (r0, r1, k) as an int64 table for the compiled ``conv_blocks_*`` kernels (cached)."""
    key = (tuple(blocks), largest_first)
    if key not in _BLOCK_TABLES:
        rows = sorted(blocks, key=lambda b: -b[2]) if largest_first else list(blocks)
        _BLOCK_TABLES[key] = torch.tensor(rows, dtype=torch.int64).reshape(-1)
    return _BLOCK_TABLES[key]


def _rows_native(K, *tensors: torch.Tensor) -> bool:
    """True when the compiled kernels take these matrices: supported dtype, contiguous rows."""
    return K is not None and K.supports(*tensors) and all(t.stride(1) == 1 for t in tensors)


def _col2im(gcols: torch.Tensor, x_shape, k: int, stride: int, padding: int,
            into: torch.Tensor | None = None) -> torch.Tensor:
    """Adjoint of :func:`_patches` (all samples): (k*C, N*L_out) -> (C, N, L), added to ``into`` if given."""
    C, N, L = x_shape
    Lo = gcols.shape[1] // N
    K = native.kernels()
    if K is not None and K.supports(gcols) and (into is None or into.is_contiguous()):
        gx = gcols.new_zeros(C, N, L) if into is None else into
        K.call('col2im', gcols.dtype, gcols.contiguous(), C, N, L, k, stride, padding, Lo, gx)
        return gx
    if k == 1 and padding == 0 and stride == 1:
        gx = gcols.view(C, N, L) if into is not None else gcols.view(C, N, L).clone()  # gcols may be scratch
    else:
        gcols = gcols.view(k, C, N, Lo)
        gxp = gcols.new_zeros(C, N, L + 2 * padding)
        for t in range(k):
            gxp[:, :, t:t + stride * (Lo - 1) + 1:stride] += gcols[t]
        gx = gxp[:, :, padding:padding + L]
    return gx if into is None else into.add_(gx)


def _stat_groups(split: int | None, n: int) -> int:
    """Batch-norm statistic groups along the sample axis: 2 for a joint [train; valid] pass."""
    if split is None:
        return 1
    if 2 * split != n:
        raise ValueError(f"a joint pass needs equal halves; got {split} train of {n} samples")
    return 2


def _train_columns(t: torch.Tensor, split: int | None, n: int) -> torch.Tensor:
    """Leading columns of a (rows, N*L) matrix that belong to the first ``split`` samples."""
    return t if split is None else t[:, :split * (t.shape[1] // n)]


def _conv_forward(x, wmat, kmax: int, blocks, stride: int, padding: int, with_patches: bool = False,
                  temporary: bool = False, temporary_patches: bool = False):
    """(C, N, L) -> (C_out, N*L_out) for the weight matrix ``wmat`` (C_out, kmax*C), columns (tap, channel).

    Each block (r0, r1, k) of output rows uses the centred k taps: a column
    slice of ``wmat`` and a row slice of the shared patches (views, no copies).
    ``with_patches``: return (output, patches) for :func:`_conv_backward`.
    ``temporary`` / ``temporary_patches``: the output / the patches die within the
    caller's kernel call (:func:`scratch` buffers).
    """
    C = x.shape[0]
    cols = _patches(x, kmax, stride, padding, temporary=temporary_patches or not with_patches)
    shape = (wmat.shape[0], cols.shape[1])
    out = scratch('conv_out', shape, cols) if temporary else cols.new_empty(shape)
    K = native.kernels()
    if _rows_native(K, wmat, cols, out):  # all blocks in one call
        K.call('conv_blocks_forward', wmat.dtype, wmat, wmat.stride(0), _block_table(blocks), len(blocks), kmax, C,
               cols, cols.stride(0), cols.shape[1], out, out.stride(0))
        return (out, cols) if with_patches else out
    for r0, r1, k in blocks:
        lo = (kmax // 2 - k // 2) * C
        _mm_into(out[r0:r1], wmat[r0:r1, lo:lo + k * C], cols[lo:lo + k * C])
    return (out, cols) if with_patches else out


def _conv_backward(g, x, wmat, kmax: int, blocks, stride: int, padding: int, split,
                   want_x: bool, want_w: bool, tap_mask=None, grad_x_into=None, patches=None):
    """Gradients of :func:`_conv_forward` for g (C_out, N*L_out); grad_w from the first ``split`` samples.

    ``tap_mask`` (0/1 like ``wmat``) zeroes the gradient of taps outside each row's kernel when a
    block runs a smaller kernel with all kmax taps (see :class:`_StateBlock`). ``grad_x_into``:
    add the input gradient to this (C, N, L) tensor. ``patches``: those of the forward, if kept.
    """
    C, N, L = x.shape
    grad_x = grad_w = None
    K = native.kernels()
    if want_x and _rows_native(K, wmat, g):
        # a pointwise conv's input-gradient patches are its input gradient: written straight into a new tensor
        pointwise = kmax == 1 and stride == 1 and padding == 0 and grad_x_into is None
        gcols = g.new_empty(C, N * L) if pointwise else scratch('grad_patches', (kmax * C, g.shape[1]), g)
        K.call('conv_blocks_input_grad', g.dtype, wmat, wmat.stride(0), _block_table(blocks, largest_first=True),
               len(blocks), kmax, C, g, g.stride(0), g.shape[1], gcols, gcols.stride(0))
        grad_x = gcols.view(C, N, L) if pointwise else _col2im(gcols, x.shape, kmax, stride, padding, grad_x_into)
    elif want_x:
        gcols = None
        for r0, r1, k in sorted(blocks, key=lambda b: -b[2]):  # a kmax block first: it sets every row
            lo = (kmax // 2 - k // 2) * C
            w_t = wmat[r0:r1, lo:lo + k * C].t()
            if gcols is None:
                gcols = scratch('grad_patches', (kmax * C, g.shape[1]), g)
                if k == kmax:
                    _mm_into(gcols, w_t, g[r0:r1])
                    continue
                gcols.zero_()
            _mm_into(gcols[lo:lo + k * C], w_t, g[r0:r1], accumulate=True)
        grad_x = _col2im(gcols, x.shape, kmax, stride, padding, grad_x_into)
    if want_w:
        if patches is None:
            cols = _patches(x, kmax, stride, padding, split, temporary=True)
        else:
            cols = _train_columns(patches, split, N)
        g = _train_columns(g, split, N)
        grad_w = g.new_zeros(wmat.shape)  # taps outside a block's kernel keep a zero gradient
        if _rows_native(K, g, cols):
            K.call('conv_blocks_weight_grad', g.dtype, g, g.stride(0), _block_table(blocks), len(blocks), kmax, C,
                   cols, cols.stride(0), g.shape[1], grad_w, grad_w.stride(0))
        else:
            for r0, r1, k in blocks:
                lo = (kmax // 2 - k // 2) * C
                _mm_nt_into(grad_w[r0:r1, lo:lo + k * C], g[r0:r1], cols[lo:lo + k * C])
        if tap_mask is not None:
            grad_w.mul_(tap_mask)
    return grad_x, grad_w


class _ConvCNL(torch.autograd.Function):
    """Conv1d without bias on (C, N, L) tensors as im2col + matmuls (fwd and bwd).

    On CPU, oneDNN runs the thin 1-D convs of a tiny-ML supernet (few channels,
    long series) poorly; its backward costs 5-10x its forward. Here one patch
    matrix is built per call and each block of output channels that shares a
    kernel size ``k`` (centred in the ``kmax``-tap weight matrix) is one matmul
    on its row slice of the patches: no MACs are spent on the zero taps of the
    fused 3/5/7 kernels. Gradients: matmuls plus kmax shifted adds (col2im).
    The weight gradient uses the first ``split`` samples only (joint passes).
    """

    @staticmethod
    def forward(ctx, x, wmat, kmax: int, blocks, stride: int, padding: int, split):
        out = _conv_forward(x, wmat, kmax, blocks, stride, padding)
        ctx.save_for_backward(x, wmat)  # patches are recomputed in backward: less memory
        ctx.conf = (kmax, blocks, stride, padding, split)
        return out.view(out.shape[0], x.shape[1], -1)

    @staticmethod
    def backward(ctx, grad_out):
        x, wmat = ctx.saved_tensors
        g = grad_out.reshape(grad_out.shape[0], -1)
        grad_x, grad_w = _conv_backward(g, x, wmat, *ctx.conf, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return grad_x, grad_w, None, None, None, None, None


def conv_weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Conv1d weight (C_out, C, k) -> (C_out, k*C) with columns ordered (tap, channel), as the patches."""
    return weight.permute(0, 2, 1).reshape(weight.shape[0], -1)


def conv_cnl(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0,
             split: int | None = None) -> torch.Tensor:
    """Conv1d (no bias) of a (C, N, L) tensor with a (C_out, C, k) weight; returns (C_out, N, L_out)."""
    Co, _, k = weight.shape
    return _ConvCNL.apply(x, conv_weight_matrix(weight), k, ((0, Co, k),), stride, padding, split)


# -- batch norm as group norm ------------------------------------------------------
# Batch norm of a (R, N*L) matrix (statistics per row) is group norm of the
# (1, R, N*L) tensor with R groups; PyTorch's CPU group-norm kernel is ~6x
# faster than its batch-norm kernel on this shape. Separate statistics for the
# halves of a joint pass: view the matrix as (2R, N*L/2).

def _bn_forward(x2d: torch.Tensor, groups: int):
    """Normalised x2d (R, N*L), mean and 1/std per row (``groups`` = 2: per row and half)."""
    R = x2d.shape[0] * groups
    y, mean, rstd = torch.native_group_norm(x2d.reshape(1, R, -1), None, None, 1, R, x2d.numel() // R, R, _EPS)
    return y.view_as(x2d), mean.view(-1, 1), rstd.view(-1, 1)


def _bn_normalised(x2d, mean, rstd) -> torch.Tensor:
    """(x - mean) * rstd with the statistics of :func:`_bn_forward` (per row, or per row and half)."""
    R = mean.shape[0]
    return ((x2d.reshape(R, -1) - mean) * rstd).view_as(x2d)


def _bn_backward(g2d, x2d, mean, rstd) -> torch.Tensor:
    """Input gradient of :func:`_bn_forward`."""
    R = mean.shape[0]
    M = x2d.numel() // R
    return torch.ops.aten.native_group_norm_backward(g2d.reshape(1, R, M), x2d.reshape(1, R, M), mean.view(1, R),
                                                     rstd.view(1, R), None, 1, R, M, R,
                                                     [True, False, False])[0].view_as(x2d)


def bn_cnl(x: torch.Tensor, bn: nn.BatchNorm1d | None = None, split: int | None = None) -> torch.Tensor:
    """Batch norm of a (C, N, L) tensor with batch statistics (per channel over N*L).

    Running statistics are not tracked: the supernet always normalises with
    batch statistics. Affine parameters get gradients from the train half only
    in a joint pass.
    """
    C, N = x.shape[:2]
    groups = _stat_groups(split, N)
    weight = bias = None
    if bn is not None and bn.affine:
        weight, bias = bn.weight, bn.bias
        if groups == 2:
            weight = torch.stack([weight, weight.detach()], 1).flatten()
            bias = torch.stack([bias, bias.detach()], 1).flatten()
    eps = _EPS if bn is None else bn.eps
    return F.group_norm(x.reshape(1, C * groups, -1), C * groups, weight, bias, eps).view_as(x)


def conv_bn_relu_cnl(seq: nn.Sequential, x: torch.Tensor, split: int | None = None) -> torch.Tensor:
    """Apply a ConvBNReLU (or stem) nn.Sequential to a (C, N, L) tensor."""
    for m in seq:
        if isinstance(m, nn.Conv1d):
            x = conv_cnl(x, m.weight, m.stride[0], m.padding[0], split)
        elif isinstance(m, nn.BatchNorm1d):
            x = bn_cnl(x, m, split)
        elif isinstance(m, nn.ReLU):
            x = F.relu(x)
        elif isinstance(m, nn.MaxPool1d):  # pools the last axis: (C, N, L) reads as a batch of C
            x = F.max_pool1d(x, m.kernel_size, m.stride)
        elif not isinstance(m, nn.Flatten):
            raise TypeError(f"unsupported layer {m}")
    return x


def linear_split(x: torch.Tensor, linear: nn.Linear, split: int | None = None) -> torch.Tensor:
    """``linear(x)`` on (N, F) rows; in a joint pass its parameters learn from the first ``split`` rows."""
    if split is None:
        return linear(x)
    return torch.cat([linear(x[:split]), F.linear(x[split:], linear.weight.detach(), linear.bias.detach())])
