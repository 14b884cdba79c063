"""Generate docs/config_reference.md from the schema (the one source of truth).

    python -m tinyml_modelzoo.config.docgen > docs/config_reference.md
"""
from __future__ import annotations

import dataclasses
import typing

from .presets import DARTS_PRESETS
from .schema import Config

INTRO = """# Config reference

Generated from `tinyml_modelzoo/config/schema.py` by
`python -m tinyml_modelzoo.config.docgen`; do not edit by hand.

A config has these sections; every key is optional unless marked. Unknown keys
are errors with a "did you mean" hint, values are type- and range-checked before
any work starts, and the fully resolved config is written to the run folder as
`config_resolved.yaml`. Any value can be overridden on the command line:
`--set training.training_epochs=5` (the value is read as YAML).
Booleans are YAML booleans (`True`/`False`, no quotes); an empty value means "not set".
Numbers may be written `1e-3` (plain YAML would read that as text).
"""


def _type_name(hint) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return getattr(base, "__name__", str(base))


def _rows(cls, prefix: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(_rows(hints[f.name], f"{prefix}{f.name}."))
            continue
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        allowed = ", ".join(str(c) for c in meta["choices"]) if meta.get("choices") else ""
        if meta.get("min") is not None or meta.get("max") is not None:
            allowed = f"{meta.get('min', '')} .. {meta.get('max', '') if meta.get('max') is not None else ''}".strip()
        rows.append(f"| `{prefix}{f.name}` | {_type_name(hints[f.name])} | `{default}` | {allowed} | {meta.get('help', '')} |")
    return rows


def render() -> str:
    out = [INTRO]
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if f.metadata.get("internal"):
            continue
        out.append(f"\n## `{f.name}`\n")
        out.append("| key | type | default | allowed | meaning |\n|---|---|---|---|---|")
        out.extend(_rows(hints[f.name], ""))
    out.append("\n## DARTS presets (`training.nas_model_size`)\n")
    out.append("| preset | layers | nodes/layer | init channels | channel multiplier | fanout concat |\n|---|---|---|---|---|---|")
    for name, p in DARTS_PRESETS.items():
        out.append(f"| `{name}` | {p.layers} | {p.nodes_per_layer} | {p.init_channels} | "
                   f"{p.init_channel_multiplier} | {p.fanout_concat} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
