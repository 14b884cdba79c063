"""Config: schema (frozen dataclasses), YAML loading with --set overrides, validation."""
from .loader import config_from_dict, config_to_dict, load_config, write_config
from .presets import DARTS_PRESETS
from .rules import resolve_path
from .schema import Config

__all__ = ["Config", "DARTS_PRESETS", "config_from_dict", "config_to_dict", "load_config", "resolve_path",
           "write_config"]
