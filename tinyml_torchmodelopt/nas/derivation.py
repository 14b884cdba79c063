"""Derivation: from architecture weights (alphas) to a discrete genotype.

``derive_genotype`` is the DARTS rule (per node the two inputs whose best
non-'none' op is strongest); ``genotype_within_budget`` is the same choice under
a cost window, for budget mode.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from .expected_cost import node_offsets
from .genotypes import Genotype_CNN

BUDGET_BUCKETS = 400  # cost resolution of the budget derivation: target * tolerance / BUDGET_BUCKETS


def derive_genotype(weights_normal: torch.Tensor, weights_reduce: torch.Tensor, primitives: list[str],
                    steps: int, multiplier: int) -> Genotype_CNN:
    """DARTS derivation: per node keep the 2 inputs whose best non-'none' op is strongest."""
    none = primitives.index('none') if 'none' in primitives else -1

    def parse(w: torch.Tensor):
        gene, offsets = [], node_offsets(steps)
        for t in range(steps):
            cands = []
            for j in range(t + 2):
                row = w[offsets[t] + j].tolist()
                best = max((o for o in range(len(primitives)) if o != none), key=lambda o: row[o])
                cands.append((-row[best], j, primitives[best]))
            chosen = sorted(cands)[:2]
            gene += [(name, j) for _, j, name in sorted(chosen, key=lambda c: c[1])]
        return gene

    concat = list(range(2 + steps - multiplier, 2 + steps))
    return Genotype_CNN(parse(weights_normal), concat, parse(weights_reduce), concat)


def derivation_cost(alphas, tables, primitives: list[str], steps: int) -> torch.Tensor:
    """Summed table cost (float64, on the alphas' device) of the edges and ops :func:`derive_genotype` keeps.

    ``alphas``: (normal, reduce); ``tables``: their per-edge op costs. Tensor ops
    only, no host read (a GPU search calls it every budget-mode step); the same choice as
    :func:`derive_genotype` unless two candidates tie exactly.
    """
    none = primitives.index('none') if 'none' in primitives else -1
    total = alphas[0].new_zeros((), dtype=torch.float64)
    for a, table in zip(alphas, tables):
        w = F.softmax(a.detach(), -1)
        if none >= 0:
            w[:, none].fill_(float('-inf'))  # a fill kernel (an indexed assignment would copy a host scalar)
        best, op = w.max(1)
        edge_cost = table.gather(1, op[:, None])[:, 0]
        for t, offset in enumerate(node_offsets(steps)):
            kept = best[offset:offset + t + 2].topk(2).indices
            total = total + edge_cost[offset:offset + t + 2][kept].sum()
    return total


def genotype_within_budget(alphas: tuple[torch.Tensor, torch.Tensor], tables: tuple[torch.Tensor, torch.Tensor],
                           fixed: float, primitives: list[str], steps: int, concat: list[int], target: float,
                           tolerance: float = 0.2) -> Genotype_CNN | None:
    """The genotype with the highest log-weight whose cost lies within ``tolerance`` of ``target``, or None.

    ``alphas`` and ``tables`` (per-edge op costs, see ``expected_cost.cost_tables``) are (normal, reduce).
    A derived genotype keeps, per node, two distinct inputs with one non-'none' op each;
    its cost (``fixed`` + the table entries of the kept pairs) and its log-weight (the sum
    of log softmax(alpha) over them) both add up over nodes, so dynamic programming over
    the nodes finds the best one, keeping the best partial genotype per cost bucket
    (width ``tolerance * target / BUDGET_BUCKETS``; costs are tracked exactly).
    """
    low, high = (1 - tolerance) * target, (1 + tolerance) * target
    width = tolerance * target / BUDGET_BUCKETS
    nodes = [_node_choices(a, table, primitives, steps, t) for a, table in zip(alphas, tables) for t in range(steps)]
    cost, score, back = np.array([float(fixed)]), np.array([0.0]), []
    for choice_cost, choice_score, _ in nodes:
        total = (cost[:, None] + choice_cost[None, :]).ravel()
        value = (score[:, None] + choice_score[None, :]).ravel()
        keep = np.flatnonzero(total <= high)
        if keep.size == 0:
            return None
        # per cost bucket the best partial log-weight: sort by (bucket, -value), first of each bucket
        bucket = np.floor(total[keep] / width)
        order = np.lexsort((-value[keep], bucket))
        first = order[np.r_[True, bucket[order][1:] != bucket[order][:-1]]]
        keep = keep[first]
        back.append(keep)
        cost, score = total[keep], value[keep]
    feasible = np.flatnonzero(cost >= low)
    if feasible.size == 0:
        return None
    state = int(feasible[np.argmax(score[feasible])])
    genes = []
    for (choice_cost, _, pairs), kept in zip(reversed(nodes), reversed(back)):
        parent, choice = divmod(int(kept[state]), len(choice_cost))
        genes = list(pairs[choice]) + genes
        state = parent
    return Genotype_CNN(genes[:2 * steps], list(concat), genes[2 * steps:], list(concat))


def _node_choices(alphas: torch.Tensor, table: torch.Tensor, primitives: list[str], steps: int, t: int):
    """Every (cost, log-weight, genes) a derivation can give node ``t``: two distinct inputs, one
    non-'none' op each, genes ordered by input as in :func:`derive_genotype`."""
    offset = node_offsets(steps)[t]
    logs = F.log_softmax(alphas.detach().double().cpu(), -1)
    ops = [o for o, name in enumerate(primitives) if name != 'none']
    singles = [(float(table[offset + j, o]), float(logs[offset + j, o]), (primitives[o], j))
               for j in range(t + 2) for o in ops]
    pairs = [(a, b) for a, b in itertools.combinations(singles, 2) if a[2][1] < b[2][1]]
    return (np.array([a[0] + b[0] for a, b in pairs]), np.array([a[1] + b[1] for a, b in pairs]),
            [(a[2], b[2]) for a, b in pairs])
