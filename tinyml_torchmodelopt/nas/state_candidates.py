"""The candidates of one supernet state: every op of every outgoing edge, computed as one block.

:class:`StateCandidates` holds the parameters (one fused conv matrix for the full convs and the
factorized reduce, per-edge depthwise and pointwise weights for the separable convs) and runs
:func:`.state_block.state_block`; :class:`.model_search_cnn.SearchCell` builds one per state.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fused_ops import conv_weight_matrix
from .operations import FUSED_CONV_KERNELS, SEP_CONV_KERNELS
from .state_block import state_block
from .state_plans import StatePlan


_SHARED_KIND = {'skip_connect': 'skip', 'max_pool_3x1': 'max', 'avg_pool_3x1': 'avg'}


def fused_row_blocks(groups: list[int], C: int, one_matmul_max_channels: int):
    """(blocks, tap_mask) of a fused conv whose row groups of C rows have kernel sizes ``groups``.

    blocks: (first row, end row, kernel size) runs of equal kernel size, each one matmul on its
    centred taps; tap_mask: None. With few channels the matmuls are memory-bound, so one matmul over
    all kmax taps (zero weights on the padding taps, their gradient masked by tap_mask) beats one
    matmul per kernel size.
    """
    kmax = max(groups, default=0)
    if groups and C <= one_matmul_max_channels:
        taps = torch.zeros(len(groups) * C, C, kmax)
        for g, k in enumerate(groups):
            taps[g * C:(g + 1) * C, :, kmax // 2 - k // 2:kmax // 2 - k // 2 + k] = 1
        return ((0, len(groups) * C, kmax),), conv_weight_matrix(taps).contiguous()
    blocks = []
    for g, k in enumerate(groups):
        if blocks and blocks[-1][2] == k:
            blocks[-1] = (blocks[-1][0], (g + 1) * C, k)
        else:
            blocks.append((g * C, (g + 1) * C, k))
    return tuple(blocks), None


class StateCandidates(nn.Module):
    """All candidates of all outgoing edges of one source state, mixed by :func:`.state_block.state_block`.

    Holds the fused conv of the conv candidates and the factorized reduce (kernel
    sizes as blocks of output rows; None when there are none) and the static plan.
    Full convs and the factorized reduce are rows of one parameter matrix; a
    separable conv keeps its depthwise (C, k) and pointwise (C, C) weights per edge
    and enters the fused conv as the full conv they make together
    (weight[o, c, t] = pointwise[o, c] * depthwise[c, t]): the same output, the same
    BN + ReLU, one matmul with the other candidates instead of two modules per edge.
    """
    ONE_MATMUL_MAX_CHANNELS = 4

    def __init__(self, C: int, plan: StatePlan, convs: list[str]):
        super().__init__()
        self.C, self.stride, self.n_edges = C, plan.stride, plan.n_edges
        full = [FUSED_CONV_KERNELS[p] for p in convs if p not in SEP_CONV_KERNELS]
        self.sep_kernels = tuple(FUSED_CONV_KERNELS[p] for p in convs if p in SEP_CONV_KERNELS)
        groups = [k for k in full + list(self.sep_kernels) for _ in range(plan.n_edges)]
        self.n_bn_relu = len(groups) * C
        self.n_full_rows = len(full) * plan.n_edges * C
        if plan.fused_fr:
            groups += [1] * plan.n_edges
        self.n_bn = len(groups) * C - self.n_bn_relu
        self.shared = tuple(_SHARED_KIND[name] for name in plan.shared)
        self.groups = groups
        self.kmax = max(groups, default=0)
        self.weight = None
        matrix_groups = [k for g, k in enumerate(groups) if not self._is_sep_group(g)]
        if matrix_groups:
            weight = torch.zeros(len(matrix_groups) * C, C, self.kmax)
            for g, k in enumerate(matrix_groups):
                lo = self.kmax // 2 - k // 2
                bound = 1.0 / (C * k) ** 0.5  # nn.Conv1d default init (kaiming_uniform, a=sqrt(5))
                weight[g * C:(g + 1) * C, :, lo:lo + k].uniform_(-bound, bound)
            # stored as the (C_out, kmax*C) matrix of the fused conv (columns: tap, channel); the zero
            # padding taps of smaller kernels are never read and get no gradient, so they stay 0
            self.weight = nn.Parameter(conv_weight_matrix(weight).contiguous())
        # nn.Conv1d's default init of SepConv's depthwise (fan-in k) and pointwise (fan-in C) convs
        self.depthwise = nn.ParameterList(
            nn.Parameter(torch.empty(plan.n_edges, C, k).uniform_(-k ** -0.5, k ** -0.5)) for k in self.sep_kernels)
        self.pointwise = nn.ParameterList(
            nn.Parameter(torch.empty(plan.n_edges, C, C).uniform_(-C ** -0.5, C ** -0.5)) for _ in self.sep_kernels)
        self.blocks, tap_mask = fused_row_blocks(groups, C, self.ONE_MATMUL_MAX_CHANNELS)
        self.register_buffer('tap_mask', tap_mask, persistent=False)

    def _is_sep_group(self, g: int) -> bool:
        return self.n_full_rows // self.C <= g < self.n_bn_relu // self.C

    def separable_weight(self, i: int) -> torch.Tensor:
        """(edges * C, C, kmax): the full conv of separable candidate ``i`` on every edge (taps centred)."""
        k = self.sep_kernels[i]
        weight = self.pointwise[i].unsqueeze(-1) * self.depthwise[i].unsqueeze(1)  # (E, C_out, C_in, k)
        pad = self.kmax // 2 - k // 2
        return F.pad(weight, (pad, self.kmax - k - pad)).reshape(-1, self.C, self.kmax)

    def fused_weight(self) -> torch.Tensor | None:
        """The (C_out, kmax*C) matrix of the fused conv: full convs, separable convs, factorized reduce."""
        if not self.sep_kernels:
            return self.weight
        parts = [conv_weight_matrix(self.separable_weight(i)) for i in range(len(self.sep_kernels))]
        if self.weight is not None:
            parts = [self.weight[:self.n_full_rows]] + parts + [self.weight[self.n_full_rows:]]
        return torch.cat(parts)

    def forward(self, x: torch.Tensor, W: torch.Tensor, extras=(), split: int | None = None) -> torch.Tensor:
        """(edges, C*N*L_out) mixed outputs for x (C, N, L) and the mixing matrix W (edges x candidates)."""
        return state_block(x, self.fused_weight(), self.kmax, W.view(self.n_edges, -1), self.blocks, self.stride,
                           self.n_bn_relu, self.n_bn, self.shared, extras, split, tap_mask=self.tap_mask,
                           per_edge=True)

    def group_weight(self, g: int) -> torch.Tensor:
        """Weight of a full-conv or factorized-reduce group g with its real kernel size (for the naive path)."""
        if self._is_sep_group(g):
            raise ValueError(f"group {g} is a separable conv: see depthwise / pointwise")
        k = self.groups[g]
        lo = self.kmax // 2 - k // 2
        row = g * self.C if g * self.C < self.n_full_rows else g * self.C - (self.n_bn_relu - self.n_full_rows)
        w = self.weight.view(-1, self.kmax, self.C).permute(0, 2, 1)
        return w[row:row + self.C, :, lo:lo + k]
