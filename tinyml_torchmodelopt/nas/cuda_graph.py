"""The joint first-order pass of the search as a replayed CUDA graph.

At the batch sizes of tiny-ML searches a GPU is launch-bound: one joint pass
(forward and backward over [train; valid]) is 1 800 (preset s) to 5 300 (m)
small kernels, each costing ~30 us of Python and launch overhead for almost no
arithmetic. Captured once per batch shape into a CUDA graph, the whole pass is
one launch; the inputs are copied into the graph's fixed buffers and the
losses, logits and gradients are read from its fixed outputs.

A capture that fails (an operation the driver refuses while capturing) logs a
warning and leaves the eager pass in place for the rest of the search.
"""
from __future__ import annotations

import logging
from typing import Callable, NamedTuple

import torch

log = logging.getLogger(__name__)

WARMUP_PASSES = 3  # eager passes on a side stream before the capture (lazy cuBLAS / allocator set-up)


class JointPass(NamedTuple):
    """One joint pass: both losses, the gradients of (train + valid) for ``params``, both logits."""
    train_loss: torch.Tensor
    valid_loss: torch.Tensor
    grads: tuple[torch.Tensor, ...]
    train_logits: torch.Tensor
    valid_logits: torch.Tensor


def eager_joint_pass(model, params: list[torch.Tensor]) -> Callable[..., JointPass]:
    """``f(x_train, y_train, x_valid, y_valid) -> JointPass`` through ``model.joint_losses``."""
    def run(x_train, y_train, x_valid, y_valid) -> JointPass:
        train_loss, valid_loss = model.joint_losses(x_train, y_train, x_valid, y_valid)
        grads = torch.autograd.grad(train_loss + valid_loss, params)
        return JointPass(train_loss.detach(), valid_loss.detach(), tuple(grads), model.last_logits,
                         model.last_valid_logits)
    return run


class GraphedJointPass:
    """:func:`eager_joint_pass` replayed from a CUDA graph captured per input shape.

    The returned tensors are the graph's output buffers: the next call overwrites
    them, so the caller uses them (optimiser steps, metrics) before calling again.
    """

    def __init__(self, model, params: list[torch.Tensor]):
        self.eager = eager_joint_pass(model, params)
        self.graphs: dict = {}
        self.failed = False

    def __call__(self, *batch: torch.Tensor) -> JointPass:
        if self.failed:
            return self.eager(*batch)
        key = tuple((t.shape, t.dtype) for t in batch)
        if key not in self.graphs:
            self.graphs[key] = self._capture(batch)
            if self.failed:
                return self.eager(*batch)
        graph, inputs, outputs = self.graphs[key]
        for buffer, t in zip(inputs, batch):
            buffer.copy_(t)
        graph.replay()
        return outputs

    def _capture(self, batch):
        inputs = [t.clone() for t in batch]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(side):
                for _ in range(WARMUP_PASSES):
                    self.eager(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self.eager(*inputs)
        except RuntimeError as err:  # e.g. an operation that syncs with the host inside the pass
            torch.cuda.synchronize()
            log.warning("search pass not captured as a CUDA graph, running it op by op: %s", err)
            self.failed = True
            return None
        return graph, inputs, outputs
