"""The final (derived) network: cells built from a fixed genotype.

Only standard layers plus ``torch.cat`` and ``+`` are used, so
``torch.fx.symbolic_trace(NetworkCnn(...))`` works and a code generator can
consume the graph. Input ``(N, C, L)`` or ``(N, C, L, 1)``.
"""
from __future__ import annotations

import torch
from torch import nn

from .genotypes import Genotype_CNN
from .operations import OPS, ConvBNReLU


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Cells that halve the length (exactly once each): layers//3 and 2*layers//3."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


STEM_POOLS = (1, 2, 3, 4)  # max pool widths after the stem conv (the F28P55 NPU pools up to 4 wide)


def check_stem_pool(stem_pool: int) -> int:
    if stem_pool not in STEM_POOLS:
        raise ValueError(f"stem_pool: got {stem_pool}; expected one of {STEM_POOLS} (1 = no pooling)")
    return stem_pool


def make_stem(in_channels: int, C_stem: int, with_input_batchnorm: bool, stem_pool: int = 1) -> nn.Sequential:
    """[input BN] -> conv 3 -> BN [-> max pool ``stem_pool`` wide, stride ``stem_pool``].

    The pool shortens long inputs before the cells (L -> L // stem_pool): fewer MACs
    and a wider receptive field for the same cells.
    """
    layers: list[nn.Module] = [nn.Flatten(2)]  # (N, C, L, 1) -> (N, C, L); no-op on (N, C, L)
    if with_input_batchnorm:
        layers.append(nn.BatchNorm1d(in_channels))
    layers += [nn.Conv1d(in_channels, C_stem, 3, padding=1, bias=False), nn.BatchNorm1d(C_stem)]
    if check_stem_pool(stem_pool) > 1:
        layers.append(nn.MaxPool1d(stem_pool, stem_pool))
    return nn.Sequential(*layers)


def make_preprocess(C_prev_prev: int, C_prev: int, C: int, reduction_prev: bool,
                    affine: bool = True) -> tuple[nn.Module, nn.Module]:
    """Conv1x1-BN-ReLU on both cell inputs; s0 is strided when the previous cell reduced."""
    pre0 = ConvBNReLU(C_prev_prev, C, 1, stride=2 if reduction_prev else 1, affine=affine)
    pre1 = ConvBNReLU(C_prev, C, 1, affine=affine)
    return pre0, pre1


def make_classifier(C_prev: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(1), nn.Linear(C_prev, num_classes))


class Cell(nn.Module):
    def __init__(self, genotype: Genotype_CNN, C_prev_prev: int, C_prev: int, C: int,
                 reduction: bool, reduction_prev: bool, nodes: int):
        super().__init__()
        self.preprocess0, self.preprocess1 = make_preprocess(C_prev_prev, C_prev, C, reduction_prev)
        genes = genotype.reduce if reduction else genotype.normal
        concat = genotype.reduce_concat if reduction else genotype.normal_concat
        if len(genes) != 2 * nodes:
            raise ValueError(f"genotype has {len(genes)} genes; expected 2 per node x {nodes} nodes")
        self._steps = nodes
        self._concat = [int(i) for i in concat]
        self._indices = [int(i) for _, i in genes]
        self._ops = nn.ModuleList()
        for k, (name, index) in enumerate(genes):
            if not 0 <= index < 2 + k // 2:
                raise ValueError(f"gene {k} ({name}, {index}): input index out of range")
            if name == 'none':
                raise ValueError("'none' cannot be part of a derived genotype")
            stride = 2 if reduction and index < 2 else 1
            self._ops.append(OPS[name](C, stride, True))
        self.multiplier = len(self._concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self._steps):
            a = self._ops[2 * i](states[self._indices[2 * i]])
            b = self._ops[2 * i + 1](states[self._indices[2 * i + 1]])
            states.append(a + b)
        return torch.cat([states[i] for i in self._concat], dim=1)


class NetworkCnn(nn.Module):
    """DARTS network for time series classification, built from ``genotype``.

    Reduction cells sit at ``layers//3`` and ``2*layers//3``; each doubles the
    channels and halves the length once. ``stem_pool`` > 1 max-pools the stem
    output (L -> L // stem_pool; our addition, default off). Output: logits
    ``(N, num_classes)``.
    """

    def __init__(self, C: int, num_classes: int, layers: int, genotype: Genotype_CNN,
                 in_channels: int = 1, with_input_batchnorm: bool = True, nodes_per_layer: int = 4,
                 multiplier: int = 4, stem_multiplier: int = 3, stem_pool: int = 1):
        super().__init__()
        if layers < 3:
            raise ValueError(f"layers must be >= 3, got {layers}")
        for concat in (genotype.normal_concat, genotype.reduce_concat):
            if len(list(concat)) != multiplier:
                raise ValueError(f"genotype concatenates {len(list(concat))} states; multiplier is {multiplier}")
        self.genotype = genotype
        C_stem = stem_multiplier * C
        self.stem = make_stem(in_channels, C_stem, with_input_batchnorm, stem_pool)
        C_pp, C_p, C_curr = C_stem, C_stem, C
        reductions = reduction_layers(layers)
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            cell = Cell(genotype, C_pp, C_p, C_curr, reduction, reduction_prev, nodes_per_layer)
            reduction_prev = reduction
            self.cells.append(cell)
            C_pp, C_p = C_p, cell.multiplier * C_curr
        self.classifier = make_classifier(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(s1)
