"""Expected cost of the model a supernet will derive: the Memory/Compute penalty.

Cost tables hold, per edge and candidate op, the real parameter count or MACs
(``profile_model`` of the op at the feature-map length of its cell). The
expectation weights each edge by the probability that derivation keeps it
(top-2 inputs per node, Plackett-Luce) and each op by a sharpened softmax over
the non-'none' candidates, so it tracks what the derived model will contain
(rank correlation with the real count > 0.9, see docs/nas_library.md).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..profile import profile_model
from .model import make_classifier, make_preprocess, make_stem, reduction_layers
from .operations import OPS


def node_offsets(steps: int) -> list[int]:
    """Index of the first edge of each node (node t has inputs 0..t+1)."""
    offsets, n = [], 0
    for t in range(steps):
        offsets.append(n)
        n += t + 2
    return offsets


def num_edges(steps: int) -> int:
    return sum(t + 2 for t in range(steps))


# The index tensors below are cached per device: a search on a GPU computes the expected cost
# every step inside a CUDA graph, where a copy from the host is refused.
@lru_cache(maxsize=16)
def _node_layout(steps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(index, valid, flat): the edges of node t as row t of a (steps, steps + 1) matrix, padded with
    edge 0; ``flat`` lists the valid entries of the flattened matrix (edge order), so that no boolean
    mask (whose result size the host would have to read) is needed."""
    index = torch.zeros(steps, steps + 1, dtype=torch.long)
    valid = torch.zeros(steps, steps + 1, dtype=torch.bool)
    for t, first in enumerate(node_offsets(steps)):
        index[t, :t + 2] = torch.arange(first, first + t + 2)
        valid[t, :t + 2] = True
    flat = valid.flatten().nonzero()[:, 0]
    return index.to(device), valid.to(device), flat.to(device)


def _keep_probability(strength: torch.Tensor, steps: int, temperature: float) -> torch.Tensor:
    """P(edge among the top-2 inputs of its node) under Plackett-Luce sampling (all nodes at once).

    Node 0 has exactly two inputs, so both are always kept (the formula gives 1 there too).
    """
    index, valid, flat = _node_layout(steps, strength.device)
    # index_select rather than indexing: its backward (index_add) needs nothing from the host either
    logits = (torch.log(strength.clamp_min(1e-12)) / temperature).index_select(0, index.flatten())
    logits = logits.view(index.shape).masked_fill(~valid, float('-inf'))
    p = F.softmax(logits, dim=1)
    r = p / (1 - p).clamp_min(1e-6)
    keep = p * (1 + r.sum(1, keepdim=True) - r)
    keep = torch.cat([torch.ones_like(keep[:1]), keep[1:]]) if steps else keep
    return keep.flatten().index_select(0, flat)


@lru_cache(maxsize=64)
def _kept_ops(primitives: tuple[str, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor([i for i, p in enumerate(primitives) if p != 'none'], device=device)


def expected_edge_cost(alphas: torch.Tensor, cost: torch.Tensor, primitives: list[str], steps: int,
                    cost_temperature: float, keep_temperature: float) -> torch.Tensor:
    idx = _kept_ops(tuple(primitives), alphas.device)
    w = F.softmax(alphas, dim=-1).index_select(1, idx)
    strength = w.max(dim=-1).values
    q = F.softmax(alphas.index_select(1, idx) / cost_temperature, dim=-1)
    per_edge = (q * cost.index_select(1, idx)).sum(-1)
    return (_keep_probability(strength, steps, keep_temperature) * per_edge).sum()


def extreme_cost(cost: torch.Tensor, primitives: list[str], steps: int, pick) -> float:
    keep = [i for i, p in enumerate(primitives) if p != 'none']
    total, offsets = 0.0, node_offsets(steps)
    for t in range(steps):
        per_edge = [pick(float(cost[offsets[t] + j, o]) for o in keep) for j in range(t + 2)]
        total += sum(sorted(per_edge, reverse=(pick is max))[:2])
    return total


@lru_cache(maxsize=4096)
def _op_cost(name: str, C: int, stride: int, length: int, kind: str) -> int:
    prof = profile_model(OPS[name](C, stride, True), (C, length))
    return prof.params if kind == 'params' else prof.macs


def _module_cost(module: nn.Module, shape: tuple[int, int], kind: str) -> int:
    prof = profile_model(module, shape)
    return prof.params if kind == 'params' else prof.macs


def cost_tables(primitives, steps, kind, length, *, C, num_classes, layers, in_channels,
                 with_input_batchnorm, nodes_per_layer, multiplier, stem_multiplier, stem_pool=1):
    n_e, n_o = num_edges(steps), len(primitives)
    C_stem = stem_multiplier * C
    fixed = _module_cost(make_stem(in_channels, C_stem, with_input_batchnorm, stem_pool), (in_channels, length),
                         kind)
    length //= stem_pool
    cn, cr = torch.zeros(n_e, n_o, dtype=torch.float64), torch.zeros(n_e, n_o, dtype=torch.float64)
    C_pp, C_p, C_curr = C_stem, C_stem, C
    L_pp, L_p = length, length
    reductions, reduction_prev = reduction_layers(layers), False
    offsets = node_offsets(steps)
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            C_curr *= 2
        pre0, pre1 = make_preprocess(C_pp, C_p, C_curr, reduction_prev)
        fixed += _module_cost(pre0, (C_pp, L_pp), kind) + _module_cost(pre1, (C_p, L_p), kind)
        table = cr if reduction else cn
        for t in range(steps):
            for j in range(t + 2):
                stride = 2 if reduction and j < 2 else 1
                for o, name in enumerate(primitives):
                    table[offsets[t] + j, o] += _op_cost(name, C_curr, stride, L_p, kind)
        L_out = (L_p + 1) // 2 if reduction else L_p
        reduction_prev = reduction
        C_pp, C_p = C_p, multiplier * C_curr
        L_pp, L_p = L_p, L_out
    fixed += _module_cost(make_classifier(C_p, num_classes), (C_p, L_p), kind)
    largest = fixed + extreme_cost(cn, primitives, steps, max) + extreme_cost(cr, primitives, steps, max)
    return float(fixed), cn, cr, float(largest)
