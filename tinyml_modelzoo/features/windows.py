"""Cut recordings into examples: ``(W, C, K, frame_size)`` frame stacks by fancy indexing."""
from __future__ import annotations

import numpy as np

from tinyml_modelzoo.features.plan import FeaturePlan


def example_frames(data: np.ndarray, plan: FeaturePlan, channels: int) -> np.ndarray:
    """Frames of every example of one recording.

    ``data``: ``(T, C_all)``. Returns ``(W, channels, K, frame_size)`` with
    W = 1 + (T - window) // hop examples (0 when T < window). One gather, no
    Python loop over samples or windows.
    """
    if len(data) < plan.window:
        return np.empty((0, channels, plan.num_frame_concat, plan.frame_size), dtype=data.dtype)
    starts = np.arange(0, len(data) - plan.window + 1, plan.hop)
    frame_starts = np.arange(plan.num_frame_concat) * plan.frame_skip * plan.frame_size
    index = starts[:, None, None] + frame_starts[None, :, None] + np.arange(plan.frame_size)  # (W, K, frame)
    return data[:, :channels][index].transpose(0, 3, 1, 2)  # (W, K, frame, C) -> (W, C, K, frame)
