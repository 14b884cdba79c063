"""A whole supernet cell as ONE autograd node on the compiled kernels (CPU).

With one node per cell state (:mod:`.state_block`), each state's mixed edges
come out as an (edges, C*N*L) matrix that autograd unbinds and adds into the
target nodes, and the cell output is a concatenation of the last nodes: a few
hundred small nodes and full-size copies per pass, plus the Python cost of a
node per state. Here the states run in order inside one node:

* the nodes of the cell live in one (steps, C*N*L) buffer; each state's mixing
  kernel writes (the first state) or adds (the others) its edges straight into
  the rows of its target nodes, and the cell output is a view of the last rows;
* backward visits the states in reverse: the gradients of the nodes live in one
  buffer of the same layout, a state's edge gradient is a row slice of it and
  its input gradient is added in place into the row of its source node.

The arithmetic per state is that of :func:`.state_block.native_block_forward`
and :func:`.state_block.native_block_backward`, and each direction is one
compiled call (``cell_forward`` / ``cell_backward``) over a table that
:mod:`.cell_plan` lays out once per cell and input shape. Cells with per-edge
modules or partial channels keep the node-per-state path.
"""
from __future__ import annotations

import weakref

import torch

from . import native, state_block
from .cell_plan import backward_plan, forward_plan
from .fused_ops import _EPS, scratch
from .state_block import BlockConf, conv_bn_relu_conf


def native_cell(cell, s0: torch.Tensor, s1: torch.Tensor, mixing: list[torch.Tensor],
                split: int | None = None) -> torch.Tensor | None:
    """The output of ``cell`` (a :class:`~.model_search_cnn.SearchCell`) as one node, or None when the
    cell needs the node-per-state path (no compiled kernels, per-edge modules, partial channels)."""
    K = native.kernels()
    if K is None or cell.Cp != cell.C or any(len(g) for g in cell.generic) or not K.supports(s0, s1, *mixing):
        return None
    pre = [conv_bn_relu_conf(cell.preprocess0), conv_bn_relu_conf(cell.preprocess1)]
    if None in pre:
        return None
    weights, confs = [], []
    for fused in cell.fused:
        weights.append(fused.fused_weight())
        confs.append(BlockConf(tuple(fused.blocks), fused.kmax, fused.stride, fused.n_bn_relu, fused.n_bn,
                               tuple(fused.shared), cell.C, fused.tap_mask, per_edge=True))
    if not K.supports(s0, *(w for w in weights if w is not None)):
        return None
    Ws = [W.view(fused.n_edges, -1) for W, fused in zip(mixing, cell.fused)]
    spec = ((pre[0][1], pre[1][1]), tuple(confs), cell.steps, cell.multiplier, cell.C)
    return _NativeCell.apply((cell, spec), split, s0.contiguous(), s1.contiguous(), pre[0][0], pre[1][0], *Ws,
                             *weights)


class _NativeCell(torch.autograd.Function):
    """Inputs: (cell, spec), split, s0, s1, the two preprocessing weight matrices, the mixing matrix of
    every state, the fused conv weight of every state (None without conv candidates). One compiled call
    per direction (``cell_forward`` / ``cell_backward``) on the layout of :mod:`.cell_plan`."""

    @staticmethod
    def forward(ctx, cell_spec, split, s0, s1, *params):
        cell, spec = cell_spec
        pre_confs, confs, steps, multiplier, C = spec
        n = len(confs)
        weights = [w if w is None or w.is_contiguous() else w.contiguous() for w in (*params[:2], *params[2 + n:])]
        Ws = params[2:2 + n]
        need_w = ctx.needs_input_grad[6 + n:]  # the patches are kept only for weight gradients
        plan = _plan(cell, spec, s0, s1, Ws, weights, split, need_w)
        arena = s0.new_empty(plan.arena_elems)
        kept = [s0.new_empty(elems) if elems else None for elems in plan.kept_elems]
        temp = scratch('cell_forward', (plan.scratch_elems,), s0) if plan.scratch_elems else None
        native.kernels().call('cell_forward', s0.dtype, plan.bases(arena, kept, temp, s0, s1, weights, Ws),
                              plan.forward_table, len(plan.blocks), _EPS)
        ctx.saved = (arena, kept, s0, s1, weights, Ws)  # the inputs among them are never written
        ctx.plan, ctx.multiplier = plan, multiplier
        ctx.kept_patches = tuple(block.cols is not None for block in plan.blocks[2:] if block.conv)  # (tests)
        first = plan.nodes_offset + (steps - multiplier) * plan.row_elems
        return arena[first:first + multiplier * plan.row_elems].view(multiplier * C, s0.shape[1], -1)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.saved is None:
            raise RuntimeError("the supernet cell's saved activations were freed by an earlier backward "
                               "(retain_graph is not supported by the compiled cell)")
        arena, kept, s0, s1, weights, Ws = ctx.saved
        plan = ctx.plan
        n = plan.n_states
        need = ctx.needs_input_grad
        need_s, need_pre, need_W, need_w = need[2:4], need[4:6], need[6:6 + n], need[6 + n:6 + 2 * n]
        bp = backward_plan(plan, need_s, need_pre, need_W, need_w)
        # the node gradients and every temporary live only in this call: one reused buffer
        temp = scratch('cell_backward', (bp.scratch_elems,), grad_out)
        multiplier = ctx.multiplier
        n_nodes = n - 1
        nodes = temp[bp.grad_nodes:bp.grad_nodes + n_nodes * plan.row_elems].view(n_nodes, -1)
        nodes[:n_nodes - multiplier].zero_()
        nodes[n_nodes - multiplier:] = grad_out.reshape(multiplier, -1)
        for offset in bp.grad_p:
            if offset is not None:
                temp[offset:offset + bp.grad_p_elems].zero_()
        acc = torch.zeros(bp.acc_elems, dtype=torch.float64)
        grad_w = grad_out.new_zeros(bp.grad_w_elems) if bp.grad_w_elems else None
        grad_s = [None, None]
        for i, s in enumerate((s0, s1)):
            if need_s[i]:  # a pointwise preprocessing conv writes its whole input gradient
                grad_s[i] = s.new_empty(s.shape) if bp.pre_pointwise[i] else torch.zeros_like(s)
        native.kernels().call('cell_backward', grad_out.dtype,
                              plan.bases(arena, kept, temp, s0, s1, weights, Ws, acc, grad_w, grad_s), bp.table,
                              bp.rows)
        ctx.saved = None
        grads_w = [None] * (n + 2)
        for b, offset in bp.weight_grads.items():
            w = weights[b]
            grads_w[b] = grad_w[offset:offset + w.numel()].view(w.shape)
            mask = plan.blocks[b].conf.tap_mask
            if mask is not None:
                grads_w[b].mul_(mask)
        grads_W = [None] * n
        for j, offset in bp.alpha_grads.items():
            grads_W[j] = acc[offset:offset + Ws[j].numel()].view(Ws[j].shape).to(Ws[j].dtype)
        return (None, None, *grad_s, *grads_w[:2], *grads_W, *grads_w[2:])


def _plan(cell, spec, s0, s1, Ws, weights, split, need_w):
    """The cell's layout for these shapes and needs, built on first use (kept while the cell lives)."""
    plans = _PLANS.setdefault(cell, {})
    key = (s0.shape, s1.shape, s0.dtype, split, tuple(need_w), state_block.KEEP_CONV_OUTPUT_MAX_BYTES)
    plan = plans.get(key)
    if plan is None:
        plan = plans[key] = forward_plan(spec, s0, s1, Ws, weights[2:], split, need_w)
    return plan


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # cell -> {shapes and needs: CellPlan}
