"""Helpers of the search loop: batching, metrics, checkpoints, rank correlation."""
from __future__ import annotations

import os
from typing import Iterator

import torch
from torch.utils.data import DataLoader


def unpack_batch(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) or (x_raw, x, y) -> (x as (N, C, L) float, y as int64)."""
    if not isinstance(batch, (list, tuple)) or len(batch) not in (2, 3):
        raise ValueError("loader batches must be (x, y) or (x_raw, x, y)")
    x, y = batch[-2], batch[-1]
    x = torch.as_tensor(x)
    if x.dim() == 4:
        if x.shape[-1] != 1:
            raise ValueError(f"4-D inputs must be (N, C, L, 1), got {tuple(x.shape)}")
        x = x.squeeze(-1)
    if x.dim() == 2:
        x = x.unsqueeze(1)
    if x.dim() != 3:
        raise ValueError(f"inputs must be (N, C, L) or (N, C, L, 1), got {tuple(x.shape)}")
    return x.float(), torch.as_tensor(y).long().view(-1)


class BatchSource:
    """Batches of one loader, held in memory when small (most tiny-ML sets are).

    In-memory mode shuffles with the given generator each epoch (deterministic and
    resumable) and avoids DataLoader overhead; a large loader is iterated as is.
    Batches of a single sample are dropped (BatchNorm needs two values).
    """

    def __init__(self, loader: DataLoader, device: torch.device, max_bytes: int = 256 * 2 ** 20,
                 shuffle: bool = True, num_classes: int | None = None, name: str = 'data'):
        self.loader, self.device, self.shuffle = loader, device, shuffle
        self.num_classes, self.name = num_classes, name
        self.batch_size = getattr(loader, 'batch_size', None)
        self.x = self.y = None
        xs, ys, nbytes = [], [], 0
        for batch in loader:
            x, y = self._checked(batch)
            if self.batch_size is None:
                self.batch_size = len(x)
            xs.append(x)
            ys.append(y)
            nbytes += x.numel() * 4
            if nbytes > max_bytes:
                xs = None
                break
        if xs is not None:
            if not xs:
                raise ValueError("empty data loader")
            self.x = torch.cat(xs).to(device)
            self.y = torch.cat(ys).to(device)
        self.batch_size = int(self.batch_size or 32)

    def _checked(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`unpack_batch`, with finite inputs and labels in ``0..num_classes-1`` checked (on the
        loader's device, before any copy to the search device)."""
        x, y = unpack_batch(batch)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"the {self.name} loader gives non-finite inputs (NaN or inf); "
                             "remove or impute them before the search")
        if self.num_classes is not None and len(y):
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(f"the {self.name} loader has label {low if low < 0 else high}; labels must be "
                                 f"0..{self.num_classes - 1} for num_classes={self.num_classes}")
        return x, y

    @property
    def in_memory(self) -> bool:
        return self.x is not None

    @property
    def sample_shape(self) -> tuple[int, int]:
        if self.in_memory:
            return tuple(self.x.shape[1:])
        return tuple(unpack_batch(next(iter(self.loader)))[0].shape[1:])

    def __len__(self) -> int:
        if self.in_memory:
            n = len(self.x)
            full, rest = divmod(n, self.batch_size)
            return full + (1 if rest > 1 else 0)
        return len(self.loader)

    def batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.in_memory:
            for batch in self.loader:
                x, y = self._checked(batch)
                if len(x) > 1:
                    yield x.to(self.device), y.to(self.device)
            return
        n = len(self.x)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            if len(idx) > 1:
                yield self.x[idx], self.y[idx]


class SampleStream:
    """Endless shuffled passes over an in-memory :class:`BatchSource`; ``take(n)`` gives the next n samples.

    The search draws each validation batch with the size of the training batch
    it is paired with (a joint pass needs equal halves); a new permutation is
    drawn from ``generator`` whenever a pass is used up.
    """

    def __init__(self, source: BatchSource, generator: torch.Generator):
        if not source.in_memory:
            raise ValueError("SampleStream needs an in-memory BatchSource")
        self.source, self.generator = source, generator
        self.order, self.pos = None, 0

    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pieces = []
        while n > 0:
            if self.order is None or self.pos == len(self.order):
                self.order = torch.randperm(len(self.source.x), generator=self.generator).to(self.source.device)
                self.pos = 0
            k = min(n, len(self.order) - self.pos)
            pieces.append(self.order[self.pos:self.pos + k])
            self.pos, n = self.pos + k, n - k
        idx = torch.cat(pieces)
        return self.source.x[idx], self.source.y[idx]


def correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of correct top-1 predictions, as a float tensor on the logits' device (no sync)."""
    return (logits.argmax(-1) == y).sum().float()


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Atomic write: a temporary file in the same folder, then os.replace."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = 'cpu') -> dict:
    return torch.load(path, map_location=device, weights_only=True)


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)

    def rank(v):
        order = torch.argsort(v)
        r = torch.empty_like(v)
        r[order] = torch.arange(len(v), dtype=torch.float64)
        for val in torch.unique(v):  # average ties
            m = v == val
            r[m] = r[m].mean()
        return r

    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))
