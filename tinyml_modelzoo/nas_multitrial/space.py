"""The candidate space: sequential 1-D CNNs sampled from ``nas.search_space``.

A candidate is ``num_conv_layers`` blocks of ``Conv (+BN+ReLU)`` with an
optional pool after each, then ``GlobalAvgPool`` and an optional hidden
``Linear``; ``build_model`` appends the classifier. Optuna parameters
(all categorical, so every sampler handles them):

``num_conv_layers``; per block ``i`` (1-based) ``k{i}`` kernel, ``s{i}`` stride,
``pool{i}``; channels ``ch{i}`` for every block but the last, ``ch_last`` for
the last one (it feeds the classifier, so the NPU rule "FC sees >= 16 inputs"
restricts only it); ``fc`` hidden width (0 = none).

With ``npu=True`` the choices are filtered so every candidate obeys the F28P55
rules by construction: channels multiples of 4, kernels <= 7 (first conv <= 8),
strides 1 or 2, max pools <= 4, no non-global average pool, >= 16 features into
every fully connected layer, and global average pooling over more than 2 samples.
The limits come from the device's ``NpuRules`` (``NpuLimits.from_rules``). A stride
or pool that would leave fewer samples than the global pool needs is dropped
while building, so short inputs never yield invalid candidates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import optuna

from tinyml_modelzoo.config.schema import SearchSpaceConfig
from tinyml_modelzoo.errors import UserError
from tinyml_modelzoo.zoo.spec import AvgPool, Conv, GlobalAvgPool, Linear, MaxPool, ModelSpec

MIN_LENGTH = 3              # global average pooling on the NPU needs more than 2 samples


@dataclass(frozen=True)
class NpuLimits:
    """The NPU rule parameters the space obeys; read from ``DeviceInfo.npu_rules`` when the
    device has them (one source of truth), these defaults are the F28P55 values."""
    channel_multiple: int = 4
    max_kernel: int = 7          # generic conv
    max_first_kernel: int = 8
    max_pool: int = 4
    strides: tuple[int, ...] = (1, 2)
    min_fc_inputs: int = 16
    min_gap_length: int = 3

    @classmethod
    def from_rules(cls, rules) -> "NpuLimits":
        if rules is None:
            return cls()
        fc = getattr(rules, "fc_min_in_features", {}) or {}
        return cls(rules.channel_multiple, rules.conv_max_kernel, rules.first_conv_max_kernel,
                   rules.maxpool_max_kernel, tuple(rules.conv_strides), int(fc.get(8, 16)),
                   int(getattr(rules, "gap_min_length", MIN_LENGTH)))


_POOL = re.compile(r"^(none|(max|avg)([1-9]))$")


@dataclass(frozen=True)
class CandidateSpace:
    """Resolved choices (NPU filtering applied). Build with ``from_config``."""
    num_layers: tuple[int, ...]
    channels: tuple[int, ...]
    last_channels: tuple[int, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    pooling: tuple[str, ...]
    fc_features: tuple[int, ...]
    npu: bool
    rules: NpuLimits = NpuLimits()

    @classmethod
    def from_config(cls, cfg: SearchSpaceConfig, npu: bool, npu_rules=None) -> "CandidateSpace":
        """Validate ``cfg`` and drop choices the NPU cannot run (``npu_rules``: the device's
        ``NpuRules``, default F28P55); raise UserError listing every problem."""
        problems: list[str] = []
        r = NpuLimits.from_rules(npu_rules)

        def ints(key: str, minimum: int) -> tuple[int, ...]:
            values = getattr(cfg, key)
            if not isinstance(values, (list, tuple)) or not values or \
                    not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values):
                problems.append(f"nas.search_space.{key}: got {values!r}; expected a non-empty list of "
                                f"integers >= {minimum}")
                return ()
            return tuple(sorted(set(values)))

        num_layers = ints("num_conv_layers", 1)
        channels = ints("conv_channels", 1)
        kernels = ints("conv_kernels", 1)
        strides = ints("conv_strides", 1)
        fc = ints("fc_features", 0)
        pooling = tuple(dict.fromkeys(str(p) for p in (cfg.pooling or [])))
        bad = [p for p in pooling if not _POOL.match(p)]
        if not pooling or bad:
            problems.append(f"nas.search_space.pooling: got {list(cfg.pooling or [])!r}; expected a non-empty "
                            "list of 'none', 'maxN', 'avgN' (N = 1..9), e.g. ['none', 'max2']")
        if npu and not problems:
            channels = tuple(c for c in channels if c % r.channel_multiple == 0)
            kernels = tuple(k for k in kernels if k <= r.max_kernel)
            strides = tuple(s for s in strides if s in r.strides)
            fc = tuple(f for f in fc if f == 0 or f >= r.min_fc_inputs)
            pooling = tuple(p for p in pooling if p == "none" or (p.startswith("max") and int(p[3:]) <= r.max_pool))
            why = {"conv_channels": (channels, f"multiples of {r.channel_multiple}"),
                   "conv_kernels": (kernels, f"<= {r.max_kernel}"), "conv_strides": (strides, f"in {r.strides}"),
                   "fc_features": (fc, f"0 or >= {r.min_fc_inputs}"),
                   "pooling": (pooling, f"'none' or 'maxN' with N <= {r.max_pool}")}
            for key, (kept, rule) in why.items():
                if not kept:
                    problems.append(f"nas.search_space.{key}: no choice is NPU-valid (needs {rule}); add one, or "
                                    "set nas.npu_compatible: false")
        last = tuple(c for c in channels if not npu or c >= r.min_fc_inputs)
        if npu and channels and not last:
            problems.append(f"nas.search_space.conv_channels: the last conv feeds the classifier and needs >= "
                            f"{r.min_fc_inputs} channels on the NPU; add a choice such as 16")
        if problems:
            raise UserError("\n".join(problems))
        return cls(num_layers, channels, last, kernels, strides, pooling, fc, npu, r)

    # -- sampling ----------------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> dict:
        """Sample one candidate's parameters (enqueued values are returned as given)."""
        n = trial.suggest_categorical("num_conv_layers", list(self.num_layers))
        params: dict = {"num_conv_layers": n}
        for i in range(1, n + 1):
            name = "ch_last" if i == n else f"ch{i}"
            params[name] = trial.suggest_categorical(name, list(self.last_channels if i == n else self.channels))
            params[f"k{i}"] = trial.suggest_categorical(f"k{i}", list(self.kernels))
            params[f"s{i}"] = trial.suggest_categorical(f"s{i}", list(self.strides))
            params[f"pool{i}"] = trial.suggest_categorical(f"pool{i}", list(self.pooling))
        params["fc"] = trial.suggest_categorical("fc", list(self.fc_features))
        return params

    def build_spec(self, params: dict, in_length: int, name: str = "nas_candidate") -> ModelSpec:
        """Turn sampled parameters into a ModelSpec for inputs of length ``in_length``."""
        n = int(params["num_conv_layers"])
        layers: list = []
        length = in_length
        for i in range(1, n + 1):
            kernel, stride = int(params[f"k{i}"]), int(params[f"s{i}"])
            if _conv_length(length, kernel, stride) < self.rules.min_gap_length:
                stride = 1     # keep enough samples for the global pool
            layers.append(Conv(int(params["ch_last" if i == n else f"ch{i}"]), kernel, stride=stride))
            length = _conv_length(length, kernel, stride)
            pool = str(params[f"pool{i}"])
            if pool != "none":
                size = int(pool[3:])
                if size > 1 and length // size >= self.rules.min_gap_length:
                    layers.append(MaxPool(size) if pool.startswith("max") else AvgPool(size))
                    length //= size
        layers.append(GlobalAvgPool())
        if int(params["fc"]) > 0:
            layers.append(Linear(int(params["fc"])))
        return ModelSpec(tuple(layers), input_batchnorm=False, name=name)

    def params_for(self, spec: ModelSpec) -> dict | None:
        """The parameters that describe ``spec`` in this space, or None when it does not fit (warm start)."""
        layers = list(spec.layers)
        blocks: list[tuple[Conv, str]] = []
        fc = 0
        while layers:
            layer = layers.pop(0)
            if isinstance(layer, Conv):
                if layer.groups != 1 or layer.padding is not None or not (layer.bn and layer.relu):
                    return None
                pool = "none"
                pool_next = layers and isinstance(layers[0], (MaxPool, AvgPool))
                if pool_next and layers[0].stride in (None, layers[0].kernel):
                    p = layers.pop(0)
                    pool = f"{'max' if isinstance(p, MaxPool) else 'avg'}{p.kernel}"
                blocks.append((layer, pool))
            elif isinstance(layer, GlobalAvgPool):
                if len(layers) > 1 or (layers and not (isinstance(layers[0], Linear) and layers[0].relu)):
                    return None
                fc = layers.pop(0).out_features if layers else 0
                break
            else:
                return None
        else:
            return None     # no global pool: not in this space
        n = len(blocks)
        if n not in self.num_layers or fc not in self.fc_features:
            return None
        params: dict = {"num_conv_layers": n}
        for i, (conv, pool) in enumerate(blocks, start=1):
            choices = self.last_channels if i == n else self.channels
            if conv.out_channels not in choices or conv.kernel not in self.kernels or \
                    conv.stride not in self.strides or pool not in self.pooling:
                return None
            params["ch_last" if i == n else f"ch{i}"] = conv.out_channels
            params.update({f"k{i}": conv.kernel, f"s{i}": conv.stride, f"pool{i}": pool})
        params["fc"] = fc
        return params


def _conv_length(length: int, kernel: int, stride: int) -> int:
    padding = kernel // 2
    return (length + 2 * padding - kernel) // stride + 1


def npu_rule_violations(spec: ModelSpec, in_length: int, limits: NpuLimits = NpuLimits()) -> list[str]:
    """The F28P55 rules a sequential spec breaks (empty when NPU-valid), one line each.

    The structural twin of ``tinyml_modelzoo.npu`` for sampled candidates: it runs
    on the spec, before any model is built, and is what "valid by construction"
    is tested against.
    """
    r, problems = limits, []
    length, features, flat, first = in_length, None, False, True
    for index, layer in enumerate(spec.layers, start=1):
        if isinstance(layer, Conv):
            limit = r.max_first_kernel if first else r.max_kernel
            if layer.out_channels % r.channel_multiple:
                problems.append(f"layer {index}: conv output channels {layer.out_channels} not a multiple of "
                                f"{r.channel_multiple}")
            if layer.kernel > limit:
                problems.append(f"layer {index}: conv kernel {layer.kernel} > {limit}")
            if layer.stride not in r.strides:
                problems.append(f"layer {index}: conv stride {layer.stride} not in {r.strides}")
            padding = layer.kernel // 2 if layer.padding is None else layer.padding
            length = (length + 2 * padding - layer.kernel) // layer.stride + 1
            features, first = layer.out_channels, False
        elif isinstance(layer, MaxPool):
            if layer.kernel > r.max_pool:
                problems.append(f"layer {index}: max pool {layer.kernel} > {r.max_pool}")
            length = (length - layer.kernel) // (layer.stride or layer.kernel) + 1
        elif isinstance(layer, AvgPool):
            problems.append(f"layer {index}: average pool {layer.kernel} (only the global average pool is allowed)")
            length = (length - layer.kernel) // (layer.stride or layer.kernel) + 1
        elif isinstance(layer, GlobalAvgPool):
            if length < r.min_gap_length:
                problems.append(f"layer {index}: global average pool over {length} samples "
                                f"(needs >= {r.min_gap_length})")
            length, flat = 1, True
        elif isinstance(layer, Linear):
            inputs = features * (1 if flat else length) if features else 0
            if inputs < r.min_fc_inputs:
                problems.append(f"layer {index}: fully connected layer with {inputs} inputs "
                                f"(needs >= {r.min_fc_inputs})")
            features, flat, length = layer.out_features, True, 1
    classifier_inputs = (features or 0) * (1 if flat else length)
    if classifier_inputs < r.min_fc_inputs:
        problems.append(f"classifier: {classifier_inputs} inputs (needs >= {r.min_fc_inputs})")
    return problems
