"""Plots written into the run folder (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_training_curves(history, path: Path) -> None:
    epochs = [r.epoch for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r.train_loss for r in history], label="train")
    ax_loss.plot(epochs, [r.val_loss for r in history], label="validation")
    ax_loss.set_xlabel("epoch"), ax_loss.set_ylabel("cross-entropy"), ax_loss.legend()
    ax_acc.plot(epochs, [r.train_accuracy for r in history], label="train")
    ax_acc.plot(epochs, [r.val_accuracy for r in history], label="validation")
    ax_acc.set_xlabel("epoch"), ax_acc.set_ylabel("accuracy"), ax_acc.set_ylim(0, 1.02), ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


CONFUSION_MAX_INCHES, CONFUSION_ANNOTATED_CLASSES = 16.0, 25


def plot_confusion_matrix(matrix: np.ndarray, class_names, path: Path, title: str) -> None:
    """Heat map of ``matrix``; the counts are written in the cells up to 25 classes (the CSV has them
    all). The figure grows with the classes up to 16 inches: at a fixed 1.2 inches per class, 40
    classes drew a 5000 x 5000 pixel image (1.3 GB peak, 10 s)."""
    n = len(class_names)
    cell = min(1.2, CONFUSION_MAX_INCHES / max(n, 1))
    fig, ax = plt.subplots(figsize=(cell * n + 2.5, cell * n + 2))
    ax.imshow(matrix, cmap="Blues")
    label_size = min(10.0, max(4.0, 72 * cell * 0.6))
    ax.set_xticks(range(n), class_names, rotation=45 if n <= CONFUSION_ANNOTATED_CLASSES else 90, ha="right",
                  fontsize=label_size)
    ax.set_yticks(range(n), class_names, fontsize=label_size)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    top = matrix.max() if matrix.size else 0
    if n <= CONFUSION_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if matrix[i, j] > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_darts_pareto(rows: list[dict], frontier: list[dict], path: Path) -> None:
    """Derived genotype per search epoch: supernet validation accuracy vs parameters."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r["params"] for r in rows], [r["supernet_val_accuracy"] for r in rows],
               c=[r["epoch"] for r in rows], cmap="viridis", label="epochs")
    front = sorted(frontier, key=lambda r: r["params"])
    ax.plot([r["params"] for r in front], [r["supernet_val_accuracy"] for r in front], "r--", label="frontier")
    ax.set_xlabel("parameters of the derived model"), ax.set_ylabel("supernet validation accuracy")
    ax.set_title("DARTS search"), ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_alpha_evolution(history, primitives: list[str], path: Path) -> None:
    """Mean softmax weight of each primitive over the search, normal and reduction cells."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    epochs = [r.epoch + 1 for r in history]  # the library counts search epochs from 0
    for ax, key, title in ((axes[0], "alphas_normal", "normal cells"), (axes[1], "alphas_reduce", "reduction cells")):
        weights = np.array([np.asarray(getattr(r, key)).mean(0) for r in history])
        for k, name in enumerate(primitives):
            ax.plot(epochs, weights[:, k], label=name)
        ax.set_title(title), ax.set_xlabel("search epoch")
    axes[0].set_ylabel("mean softmax(alpha)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
