"""Cross-field config rules: checks that need more than one key.

Each function returns a list of ``"section.key: problem; fix"`` strings so the
loader can report every problem at once.
"""
from __future__ import annotations

import difflib
import math
import re
from pathlib import Path

from .presets import DARTS_PRESETS
from .schema import TASK_TYPES, Config

SPECIAL_MODEL_NAMES = ("auto", "NAS_result")


def check_cross_field(config: Config) -> list[str]:
    return [*_check_common(config), *_check_dataset(config), *_check_training(config), *_check_nas(config),
            *_check_compilation(config)]


def _check_common(config: Config) -> list[str]:
    problems = []
    if config.common.task_type not in TASK_TYPES:
        problems.append(f"common.task_type: {config.common.task_type!r} is not supported yet; "
                        f"supported: {', '.join(TASK_TYPES)}")
    try:
        from ..devices import get_device
        get_device(config.common.target_device)
    except ImportError:
        pass
    except (KeyError, ValueError) as exc:
        problems.append(f"common.target_device: {exc.args[0] if exc.args else exc}")
    return problems


def _check_dataset(config: Config) -> list[str]:
    problems = []
    split = config.dataset.split_factor
    if (len(split) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in split)):
        problems.append(f"dataset.split_factor: got {split}; expected three fractions [train, val, test], "
                        f"e.g. [0.6, 0.2, 0.2]")
    elif not math.isclose(sum(split), 1.0, abs_tol=1e-6):
        problems.append(f"dataset.split_factor: {split} sums to {sum(split):g}; the three fractions must sum to 1, "
                        f"e.g. [0.6, 0.2, 0.2]")
    elif split[0] <= 0:
        problems.append("dataset.split_factor: the training fraction must be > 0")
    if config.dataset.input_data_path and config.dataset.enable:
        data_path = resolve_path(config, config.dataset.input_data_path)
        if not data_path.exists():
            problems.append(f"dataset.input_data_path: {data_path} does not exist; give the dataset folder "
                            f"(with classes/<class>/<files>) or a .zip, relative to the config file")
    if config.dataset.dataset_name != "hello_world" and not config.dataset.input_data_path \
            and config.dataset.enable and not config.compilation.model_path:
        problems.append(f"dataset.input_data_path: needed for dataset {config.dataset.dataset_name!r}; "
                        f"give a dataset folder or .zip (or use dataset_name: hello_world)")
    return problems


def _check_training(config: Config) -> list[str]:
    t = config.training
    problems = []
    if t.enable and t.model_name not in SPECIAL_MODEL_NAMES and not t.nas_enabled:
        problems += _unknown_zoo_model("training.model_name", t.model_name,
                                       "'auto' for multi-trial NAS or 'NAS_result' with model_spec_path")
    if t.enable and t.model_name == "NAS_result":
        if not t.model_spec_path:
            problems.append("training.model_spec_path: required with model_name 'NAS_result'; "
                            "point it at a best_model_spec.yaml from a NAS run")
        elif not resolve_path(config, t.model_spec_path).is_file():
            problems.append(f"training.model_spec_path: {t.model_spec_path} not found "
                            f"(paths are relative to the config file)")
    if t.enable and t.model_name == "auto" and not config.nas.enable:
        problems.append("training.model_name: 'auto' needs the multi-trial search; set nas.enable: True "
                        "(or pick a zoo model)")
    if t.nas_enabled and config.nas.enable:
        problems.append("training.nas_enabled and nas.enable are both on; choose DARTS (training.nas_enabled) "
                        "or multi-trial search (nas.enable), not both")
    if t.nas_enabled:
        preset = DARTS_PRESETS.get(t.nas_model_size or "s")
        nodes = t.nas_nodes_per_layer or preset.nodes_per_layer
        fanout = t.nas_fanout_concat or min(preset.fanout_concat, nodes)
        if fanout > nodes:
            problems.append(f"training.nas_fanout_concat: {fanout} is more than nas_nodes_per_layer ({nodes}); "
                            f"a cell can concatenate at most its {nodes} nodes")
        if t.nas_target_params and t.nas_target_macs:
            problems.append("training.nas_target_params and nas_target_macs: set one budget, not both")
        problems += _check_primitives(config, t.nas_primitives)
        channels = _darts_channels(config, t.nas_init_channels or preset.init_channels)
        if t.nas_partial_channels > 1 and channels % t.nas_partial_channels:
            problems.append(f"training.nas_partial_channels: {t.nas_partial_channels} does not divide the "
                            f"{channels} channels of the first cell; use a divisor of {channels} (1 = off) "
                            "or raise nas_init_channels")
    return problems


def _check_primitives(config: Config, primitives) -> list[str]:
    """``nas_primitives``: names of the OPS table, no repeats, one op besides 'none', NPU-realisable on NPU targets."""
    if primitives is None:
        return []
    from tinyml_torchmodelopt.nas.genotypes import NPU_REALISABLE
    from tinyml_torchmodelopt.nas.operations import OPS
    where = "training.nas_primitives"
    names = [str(p) for p in primitives]
    unknown = [p for p in names if p not in OPS]
    if unknown:
        return [f"{where}: unknown {unknown}; choose from {', '.join(OPS)}"]
    problems = []
    repeated = sorted({p for p in names if names.count(p) > 1})
    if repeated:
        problems.append(f"{where}: {repeated} listed more than once; list each op once")
    if not [p for p in names if p != "none"]:
        problems.append(f"{where}: needs at least one op besides 'none', e.g. conv_bn_relu_3x1")
    if _target_has_npu(config):
        outside = [p for p in names if p not in NPU_REALISABLE]
        if outside:
            problems.append(f"{where}: {outside} cannot run on the {config.common.target_device} NPU; remove "
                            f"them (NPU-realisable: {', '.join(p for p in OPS if p in NPU_REALISABLE)})")
    return problems


def _target_has_npu(config: Config) -> bool:
    try:
        from ..devices import get_device
        return get_device(config.common.target_device).has_npu
    except (ImportError, KeyError, ValueError):
        return False


def _darts_channels(config: Config, channels: int) -> int:
    """First-cell channels of the DARTS search: NPU targets round them up to a multiple of 4."""
    return -(-channels // 4) * 4 if _target_has_npu(config) else channels


def _check_nas(config: Config) -> list[str]:
    n = config.nas
    problems = []
    if not n.enable:
        return problems
    pr = n.param_range
    if len(pr) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pr) or pr[0] < 0 or pr[0] >= pr[1]:
        problems.append(f"nas.param_range: got {pr}; expected [min_params, max_params] with 0 <= min < max, "
                        f"e.g. [500, 5000]")
    space = n.search_space
    for key in ("conv_channels", "conv_kernels", "num_conv_layers", "conv_strides"):
        values = getattr(space, key)
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            problems.append(f"nas.search_space.{key}: got {values}; expected a non-empty list of positive integers")
    if not all(isinstance(v, int) and v >= 0 for v in space.fc_features):
        problems.append(f"nas.search_space.fc_features: got {space.fc_features}; expected integers >= 0 (0 = no hidden FC)")
    bad_pool = [p for p in space.pooling if not re.fullmatch(r"none|(max|avg)[1-9]", str(p))]
    if bad_pool:
        problems.append(f"nas.search_space.pooling: unknown {bad_pool}; expected 'none', 'maxN' or 'avgN' "
                        f"(N = 1..9), e.g. ['none', 'max2']")
    if n.latency_weight > 0 and n.latency_target is None:
        problems.append("nas.latency_weight: has no effect without nas.latency_target (microseconds); "
                        "set latency_target or remove latency_weight")
    if n.warm_start:
        if not n.initial_architecture:
            problems.append("nas.initial_architecture: required with warm_start: True (a zoo model name, e.g. CLS_2k_NPU)")
        else:
            problems += _unknown_zoo_model("nas.initial_architecture", n.initial_architecture)
    if n.early_stopping and n.accuracy_threshold is None:
        problems.append("nas.accuracy_threshold: required with early_stopping: True (e.g. 0.95)")
    if config.training.enable and config.training.model_name != "auto":
        problems.append(f"training.model_name: is {config.training.model_name!r} but nas.enable is True; "
                        f"set model_name: 'auto' so the search picks the model")
    return problems


def _check_compilation(config: Config) -> list[str]:
    c = config.compilation
    problems = []
    if c.model_path:
        if config.training.enable:
            problems.append("compilation.model_path: compile-only mode needs training.enable: False")
        if not resolve_path(config, c.model_path).is_file():
            problems.append(f"compilation.model_path: {c.model_path} not found (paths are relative to the config file)")
    return problems


def _unknown_zoo_model(key: str, name: str, alternatives: str = "") -> list[str]:
    """The problem line for a name that is not in the zoo (none when it is)."""
    from ..zoo import list_models
    known = list_models()
    if name in known:
        return []
    close = difflib.get_close_matches(name, known, n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    choices = f"choose a zoo model ({', '.join(known)})" + (f", {alternatives}" if alternatives else "")
    return [f"{key}: unknown model {name!r}; {hint}{choices}"]


def resolve_path(config: Config, path: str) -> Path:
    """A user path from the config: absolute, or relative to the config file's folder."""
    p = Path(path).expanduser()
    if p.is_absolute() or not config.source_path:
        return p
    return Path(config.source_path).parent / p
