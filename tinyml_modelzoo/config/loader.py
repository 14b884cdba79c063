"""YAML → validated ``Config``: safe loading, ``--set`` overrides, every problem in one pass.

Validation is driven by the schema's type annotations and field metadata, so a
new key is one line in ``schema.py``. Cross-field rules live in ``rules.py``.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from . import schema
from .rules import check_cross_field
from .schema import Config


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override, validate and resolve a config file; raise ``UserError`` listing all problems."""
    path = Path(path)
    raw = read_yaml(path)
    apply_overrides(raw, overrides, path.name)
    return config_from_dict(raw, path)


class _SafeLoaderUniqueKeys(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, refusing a key given twice in one mapping: plain YAML keeps
    the last value silently, so a key added above an existing one would be ignored."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one section (first on line {seen[key]}); keep "
                    "one of them", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: config file not found; check the path "
                        f"(examples live in examples/, e.g. examples/hello_world/config.yaml)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoaderUniqueKeys)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{path.name}:{where}: not valid YAML ({problem}); check indentation and quotes") from None
    except UnicodeDecodeError:
        raise UserError(f"{path.name}: not a UTF-8 text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path.name}: expected sections (common:, dataset:, training:, ...) "
                        f"at the top level, got {type(data).__name__}")
    return data


def apply_overrides(raw: dict, overrides, source: str) -> None:
    """Apply ``SECTION.KEY=VALUE`` strings in place; VALUE is parsed as YAML."""
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise UserError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. --set training.training_epochs=5")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = parsed


def config_from_dict(raw: dict, source: Path | None = None) -> Config:
    name = source.name if source else "config"
    problems: list[str] = []
    sections = {}
    for f in dataclasses.fields(Config):
        if f.metadata.get("internal"):
            continue
        sections[f.name] = _build(typing.get_type_hints(Config)[f.name], raw.get(f.name) or {}, f.name, problems)
    for key in raw:
        if key not in sections:
            problems.append(f"{key}: unknown section{_did_you_mean(key, sections)}; "
                            f"sections are {', '.join(sections)}")
    config = Config(**sections, source_path=str(source.resolve()) if source else "")
    try:
        problems.extend(check_cross_field(config))
    except (TypeError, AttributeError):
        pass  # a value already reported as invalid upset a cross-field rule; fix that first
    if not problems:
        return config
    raise UserError("\n".join(f"{name}: {p}" for p in problems))


def _build(cls, data: Any, where: str, problems: list[str]):
    """Make dataclass ``cls`` from ``data``, appending problems instead of raising."""
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a section of keys, got {_show(data)}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            problems.append(f"{where}.{key}: unknown key{_did_you_mean(str(key), fields)}")
            continue
        values[key] = _check_value(hints[key], fields[key], value, f"{where}.{key}", problems)
    for key, f in fields.items():
        if f.metadata.get("required") and key not in data:
            problems.append(f"{where}.{key}: required key is missing ({f.metadata.get('help', '')})")
    return cls(**values)


def _check_value(hint, f: dataclasses.Field, value: Any, where: str, problems: list[str]):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, where, problems)
    optional = type(None) in typing.get_args(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
    if value is None:
        if not optional:
            problems.append(f"{where}: needs a value ({f.metadata.get('help', '')})")
        return None
    value = _coerce(base, value, where, problems)
    if value is None:
        return None
    meta = f.metadata
    if meta.get("choices") is not None and value not in meta["choices"]:
        allowed = ", ".join(str(c) for c in meta["choices"])
        close = difflib.get_close_matches(str(value), [str(c) for c in meta["choices"]], n=1)
        hint_text = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(f"{where}: got {_show(value)}; expected one of {allowed}{hint_text}")
    if meta.get("min") is not None and isinstance(value, (int, float)) and value < meta["min"]:
        problems.append(f"{where}: got {value}; must be >= {meta['min']}")
    if meta.get("max") is not None and isinstance(value, (int, float)) and value > meta["max"]:
        problems.append(f"{where}: got {value}; must be <= {meta['max']}")
    return value


# YAML 1.1 (PyYAML) reads 1e-3 as text: a float needs a dot (1.0e-3). Numbers in this
# scientific form are taken as numbers, as the person who wrote them meant.
_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _coerce(base, value: Any, where: str, problems: list[str]):
    """Check ``value`` against the annotated type; ints are accepted where floats are."""
    if base in (int, float) and isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        value = float(value)
    if base is bool:
        if isinstance(value, bool):
            return value
        hint = " (write True or False without quotes)" if str(value).lower() in ("true", "false") else ""
        problems.append(f"{where}: got {_show(value)}; expected True or False{hint}")
        return None
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        problems.append(f"{where}: got {_show(value)}; expected a whole number")
        return None
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        problems.append(f"{where}: got {_show(value)}; expected a number")
        return None
    if base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        problems.append(f"{where}: got {_show(value)}; expected text")
        return None
    if base is list:
        if isinstance(value, list):
            return value
        problems.append(f"{where}: got {_show(value)}; expected a list such as [1, 2, 3]")
        return None
    return value


def _did_you_mean(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def config_to_dict(config: Config) -> dict:
    """Plain nested dict of a config (for config_resolved.yaml), internal fields dropped."""
    data = dataclasses.asdict(config)
    data.pop("source_path", None)
    return data


def write_config(config: Config, path: Path, extra: dict | None = None) -> None:
    data = config_to_dict(config)
    if extra:
        data.update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


__all__ = ["load_config", "config_from_dict", "config_to_dict", "write_config", "schema"]
