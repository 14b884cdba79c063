"""Plots stay readable and bounded in size whatever the data."""
from __future__ import annotations

import struct

import numpy as np

from tinyml_modelzoo.plots import plot_confusion_matrix


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as handle:
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_confusion_matrix_image_stays_bounded_for_many_classes(tmp_path):
    names = [f"class_{i}" for i in range(120)]
    matrix = np.random.default_rng(0).integers(0, 5, (120, 120))
    plot_confusion_matrix(matrix, names, tmp_path / "many.png", "many classes")
    width, height = _png_size(tmp_path / "many.png")
    assert width <= 2000 and height <= 2000  # 1.2 inches per class would be 14 650 pixels


def test_confusion_matrix_of_few_classes_keeps_its_cell_size(tmp_path):
    plot_confusion_matrix(np.eye(3, dtype=int) * 4, ["a", "b", "c"], tmp_path / "few.png", "few")
    width, height = _png_size(tmp_path / "few.png")
    assert 500 <= width <= 700 and 450 <= height <= 650  # (1.2 * 3 + 2.5) x (1.2 * 3 + 2) inches at 100 dpi
