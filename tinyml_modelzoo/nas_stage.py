"""DARTS stage: YAML training keys → ``tinyml_torchmodelopt.nas.search`` → ``NAS/`` folder.

The library honours the exact arguments it is given; this stage applies our
product rules first: preset table + customisation keys, channel counts rounded
up to multiples of 4 and NPU-realisable primitives for NPU targets.
Architecture weights learn on the validation split; the test split is never
passed in. The search checkpoints every epoch to ``NAS/search_checkpoint.pt``
so ``--resume`` continues it.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tinyml_torchmodelopt.nas.genotypes import (PRIMITIVES_CNN, PRIMITIVES_CNN_NPU, SEPARABLE_CONVS, Genotype_CNN,
                                                 genotype_to_dict)
from tinyml_torchmodelopt.nas.train_cnn_search import (EpochRecord, SearchResult, SearchSettings,
                                                        build_final_model, search)

from .config.presets import DARTS_CUSTOM_KEYS, DARTS_PRESETS, DEFAULT_DARTS_PRESET
from .config.schema import CommonConfig, TrainingConfig
from .devices import DeviceInfo, estimate_latency_us
from .errors import UserError
from .model_specs import write_spec_file
from .plots import plot_alpha_evolution, plot_darts_pareto
from .progress import progress
from .recipe import batch_size, describe_device, is_time_domain, select_device, steps_per_epoch

log = logging.getLogger("tinyml_modelzoo")
CHECKPOINT = "search_checkpoint.pt"
DEFAULT_PENALTY_WEIGHT = 0.5
# Budget mode by default where a preset has a row here and the config sets no penalty
# weight and no target: preset s lands at ~4k parameters (F28P55 NPU, small data) for up to
# BUDGET_CLASSES classes; each class beyond adds its classifier row (see default_target_params).
DEFAULT_TARGET_PARAMS = {"s": 4000}
BUDGET_CLASSES = 10


@dataclass(frozen=True)
class DartsResult:
    model: nn.Module
    spec: dict
    summary: dict


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def search_batch_size(cfg: TrainingConfig, num_train: int) -> int:
    """``nas_batch_size``, else the training batch size (its data-size rule when empty)."""
    return cfg.nas_batch_size or batch_size(cfg, num_train)


def max_search_steps(cfg: TrainingConfig) -> int | None:
    """``nas_max_steps_per_epoch`` (None: whole passes); a ``nas_min_steps_per_epoch`` set higher wins."""
    if not cfg.nas_max_steps_per_epoch:
        return None
    return max(cfg.nas_max_steps_per_epoch, cfg.nas_min_steps_per_epoch)


def search_steps_per_epoch(cfg: TrainingConfig, num_train: int) -> int:
    """Steps of one search epoch: a pass over the training split, cycled up to ``nas_min_steps_per_epoch``
    and cut at ``nas_max_steps_per_epoch``."""
    steps = max(steps_per_epoch(num_train, search_batch_size(cfg, num_train)), cfg.nas_min_steps_per_epoch)
    cap = max_search_steps(cfg)
    return min(steps, cap) if cap else steps


def warmup_epochs(cfg: TrainingConfig) -> int:
    """``nas_warmup_epochs``, else half of the search (at least one epoch updates the alphas)."""
    warmup = cfg.nas_warmup_epochs if cfg.nas_warmup_epochs is not None else cfg.nas_epochs // 2
    return min(warmup, cfg.nas_epochs - 1)


def arch_learning_rate(cfg: TrainingConfig, num_train: int) -> float:
    """DARTS' 3e-4 moves alphas by a few hundredths on a small dataset: the softmax
    stays near uniform and the derived genotype is noise. Scale the rate with the
    number of alpha updates (one per training step after the warm-up) instead, so
    the search can move them by ~2 logits."""
    if cfg.nas_arch_learning_rate is not None:
        return cfg.nas_arch_learning_rate
    steps = search_steps_per_epoch(cfg, num_train)
    updates = (cfg.nas_epochs - warmup_epochs(cfg)) * steps
    return min(3e-2, max(1e-3, 2.0 / updates))


CELL_INPUT_MAX, STEM_POOLS = 64, (1, 2, 4)


def stem_pool(cfg: TrainingConfig, features) -> int:
    """``nas_stem_pool``, else for raw inputs the smallest pool of 1, 2, 4 that leaves the cells at most
    64 samples (1 for spectra). The pool widens what the cells' convs see at 1/2 to 1/4 of the MACs.
    With the separable convs in the search space, leaving the cells 64 instead of 128 samples took the
    six benchmark datasets of 65-256 samples from 0.864 to 0.902 mean test accuracy over 3 seeds
    (human_activity 0.79 -> 0.93, ecg_beats 0.76 -> 0.85, gestures 0.88 -> 0.86) and the slow-pattern
    sets from 0.53 to 0.93 (many_sines) and 0.89 to 1.00 (slow_imbalanced): round 10 of
    docs/benchmarks.md. Inputs over 256 samples pool by 4 (ACSF1's 1460 samples: 0.67 -> 0.81)."""
    if cfg.nas_stem_pool is not None:
        return cfg.nas_stem_pool
    if not is_time_domain(features):
        return 1
    return next((p for p in STEM_POOLS if features.in_length // p <= CELL_INPUT_MAX), STEM_POOLS[-1])


def search_primitives(cfg: TrainingConfig, device: DeviceInfo) -> tuple[str, ...]:
    """``nas_primitives``, else the seed list (without the 3x1 average pool on NPU targets, which run only
    global average pooling) plus the separable convs ``sep_conv_{3,5,7}x1``. With them the found models
    (preset s, 4k parameters) scored +1.1 (UCR) and +0.3 (sensor suite) points of mean test accuracy over
    3 seeds x 7 datasets each (ArrowHead 0.745 -> 0.770, OSULeaf 0.861 -> 0.883), for a 1.7x longer search
    (round 9 of docs/benchmarks.md). The library's own default stays the seed list."""
    if cfg.nas_primitives is not None:
        return tuple(str(p) for p in cfg.nas_primitives)
    return tuple((PRIMITIVES_CNN_NPU if device.has_npu else PRIMITIVES_CNN) + SEPARABLE_CONVS)


def default_target_params(preset: str, num_classes: int, head_inputs: int) -> int | None:
    """The preset's parameter budget (None: the preset has none), plus one classifier row of
    ``head_inputs`` weights and a bias per class beyond ``BUDGET_CLASSES``: otherwise the
    classifier eats the feature layers' share. With 40 classes a 4000-parameter budget left
    ~1350 parameters outside the classifier: on a 40-class shape set (6 training series per
    class; CLS_4k_NPU 1.00) the found models scored 0.84 / 0.83 (seeds 42 / 7; int8 0.75 /
    0.80), with this rule 0.96 / 0.95 (int8 0.95 / 0.96) at 5.2k / 5.6k parameters."""
    budget = DEFAULT_TARGET_PARAMS.get(preset)
    if budget is None:
        return None
    return budget + (head_inputs + 1) * max(0, num_classes - BUDGET_CLASSES)


def darts_settings(features, cfg: TrainingConfig, seed: int, device: DeviceInfo) -> SearchSettings:
    """Preset row + customisation keys, adapted to the target (documented in docs/nas_darts.md)."""
    preset = DARTS_PRESETS[cfg.nas_model_size or DEFAULT_DARTS_PRESET]
    values = {field: getattr(preset, field) for field in DARTS_CUSTOM_KEYS.values()}
    for key, field in DARTS_CUSTOM_KEYS.items():
        if getattr(cfg, key) is not None:
            values[field] = getattr(cfg, key)
    values["fanout_concat"] = min(values["fanout_concat"], values["nodes_per_layer"])
    channels = values["init_channels"]
    if device.has_npu:
        # NPU convs need channel counts in multiples of 4; C multiple of 4 makes every
        # cell (C, 2C, 4C, multiplier*C) and the stem (stem_multiplier*C) comply.
        channels = round_up(channels, 4)
    settings = SearchSettings(
        num_classes=features.num_classes, init_channels=channels, layers=values["layers"],
        in_channels=features.in_channels, with_input_batchnorm=True, nodes_per_layer=values["nodes_per_layer"],
        multiplier=values["fanout_concat"], stem_multiplier=values["init_channel_multiplier"],
        stem_pool=stem_pool(cfg, features),
        primitives=search_primitives(cfg, device), epochs=cfg.nas_epochs,
        warmup_epochs=warmup_epochs(cfg), min_steps_per_epoch=cfg.nas_min_steps_per_epoch,
        max_steps_per_epoch=max_search_steps(cfg),
        arch_learning_rate=arch_learning_rate(cfg, len(features.y_train)),
        unrolled=cfg.nas_unrolled, optimization_mode=cfg.nas_optimization_mode,
        penalty_weight=cfg.nas_penalty_weight if cfg.nas_penalty_weight is not None else DEFAULT_PENALTY_WEIGHT,
        target_params=cfg.nas_target_params, target_macs=cfg.nas_target_macs,
        beta_decay=cfg.nas_beta_decay or 0.0, partial_channels=cfg.nas_partial_channels, seed=seed,
        device=select_device(cfg))
    if cfg.nas_target_params is None and cfg.nas_target_macs is None and cfg.nas_penalty_weight is None:
        head_inputs = _skeleton(settings).classifier[-1].in_features
        target = default_target_params(cfg.nas_model_size or DEFAULT_DARTS_PRESET, features.num_classes, head_inputs)
        settings = dataclasses.replace(settings, target_params=target)
    return settings


def _skeleton(settings: SearchSettings) -> nn.Module:
    """A final network of these settings (skips only): every genotype has its lengths and head."""
    genes = [("skip_connect", 0), ("skip_connect", 1)] * settings.nodes_per_layer
    last = 2 + settings.nodes_per_layer
    concat = list(range(last - settings.multiplier, last))  # the network concatenates `multiplier` states
    return build_final_model(settings, Genotype_CNN(genes, concat, genes, concat)).eval()


def pooled_length(settings: SearchSettings, in_length: int) -> int:
    """Samples the classifier's global average pool will see: the length after the stem pool and
    the two reduction cells, measured on the network the search derives from."""
    model = _skeleton(settings)
    seen = []
    hook = model.classifier.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].shape[-1]))
    with torch.no_grad():
        model(torch.zeros(1, settings.in_channels, in_length))
    hook.remove()
    return int(seen[0])


def check_pooled_length(settings: SearchSettings, in_length: int, device: DeviceInfo) -> None:
    """Refuse, before searching, inputs so short that every found model would fail the NPU's
    global-average-pool rule (the run would otherwise search and train, then stop at compilation)."""
    if not device.has_npu or device.npu_rules is None:
        return
    least = device.npu_rules.gap_min_length
    length = pooled_length(settings, in_length)
    if length >= least:
        return
    shortest = next(n for n in range(in_length, 64 * in_length + 64) if pooled_length(settings, n) >= least)
    pool = f" and nas_stem_pool {settings.stem_pool}" if settings.stem_pool > 1 else ""
    raise UserError(f"training.nas_enabled: inputs of {in_length} samples leave the {device.name} NPU's global "
                    f"average pool {length} sample(s) after the stem{pool} and the two reduction cells; it needs "
                    f">= {least}. Use frames of at least {shortest} samples (data_processing_feature_extraction."
                    f"feature_extraction_name){', or a smaller nas_stem_pool' if pool else ''}, or a target_device "
                    f"without an NPU")


def _loader(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> DataLoader:
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    return DataLoader(dataset, batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def run_darts(features, cfg: TrainingConfig, common: CommonConfig, device: DeviceInfo, out_dir: Path) -> DartsResult:
    """Search, write ``NAS/`` and return the untrained final network with its spec."""
    settings = darts_settings(features, cfg, common.seed, device)
    check_pooled_length(settings, features.in_length, device)
    if len(features.y_val) == 0:
        raise UserError("DARTS needs a validation split to learn architecture weights; "
                        "give dataset.split_factor a validation share > 0 (e.g. [0.6, 0.2, 0.2])")
    batch = search_batch_size(cfg, len(features.y_train))
    train_loader = _loader(features.x_train, features.y_train, batch, common.seed)
    valid_loader = _loader(features.x_val, features.y_val, batch, common.seed + 1)
    log.info("DARTS search: %d cells, %d nodes, C=%d, stem x%d (pool %d), fanout %d, %s mode, %s, %d epochs "
             "(%d weights-only warm-up) on %s", settings.layers, settings.nodes_per_layer, settings.init_channels,
             settings.stem_multiplier, settings.stem_pool, settings.multiplier, settings.penalty_mode or "no penalty",
             "unrolled" if settings.unrolled else "first-order", settings.epochs, settings.warmup_epochs,
             describe_device(settings.device))

    def on_epoch(record: EpochRecord) -> None:
        advance()
        latency = estimate_latency_us(record.macs, record.params, device, npu=device.has_npu)
        log.info("NAS epoch %2d/%d: supernet val acc %.3f, derived %d params, %d MACs, ~%.0f us, %.0f samples/s",
                 record.epoch + 1, settings.epochs, record.valid_accuracy, record.params, record.macs, latency,
                 record.samples_per_second)

    # the library also raises its notes as Python warnings; the run log gets each once, without source lines
    with progress(settings.epochs, "DARTS search") as advance, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = search(train_loader, valid_loader, settings, on_epoch=on_epoch,
                            checkpoint_path=out_dir / CHECKPOINT)
        except FloatingPointError as exc:  # a diverged search: the architecture learning rate is the knob
            raise UserError(f"DARTS search diverged, {exc}; the config key is training.nas_arch_learning_rate"
                            ) from exc
    for warning in result.warnings:
        log.warning("NAS: %s", warning)
    for other in caught:
        if str(other.message) not in result.warnings:
            log.warning("NAS: %s", other.message)
    model = build_final_model(settings, result.genotype)
    spec = darts_spec(settings, result, device)
    write_outputs(result, settings, spec, device, out_dir)
    return DartsResult(model, spec, _summary(result, settings, features))


def darts_spec(settings: SearchSettings, result: SearchResult, device: DeviceInfo) -> dict:
    latency = estimate_latency_us(result.macs, result.params, device, npu=device.has_npu)
    return {"kind": "darts", "name": "NAS_darts", "source": "darts",
            "genotype": genotype_to_dict(result.genotype),
            "network": {"C": settings.init_channels, "layers": settings.layers,
                        "nodes_per_layer": settings.nodes_per_layer, "multiplier": settings.multiplier,
                        "stem_multiplier": settings.stem_multiplier, "stem_pool": settings.stem_pool,
                        "with_input_batchnorm": settings.with_input_batchnorm},
            "metrics": {"params": result.params, "macs": result.macs, "latency_us": round(latency, 1)},
            "search": {"epochs": settings.epochs, "mode": settings.penalty_mode, "unrolled": settings.unrolled,
                       "primitives": list(settings.primitives)}}


def write_outputs(result: SearchResult, settings: SearchSettings, spec: dict, device: DeviceInfo,
                  out_dir: Path) -> None:
    rows = []
    for r in result.history:
        rows.append({"epoch": r.epoch + 1, "phase": "search" if r.alphas_learned else "warm-up",
                     "params": r.params, "macs": r.macs,
                     "latency_us": round(estimate_latency_us(r.macs, r.params, device, npu=device.has_npu), 1),
                     "supernet_val_accuracy": round(r.valid_accuracy, 4),
                     "supernet_train_accuracy": round(r.train_accuracy, 4),
                     "train_loss": round(r.train_loss, 4), "val_loss": round(r.valid_loss, 4),
                     "penalty_weight": round(r.penalty_weight, 4), "seconds": round(r.seconds, 2),
                     "samples_per_second": round(r.samples_per_second, 1),
                     "genotype": _genotype_text(r.genotype)})
    _write_csv(out_dir / "search_results.csv", rows)
    # warm-up genotypes come from the initial (random) alphas: listed, but not candidates
    frontier = pareto_rows([row for row in rows if row["phase"] == "search"])
    _write_csv(out_dir / "pareto_frontier.csv", frontier)
    write_spec_file(spec, out_dir / "best_model_spec.yaml")
    plot_darts_pareto(rows, frontier, out_dir / "pareto_plot.png")
    plot_alpha_evolution(result.history, list(settings.primitives), out_dir / "alpha_evolution.png")


def pareto_rows(rows: list[dict]) -> list[dict]:
    """Epochs whose derived genotype is not dominated in (supernet val accuracy ↑, params ↓)."""
    def dominated(a, b):  # b dominates a
        return (b["supernet_val_accuracy"] >= a["supernet_val_accuracy"] and b["params"] <= a["params"]
                and (b["supernet_val_accuracy"] > a["supernet_val_accuracy"] or b["params"] < a["params"]))
    return [a for a in rows if not any(dominated(a, b) for b in rows)]


def _genotype_text(genotype: dict) -> str:
    def cell(genes):
        return " ".join(f"{op}<-{i}" for op, i in genes)
    return f"normal[{cell(genotype['normal'])}] reduce[{cell(genotype['reduce'])}]"


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        if not rows:
            return
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _summary(result: SearchResult, settings: SearchSettings, features) -> dict:
    samples = sum(r.samples_per_second * r.seconds for r in result.history)
    seconds = sum(r.seconds for r in result.history)
    return {"mode": "darts", "optimization_mode": settings.penalty_mode, "unrolled": settings.unrolled,
            "epochs": settings.epochs, "update_scheme": result.update_scheme,
            "search_seconds": round(result.seconds or seconds, 3),
            "search_samples_per_second": round(samples / seconds, 1) if seconds else None,
            "found_params": result.params, "found_macs": result.macs, "warnings": list(result.warnings)}
