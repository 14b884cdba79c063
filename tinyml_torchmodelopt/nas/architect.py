"""Architecture (alpha) updates: first-order and unrolled second-order DARTS.

The unrolled step (Liu et al., 2019, eq. 7-8) needs grad_alpha L_val(w', alpha)
with w' = w - xi * grad_w L_train(w, alpha). It is computed by perturbing the
supernet weights in place and restoring them (no deep copy, no rebuilt model):

    dalpha = grad_alpha L_val(w') - xi * (grad_alpha L_train(w+) - grad_alpha L_train(w-)) / (2 eps)
    w+- = w -+ ... = w +- eps * v,   v = grad_w' L_val(w'),   eps = 0.01 / ||v||

(finite-difference Hessian-vector product). When ||v|| = 0 the second-order
term is exactly zero and is skipped (on a CUDA device, where the step is a
captured graph and cannot branch on a value, masked to zero), instead of
dividing by zero (the reference turned every weight into NaN there).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, NamedTuple, Protocol, Sequence

import torch
from torch import nn

from .cuda_graph import GraphedJointPass, GraphedPass, GraphedUpdate, eager_joint_pass, make_capturable


class Supernet(Protocol):
    """What the architect needs from a search network."""

    def arch_parameters(self) -> list[nn.Parameter]: ...

    def weights(self) -> list[nn.Parameter]: ...

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def expected_cost(self, kind: str, normalized: bool = True) -> torch.Tensor: ...

    def derived_cost(self, kind: str) -> float: ...

    # optional, for :meth:`Architect.joint_step`:
    # joint_losses(x_train, y_train, x_valid, y_valid) -> (train_loss, valid_loss)
    # optional, for budget mode on a CUDA device: derived_cost_tensor(kind) -> derived_cost as a 0-d tensor


COST_KIND = {'Memory': 'params', 'Compute': 'macs'}


class StepResult(NamedTuple):
    """One search iteration: the alphas are updated; ``weight_grads`` is grad_w L_train for the weight optimiser."""
    train_loss: torch.Tensor
    weight_grads: list
    valid_loss: torch.Tensor
    train_logits: torch.Tensor
    valid_logits: torch.Tensor


@contextmanager
def frozen(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """Build graphs in which ``params`` need no gradient (autograd then skips their work)."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


class Architect:
    """Updates the alphas of ``model`` with Adam (betas 0.5, 0.999).

    penalty_mode: None | 'Memory' | 'Compute'; the penalty added to the
    validation loss is ``penalty_weight * expected_cost / largest_cost``.
    beta_decay: weight of the beta-DARTS regulariser (mean logsumexp of alphas).
    budget: target cost (params for 'Memory', MACs for 'Compute'). Budget mode
    replaces the fixed weight by a Lagrange multiplier of the constraint
    cost = budget: the penalty is ``lambda * E[cost] / budget`` and after every
    step ``lambda += budget_rate * clip(derived_cost / budget - 1, -1, 1)`` (dual
    ascent on the cost of the model that would be derived now). lambda may turn
    negative, which pulls a model that is too small upwards. ``budget_quadratic``
    (rho) adds ``rho / 2 * (E[cost] / budget - 1) ** 2`` (augmented Lagrangian): a
    well around the target that damps the swings of the multiplier when the
    validation loss gives the alphas little else to follow. ``cuda_graphs``: on a
    CUDA device, :meth:`joint_step` replays its pass, and every step its alpha
    update, from captured CUDA graphs (:mod:`.cuda_graph`); in budget mode the
    multiplier then lives on the device.
    """

    def __init__(self, model: Supernet, arch_learning_rate: float = 3e-4, arch_weight_decay: float = 1e-3,
                 unrolled: bool = False, momentum: float = 0.9, weight_decay: float = 3e-4,
                 penalty_mode: str | None = None, penalty_weight: float = 0.0, beta_decay: float = 0.0,
                 budget: float | None = None, budget_rate: float = 0.2, budget_quadratic: float = 0.0,
                 cuda_graphs: bool = True):
        if penalty_mode not in (None, 'Memory', 'Compute'):
            raise ValueError(f"penalty_mode: got {penalty_mode!r}; expected None, 'Memory' or 'Compute'")
        self.model = model
        self.unrolled = unrolled
        self.momentum, self.weight_decay = momentum, weight_decay
        self.penalty_mode, self.penalty_weight, self.beta_decay = penalty_mode, penalty_weight, beta_decay
        if budget is not None and penalty_mode is None:
            raise ValueError("a budget needs penalty_mode 'Memory' or 'Compute'")
        self.budget, self.budget_rate, self.budget_quadratic = budget, budget_rate, budget_quadratic
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=arch_learning_rate,
                                          betas=(0.5, 0.999), weight_decay=arch_weight_decay)
        self.last_val_loss = torch.zeros(())
        self.fd_radius = 1e-2  # DARTS: eps = 0.01 / ||v|| for the finite-difference Hessian product
        self.cuda_graphs = cuda_graphs  # joint passes on a CUDA device replay a captured graph
        self._joint_passes: dict = {}  # 'all' / 'weights' -> the pass, built on first use
        self._graphed_update: GraphedUpdate | None = None  # the alpha update on a CUDA device, built on first use
        self._multiplier: torch.Tensor | None = None  # its budget multiplier (a device buffer)
        self._graphed_unrolled: tuple | None = None  # (weight optimiser, the unrolled pass as a CUDA graph)

    # -- regularisers -----------------------------------------------------------
    def regularizer(self) -> torch.Tensor:
        """Penalty (+ beta-decay) as a differentiable function of the alphas only."""
        alphas = self.model.arch_parameters()
        total = alphas[0].new_zeros(())
        if self.budget is not None:
            g = self.model.expected_cost(COST_KIND[self.penalty_mode], normalized=False) / self.budget
            total = total + self.penalty_weight * g + 0.5 * self.budget_quadratic * (g - 1) ** 2
        elif self.penalty_mode is not None and self.penalty_weight > 0:
            total = total + self.penalty_weight * self.model.expected_cost(COST_KIND[self.penalty_mode])
        if self.beta_decay > 0:
            total = total + self.beta_decay * torch.stack([torch.logsumexp(a, -1).mean() for a in alphas]).mean()
        return total

    # -- step -------------------------------------------------------------------
    def step(self, x_train, y_train, x_valid, y_valid, eta: float,
             weight_optimizer: torch.optim.Optimizer | None = None) -> torch.Tensor:
        """One alpha update; returns the validation loss (detached)."""
        alphas = self.model.arch_parameters()
        if self.unrolled:
            grads, val_loss = self._unrolled_gradient(x_train, y_train, x_valid, y_valid, eta, weight_optimizer)
        else:
            with frozen(self.model.weights()):
                val_loss = self.model.loss(x_valid, y_valid)
            grads = list(torch.autograd.grad(val_loss, alphas))
        self._update_alphas(grads)
        self.last_val_loss = val_loss.detach()  # a tensor: reading it would sync a GPU
        return val_loss.detach()

    def joint_step(self, x_train, y_train, x_valid, y_valid) -> StepResult:
        """First-order DARTS iteration from ONE pass over [train; valid] (equal halves).

        Updates the alphas with grad_alpha L_valid (+ regulariser) and returns
        grad_w L_train at the same point for the caller's weight optimiser: the
        alphas and the weights both step from (w_t, alpha_t) instead of the weights
        seeing alpha_{t+1}; the difference is of the order of the alpha learning
        rate. Needs ``model.joint_losses`` (see ``SearchNetwork.joint_losses``).
        """
        alphas = self.model.arch_parameters()
        p = self._joint_pass('all')(x_train, y_train, x_valid, y_valid)
        self._update_alphas(list(p.grads[:len(alphas)]))
        self.last_val_loss = p.valid_loss  # a tensor: reading it would sync a GPU
        return StepResult(p.train_loss, list(p.grads[len(alphas):]), p.valid_loss, p.train_logits, p.valid_logits)

    def alternating_step(self, x_train, y_train, x_valid, y_valid, eta: float,
                         weight_optimizer: torch.optim.Optimizer | None = None) -> StepResult:
        """Alpha update (:meth:`step`), then grad_w L_train at the new alphas (the original DARTS order)."""
        model = self.model
        val_loss = self.step(x_train, y_train, x_valid, y_valid, eta, weight_optimizer)
        valid_logits = model.last_logits
        with frozen(model.arch_parameters()):
            train_loss = model.loss(x_train, y_train)
        grads = list(torch.autograd.grad(train_loss, model.weights()))
        return StepResult(train_loss.detach(), grads, val_loss, model.last_logits, valid_logits)

    def unrolled_step(self, x_train, y_train, x_valid, y_valid, eta: float,
                      weight_optimizer: torch.optim.Optimizer | None = None) -> StepResult:
        """Second-order alpha update; the weight gradient is the one of the virtual step (w_t, alpha_t).

        Reusing it saves one of the five passes of an unrolled iteration (the
        same simultaneous update as :meth:`joint_step`).
        """
        val_loss = self.step(x_train, y_train, x_valid, y_valid, eta, weight_optimizer)
        train_loss, grads, train_logits = self._virtual_step_train
        return StepResult(train_loss, grads, val_loss, train_logits, self.model.last_logits)

    def weight_step(self, x_train, y_train, x_valid, y_valid, joint: bool = False) -> StepResult:
        """Warm-up iteration: grad_w L_train only, alphas untouched (validation loss for the log).

        ``joint``: from one pass over [train; valid] (equal halves) when that pass is a
        CUDA graph; on the CPU the two separate passes (the valid one without a
        backward) are cheaper.
        """
        model = self.model
        if joint and self._graphed():
            p = self._joint_pass('weights')(x_train, y_train, x_valid, y_valid)
            return StepResult(p.train_loss, list(p.grads), p.valid_loss, p.train_logits, p.valid_logits)
        with torch.no_grad():
            val_loss = model.loss(x_valid, y_valid)
        valid_logits = model.last_logits
        with frozen(model.arch_parameters()):
            train_loss = model.loss(x_train, y_train)
        grads = list(torch.autograd.grad(train_loss, model.weights()))
        return StepResult(train_loss.detach(), grads, val_loss, model.last_logits, valid_logits)

    def _graphed(self) -> bool:
        return self.cuda_graphs and self.model.arch_parameters()[0].is_cuda

    def _joint_pass(self, wrt: str):
        """The joint pass giving the gradients of ``wrt`` ('all': alphas + weights, or 'weights')."""
        if wrt not in self._joint_passes:
            params = self.model.weights() if wrt == 'weights' else self.model.arch_parameters() + self.model.weights()
            build = GraphedJointPass if self._graphed() else eager_joint_pass
            self._joint_passes[wrt] = build(self.model, params)
        return self._joint_passes[wrt]

    def _update_alphas(self, grads: list[torch.Tensor]) -> None:
        """Add the regulariser's gradient, take one Adam step, update the budget multiplier.

        On a CUDA device with graphs this replays one captured graph instead of ~300 small
        kernels; the budget multiplier is then a device tensor updated in place.
        """
        if not (self._graphed() and (self.budget is None or hasattr(self.model, 'derived_cost_tensor'))):
            self._alpha_update(grads)
            return
        if self._graphed_update is None:
            make_capturable(self.optimizer)
            alpha = self.model.arch_parameters()[0]
            self._multiplier = torch.zeros((), dtype=alpha.dtype, device=alpha.device)
            self._graphed_update = GraphedUpdate(lambda *g: self._alpha_update(list(g)))
        if self.budget is not None and self.penalty_weight is not self._multiplier:
            self._multiplier.copy_(torch.as_tensor(self.penalty_weight))  # set from outside (start, resume)
            self.penalty_weight = self._multiplier
        self._graphed_update(*grads)

    def load_optimizer_state(self, state: dict) -> None:
        """Restore the alpha optimiser (resume), also from a run on another device."""
        self.optimizer.load_state_dict(state)
        for group in self.optimizer.param_groups:  # a CUDA run's optimiser was capturable; set again when graphed
            group['capturable'] = False
        if self._graphed_update is not None:
            make_capturable(self.optimizer)

    def _alpha_update(self, grads: list[torch.Tensor]) -> None:
        alphas = self.model.arch_parameters()
        reg = self.regularizer()
        if reg.requires_grad:
            grads = [g + r for g, r in zip(grads, torch.autograd.grad(reg, alphas))]
        for a, g in zip(alphas, grads):
            a.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.budget is None:
            return
        if torch.is_tensor(self.penalty_weight):  # on the device: no host read per step
            g = (self.model.derived_cost_tensor(COST_KIND[self.penalty_mode]) / self.budget - 1).clamp(-1.0, 1.0)
            self.penalty_weight.copy_((self.penalty_weight + self.budget_rate * g).clamp(-100.0, 100.0))
        else:  # dual ascent on the multiplier
            g = self.model.derived_cost(COST_KIND[self.penalty_mode]) / self.budget - 1
            g = max(-1.0, min(1.0, g))
            self.penalty_weight = max(-100.0, min(100.0, self.penalty_weight + self.budget_rate * g))

    def _unrolled_gradient(self, x_train, y_train, x_valid, y_valid, eta: float,
                           weight_optimizer: torch.optim.Optimizer | None):
        """:meth:`unrolled_gradient`, on a CUDA device replayed from a CUDA graph (its four passes and the
        virtual step are many thousands of small kernels op by op) once the weight optimiser's momentum
        buffers exist (the virtual step reads them)."""
        if not (self._graphed() and _momentum_ready(weight_optimizer, self.model.weights())):
            return self.unrolled_gradient(x_train, y_train, x_valid, y_valid, eta, weight_optimizer)
        if self._graphed_unrolled is None or self._graphed_unrolled[0] is not weight_optimizer:
            self._graphed_unrolled = (weight_optimizer, GraphedPass(self._unrolled_pass(weight_optimizer)))
        alpha = self.model.arch_parameters()[0]
        eta = torch.full((), eta, dtype=alpha.dtype, device=alpha.device)  # an input: it changes per epoch
        out = self._graphed_unrolled[1](x_train, y_train, x_valid, y_valid, eta)
        n_alphas = len(self.model.arch_parameters())
        val_loss, train_loss, train_logits, val_logits = out[:4]
        self._virtual_step_train = (train_loss, list(out[4 + n_alphas:]), train_logits)
        self.model.last_logits = val_logits
        return list(out[4:4 + n_alphas]), val_loss

    def _unrolled_pass(self, weight_optimizer: torch.optim.Optimizer | None):
        """:meth:`unrolled_gradient` as a pure function of tensors (the graph's outputs)."""
        def run(x_train, y_train, x_valid, y_valid, eta):
            d_alpha, val_loss = self.unrolled_gradient(x_train, y_train, x_valid, y_valid, eta, weight_optimizer)
            train_loss, g_train, train_logits = self._virtual_step_train
            return (val_loss.detach(), train_loss, train_logits.detach(), self.model.last_logits.detach(),
                    *d_alpha, *g_train)
        return run

    def unrolled_gradient(self, x_train, y_train, x_valid, y_valid, eta: float,
                          weight_optimizer: torch.optim.Optimizer | None = None):
        """Second-order DARTS gradient w.r.t. the alphas (weights are restored afterwards)."""
        model, alphas, weights = self.model, self.model.arch_parameters(), self.model.weights()
        # virtual step w' = w - eta * (momentum_buffer * mu + grad + wd * w), as SGD would do
        with frozen(alphas):
            train_loss = model.loss(x_train, y_train)
        g_train = torch.autograd.grad(train_loss, weights)
        self._virtual_step_train = (train_loss.detach(), list(g_train), getattr(model, 'last_logits', None))
        with torch.no_grad():
            step = torch._foreach_add(list(g_train), weights, alpha=self.weight_decay)
            if weight_optimizer is not None:
                moving = [(s, buf) for s, w in zip(step, weights)
                          if (buf := weight_optimizer.state.get(w, {}).get('momentum_buffer')) is not None]
                if moving:
                    torch._foreach_add_([s for s, _ in moving], [b for _, b in moving], alpha=self.momentum)
            backup = torch._foreach_mul(weights, 1.0)  # detached copies (no_grad)
            _add_scaled(weights, step, -eta)
        try:
            val_loss = model.loss(x_valid, y_valid)
            val_logits = getattr(model, 'last_logits', None)
            grads = torch.autograd.grad(val_loss, alphas + weights)
            d_alpha, v = list(grads[:len(alphas)]), grads[len(alphas):]
            implicit = self._hessian_vector_product(v, backup, x_train, y_train, self.fd_radius)
            if implicit is not None:
                d_alpha = [d - eta * h for d, h in zip(d_alpha, implicit)]
        finally:
            with torch.no_grad():
                torch._foreach_copy_(weights, backup)
        if val_logits is not None:
            model.last_logits = val_logits  # the metrics want the validation logits, not the last FD pass
        return d_alpha, val_loss

    def _hessian_vector_product(self, v: Sequence[torch.Tensor], w0: Sequence[torch.Tensor],
                                x, y, r: float = 1e-2):
        """(grad_a L(w0 + eps v) - grad_a L(w0 - eps v)) / (2 eps), eps = r / ||v||; None if v == 0.

        On a CUDA device with graphs eps stays a device tensor (no host read, so the step can be
        captured): a zero or non-finite ||v|| then gives a zero term instead of None.
        """
        model, alphas, weights = self.model, self.model.arch_parameters(), self.model.weights()
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(v))))
        ok = None
        if self._graphed():
            ok = torch.isfinite(norm) & (norm > 0)
            eps = torch.where(ok, r / norm, torch.zeros_like(norm))
        elif not torch.isfinite(norm) or float(norm) == 0.0:
            return None
        else:
            eps = r / float(norm)
        g = []
        for sign in (1, -1):
            with torch.no_grad():
                torch._foreach_copy_(weights, w0)
                _add_scaled(weights, v, eps * sign)
            with frozen(weights):
                loss = model.loss(x, y)
            g.append(torch.autograd.grad(loss, alphas))
        if ok is None:
            return [(p - n) / (2 * eps) for p, n in zip(*g)]
        half_inverse = torch.where(ok, 0.5 / eps, torch.zeros_like(eps))
        return [torch.where(ok, (p - n) * half_inverse, torch.zeros_like(p)) for p, n in zip(*g)]


def _momentum_ready(optimizer: torch.optim.Optimizer | None, weights: Sequence[torch.Tensor]) -> bool:
    """True when the virtual step of an unrolled iteration will not change shape any more: no optimiser,
    no momentum, or every weight's momentum buffer made (by the first weight step)."""
    if optimizer is None or not any(group.get('momentum', 0) for group in optimizer.param_groups):
        return True
    return all(optimizer.state.get(w, {}).get('momentum_buffer') is not None for w in weights)


def _add_scaled(tensors: list[torch.Tensor], other: Sequence[torch.Tensor], scale) -> None:
    """tensors += scale * other, in place; ``scale`` a number or a 0-d tensor (device-side, capturable)."""
    if torch.is_tensor(scale):
        torch._foreach_add_(tensors, torch._foreach_mul(list(other), scale))
    else:
        torch._foreach_add_(tensors, list(other), alpha=scale)
