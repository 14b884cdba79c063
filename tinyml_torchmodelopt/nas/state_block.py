"""The mixed cell state of the fast supernet: every candidate of every outgoing edge
of one state (convs + BN + ReLU, pools, skip, factorized reduce) and their
alpha-weighted sum as ONE autograd node, in the (C, N, L) layout of
:mod:`.fused_ops` (whose conv and batch-norm kernels it uses), with joint
train/valid passes (``split``) as described there. With the compiled kernels,
:mod:`.cell_block` runs a whole cell's states through :func:`native_block_forward`
and :func:`native_block_backward` as one node instead.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import nn

from . import native
from .fused_ops import (_EPS, _block_table, _bn_backward, _bn_forward, _bn_normalised, _conv_backward,
                        _conv_forward, _stat_groups, conv_weight_matrix, scratch)
from .pool_ops import pool3_backward, pool3_forward


def _valid_gram(gc: torch.Tensor, r: torch.Tensor, C: int, N: int, split: int | None) -> torch.Tensor:
    """gc (E, C*N*L) @ r (G, C*N*L)^T, summed over the valid samples only when ``split``."""
    if split is None:
        return torch.mm(gc, r.t())
    first = split * (gc.shape[1] // (C * N))  # first valid column within each channel's N*L block
    a = gc.view(gc.shape[0], C, -1).transpose(0, 1)[:, :, first:]  # (C, E, valid) strided views: no copy
    b = r.view(r.shape[0], C, -1).transpose(0, 1)[:, :, first:]
    return torch.bmm(a, b.transpose(1, 2)).sum(0)


# Conv outputs up to this size are kept for the backward; larger ones (wide supernets) are
# recomputed from the state (one extra forward conv for much less memory). Searches keep
# blocks up to SEARCH_KEEP_BYTES (see :func:`conv_outputs_kept`).
KEEP_CONV_OUTPUT_MAX_BYTES = 2 ** 20
SEARCH_KEEP_BYTES = 4 * 2 ** 20


@contextmanager
def conv_outputs_kept(max_bytes: int):
    """Within this block, state blocks keep conv outputs of up to ``max_bytes`` for the backward.

    Keeping preset l's 1.5 MB blocks saves the recomputing forward conv of every
    backward (a quarter to a third of its conv MACs) for more peak memory: about
    30 MB in a first-order search, about 80 MB in an unrolled one (400 -> 480 MB
    peak RSS in the benchmark), whose steps are then 7-19 % faster.
    """
    global KEEP_CONV_OUTPUT_MAX_BYTES
    saved, KEEP_CONV_OUTPUT_MAX_BYTES = KEEP_CONV_OUTPUT_MAX_BYTES, max_bytes
    try:
        yield
    finally:
        KEEP_CONV_OUTPUT_MAX_BYTES = saved


class BlockConf(NamedTuple):
    """The static layout of one state block (the arguments of :func:`state_block`)."""
    blocks: tuple  # (first row, end row, kernel size) runs of the fused conv
    kmax: int
    stride: int
    n_bn_relu: int
    n_bn: int
    shared: tuple  # 'skip' / 'max' / 'avg', W's last columns
    channels: int  # per candidate
    tap_mask: torch.Tensor | None
    per_edge: bool


class _StateBlock(torch.autograd.Function):
    """Every candidate of every outgoing edge of one cell state, mixed: ONE autograd node.

    contrib (E, C*N*L_out) = W @ [relu(bn(conv_k(x))) for the conv candidates;
    bn(conv_1x1/2(x)) for the factorized reduce; extras (per-edge modules);
    x / max_pool(x) / avg_pool(x) (shared by all edges)], in the column order of
    W. The conv rows are one fused conv (:func:`_conv_forward`). Batch norm has
    no affine terms (search BN). Besides x, the weights and the BN statistics,
    the conv output (the largest activation of the supernet) is saved only when
    small (``KEEP_CONV_OUTPUT_MAX_BYTES``); otherwise backward recomputes it (one
    extra forward conv for much less memory).
    In a joint pass the conv weights learn from the train half only, W from the
    valid half only, and BN keeps per-half statistics.
    """

    @staticmethod
    def forward(ctx, x, weight, W, conf, split, *extras):
        blocks, kmax, stride, n_bn_relu, n_bn, shared, C, tap_mask, per_edge = conf
        N = x.shape[1]
        groups = _stat_groups(split, N)
        out, col, stats = None, 0, []

        def add(w, r):
            nonlocal out
            out = torch.mm(w, r) if out is None else out.addmm_(w, r)

        if weight is not None:
            y = _conv_forward(x, weight, kmax, blocks, stride, kmax // 2)
            for rows, relu in ((slice(0, n_bn_relu), True), (slice(n_bn_relu, n_bn_relu + n_bn), False)):
                if rows.stop == rows.start:
                    continue
                r, mean, rstd = _bn_forward(y[rows], groups)
                stats += [mean, rstd]
                G = (rows.stop - rows.start) // C
                add(W[:, col:col + G], (r.clamp_min_(0) if relu else r).view(G, -1))
                col += G
        for e in extras:
            add(W[:, col:col + 1], e.reshape(1, -1))
            col += 1
        for kind in shared:
            add(W[:, col:col + 1], (x if kind == 'skip' else pool3_forward(x, kind, stride)).reshape(1, -1))
            col += 1
        kept = y if weight is not None and y.numel() * y.element_size() <= KEEP_CONV_OUTPUT_MAX_BYTES else None
        ctx.save_for_backward(x, weight, W, kept, *stats, *extras)
        ctx.conf, ctx.split, ctx.n_stats = conf, split, len(stats)
        return out

    @staticmethod
    def backward(ctx, gc):
        blocks, kmax, stride, n_bn_relu, n_bn, shared, C, tap_mask, per_edge = ctx.conf
        split = ctx.split
        x, weight, W, y, *rest = ctx.saved_tensors
        stats, extras = rest[:ctx.n_stats], rest[ctx.n_stats:]
        N = x.shape[1]
        want_x, want_w, want_W = ctx.needs_input_grad[:3]
        g_all = torch.mm(W.t(), gc)  # (candidates, C*N*L_out)
        cand = torch.empty_like(g_all) if want_W else None  # the candidates, rebuilt for grad W
        grad_x = grad_weight = None
        col = 0
        if weight is not None:
            if y is None:
                y = _conv_forward(x, weight, kmax, blocks, stride, kmax // 2)
            gy = torch.empty_like(y)
            s = 0
            for rows, relu in ((slice(0, n_bn_relu), True), (slice(n_bn_relu, n_bn_relu + n_bn), False)):
                if rows.stop == rows.start:
                    continue
                mean, rstd = stats[s], stats[s + 1]
                s += 2
                G = (rows.stop - rows.start) // C
                r = _bn_normalised(y[rows], mean, rstd)
                if relu:
                    r = r.clamp_min_(0)  # relu(y) > 0 exactly where y > 0: enough for the ReLU backward
                if want_W:
                    cand[col:col + G] = r.view(G, -1)
                g = g_all[col:col + G].view_as(r)
                if relu:
                    g = torch.ops.aten.threshold_backward(g, r, 0)
                gy[rows] = _bn_backward(g, y[rows], mean, rstd)
                col += G
            grad_x, grad_weight = _conv_backward(gy, x, weight, kmax, blocks, stride, kmax // 2, split,
                                                 want_x, want_w, tap_mask)
        grad_extras = []
        for e in extras:
            if want_W:
                cand[col] = e.reshape(-1)
            grad_extras.append(g_all[col].view_as(e))
            col += 1
        for kind in shared:
            out = x if kind == 'skip' else pool3_forward(x, kind, stride)
            if want_W:
                cand[col] = out.reshape(-1)
            if want_x:
                g = g_all[col].view_as(out)
                g = g if kind == 'skip' else pool3_backward(g, x, out, kind, stride)
                grad_x = g.clone() if grad_x is None else grad_x.add_(g)
            col += 1
        grad_W = _valid_gram(gc, cand, C, N, split) if want_W else None
        return (grad_x, grad_weight, grad_W, None, None, *grad_extras)


_SHARED_CODES = {'skip': 0, 'max': 1, 'avg': 2}
_CODE_TENSORS: dict = {}


def _shared_codes(shared: tuple[str, ...]) -> torch.Tensor:
    if shared not in _CODE_TENSORS:
        _CODE_TENSORS[shared] = torch.tensor([_SHARED_CODES[k] for k in shared], dtype=torch.long)
    return _CODE_TENSORS[shared]


class _NativeStateBlock(torch.autograd.Function):
    """:class:`_StateBlock` with its element-wise work in the compiled kernels (:mod:`.native`).

    Forward: the fused conv (PyTorch matmuls), then ``bn_forward`` normalises it in
    place and ``mix_forward`` applies ReLU, pools and skip and mixes everything into
    the edges in one loop nest. Backward: ``mix_backward`` yields the alpha gradient,
    the pool/skip input gradients and the gradient w.r.t. the normalised conv output
    with its batch-norm sums, ``bn_backward`` finishes the batch norm, and the conv
    backward runs on matmuls plus the compiled col2im. The normalised conv output is
    kept under the same size rule as :class:`_StateBlock`. No per-edge extras.
    """

    @staticmethod
    def forward(ctx, x, weight, W, conf, split):
        out, saved = native_block_forward(x, weight, W, conf, split, keep_patches=ctx.needs_input_grad[1])
        ctx.save_for_backward(*saved)
        ctx.conf, ctx.split = conf, split
        return out

    @staticmethod
    def backward(ctx, gc):
        want_x, want_w, want_W = ctx.needs_input_grad[:3]
        grads = native_block_backward(ctx.saved_tensors, ctx.conf, ctx.split, gc.contiguous(), want_x, want_w, want_W)
        return (*grads, None, None)


def native_block_forward(x, weight, W, conf, split, out=None, accumulate: bool = False, keep_patches: bool = True):
    """:class:`_NativeStateBlock`'s forward without autograd: (out, tensors for :func:`native_block_backward`).

    ``out``: an (E, C*N*L_out) tensor with contiguous rows to write (``accumulate``: add) the mixed
    edges into; default a new one. ``keep_patches``: keep the im2col patches with a kept conv output;
    only the weight gradient reads them (without it they go to a reused scratch buffer, still warm in
    the cache for the conv product, instead of fresh memory). One compiled call (``state_forward``).
    """
    blocks, kmax, stride, n_bn_relu, n_bn, shared, C, tap_mask, per_edge = conf
    x, W = x.contiguous(), W.contiguous()
    Cx, N, L = x.shape
    halves = _stat_groups(split, N)
    Lo = (L - 1) // stride + 1
    R = n_bn_relu + n_bn
    xh = mean = rstd = cols = None
    keep = weight is not None and R * N * Lo * x.element_size() <= KEEP_CONV_OUTPUT_MAX_BYTES
    if weight is not None:  # not kept: the conv output and its patches are scratch
        weight = weight if weight.stride(1) == 1 else weight.contiguous()
        cols = _patch_buffer(x, kmax, stride, Lo, temporary=not (keep and keep_patches))
        xh = x.new_empty(R, N * Lo) if keep else scratch('conv_out', (R, N * Lo), x)
        mean, rstd = x.new_empty(R * halves), x.new_empty(R * halves)
    codes = _shared_codes(shared)
    if out is None:
        out = x.new_empty(W.shape[0], C * N * Lo)
    native.kernels().call(
        'state_forward', x.dtype, x, cols, weight, _conv_table(weight, blocks), xh, None, mean, rstd, W, codes, out,
        0 if weight is None else weight.stride(0), len(blocks), Cx, N, L, Lo, stride, kmax, R, halves, _EPS,
        W.shape[0], W.shape[1], n_bn_relu // C, R // C, C, len(shared), int(per_edge), int(accumulate))
    return out, (x, weight, W, xh if keep else None, cols if keep and keep_patches else None, mean, rstd, codes)


def native_block_backward(saved, conf, split, gc, want_x: bool, want_w: bool, want_W: bool, grad_x_into=None):
    """Gradients (x, weight, W) of :func:`native_block_forward` for gc (E, C*N*L_out), contiguous.

    ``grad_x_into``: a contiguous (C, N, L) tensor the input gradient is added to (and returned).
    One compiled call (``state_backward``).
    """
    blocks, kmax, stride, n_bn_relu, n_bn, shared, C, tap_mask, per_edge = conf
    x, weight, W, xh, cols, mean, rstd, codes = saved
    K = native.kernels()
    Cx, N, L = x.shape
    halves = _stat_groups(split, N)
    Lo = (L - 1) // stride + 1
    R = n_bn_relu + n_bn
    conv = weight is not None
    recompute = conv and xh is None  # the normalised conv output (and its patches) again, in scratch
    if recompute:
        xh, cols = scratch('conv_out', (R, N * Lo), x), _patch_buffer(x, kmax, stride, Lo, temporary=True)
    elif conv and want_w and cols is None:  # patches not kept (not reached from the supernet's own passes)
        cols = _patch_buffer(x, kmax, stride, Lo, temporary=True)
        if cols.data_ptr() != x.data_ptr():
            K.call('im2col', x.dtype, x, Cx, N, N, L, kmax, stride, kmax // 2, Lo, cols)
    gy = scratch('grad_conv_out', (R, N * Lo), x) if conv else None
    acc = torch.zeros(2 * R * halves + W.numel(), dtype=torch.float64)  # BN sums, then grad W
    sums, grad_W = acc[:2 * R * halves], acc[2 * R * halves:].view(W.shape) if want_W else None
    pointwise = conv and kmax == 1 and stride == 1 and not shared and grad_x_into is None
    grad_x = gcols = None
    if want_x:
        if grad_x_into is not None:
            grad_x = grad_x_into
        else:  # a pointwise conv writes its whole input gradient (no col2im); the other paths add theirs
            grad_x = x.new_empty(x.shape) if pointwise else torch.zeros_like(x)
        if conv:
            gcols = grad_x if pointwise else scratch('grad_patches', (kmax * Cx, N * Lo), x)
    grad_weight = weight.new_zeros(weight.shape) if conv and want_w else None  # taps outside a block stay 0
    K.call('state_backward', x.dtype, gc, x, cols, weight, _conv_table(weight, blocks),
           _conv_table(weight, blocks, largest_first=True), xh, mean, rstd, W, codes, gy, sums, grad_W, grad_x, gcols,
           grad_weight, 0 if weight is None else weight.stride(0), len(blocks), Cx, N, L, Lo, stride, kmax, R,
           halves, W.shape[0], W.shape[1], n_bn_relu // C, R // C, C, len(shared), int(per_edge),
           0 if split is None else split, int(recompute))
    if grad_weight is not None and tap_mask is not None:
        grad_weight.mul_(tap_mask)
    return grad_x, grad_weight, None if grad_W is None else grad_W.to(W.dtype)


def _patch_buffer(x: torch.Tensor, kmax: int, stride: int, Lo: int, temporary: bool) -> torch.Tensor:
    """Where a state's im2col patches go: x itself for a pointwise conv, else a new or a scratch buffer."""
    C, N, L = x.shape
    if kmax == 1 and stride == 1:
        return x.view(C, N * L)
    shape = (kmax * C, N * Lo)
    return scratch('patches', shape, x) if temporary else x.new_empty(shape)


def _conv_table(weight: torch.Tensor | None, blocks, largest_first: bool = False) -> torch.Tensor | None:
    return None if weight is None else _block_table(blocks, largest_first)


def state_block(x: torch.Tensor, weight: torch.Tensor | None, kmax: int, W: torch.Tensor, blocks, stride: int,
                n_bn_relu: int, n_bn: int, shared: tuple[str, ...], extras=(), split: int | None = None,
                channels: int | None = None, tap_mask: torch.Tensor | None = None, per_edge: bool = False):
    """Mixed outputs (E, C*N*L_out) of all outgoing edges of the state x (C, N, L); see :class:`_StateBlock`.

    weight: fused conv weight matrix (C_out, kmax*C) (rows: ``n_bn_relu``
    conv-candidate rows, then ``n_bn`` factorized-reduce rows) or None; extras: (C, N, L_out) outputs of
    per-edge modules; shared: ``'skip'``, ``'max'``, ``'avg'`` (W's last columns);
    channels: channels per candidate (default: those of x); tap_mask: see
    :func:`_conv_backward`. per_edge: the supernet's layout, in which fused-conv group g (``channels``
    rows each) feeds edge g % E only: W's other entries in those columns must be zero and the compiled
    kernels skip them (no work, and a zero gradient for them; the PyTorch kernels compute them all).
    """
    conf = BlockConf(tuple(blocks), kmax, stride, n_bn_relu, n_bn, tuple(shared), channels or x.shape[0], tap_mask,
                     per_edge)
    return run_block(x, weight, W, conf, split, extras)


def run_block(x, weight, W, conf: BlockConf, split=None, extras=()) -> torch.Tensor:
    """:func:`state_block` for a ready :class:`BlockConf`: the compiled kernels when they apply."""
    K = native.kernels()
    if not extras and K is not None and K.supports(x, W, *([] if weight is None else [weight])):
        return _NativeStateBlock.apply(x, weight, W, conf, split)
    return _StateBlock.apply(x, weight, W, conf, split, *extras)


def conv_bn_relu_block(seq: nn.Sequential, x: torch.Tensor, split: int | None = None) -> torch.Tensor:
    """A ConvBNReLU with search BN (no affine terms) on (C, N, L) as ONE state-block node -> (C_out, N, L_out).

    Same result as :func:`conv_bn_relu_cnl`; the conv output is recomputed in backward
    instead of being kept (cell preprocessing).
    """
    found = conv_bn_relu_conf(seq)
    if found is None:
        raise ValueError("conv_bn_relu_block needs 'same' padding and a BN without affine terms")
    wmat, conf = found
    out = run_block(x, wmat, x.new_ones(1, 1), conf, split)
    return out.view(conf.channels, x.shape[1], -1)


def conv_bn_relu_conf(seq: nn.Sequential) -> tuple[torch.Tensor, BlockConf] | None:
    """(weight matrix, conf) of a ConvBNReLU as a one-edge state block, or None when it is not one
    (affine BN or not 'same' padding)."""
    conv, bn = seq[0], seq[1]
    if bn.affine or conv.padding[0] != conv.kernel_size[0] // 2:
        return None
    Co, _, k = conv.weight.shape
    return conv_weight_matrix(conv.weight), BlockConf(((0, Co, k),), k, conv.stride[0], Co, 0, (), Co, None, False)
