"""The DARTS search loop: weights on the train loader, alphas on the valid loader.

``search(train_loader, valid_loader, settings)`` returns a frozen
:class:`SearchResult`; ``search_and_get_model(args)`` is the argparse-style
entry point of the seed README and returns the untrained final ``NetworkCnn``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from ..profile import profile_model
from .architect import COST_KIND, Architect
from .fused_ops import release_scratch
from .state_block import SEARCH_KEEP_BYTES, conv_outputs_kept
from .genotypes import PRIMITIVES_CNN, Genotype_CNN, genotype_from_dict, genotype_to_dict
from .model import NetworkCnn, check_stem_pool
from .model_search_cnn import SearchNetwork
from .operations import PARAMETER_FREE
from .utils import BatchSource, SampleStream, correct, load_checkpoint, save_checkpoint


@dataclass(frozen=True)
class SearchSettings:
    """Everything a search needs besides the data. Lengths/shapes come from the data."""
    num_classes: int
    init_channels: int = 4
    layers: int = 3
    in_channels: int = 1
    with_input_batchnorm: bool = True
    nodes_per_layer: int = 4
    multiplier: int = 4
    stem_multiplier: int = 3
    stem_pool: int = 1  # > 1: max pool after the stem conv (L -> L // stem_pool), for long inputs
    primitives: tuple[str, ...] = tuple(PRIMITIVES_CNN)
    epochs: int = 10
    warmup_epochs: int = 0  # first epochs train the weights only (alphas frozen)
    min_steps_per_epoch: int = 1  # small training sets: an epoch cycles the data until this many steps
    max_steps_per_epoch: Optional[int] = None  # large training sets: an epoch ends after this many steps
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_learning_rate: float = 3e-4
    arch_weight_decay: float = 1e-3
    unrolled: bool = False
    # first-order: one pass over [train; valid] per iteration (Architect.joint_step) instead of two;
    # None = when the largest fused conv output of the joint batch stays under joint_max_bytes
    joint_passes: Optional[bool] = None
    joint_max_bytes: int = 4 * 2 ** 20
    cuda_graphs: bool = True  # on a CUDA device, joint passes and alpha updates replay CUDA graphs (cuda_graph.py)
    optimization_mode: Optional[str] = None  # None | 'Memory' | 'Compute'
    penalty_weight: float = 0.5  # weight of the normalised cost penalty (scale-free)
    target_params: Optional[int] = None  # budget mode (Memory): adapt the weight to land here
    target_macs: Optional[int] = None  # budget mode (Compute)
    budget_rate: float = 0.2  # dual-ascent step of the budget-mode multiplier, per arch step
    budget_quadratic: float = 0.0  # augmented-Lagrangian weight rho: + rho/2 * (E[cost]/target - 1)^2 (0 = off)
    beta_decay: float = 0.0  # beta-DARTS regularisation weight (0 = off)
    partial_channels: int = 1  # K > 1: PC-DARTS, 1/K of the channels through the candidates (K^2 fewer MACs)
    cost_temperature: float = 0.2  # sharpness of the expected op choice (0.2: rank corr. > 0.9)
    keep_temperature: float = 0.1  # sharpness of the expected top-2 edge choice
    seed: int = 0
    device: str = 'cpu'
    in_memory_max_bytes: int = 256 * 2 ** 20

    def __post_init__(self):
        if self.optimization_mode not in (None, 'Memory', 'Compute'):
            raise ValueError(f"optimization_mode: got {self.optimization_mode!r}; expected None, 'Memory' "
                             "or 'Compute'")
        if self.target_params is not None and self.target_macs is not None:
            raise ValueError("set at most one of target_params, target_macs")
        if self.layers < 3:
            raise ValueError(f"layers: got {self.layers}; the minimum is 3")
        if not 1 <= self.multiplier <= self.nodes_per_layer:
            raise ValueError(f"multiplier (fanout concat): got {self.multiplier}; expected 1..nodes_per_layer "
                             f"(1..{self.nodes_per_layer})")
        check_stem_pool(self.stem_pool)
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs: got {self.warmup_epochs}; expected 0..epochs-1 "
                             f"(epochs={self.epochs}); the alphas must learn in at least one epoch")
        if self.min_steps_per_epoch < 1:
            raise ValueError(f"min_steps_per_epoch: got {self.min_steps_per_epoch}; expected >= 1")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < self.min_steps_per_epoch:
            raise ValueError(f"max_steps_per_epoch: got {self.max_steps_per_epoch}; expected None or >= "
                             f"min_steps_per_epoch={self.min_steps_per_epoch}")
        if self.partial_channels < 1 or self.init_channels % self.partial_channels:
            raise ValueError(f"partial_channels: got {self.partial_channels}; expected a divisor of "
                             f"init_channels={self.init_channels} (1 = off)")

    @property
    def penalty_mode(self) -> Optional[str]:
        if self.target_params is not None:
            return 'Memory'
        if self.target_macs is not None:
            return 'Compute'
        return self.optimization_mode

    @property
    def target(self) -> Optional[int]:
        return self.target_params if self.target_params is not None else self.target_macs

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d['primitives'] = list(self.primitives)
        return d


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    genotype: dict
    params: int
    macs: int
    train_loss: float
    train_accuracy: float
    valid_loss: float
    valid_accuracy: float
    penalty_weight: float
    expected_cost: Optional[float]
    alphas_normal: list  # softmax(alpha), (edges, ops)
    alphas_reduce: list
    seconds: float
    samples_per_second: float
    alphas_learned: bool = True  # False in warm-up epochs: the genotype comes from the initial alphas

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SearchResult:
    genotype: Genotype_CNN
    params: int
    macs: int
    history: tuple[EpochRecord, ...]
    alphas_normal: list  # final raw alphas
    alphas_reduce: list
    primitives: tuple[str, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    update_scheme: str = ''  # 'joint' | 'alternating' (first-order) | 'unrolled'

    def to_dict(self) -> dict:
        return {'genotype': genotype_to_dict(self.genotype), 'params': self.params, 'macs': self.macs,
                'history': [r.to_dict() for r in self.history], 'alphas_normal': self.alphas_normal,
                'alphas_reduce': self.alphas_reduce, 'primitives': list(self.primitives),
                'warnings': list(self.warnings), 'seconds': self.seconds, 'update_scheme': self.update_scheme}


def build_final_model(settings: SearchSettings, genotype: Genotype_CNN) -> NetworkCnn:
    return NetworkCnn(settings.init_channels, settings.num_classes, settings.layers, genotype,
                      settings.in_channels, settings.with_input_batchnorm, settings.nodes_per_layer,
                      settings.multiplier, settings.stem_multiplier, settings.stem_pool)


def collapse_fraction(genotype: Genotype_CNN) -> float:
    """Share of normal-cell edges taken by parameter-free ops (DARTS collapse symptom)."""
    return sum(op in PARAMETER_FREE for op, _ in genotype.normal) / max(1, len(genotype.normal))


def cells_without_convs(genotype: Genotype_CNN) -> bool:
    """True when no edge of either cell type holds a parametric op."""
    return all(op in PARAMETER_FREE for op, _ in (*genotype.normal, *genotype.reduce))


def _softmax_list(a: torch.Tensor) -> list:
    return [[round(v, 6) for v in row] for row in F.softmax(a.detach().float().cpu(), -1).tolist()]


def search(train_loader, valid_loader, settings: SearchSettings, *,
           on_epoch: Callable[[EpochRecord], Any] | None = None,
           checkpoint_path: str | os.PathLike | None = None) -> SearchResult:
    """Bilevel DARTS search. Resumes from ``checkpoint_path`` when it exists and
    rewrites it (atomically) after every epoch."""
    device = torch.device(settings.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"device {settings.device!r}: this PyTorch ({torch.__version__}) sees no CUDA device; "
                         "use device='cpu'")
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    train = BatchSource(train_loader, device, settings.in_memory_max_bytes, num_classes=settings.num_classes,
                        name='training')
    valid = BatchSource(valid_loader, device, settings.in_memory_max_bytes, num_classes=settings.num_classes,
                        name='validation')
    in_channels, length = train.sample_shape
    if in_channels != settings.in_channels:
        raise ValueError(f"data has {in_channels} channels; settings.in_channels is {settings.in_channels}")
    if length // settings.stem_pool < 4:
        if settings.stem_pool == 1:
            raise ValueError(f"inputs of {length} samples are too short: the cells need at least 4")
        raise ValueError(f"stem_pool={settings.stem_pool} leaves {length // settings.stem_pool} of {length} "
                         "samples for the cells; use a smaller stem_pool (>= 4 samples are needed)")

    model = SearchNetwork(settings.init_channels, settings.num_classes, settings.layers, settings.in_channels,
                          settings.with_input_batchnorm, settings.nodes_per_layer, settings.multiplier,
                          settings.stem_multiplier, list(settings.primitives), input_length=length,
                          cost_temperature=settings.cost_temperature,
                          keep_temperature=settings.keep_temperature,
                          partial_channels=settings.partial_channels, stem_pool=settings.stem_pool).to(device)
    weights = model.weights()
    # fused: one kernel per tensor instead of a few Python-dispatched ops (0.21 -> 0.13 ms per step for
    # preset s on the CPU, 0.58 -> 0.36 for m); it rounds the update differently in the last bit
    w_opt = torch.optim.SGD(weights, settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay,
                            fused=device.type in ('cpu', 'cuda'))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, settings.epochs, eta_min=settings.lr_min)
    mode = settings.penalty_mode
    architect = Architect(model, settings.arch_learning_rate, settings.arch_weight_decay, settings.unrolled,
                          settings.momentum, settings.weight_decay, mode,
                          settings.penalty_weight if mode else 0.0, settings.beta_decay,
                          budget=settings.target, budget_rate=settings.budget_rate,
                          budget_quadratic=settings.budget_quadratic, cuda_graphs=settings.cuda_graphs)
    notes: list[str] = []
    target = settings.target
    if target is not None:
        lo, hi = model.cost_range(COST_KIND[mode])
        if not 0.8 * lo <= target <= 1.2 * hi:
            notes.append(f"budget {target} {COST_KIND[mode]} is unreachable: derivable models cost "
                         f"{int(lo)}..{int(hi)}; the search aims at the nearest end")
        architect.penalty_weight = 0.0  # the Lagrange multiplier starts at 0

    history: list[EpochRecord] = []
    start_epoch = 0
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path, device)
        model.load_state_dict(state['model'])
        w_opt.load_state_dict(state['w_opt'])
        architect.load_optimizer_state(state['a_opt'])
        sched.load_state_dict(state['sched'])
        architect.penalty_weight = state['penalty_weight']
        torch.set_rng_state(state['rng_torch'])
        gen.set_state(state['rng_gen'])
        history = [EpochRecord(**r) for r in state['history']]
        start_epoch = state['epoch'] + 1

    started = time.perf_counter()
    for epoch in range(start_epoch, settings.epochs):
        t0 = time.perf_counter()
        lr = sched.get_last_lr()[0]
        learning = epoch >= settings.warmup_epochs
        with conv_outputs_kept(SEARCH_KEEP_BYTES):  # larger conv outputs kept for the backward: faster
            stats = _run_epoch(model, architect, w_opt, train, valid, gen, lr, settings, target,
                               update_alphas=learning)
        if not math.isfinite(stats['train_loss'] + stats['valid_loss']):
            raise FloatingPointError(f"search epoch {epoch + 1}: the loss is no longer finite (train "
                                     f"{stats['train_loss']}, validation {stats['valid_loss']}); lower the "
                                     f"learning rates (lr={settings.lr}, arch_learning_rate="
                                     f"{settings.arch_learning_rate})")
        sched.step()
        seconds = time.perf_counter() - t0
        genotype = model.genotype()
        prof = profile_model(build_final_model(settings, genotype), (settings.in_channels, length))
        with torch.no_grad():
            expected = float(model.expected_cost(COST_KIND[mode], normalized=False).detach()) if mode else None
        record = EpochRecord(epoch, genotype_to_dict(genotype), prof.params, prof.macs, stats['train_loss'],
                             stats['train_acc'], stats['valid_loss'], stats['valid_acc'],
                             float(architect.penalty_weight), expected, _softmax_list(model.alphas_normal),
                             _softmax_list(model.alphas_reduce), seconds, stats['samples'] / max(seconds, 1e-9),
                             learning)
        history.append(record)
        if checkpoint_path is not None:
            save_checkpoint({'model': model.state_dict(), 'w_opt': w_opt.state_dict(),
                             'a_opt': architect.optimizer.state_dict(), 'sched': sched.state_dict(),
                             'penalty_weight': float(architect.penalty_weight),
                             'rng_torch': torch.get_rng_state(), 'rng_gen': gen.get_state(), 'epoch': epoch,
                             'history': [r.to_dict() for r in history], 'settings': settings.to_dict()},
                            checkpoint_path)
        if on_epoch is not None:
            on_epoch(record)

    release_scratch()  # the supernet kernels' temporaries, a few MB, are not needed after the search
    result = _finish(model, settings, history, notes, target, mode, time.perf_counter() - started)
    scheme = ('unrolled' if settings.unrolled else
              'joint' if _use_joint_passes(model, settings, train) else 'alternating')
    return dataclasses.replace(result, update_scheme=scheme)


def _epoch_batches(train: BatchSource, gen: torch.Generator, min_steps: int, max_steps: Optional[int] = None):
    """One pass over the training data, repeated (reshuffled) until ``min_steps`` batches were given,
    cut after ``max_steps`` batches (a large set then shows each epoch a fresh random part of itself)."""
    steps = 0
    while True:
        for batch in train.batches(gen):
            steps += 1
            yield batch
            if max_steps is not None and steps >= max_steps:
                return
        if steps >= min_steps or steps == 0:
            return


def _run_epoch(model, architect, w_opt, train, valid, gen, lr, settings, target, update_alphas=True) -> dict:
    model.train()
    weights = model.weights()
    joint = _use_joint_passes(model, settings, train)
    stream = SampleStream(valid, gen) if valid.in_memory else None
    valid_iter = None if stream else valid.batches(gen)
    # per-step metrics stay on the device and are read once per epoch: on a GPU every read is a sync
    metrics: list[torch.Tensor] = []
    train_n = valid_n = 0
    for x, y in _epoch_batches(train, gen, settings.min_steps_per_epoch, settings.max_steps_per_epoch):
        if stream is not None:
            xv, yv = stream.take(len(x))
        else:
            xv, yv = next(valid_iter, (None, None))
            if xv is None:
                valid_iter = valid.batches(gen)
                xv, yv = next(valid_iter)
        if not update_alphas:
            step = architect.weight_step(x, y, xv, yv, joint=joint and len(xv) == len(x))
        elif settings.unrolled:
            step = architect.unrolled_step(x, y, xv, yv, lr, w_opt)
        elif joint and len(xv) == len(x):
            step = architect.joint_step(x, y, xv, yv)
        else:
            step = architect.alternating_step(x, y, xv, yv, lr, w_opt)
        for w, g in zip(weights, step.weight_grads):
            w.grad = g
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(weights, settings.grad_clip, foreach=True)
        w_opt.step()
        metrics.append(torch.stack([step.train_loss.float() * len(y), correct(step.train_logits, y),
                                    step.valid_loss.float() * len(yv), correct(step.valid_logits, yv)]))
        train_n, valid_n = train_n + len(y), valid_n + len(yv)
    train_loss, train_correct, valid_loss, valid_correct = (
        torch.stack(metrics).double().sum(0).tolist() if metrics else [0.0] * 4)
    tn, vn = max(1, train_n), max(1, valid_n)
    return dict(train_loss=train_loss / tn, train_acc=train_correct / tn,
                valid_loss=valid_loss / vn, valid_acc=valid_correct / vn, samples=train_n)


def _use_joint_passes(model, settings: SearchSettings, train: BatchSource) -> bool:
    """Joint passes halve the number of passes (fast for small supernets) but double the activations:
    by default they are used while the largest conv block of a joint batch is small (measured: preset
    l peaks at 514 MB instead of 415 MB for a 10% gain), and always on a CUDA device (launch-bound, and
    the pass that is captured as a CUDA graph)."""
    if settings.unrolled or not getattr(model, 'supports_joint', False) or settings.joint_passes is False:
        return False
    if settings.joint_passes or model.arch_parameters()[0].is_cuda:
        return True
    length = train.sample_shape[1]
    return 2 * train.batch_size * model.block_elements(length) * 4 <= settings.joint_max_bytes


def _finish(model, settings, history, notes, target, mode, seconds) -> SearchResult:
    if not history:
        raise ValueError("no search epochs were run (epochs must be >= 1)")
    chosen = history[-1]
    if target is not None:
        key = 'params' if settings.target_params is not None else 'macs'
        learned = [r for r in history if r.alphas_learned] or history
        inside = [r for r in learned if abs(getattr(r, key) / target - 1) <= 0.2]
        if inside and inside[-1] is not chosen:
            notes.append(f"final epoch missed the budget; using epoch {inside[-1].epoch + 1}, the last within 20%")
            chosen = inside[-1]
        elif not inside:
            fitted = model.genotype_within_budget(COST_KIND[mode], target)
            if fitted is not None:
                # the final alphas' best derivation within the budget (SearchNetwork.genotype_within_budget)
                prof = profile_model(build_final_model(settings, fitted), (settings.in_channels, model.input_length))
                notes.append(f"no epoch's genotype within 20% of the budget {target}; derived the final alphas "
                             f"within the budget instead: {getattr(prof, key)} {key}")
                chosen = dataclasses.replace(chosen, genotype=genotype_to_dict(fitted), params=prof.params,
                                             macs=prof.macs)
            else:
                # the closest epoch (the latest among equals), not the last: a search whose multiplier
                # still oscillates should not deliver its last swing
                closest = min(reversed(learned), key=lambda r: abs(getattr(r, key) / target - 1))
                if closest is not chosen:
                    notes.append(f"no epoch within 20% of the budget; using epoch {closest.epoch + 1}, the closest")
                    chosen = closest
                notes.append(f"derived model has {getattr(chosen, key)} {key}, outside 20% of the budget {target}")
    genotype = genotype_from_dict(chosen.genotype)
    frac = collapse_fraction(genotype)
    if frac > 0.5 and mode is None:
        notes.append(f"possible DARTS collapse: parameter-free ops won {frac:.0%} of normal-cell edges "
                     "(try beta_decay > 0 or fewer epochs)")
    elif mode is not None and cells_without_convs(genotype):
        # Under a penalty parameter-free cells are a choice, not a collapse; still, with a tight budget (or
        # a heavy penalty) they mean the network's fixed part took it all (docs/benchmarks.md round 11).
        remedy = "a larger budget" if target is not None else "a smaller penalty weight"
        notes.append(f"every cell edge is a pool or a skip: the {chosen.params} parameters sit in the stem, the "
                     f"cells' 1x1 preprocessing and reductions and the classifier; {remedy} or fewer "
                     "layers leaves room for convs in the cells")
    for n in notes:
        warnings.warn(n, RuntimeWarning, stacklevel=3)
    return SearchResult(genotype, chosen.params, chosen.macs, tuple(history),
                        model.alphas_normal.detach().cpu().tolist(), model.alphas_reduce.detach().cpu().tolist(),
                        tuple(settings.primitives), tuple(notes), seconds)


def settings_from_args(args) -> SearchSettings:
    """Map the argparse.Namespace of the seed README onto :class:`SearchSettings`."""
    def get(name, default):
        value = getattr(args, name, default)
        return default if value is None else value

    gpu = getattr(args, 'gpu', None)
    device = get('device', None)
    if device is None:
        device = f'cuda:{int(gpu)}' if gpu is not None and torch.cuda.is_available() else 'cpu'
    mode = get('nas_optimization_mode', None)
    if isinstance(mode, str):  # the seed's spellings, in any case
        mode = {'none': None, '': None, 'memory': 'Memory', 'compute': 'Compute'}.get(mode.strip().lower(), mode)
    kw = dict(num_classes=int(args.num_classes), init_channels=int(get('nas_init_channels', 4)),
              layers=int(get('nas_layers', 3)), in_channels=int(get('in_channels', 1)),
              with_input_batchnorm=bool(get('with_input_batchnorm', True)),
              nodes_per_layer=int(get('nas_nodes_per_layer', 4)), multiplier=int(get('nas_multiplier', 4)),
              stem_multiplier=int(get('nas_stem_multiplier', 3)), epochs=int(get('nas_budget', 10)),
              lr=float(get('lr', 0.025)), momentum=float(get('momentum', 0.9)),
              weight_decay=float(get('weight_decay', 3e-4)), grad_clip=float(get('grad_clip', 5.0)),
              arch_learning_rate=float(get('arch_learning_rate', 3e-4)),
              arch_weight_decay=float(get('arch_weight_decay', 1e-3)), unrolled=bool(get('unrolled', False)),
              optimization_mode=mode, seed=int(get('seed', 0)), device=device)
    for name in ('penalty_weight', 'target_params', 'target_macs', 'beta_decay', 'primitives', 'lr_min',
                 'joint_passes', 'cuda_graphs', 'partial_channels', 'warmup_epochs', 'min_steps_per_epoch',
                 'max_steps_per_epoch', 'stem_pool', 'budget_rate', 'budget_quadratic'):
        if getattr(args, name, None) is not None:
            kw[name] = tuple(args.primitives) if name == 'primitives' else getattr(args, name)
    return SearchSettings(**kw)


def search_and_get_model(args) -> NetworkCnn:
    """Run the search described by ``args`` (seed README Namespace) and return the
    untrained final network; ``model.genotype`` holds the genotype and
    ``model.search_result`` the full :class:`SearchResult`."""
    missing = [name for name in ('num_classes', 'train_loader', 'valid_loader') if getattr(args, name, None) is None]
    if missing:
        raise ValueError(f"search_and_get_model: args has no {', '.join(missing)}; the Namespace needs num_classes, "
                         "train_loader and valid_loader (docs/nas_library.md lists every field)")
    mode = getattr(args, 'mode', 'cnn')
    if mode not in (None, 'cnn'):
        raise ValueError(f"mode: got {mode!r}; only 'cnn' is supported")
    settings = settings_from_args(args)
    result = search(args.train_loader, args.valid_loader, settings,
                    checkpoint_path=getattr(args, 'checkpoint_path', None))
    model = build_final_model(settings, result.genotype)
    model.search_result = result
    return model
