"""Model spec files (``best_model_spec.yaml``, ``training/model_spec.yaml``) ↔ networks.

Two kinds share one file format: ``kind: sequential`` (a zoo/multi-trial
``ModelSpec``) and ``kind: darts`` (a DARTS genotype plus the ``NetworkCnn``
arguments). ``model_name: NAS_result`` retrains either kind.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from torch import nn

from .errors import UserError
from .zoo import ModelSpec, build_model


def build_from_spec_dict(data: dict, in_channels: int, in_length: int, num_classes: int, source: str = "spec"
                         ) -> nn.Module:
    kind = data.get("kind", "sequential")
    try:
        if kind == "sequential":
            return build_model(ModelSpec.from_dict(data), in_channels, in_length, num_classes)
        if kind == "darts":
            from tinyml_torchmodelopt.nas import NetworkCnn
            from tinyml_torchmodelopt.nas.genotypes import genotype_from_dict
            net = data["network"]
            genotype = genotype_from_dict(data["genotype"])
            return NetworkCnn(net["C"], num_classes, net["layers"], genotype, in_channels,
                              net.get("with_input_batchnorm", True), net["nodes_per_layer"], net["multiplier"],
                              net["stem_multiplier"], int(net.get("stem_pool", 1)))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{source}: not a valid model spec ({exc}); regenerate it with a NAS run") from None
    raise UserError(f"{source}: unknown model spec kind {kind!r}; expected 'sequential' or 'darts'")


def load_spec_file(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read model spec ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a model spec is a mapping with 'kind' and 'layers' or 'genotype'")
    return data


def write_spec_file(data: dict, path: Path) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
