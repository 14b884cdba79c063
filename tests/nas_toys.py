"""Toy data and small search settings shared by the NAS search tests (not a test module)."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from tinyml_torchmodelopt.nas import SearchSettings


def toy_loaders(n=64, length=32, batch=16, seed=0, raw=False, four_d=False, channels=1):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    t = torch.linspace(0, 1, length)
    x = torch.sin(2 * torch.pi * (y.float() + 1)[:, None] * 3 * t) + 0.3 * torch.randn(n, length, generator=g)
    x = x[:, None, :].repeat(1, channels, 1)
    if four_d:
        x = x.unsqueeze(-1)
    half = n // 2
    def ds(sl):
        return TensorDataset(x[sl], x[sl], y[sl]) if raw else TensorDataset(x[sl], y[sl])
    return (DataLoader(ds(slice(0, half)), batch_size=batch, shuffle=True),
            DataLoader(ds(slice(half, n)), batch_size=batch))


def _settings(**kw):
    base = dict(num_classes=3, init_channels=2, layers=3, nodes_per_layer=3, multiplier=3, stem_multiplier=2,
                epochs=3, arch_learning_rate=0.05, seed=0)
    base.update(kw)
    return SearchSettings(**base)
