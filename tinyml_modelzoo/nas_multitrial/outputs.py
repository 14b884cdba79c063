"""The NAS/ folder files of a multi-trial search (SPEC.md "Run directory").

``search_results.csv`` (every finished trial), ``pareto_frontier.csv`` (the
non-dominated completed trials), ``best_model_spec.yaml`` (``ModelSpec.to_dict()``
plus ``metrics`` and ``source: multi_trial``) and ``pareto_plot.png``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import pandas as pd
import yaml

from .selection import COMPLETE, PRUNED, REJECTED

CSV_COLUMNS = ["trial", "params", "macs", "latency_us", "accuracy", "architecture", "state", "score", "reason",
               "epochs", "seconds", "warm_start", "worker"]


def write_tables(out_dir: Path, rows: list[dict], frontier: list[dict]) -> dict[str, Path]:
    files = {"search_results": out_dir / "search_results.csv", "pareto_frontier": out_dir / "pareto_frontier.csv"}
    for key, table in (("search_results", rows), ("pareto_frontier", frontier)):
        frame = pd.DataFrame([{c: r.get(c) for c in CSV_COLUMNS} for r in table], columns=CSV_COLUMNS)
        frame.to_csv(files[key], index=False, float_format="%.6g")
    return files


def write_best_spec(path: Path, best: dict, why: str, accuracy_target: Optional[float],
                    input_shape: tuple[int, int], num_classes: int) -> Path:
    data = json.loads(best["spec"])
    data.update({
        "source": "multi_trial",
        "selection": why,
        "metrics": {"trial": best["trial"], "params": best["params"], "macs": best["macs"],
                    "latency_us": _plain(best["latency_us"]), "val_accuracy": _plain(best["accuracy"]),
                    "score": _plain(best["score"]), "trial_epochs": best["epochs"]},
        "accuracy_target": accuracy_target,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
    })
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def plot_pareto(path: Path, rows: list[dict], frontier: list[dict], best: Optional[dict],
                accuracy_target: Optional[float], param_range: tuple[int, int]) -> Path:
    """Accuracy vs parameters (log axis): all trials, the frontier, the target and the range."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    done = [r for r in rows if r["state"] == COMPLETE]
    pruned = [r for r in rows if r["state"] == PRUNED]
    rejected = [r for r in rows if r["state"] == REJECTED and r["params"] > 0]
    ax.scatter([r["params"] for r in done], [r["accuracy"] for r in done], s=22, color="tab:blue",
               label=f"completed ({len(done)})")
    if pruned:
        ax.scatter([r["params"] for r in pruned], [r["accuracy"] for r in pruned], s=18, color="0.6",
                   label=f"pruned ({len(pruned)}, partial training)")
    if rejected:
        ax.scatter([r["params"] for r in rejected], [0.0] * len(rejected), marker="x", s=22, color="tab:red",
                   label=f"rejected before training ({len(rejected)})")
    if frontier:
        ax.step([r["params"] for r in frontier], [r["accuracy"] for r in frontier], where="post",
                color="tab:orange", lw=1.2)
        ax.scatter([r["params"] for r in frontier], [r["accuracy"] for r in frontier], s=40, facecolors="none",
                   edgecolors="tab:orange", label="Pareto frontier")
    if best:
        ax.scatter([best["params"]], [best["accuracy"]], marker="*", s=160, color="gold", edgecolors="k",
                   zorder=5, label=f"chosen (trial {best['trial']})")
    if accuracy_target is not None:
        ax.axhline(accuracy_target, color="tab:green", ls="--", lw=1, label=f"accuracy_target {accuracy_target:g}")
    for bound in param_range:
        ax.axvline(max(bound, 1), color="0.3", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (param_range dotted)")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("Multi-trial NAS: accuracy vs size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plain(value):
    """YAML/JSON-friendly number: NaN becomes None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
