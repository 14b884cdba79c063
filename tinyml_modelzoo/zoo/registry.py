"""One registry, one name per model (timm-style).

A builder function returns a ``ModelSpec``; ``@register_model`` next to it
records the metadata. Tests are generated from this registry.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from .spec import ModelSpec


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[[], ModelSpec]
    task: str
    npu_ready: bool
    size_class: str
    description: str

    def spec(self) -> ModelSpec:
        return self.builder()


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, task: str = "generic_timeseries_classification", npu_ready: bool = True,
                   size_class: str, description: str = ""):
    def decorate(builder: Callable[[], ModelSpec]):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, task, npu_ready, size_class, description)
        return builder
    return decorate


def list_models(task: str | None = None) -> list[str]:
    return [name for name, entry in _REGISTRY.items() if task is None or entry.task == task]


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f" did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r};{hint} known models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def get_model_spec(name: str) -> ModelSpec:
    return get_entry(name).spec()
