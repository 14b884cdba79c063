"""The passes and the alpha update of the search as replayed CUDA graphs.

At the batch sizes of tiny-ML searches a GPU is launch-bound: one joint pass
(forward and backward over [train; valid]) is 1 800 (preset s) to 5 300 (m)
small kernels, each costing ~30 us of Python and launch overhead for almost no
arithmetic. Captured once per batch shape into a CUDA graph, the whole pass is
one launch; the inputs are copied into the graph's fixed buffers and the
losses, logits and gradients are read from its fixed outputs.

The alpha update after the pass (the penalty's forward and backward, Adam, the
budget multiplier: ~300 more small kernels) is captured the same way
(:class:`GraphedUpdate`), and so is an unrolled step's gradient (a
:class:`GraphedPass` over ``Architect.unrolled_gradient``). A capture that fails
(an operation the driver refuses while capturing) logs a warning and leaves the
eager pass or update in place for the rest of the search.
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


class GraphedPass:
    """A pure function of tensors ``fn(*inputs)`` (a forward and backward pass that leaves the model as it
    found it) replayed from a CUDA graph captured per input shape.

    The returned tensors are the graph's output buffers: the next call overwrites
    them, so the caller uses them (optimiser steps, metrics) before calling again.
    """

    def __init__(self, fn: Callable):
        self.eager = fn
        self.graphs: dict = {}
        self.failed = False

    def __call__(self, *batch: torch.Tensor):
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
        _on_side_stream(self.eager, inputs, WARMUP_PASSES)  # lazy cuBLAS / allocator set-up, results unused
        recorded = _record(self.eager, inputs, 'pass')
        self.failed = recorded is None
        return None if recorded is None else (recorded[0], inputs, recorded[1])


class GraphedJointPass(GraphedPass):
    """:func:`eager_joint_pass` replayed from a CUDA graph captured per input shape."""

    def __init__(self, model, params: list[torch.Tensor]):
        super().__init__(eager_joint_pass(model, params))


class GraphedUpdate:
    """An in-place update ``update(*inputs)`` (an optimiser step and what feeds it) replayed from a CUDA graph.

    Unlike a pass, an update changes state (parameters, optimiser moments), so its warm-up
    calls are the real first updates, run eagerly on a side stream; the capture records
    without running anything, so the call that captures replays the graph once at its end.
    The inputs (of fixed shapes) are copied into the graph's buffers. Everything the update
    reads besides its inputs must keep its storage (in-place updates only), and an optimiser
    stepped inside must be capturable (see :func:`make_capturable`).
    """

    def __init__(self, update: Callable[..., None], warmup_calls: int = WARMUP_PASSES):
        self.update, self.warmup_calls = update, warmup_calls
        self.calls = 0
        self.graph = None
        self.inputs: list[torch.Tensor] = []
        self.failed = False

    def __call__(self, *inputs: torch.Tensor) -> None:
        self.calls += 1
        if self.failed:
            self.update(*inputs)
            return
        if self.graph is None and self.calls <= self.warmup_calls:
            _on_side_stream(self.update, inputs, 1)
            return
        if self.graph is None and not self._capture(inputs):
            self.update(*inputs)  # the failed capture ran nothing: this call's update, op by op
            return
        for buffer, t in zip(self.inputs, inputs):
            buffer.copy_(t)
        self.graph.replay()

    def _capture(self, inputs) -> bool:
        self.inputs = [t.clone() for t in inputs]
        recorded = _record(self.update, self.inputs, 'update')
        self.failed = recorded is None
        self.graph = None if recorded is None else recorded[0]
        return not self.failed


def _on_side_stream(fn: Callable, inputs, times: int) -> None:
    """Run ``fn(*inputs)`` eagerly ``times`` times on a side stream (how a capture wants its warm-up)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(times):
            fn(*inputs)
    torch.cuda.current_stream().wait_stream(side)


def _record(fn: Callable, inputs, what: str):
    """(graph, outputs) of ``fn(*inputs)`` captured into a new CUDA graph (nothing runs), or None with a
    warning when the driver refuses an operation (e.g. one that syncs with the host)."""
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            outputs = fn(*inputs)
    except RuntimeError as err:
        torch.cuda.synchronize()
        log.warning("search %s not captured as a CUDA graph, running it op by op: %s", what, err)
        del graph
        _end_generator_capture()
        return None
    return graph, outputs


def _end_generator_capture() -> None:
    """Undo what an aborted capture leaves in PyTorch's CUDA generators.

    A capture that ends in an error skips the step that takes the default CUDA generator
    out of capture mode (in PyTorch releases whose graphs do not drop their generator
    state when destroyed), and every later eager random draw on the GPU, e.g. the
    caller's dropout, then fails with "Offset increment outside graph capture encountered
    unexpectedly" (seen on the H200 at stop 26). A capture of one small op that ends
    normally resets it; where PyTorch already cleaned up, it changes nothing.
    """
    probe, scratch = torch.cuda.CUDAGraph(), torch.zeros(1, device='cuda')
    try:
        with torch.cuda.graph(probe):
            scratch.add_(1)
    except RuntimeError as err:  # the fallback runs op by op either way
        log.debug("no clean capture after a failed one: %s", err)


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Let ``optimizer`` (Adam and kin) step inside a CUDA graph: its step counts live on the parameters'
    device. Idempotent; also after ``load_state_dict`` of a state saved by a non-capturable optimiser."""
    for group in optimizer.param_groups:
        group['capturable'] = True
        for p in group['params']:
            state = optimizer.state.get(p, {})
            if torch.is_tensor(state.get('step')):
                state['step'] = state['step'].to(p.device, torch.float32)
