"""The dataset stage's result types: recordings and their train/val/test split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Recording:
    """One recording (one file, or one time segment of a file for ``within_files``).

    ``source``: path relative to the dataset root, e.g. ``classes/arc/f1.csv``
    (``hello_world/<class>/<i>`` for the built-in data; ``<path>@<split>`` for a
    ``within_files`` segment). ``data``: ``(T, C)`` float32, T samples of C
    variables (channels), all finite.
    """
    source: str
    label: int
    data: np.ndarray


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """Recordings per split. ``class_names[label]`` names a label (sorted alphabetically).

    ``num_variables``: channel count C shared by every recording.
    ``split_source``: ``"annotations"`` (lists in the dataset) or ``"split_factor"``.
    """
    name: str
    class_names: tuple[str, ...]
    train: tuple[Recording, ...]
    val: tuple[Recording, ...]
    test: tuple[Recording, ...]
    num_variables: int
    split_source: str

    def split(self, name: str) -> tuple[Recording, ...]:
        """The recordings of split ``name`` (``train``, ``val`` or ``test``)."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def to_summary(self) -> dict:
        """Counts per split and class, for logs and ``summary.json``."""
        def counts(recs):
            return {name: sum(r.label == i for r in recs) for i, name in enumerate(self.class_names)}
        return {"name": self.name, "class_names": list(self.class_names), "num_variables": self.num_variables,
                "split_source": self.split_source,
                "recordings": {s: len(self.split(s)) for s in SPLITS},
                "recordings_per_class": {s: counts(self.split(s)) for s in SPLITS}}


SPLITS = ("train", "val", "test")
