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


def plot_confusion_matrix(matrix: np.ndarray, class_names, path: Path, title: str) -> None:
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    top = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
