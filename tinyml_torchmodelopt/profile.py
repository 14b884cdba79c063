"""Cost of a model: parameters, MACs and activation sizes, counted exactly.

One module owns these counts so that the NAS penalty, the multi-trial filter,
the NPU report and ``summary.json`` agree. Counts come from a forward pass with
hooks on leaf modules, so they hold for any graph of standard layers.

Conventions (documented because every consumer relies on them):
- ``macs``: multiply-accumulates of ``Conv1d``/``Conv2d`` and ``Linear`` layers.
  Batch norm is folded into the preceding convolution at deployment and pools,
  ReLU, add and concat cost no MACs, so they count 0.
- ``params``: trainable parameters, batch-norm affine terms included (the
  number users compare with TI's ``CLS_*`` names); buffers are not counted.
- ``activation_elements``: output elements of every leaf module, per sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelProfile:
    params: int
    macs: int
    max_activation_elements: int
    total_activation_elements: int

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs,
                "max_activation_elements": self.max_activation_elements,
                "total_activation_elements": self.total_activation_elements}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        per_output = (module.in_channels // module.groups) * int(torch.tensor(module.kernel_size).prod())
        return int(output[0].numel()) * per_output
    if isinstance(module, nn.Linear):
        return int(output[0].numel()) * module.in_features
    return 0


@torch.no_grad()
def profile_model(model: nn.Module, input_shape: tuple[int, ...]) -> ModelProfile:
    """Count params, MACs and activations for one sample of ``input_shape`` = (C, L)."""
    macs = 0
    max_act = 0
    total_act = 0

    def hook(module, _inputs, output):
        nonlocal macs, max_act, total_act
        if not isinstance(output, torch.Tensor):
            return
        macs += _layer_macs(module, output)
        elements = int(output[0].numel())
        max_act = max(max_act, elements)
        total_act += elements

    leaves = [m for m in model.modules() if len(list(m.children())) == 0]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model(torch.zeros((1, *input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return ModelProfile(count_params(model), macs, max_act, total_act)
