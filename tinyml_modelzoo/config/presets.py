"""DARTS search-space presets: the five rows of nas_guide_darts.txt, the one table.

Values are the seed's exactly (layers, nodes per layer, init channels, stem
channel multiplier, fanout concat). For NPU targets the NAS stage rounds channel
counts up to multiples of 4 (see docs/nas_darts.md); this table is not changed.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DartsPreset:
    layers: int
    nodes_per_layer: int
    init_channels: int
    init_channel_multiplier: int
    fanout_concat: int


DARTS_PRESETS: dict[str, DartsPreset] = {
    "s": DartsPreset(3, 4, 1, 3, 4),
    "m": DartsPreset(10, 4, 1, 3, 4),
    "l": DartsPreset(12, 4, 4, 3, 4),
    "xl": DartsPreset(20, 4, 4, 3, 4),
    "xxl": DartsPreset(20, 6, 8, 3, 4),
}
DEFAULT_DARTS_PRESET = "s"

# TrainingConfig keys that customise the preset, with the preset field each overrides.
DARTS_CUSTOM_KEYS = {
    "nas_layers": "layers",
    "nas_nodes_per_layer": "nodes_per_layer",
    "nas_init_channels": "init_channels",
    "nas_init_channel_multiplier": "init_channel_multiplier",
    "nas_fanout_concat": "fanout_concat",
}
