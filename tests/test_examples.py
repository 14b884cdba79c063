"""Every example YAML loads and validates (tests generated from the examples folder)."""
from pathlib import Path

import pytest

from tinyml_modelzoo.config import load_config

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").rglob("*.yaml"))


def test_there_are_examples():
    assert any(p.name == "config.yaml" for p in EXAMPLES)
    assert any(p.name == "config_smoke.yaml" for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(p.parents[1])) for p in EXAMPLES])
def test_example_validates(path):
    config = load_config(path)
    assert config.common.target_device
