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
and :func:`.state_block.native_block_backward`. Cells with per-edge modules or
partial channels keep the node-per-state path.
"""
from __future__ import annotations

import torch

from . import native
from .fused_ops import scratch
from .state_block import BlockConf, conv_bn_relu_conf, native_block_backward, native_block_forward


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
    return _NativeCell.apply(spec, split, s0.contiguous(), s1.contiguous(), pre[0][0], pre[1][0], *Ws, *weights)


class _NativeCell(torch.autograd.Function):
    """Inputs: spec, split, s0, s1, the two preprocessing weight matrices, the mixing matrix of every
    state, the fused conv weight of every state (None without conv candidates)."""

    @staticmethod
    def forward(ctx, spec, split, s0, s1, *params):
        pre_confs, confs, steps, multiplier, C = spec
        n = len(confs)
        w_pre, Ws, weights = params[:2], params[2:2 + n], params[2 + n:]
        one = s0.new_ones(1, 1)
        saved, states = [], []
        for s, w, conf in zip((s0, s1), w_pre, pre_confs):
            out, kept = native_block_forward(s, w, one, conf, split)
            saved.append(kept)
            states.append(out.view(conf.channels, s.shape[1], -1))
        N, L = states[0].shape[1:]
        L_node = (L - 1) // confs[0].stride + 1
        nodes = s0.new_empty(steps, C * N * L_node)
        need_w = ctx.needs_input_grad[6 + n:]  # the patches are kept only for weight gradients
        for j, conf in enumerate(confs):  # state j feeds nodes max(0, j-1) .. steps-1
            _, kept = native_block_forward(states[j], weights[j], Ws[j], conf, split, out=nodes[max(0, j - 1):],
                                           accumulate=j > 0, keep_patches=need_w[j])
            saved.append(kept)
            if j >= 1:  # node j-1 has all its inputs now
                states.append(nodes[j - 1].view(C, N, L_node))
        ctx.blocks = saved  # intermediates of the cell (the inputs among them are never written)
        ctx.spec, ctx.split = spec, split
        ctx.shapes = (states[0].shape, states[1].shape, (C, N, L_node))
        return nodes[steps - multiplier:].view(multiplier * C, N, L_node)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.blocks is None:
            raise RuntimeError("the supernet cell's saved activations were freed by an earlier backward "
                               "(retain_graph is not supported by the compiled cell)")
        pre_confs, confs, steps, multiplier, C = ctx.spec
        n, split, saved = len(confs), ctx.split, ctx.blocks
        need = ctx.needs_input_grad
        need_s, need_pre, need_W, need_w = need[2:4], need[4:6], need[6:6 + n], need[6 + n:6 + 2 * n]
        p_req = [need_s[i] or need_pre[i] for i in range(2)]  # the preprocessed inputs need a gradient
        node_req = any(need_W) or any(need_w) or any(p_req)
        node_shape = ctx.shapes[2]
        # the node gradients live only in this call: reused buffers (cache-warm, no fresh pages to fault in)
        grad_nodes = scratch('cell_grad_nodes', (steps, grad_out.numel() // multiplier), grad_out)
        grad_nodes[:steps - multiplier].zero_()
        grad_nodes[steps - multiplier:] = grad_out.reshape(multiplier, -1)
        grad_p = [scratch(f'cell_grad_input{i}', ctx.shapes[i], grad_out).zero_() if p_req[i] else None
                  for i in range(2)]
        grad_W, grad_w = [None] * n, [None] * n
        for j in reversed(range(n)):  # a node's gradient is complete before the state that reads it
            want_x = p_req[j] if j < 2 else node_req
            into = grad_p[j] if j < 2 else grad_nodes[j - 2].view(node_shape)
            _, grad_w[j], grad_W[j] = native_block_backward(saved[2 + j], confs[j], split, grad_nodes[max(0, j - 1):],
                                                            want_x, need_w[j], need_W[j], into if want_x else None)
            saved[2 + j] = None  # free as we go, like autograd's own nodes
        grad_s, grad_pre = [None, None], [None, None]
        for i in range(2):
            if p_req[i]:
                grad_s[i], grad_pre[i], _ = native_block_backward(saved[i], pre_confs[i], split,
                                                                  grad_p[i].view(1, -1), need_s[i], need_pre[i], False)
        ctx.blocks = None
        return (None, None, *grad_s, *grad_pre, *grad_W, *grad_w)
