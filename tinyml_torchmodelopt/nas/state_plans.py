"""How the search supernet expands each cell state into candidates.

A cell state s_j feeds every later node; :func:`state_plans` lists, per state,
how many outgoing edges it has, its stride and which candidates are computed
once for all edges (convs fused into one matrix, shared pools and identity) or
per edge (the generic ops). :func:`mixing_index` maps the softmax weights of
the alphas onto the (edges x candidates) mixing matrix of each state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .expected_cost import node_offsets
from .operations import CONV_KERNELS, FUSED_CONV_KERNELS, SEP_CONV_KERNELS


@dataclass(frozen=True)
class StatePlan:
    """How one source state s_j of a cell is expanded into candidates."""
    j: int
    stride: int
    first_target: int
    n_edges: int
    n_conv: int  # conv candidate groups (len(conv_candidates(primitives))) in the fused conv
    fused_fr: bool  # factorized reduce folded into the fused conv
    generic: tuple[str, ...]  # ops evaluated per edge
    shared: tuple[str, ...]  # parameter-free candidates shared by all edges ('skip', 'max', 'avg')

    @property
    def n_fused(self) -> int:
        return (self.n_conv + int(self.fused_fr)) * self.n_edges

    @property
    def n_candidates(self) -> int:
        return self.n_fused + len(self.generic) * self.n_edges + len(self.shared)


def conv_candidates(primitives) -> list[str]:
    """The primitives of the fused conv in row-group order: full convs, then separable convs."""
    return [p for p in primitives if p in CONV_KERNELS] + [p for p in primitives if p in SEP_CONV_KERNELS]


def state_plans(primitives: list[str], steps: int, reduction: bool) -> list[StatePlan]:
    kernels = conv_candidates(primitives)
    plans = []
    for j in range(steps + 1):
        stride = 2 if reduction and j < 2 else 1
        first = max(0, j - 1)
        fr = 'skip_connect' in primitives and stride == 2
        shared = []
        if 'skip_connect' in primitives and stride == 1:
            shared.append('skip_connect')
        for p in ('max_pool_3x1', 'avg_pool_3x1'):
            if p in primitives:
                shared.append(p)
        generic = tuple(p for p in primitives
                        if p not in FUSED_CONV_KERNELS and p not in ('none', 'skip_connect', 'max_pool_3x1',
                                                               'avg_pool_3x1'))
        plans.append(StatePlan(j, stride, first, steps - first, len(kernels), fr, generic, tuple(shared)))
    return plans


def mixing_index(primitives: list[str], steps: int, plans: list[StatePlan]):
    """(dst, src, sizes): dense[dst] = softmax_weights.flatten()[src], split by state.

    dense for state j is a (n_edges_j, n_candidates_j) matrix in row-major order.
    """
    n_ops = len(primitives)
    op_index = {p: i for i, p in enumerate(primitives)}
    kernels = conv_candidates(primitives)
    offsets = node_offsets(steps)
    dst, src, sizes, base = [], [], [], 0
    for plan in plans:
        M = plan.n_candidates
        for e in range(plan.n_edges):
            t = plan.first_target + e
            edge = offsets[t] + plan.j
            row = base + e * M
            cols: list[tuple[int, str]] = []
            for kidx, name in enumerate(kernels):
                cols.append((kidx * plan.n_edges + e, name))
            if plan.fused_fr:
                cols.append((plan.n_conv * plan.n_edges + e, 'skip_connect'))
            for g, name in enumerate(plan.generic):
                cols.append((plan.n_fused + g * plan.n_edges + e, name))
            for s, name in enumerate(plan.shared):
                cols.append((plan.n_fused + len(plan.generic) * plan.n_edges + s, name))
            for col, name in cols:
                dst.append(row + col)
                src.append(edge * n_ops + op_index[name])
        sizes.append(plan.n_edges * M)
        base += plan.n_edges * M
    return torch.tensor(dst, dtype=torch.long), torch.tensor(src, dtype=torch.long), sizes
