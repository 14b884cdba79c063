"""Toy data and small search settings shared by the NAS search tests (not a test module)."""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, TensorDataset

from tinyml_torchmodelopt.nas import Architect, SearchSettings
from tinyml_torchmodelopt.nas import architect as architect_module


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


def device_path_on_the_cpu(monkeypatch, graphed_pass=lambda run: run):
    """Run what a CUDA search replays as graphs (device-side budget multiplier and eps) op by op on the CPU."""
    monkeypatch.setattr(Architect, '_graphed', lambda self: True)
    monkeypatch.setattr(architect_module, 'GraphedJointPass', architect_module.eager_joint_pass)
    monkeypatch.setattr(architect_module, 'GraphedPass', graphed_pass)
    monkeypatch.setattr(architect_module, 'GraphedUpdate', lambda update: update)
    monkeypatch.setattr(architect_module, 'make_capturable', lambda optimizer: None)  # CPU Adam cannot be


class HostTraffic(TorchDispatchMode):
    """Records the operations a CUDA graph capture refuses: host reads (also hidden ones, such as a
    boolean-mask selection, whose result size the host must know) and tensors made from host values."""
    REFUSED = ('aten._local_scalar_dense', 'aten.nonzero', 'aten.masked_select', 'aten.lift_fresh',
               'aten.unique', 'aten.item')

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        mask_index = name == 'aten.index.Tensor' and any(
            i is not None and i.dtype == torch.bool for i in args[1])
        if name.startswith(self.REFUSED) or mask_index:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))
