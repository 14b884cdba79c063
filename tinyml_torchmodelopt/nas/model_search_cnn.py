"""The search supernet: every edge is a softmax(alpha)-weighted mixture of ops.

Fast evaluation (the point of this module). DARTS evaluates each edge's ops one
by one: hundreds of tiny kernels and autograd nodes per cell. Here every cell
state ``s_j`` that feeds later nodes is ONE block (:func:`.state_block.state_block`;
with the compiled kernels the whole cell is one autograd node, :mod:`.cell_block`)
that computes all candidates of all its outgoing edges and their weighted sums:

* one conv for every ``conv_bn_relu_k`` and ``sep_conv_k`` op of every outgoing
  edge (a separable conv as the full conv its depthwise and pointwise weights
  make) and, for stride-2 states, every factorized-reduce 1x1 conv: the k=3/5/7 kernels are
  centred in one 7-tap weight matrix, one im2col patch matrix is shared and
  each kernel size is one matmul on its rows (no MACs on padding taps);
* activations are kept as (C, N, L) so that convs and the mixing are single
  large matmuls instead of N small ones; batch norm (per channel) runs as the
  faster group-norm kernel over all conv outputs at once, then one ReLU;
* max/avg pool and identity are computed once and shared by all edges;
* 'none' is skipped (it contributes zero);
* the (edges x candidates) matrix built from the softmax weights adds the
  candidates into their target nodes (backward recomputes large conv outputs).

First-order search runs the train and valid batches through ONE joint pass
(:meth:`SearchNetwork.joint_losses`). Ops outside these families (dilated convs)
fall back to one module per edge. ``forward(x, naive=True)`` evaluates the same
weights op by op (the reference DARTS mixture) and is used by the tests to check
the fast path.

Search BN layers use batch statistics only (``affine=False``, no running stats).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .derivation import derivation_cost, derive_genotype, genotype_within_budget
from .genotypes import PRIMITIVES_CNN, Genotype_CNN
from .model import make_classifier, make_preprocess, make_stem, reduction_layers
from .fused_ops import conv_bn_relu_cnl, linear_split
from .state_block import conv_bn_relu_block
from .cell_block import native_cell
from .expected_cost import cost_tables, expected_edge_cost, extreme_cost, node_offsets, num_edges
from .operations import CONV_KERNELS, OPS, SEP_CONV_KERNELS, check_primitives
from .state_candidates import StateCandidates
from .state_plans import conv_candidates, mixing_index, state_plans


def _bn(x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, None, None, training=True, momentum=0.0, eps=1e-5)


def _shared_op(name: str, x: torch.Tensor, stride: int) -> torch.Tensor:
    """Parameter-free op on (N, C, L) or (C, N, L) (pools act on the last axis only)."""
    if name == 'skip_connect':
        return x
    A, B, L = x.shape
    flat = x.reshape(A * B, 1, L)
    if name == 'max_pool_3x1':
        out = F.max_pool1d(flat, 3, stride, 1)
    else:
        out = F.avg_pool1d(flat, 3, stride, 1, count_include_pad=False)
    return out.view(A, B, -1)


def partial_width(C: int, partial_channels: int) -> int:
    """Channels of a C-channel state that pass through the candidate ops (PC-DARTS, 1/K of them)."""
    if partial_channels < 1 or C % partial_channels:
        raise ValueError(f"partial_channels must be >= 1 and divide every cell's channel count; "
                         f"got {partial_channels} for {C} channels")
    return C // partial_channels


def _channel_shuffle_index(C: int, groups: int) -> torch.Tensor:
    """out = x[index] interleaves the ``groups`` channel blocks of x (PC-DARTS' channel shuffle)."""
    return torch.arange(C).view(groups, C // groups).t().reshape(-1)


class SearchCell(nn.Module):
    """One supernet cell. ``partial_channels`` K > 1: partial-channel connections (PC-DARTS, Xu et al.
    2020): on every edge only the first C/K channels go through the candidate ops, the others bypass
    them (max-pooled on stride-2 edges), and the channels are shuffled so that the next edge mixes
    others. The candidate convs then cost K^2 fewer MACs; the derived network keeps all C channels.
    """

    def __init__(self, primitives: list[str], C_prev_prev: int, C_prev: int, C: int,
                 reduction: bool, reduction_prev: bool, steps: int, multiplier: int, partial_channels: int = 1):
        super().__init__()
        self.reduction, self.C, self.steps, self.multiplier = reduction, C, steps, multiplier
        self.Cp = partial_width(C, partial_channels)
        self.primitives = primitives
        self.preprocess0, self.preprocess1 = make_preprocess(C_prev_prev, C_prev, C, reduction_prev,
                                                             affine=False)
        self.plans = state_plans(primitives, steps, reduction)
        self.convs = conv_candidates(primitives)
        self.fused = nn.ModuleList()
        self.generic = nn.ModuleList()
        for plan in self.plans:
            self.fused.append(StateCandidates(self.Cp, plan, self.convs))
            self.generic.append(nn.ModuleList(
                OPS[name](self.Cp, plan.stride, False) for name in plan.generic for _ in range(plan.n_edges)))
        shuffle = _channel_shuffle_index(C, partial_channels) if self.Cp < C else None
        self.register_buffer('_shuffle', shuffle, persistent=False)

    def _bypass(self, x: torch.Tensor, stride: int, channel_dim: int) -> torch.Tensor:
        """The channels an edge passes around its candidates (max-pooled when the edge reduces)."""
        rest = x.narrow(channel_dim, self.Cp, self.C - self.Cp)
        return rest if stride == 1 else _shared_op('max_pool_3x1', rest, stride)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, mixing: list[torch.Tensor],
                split: int | None = None) -> torch.Tensor:
        """Fast path on (C, N, L) tensors; ``mixing[j]`` is the (edges x candidates) matrix of s_j.

        ``split``: joint [train; valid] pass (see :mod:`.fused_ops`).
        """
        if (out := native_cell(self, s0, s1, mixing, split)) is not None:  # the cell as one node (cell_block.py)
            return out
        states = [conv_bn_relu_block(self.preprocess0, s0, split), conv_bn_relu_block(self.preprocess1, s1, split)]
        partial: list[list[torch.Tensor]] = [[] for _ in range(self.steps)]
        bypass: list[list[torch.Tensor]] = [[] for _ in range(self.steps)]
        for plan, fused, generic, W in zip(self.plans, self.fused, self.generic, mixing):
            x = states[plan.j]
            xp = x if self.Cp == self.C else x[:self.Cp]  # partial: a contiguous view (channels lead)
            extras = []
            if len(generic):
                if split is not None:
                    raise ValueError("joint passes support only the fused primitives")
                xt = xp.transpose(0, 1)
                extras = [op(xt).transpose(0, 1).contiguous() for op in generic]
            contrib = fused(xp, W, extras, split)
            for e, piece in enumerate(contrib.unbind(0)):
                partial[plan.first_target + e].append(piece)
            if self._shuffle is not None:
                rest = self._bypass(x, plan.stride, 0)
                for e in range(plan.n_edges):
                    bypass[plan.first_target + e].append(rest)
            if plan.j >= 1:  # node t = j-1 has inputs 0..j: all processed now
                t = plan.j - 1
                node = partial[t][0]
                for p in partial[t][1:]:
                    node = node + p
                node = node.view(self.Cp, x.shape[1], -1)
                if self._shuffle is not None:  # shuffle(cat(mix, bypass)) summed over edges = shuffle of sums
                    rest = bypass[t][0]
                    for b in bypass[t][1:]:
                        rest = rest + b
                    node = torch.cat([node, rest]).index_select(0, self._shuffle)
                states.append(node)
        return torch.cat(states[-self.multiplier:], dim=0)

    # -- reference path: op-by-op DARTS mixture on the same weights -------------
    def forward_naive(self, s0, s1, weights: torch.Tensor) -> torch.Tensor:
        """Reference on (N, C, L) tensors with standard layers, op by op."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offsets = node_offsets(self.steps)
        convs = self.convs
        for t in range(self.steps):
            total = 0
            for j in range(t + 2):
                plan, fused, generic = self.plans[j], self.fused[j], self.generic[j]
                e_local = t - plan.first_target
                w = weights[offsets[t] + j]
                x = states[j][:, :self.Cp]
                edge = 0
                for o, name in enumerate(self.primitives):
                    if name == 'none':
                        continue  # Zero op: contributes exactly 0
                    if name in SEP_CONV_KERNELS:
                        i = [p for p in convs if p in SEP_CONV_KERNELS].index(name)
                        k = SEP_CONV_KERNELS[name]
                        depthwise = fused.depthwise[i][e_local].unsqueeze(1)  # (C, 1, k)
                        pointwise = fused.pointwise[i][e_local].unsqueeze(-1)  # (C, C, 1)
                        y = F.conv1d(x, depthwise, stride=plan.stride, padding=k // 2, groups=x.shape[1])
                        out = F.relu(_bn(F.conv1d(y, pointwise)))
                    elif name in CONV_KERNELS:
                        g = convs.index(name) * plan.n_edges + e_local
                        k = CONV_KERNELS[name]
                        out = F.relu(_bn(F.conv1d(x, fused.group_weight(g), stride=plan.stride, padding=k // 2)))
                    elif name == 'skip_connect' and plan.stride == 2:
                        g = plan.n_conv * plan.n_edges + e_local
                        out = _bn(F.conv1d(x, fused.group_weight(g), stride=2))
                    elif name in plan.generic:
                        out = generic[plan.generic.index(name) * plan.n_edges + e_local](x)
                    else:
                        out = _shared_op(name, x, plan.stride)
                    edge = edge + w[o] * out
                if self._shuffle is not None:
                    edge = torch.cat([edge, self._bypass(states[j], plan.stride, 1)], 1)[:, self._shuffle]
                total = total + edge
            states.append(total)
        return torch.cat(states[-self.multiplier:], dim=1)


class SearchNetwork(nn.Module):
    """The DARTS supernet. Implements the :class:`~.architect.Supernet` protocol.

    ``input_length`` (samples per series) is needed only for :meth:`expected_cost`.
    """

    def __init__(self, C: int, num_classes: int, layers: int, in_channels: int = 1,
                 with_input_batchnorm: bool = True, nodes_per_layer: int = 4, multiplier: int = 4,
                 stem_multiplier: int = 3, primitives=None, input_length: int | None = None,
                 cost_temperature: float = 0.2, keep_temperature: float = 0.1, partial_channels: int = 1,
                 stem_pool: int = 1):
        super().__init__()
        if layers < 3:
            raise ValueError(f"layers must be >= 3, got {layers}")
        if not 1 <= multiplier <= nodes_per_layer:
            raise ValueError(f"multiplier must be in [1, nodes_per_layer={nodes_per_layer}], got {multiplier}")
        self.primitives = check_primitives(PRIMITIVES_CNN if primitives is None else primitives)
        self.config = dict(C=C, num_classes=num_classes, layers=layers, in_channels=in_channels,
                           with_input_batchnorm=with_input_batchnorm, nodes_per_layer=nodes_per_layer,
                           multiplier=multiplier, stem_multiplier=stem_multiplier, stem_pool=stem_pool)
        self.steps, self.multiplier = nodes_per_layer, multiplier
        self.input_length = input_length
        self.cost_temperature, self.keep_temperature = cost_temperature, keep_temperature
        C_stem = stem_multiplier * C
        self.stem = make_stem(in_channels, C_stem, with_input_batchnorm, stem_pool)
        self.stem_pool = stem_pool
        C_pp, C_p, C_curr = C_stem, C_stem, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = reduction_layers(layers)
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            self.cells.append(SearchCell(self.primitives, C_pp, C_p, C_curr, reduction, reduction_prev,
                                         nodes_per_layer, multiplier, partial_channels))
            reduction_prev = reduction
            C_pp, C_p = C_p, multiplier * C_curr
        self.classifier = make_classifier(C_p, num_classes)
        n_e, n_o = num_edges(nodes_per_layer), len(self.primitives)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(n_e, n_o))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(n_e, n_o))
        for kind, cell in (('normal', next(c for c in self.cells if not c.reduction)),
                           ('reduce', next(c for c in self.cells if c.reduction))):
            dst, src, sizes = mixing_index(self.primitives, nodes_per_layer, cell.plans)
            self.register_buffer(f'_dst_{kind}', dst, persistent=False)
            self.register_buffer(f'_src_{kind}', src, persistent=False)
            setattr(self, f'_sizes_{kind}', sizes)
        self._cost_cache: dict = {}
        self._named_weights: tuple | None = None  # built on first use: see named_weights

    # -- Supernet protocol ------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def named_weights(self) -> list[tuple[str, nn.Parameter]]:
        """Every parameter but the alphas. Kept after the first call: walking the module tree three
        times per search step cost ~1 ms of a preset-l step; moving the network (``to``) or loading
        a state dict that replaces the parameters starts a new list."""
        if self._named_weights is None:
            self._named_weights = tuple((n, p) for n, p in self.named_parameters() if not n.startswith('alphas_'))
        return list(self._named_weights)

    def weights(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_weights()]

    def _apply(self, fn, recurse=True):
        self._named_weights = None
        return super()._apply(fn, recurse)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._named_weights = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy; the detached logits are kept in ``last_logits`` for metrics."""
        logits = self(x)
        self.last_logits = logits.detach()
        return F.cross_entropy(logits, y)

    # -- forward ----------------------------------------------------------------
    def _mixing(self, kind: str) -> list[torch.Tensor]:
        w = F.softmax(getattr(self, f'alphas_{kind}'), dim=-1)
        dst, src = getattr(self, f'_dst_{kind}'), getattr(self, f'_src_{kind}')
        sizes = getattr(self, f'_sizes_{kind}')
        dense = w.new_zeros(sum(sizes)).index_put((dst,), w.flatten()[src])
        return list(dense.split(sizes))

    def forward(self, x: torch.Tensor, naive: bool = False, split: int | None = None) -> torch.Tensor:
        """Logits (N, num_classes) for x of shape (N, C, L) or (N, C, L, 1).

        ``split``: x is a joint batch [train; valid] with ``split`` train samples
        (see :meth:`joint_losses`).
        """
        if naive:
            s0 = s1 = self.stem(x)
            wn, wr = F.softmax(self.alphas_normal, -1), F.softmax(self.alphas_reduce, -1)
            for cell in self.cells:
                s0, s1 = s1, cell.forward_naive(s0, s1, wr if cell.reduction else wn)
            return self.classifier(s1)
        x = x.flatten(2).transpose(0, 1).contiguous()  # (C, N, L)
        s0 = s1 = conv_bn_relu_cnl(self.stem, x, split)
        mix = {'normal': self._mixing('normal'), 'reduce': self._mixing('reduce')}
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, mix['reduce' if cell.reduction else 'normal'], split)
        return linear_split(s1.mean(-1).t(), self.classifier[2], split)  # global average pool + linear

    @property
    def supports_joint(self) -> bool:
        """True when every candidate is fused (no per-edge modules): :meth:`joint_losses` works."""
        return not any(len(g) for cell in self.cells for g in cell.generic)

    def block_elements(self, length: int) -> int:
        """Elements per sample of the largest fused conv output of any cell state (input ``length``)."""
        largest, length = 0, length // self.stem_pool
        for cell in self.cells:
            for plan in cell.plans:
                largest = max(largest, plan.n_fused * cell.Cp * -(-length // plan.stride))
            if cell.reduction:
                length = -(-length // 2)
        return largest

    def joint_losses(self, x_train, y_train, x_valid, y_valid) -> tuple[torch.Tensor, torch.Tensor]:
        """(train loss, valid loss) from ONE pass over the batch [train; valid] of equal halves.

        Batch norm keeps separate statistics per half, so each loss equals the one
        a separate pass would give; the weights receive gradients from the train
        loss only and the alphas from the valid loss only (:mod:`.fused_ops`), so
        ``grad(train + valid)`` yields both first-order DARTS gradients at once.
        ``last_logits`` holds the train logits, ``last_valid_logits`` the valid ones.
        """
        n = len(x_train)
        logits = self(torch.cat([x_train, x_valid]), split=n)
        self.last_logits, self.last_valid_logits = logits[:n].detach(), logits[n:].detach()
        return F.cross_entropy(logits[:n], y_train), F.cross_entropy(logits[n:], y_valid)

    # -- derivation -------------------------------------------------------------
    def genotype(self, alphas_normal: torch.Tensor | None = None,
                 alphas_reduce: torch.Tensor | None = None) -> Genotype_CNN:
        an = self.alphas_normal if alphas_normal is None else alphas_normal
        ar = self.alphas_reduce if alphas_reduce is None else alphas_reduce
        wn, wr = F.softmax(torch.stack([an.detach(), ar.detach()]), -1).cpu()  # one host copy, not one per edge
        return derive_genotype(wn, wr, self.primitives, self.steps, self.multiplier)

    # -- differentiable cost ----------------------------------------------------
    def cost_tables(self, kind: str):
        """(fixed, per_edge_normal, per_edge_reduce) in units of ``kind`` ('params' | 'macs').

        per_edge_* are (n_edges, n_ops) tensors summed over all cells of that type;
        the costs come from :func:`profile_model` of the very modules the derived
        network will contain (final-model BN is affine).
        """
        if self.input_length is None:
            raise ValueError("expected_cost needs input_length (set SearchNetwork.input_length)")
        key = (kind, self.input_length)
        if key not in self._cost_cache:
            self._cost_cache[key] = cost_tables(self.primitives, self.steps, kind, self.input_length, **self.config)
        return self._cost_cache[key]

    def expected_cost(self, kind: str, normalized: bool = True) -> torch.Tensor:
        """Expected params/MACs of the derived model as a differentiable function of alphas.

        Per edge: P(edge kept among the top-2 inputs of its node) x the
        softmax-over-non-'none'-ops weighted op cost; plus the fixed costs (stem,
        preprocessing, classifier). ``normalized`` divides by the largest
        derivable cost so the penalty lies in [0, 1].
        """
        fixed, _, _, largest = self.cost_tables(kind)
        cn, cr = self._tables_on_device(kind, self.alphas_normal.dtype)
        total = fixed + expected_edge_cost(self.alphas_normal, cn, self.primitives,
                                        self.steps, self.cost_temperature, self.keep_temperature)
        total = total + expected_edge_cost(self.alphas_reduce, cr, self.primitives,
                                        self.steps, self.cost_temperature, self.keep_temperature)
        return total / largest if normalized else total

    def _tables_on_device(self, kind: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-edge cost tables on the alphas' device in ``dtype``, copied once."""
        key = (kind, self.input_length, self.alphas_normal.device, dtype)
        if key not in self._cost_cache:
            self._cost_cache[key] = tuple(t.to(self.alphas_normal.device, dtype) for t in self.cost_tables(kind)[1:3])
        return self._cost_cache[key]

    def derived_cost_tensor(self, kind: str) -> torch.Tensor:
        """:meth:`derived_cost` of the current derivation as a float64 tensor on the alphas' device (no host read)."""
        return self.cost_tables(kind)[0] + derivation_cost(self.arch_parameters(),
                                                           self._tables_on_device(kind, torch.float64),
                                                           self.primitives, self.steps)

    def derived_cost(self, kind: str, genotype: Genotype_CNN | None = None) -> float:
        """Exact params/MACs of the network derived from ``genotype`` (default: the current one)."""
        genotype = self.genotype() if genotype is None else genotype
        fixed, cn, cr, _ = self.cost_tables(kind)
        offsets, total = node_offsets(self.steps), fixed
        for genes, table in ((genotype.normal, cn), (genotype.reduce, cr)):
            for k, (name, j) in enumerate(genes):
                total += float(table[offsets[k // 2] + j, self.primitives.index(name)])
        return total

    def genotype_within_budget(self, kind: str, target: float, tolerance: float = 0.2) -> Genotype_CNN | None:
        """The derivation of the current alphas with the highest log-weight whose cost (``derived_cost``)
        lies within ``tolerance`` of ``target``, or None when none does; the plain derivation when it is
        already inside (see :func:`derivation.genotype_within_budget`)."""
        plain = self.genotype()
        if abs(self.derived_cost(kind, plain) / target - 1) <= tolerance:
            return plain
        fixed, cn, cr, _ = self.cost_tables(kind)
        return genotype_within_budget((self.alphas_normal, self.alphas_reduce), (cn, cr), fixed, self.primitives,
                                      self.steps, plain.normal_concat, target, tolerance)

    def cost_range(self, kind: str) -> tuple[float, float]:
        """(smallest, largest) cost of any derivable genotype."""
        fixed, cn, cr, largest = self.cost_tables(kind)
        return fixed + extreme_cost(cn, self.primitives, self.steps, min) + extreme_cost(cr, self.primitives,
                                                                                 self.steps, min), largest
