"""Model zoo: a registry of ``ModelSpec`` builders and the shared layer spec."""
from . import classifiers  # noqa: F401  (registers the CLS_* models)
from .registry import ModelEntry, get_entry, get_model_spec, list_models, register_model
from .spec import (AvgPool, Conv, GlobalAvgPool, Linear, MaxPool, ModelSpec, build_model,
                   describe, fit_to_length)

__all__ = ["AvgPool", "Conv", "GlobalAvgPool", "Linear", "MaxPool", "ModelEntry", "ModelSpec",
           "build_model", "describe", "fit_to_length", "get_entry", "get_model_spec", "list_models", "register_model"]
