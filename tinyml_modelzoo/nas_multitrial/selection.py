"""Scoring, the Pareto frontier, the choice of the best trial and the early-stop rule.

Everything here works on result rows (plain dicts with ``trial``, ``state``,
``accuracy``, ``params``, ``latency_us``), so the same code serves the search
loop, the output files and the tests.

Score (what single-objective TPE maximises)::

    score = accuracy_weight * accuracy
            - size_weight    * log(params / p_min) / log(p_max / p_min)      # 0 at p_min, 1 at p_max
            - latency_weight * latency_us / latency_target                   # share of the budget used

``[p_min, p_max]`` is ``param_range``. Candidates outside ``param_range`` or over
``latency_target`` are rejected before training, so for trained candidates both
penalty terms lie in [0, 1]; without ``latency_target`` the latency term is 0.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

COMPLETE, PRUNED, REJECTED = "complete", "pruned", "rejected"


def score(accuracy: float, params: int, latency_us: float, *, accuracy_weight: float, size_weight: float,
          latency_weight: float, param_range: tuple[int, int], latency_target: Optional[float]) -> float:
    low, high = max(1, param_range[0]), max(param_range[0] + 1, param_range[1])
    size = min(1.0, max(0.0, math.log(max(params, 1) / low) / math.log(high / low))) if high > low else 0.0
    latency = 0.0
    if latency_target and latency_us == latency_us:     # NaN-safe: no estimate, no penalty
        latency = max(0.0, latency_us) / latency_target
    return accuracy_weight * accuracy - size_weight * size - latency_weight * latency


def objectives(row: dict, use_latency: bool) -> tuple[float, ...]:
    """The row's objectives as values to minimise: (-accuracy, params[, latency_us])."""
    values = (-float(row["accuracy"]), float(row["params"]))
    return values + (float(row["latency_us"]),) if use_latency else values


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(rows: Iterable[dict], use_latency: bool) -> list[dict]:
    """The non-dominated completed rows (maximise accuracy, minimise params[, latency]), by params.

    Rows with identical objectives do not dominate each other, so all of them stay.
    """
    done = [r for r in rows if r["state"] == COMPLETE]
    points = [objectives(r, use_latency) for r in done]
    front = [r for r, p in zip(done, points) if not any(dominates(q, p) for q in points)]
    return sorted(front, key=lambda r: (r["params"], -r["accuracy"], r["trial"]))


def selection_key(row: dict, accuracy_target: Optional[float]) -> tuple:
    """Larger is better: any model meeting the target beats all that miss it; among those
    that meet it the smallest (then the most accurate) wins, otherwise the best score."""
    if accuracy_target is not None and row["accuracy"] >= accuracy_target:
        return (1, -row["params"], row["accuracy"], -row["trial"])
    return (0, row["score"], row["accuracy"], -row["trial"])


def choose_best(rows: Iterable[dict], accuracy_target: Optional[float]) -> tuple[Optional[dict], str]:
    """The best completed row and why it was chosen ('smallest_meeting_accuracy_target' | 'best_score')."""
    done = [r for r in rows if r["state"] == COMPLETE]
    if not done:
        return None, "none"
    best = max(done, key=lambda r: selection_key(r, accuracy_target))
    met = accuracy_target is not None and best["accuracy"] >= accuracy_target
    return best, "smallest_meeting_accuracy_target" if met else "best_score"


def early_stop_reached(rows: Iterable[dict], threshold: Optional[float], patience: int,
                       accuracy_target: Optional[float]) -> bool:
    """True once some completed trial reaches ``threshold`` and the last ``patience`` evaluated
    (completed or pruned) trials did not improve the best choice (see ``selection_key``)."""
    evaluated = sorted((r for r in rows if r["state"] in (COMPLETE, PRUNED)), key=lambda r: r["trial"])
    best_key, since = None, 0
    reached = False
    for row in evaluated:
        if row["state"] == COMPLETE:
            reached = reached or threshold is None or row["accuracy"] >= threshold
            key = selection_key(row, accuracy_target)
            if best_key is None or key[:3] > best_key[:3]:
                best_key, since = key, 0
                continue
        since += 1
    return reached and best_key is not None and since >= patience
