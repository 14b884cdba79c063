"""Config loading: defaults, overrides, and one clear line per problem."""
from pathlib import Path

import pytest
import yaml

from tinyml_modelzoo.config import config_from_dict, config_to_dict, load_config
from tinyml_modelzoo.errors import UserError


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def problems(tmp_path, data, overrides=()) -> str:
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, data), overrides)
    return str(err.value)


def test_empty_config_gives_defaults(tmp_path):
    config = load_config(write(tmp_path, {}))
    assert config.training.model_name == "CLS_1k_NPU"
    assert config.dataset.split_factor == [0.6, 0.2, 0.2]
    assert config.common.target_device == "F28P55"


def test_unknown_section_and_key_suggest_the_right_name(tmp_path):
    text = problems(tmp_path, {"traning": {"training_epochs": 3}, "training": {"learning_rte": 0.1}})
    assert "config.yaml: traning: unknown section; did you mean 'training'?" in text
    assert "training.learning_rte: unknown key; did you mean 'learning_rate'?" in text


def test_wrong_type_and_choice_are_named(tmp_path):
    text = problems(tmp_path, {"training": {"training_epochs": "ten", "nas_model_size": "xxxl"}})
    assert "training.training_epochs: got 'ten'; expected a whole number" in text
    assert "training.nas_model_size: got 'xxxl'; expected one of s, m, l, xl, xxl" in text


def test_all_problems_reported_in_one_pass(tmp_path):
    text = problems(tmp_path, {"training": {"batch_size": 0, "optimizer": "rmsprop"},
                               "dataset": {"split_factor": [0.5, 0.2, 0.2]}})
    assert len(text.splitlines()) == 3
    assert "sums to 0.9" in text and "batch_size: got 0; must be >= 1" in text and "rmsprop" in text


def test_string_booleans_get_a_hint(tmp_path):
    assert "without quotes" in problems(tmp_path, {"training": {"enable": "True"}})


def test_unknown_model_name_lists_close_matches(tmp_path):
    text = problems(tmp_path, {"training": {"model_name": "CLS_1K_NPU"}})
    assert "unknown model 'CLS_1K_NPU'" in text and "CLS_1k_NPU" in text


def test_overrides_are_yaml_typed(tmp_path):
    config = load_config(write(tmp_path, {}), ["training.training_epochs=2", "nas.param_range=[200,2000]",
                                              "training.nas_enabled=True", "training.nas_model_size=m"])
    assert config.training.training_epochs == 2
    assert config.nas.param_range == [200, 2000]
    assert config.training.nas_enabled is True


def test_scientific_numbers_without_a_dot_are_numbers(tmp_path):
    # PyYAML reads 1e-3 as the text '1e-3' (YAML 1.1 wants 1.0e-3); the config takes it as the number meant
    config = load_config(write(tmp_path, "training:\n  learning_rate: 1e-3\n  weight_decay: 5E-4\n"),
                         ["training.nas_target_params=4e3", "training.training_epochs=1.5e1"])
    assert config.training.learning_rate == 0.001 and config.training.weight_decay == 0.0005
    assert config.training.nas_target_params == 4000 and config.training.training_epochs == 15
    text = problems(tmp_path, {"training": {"training_epochs": "1e-1", "learning_rate": "1e-3x"}})
    assert "training.training_epochs: got 0.1; expected a whole number" in text
    assert "training.learning_rate: got '1e-3x'; expected a number" in text


def test_bad_override_syntax(tmp_path):
    assert "SECTION.KEY=VALUE" in problems(tmp_path, {}, ["training_epochs=3"])


def test_invalid_yaml_names_line(tmp_path):
    text = problems(tmp_path, "training:\n  epochs: [1, 2\n")
    assert "not valid YAML" in text and "line" in text


def test_a_key_given_twice_is_refused_not_silently_overwritten(tmp_path):
    text = problems(tmp_path, "training:\n  nas_epochs: 4\n  batch_size: 8\n  nas_epochs: 10\n")
    assert "line 4" in text and "'nas_epochs' appears twice" in text and "first on line 2" in text
    # the same key in two sections, and a YAML merge key overridden in place, are fine
    cfg = load_config(write(tmp_path, "common:\n  <<: {seed: 3}\n  seed: 5\ntraining:\n  enable: true\n"
                                      "testing:\n  enable: true\n"))
    assert cfg.common.seed == 5 and cfg.training.enable and cfg.testing.enable


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_nas_rules(tmp_path):
    text = problems(tmp_path, {"training": {"nas_enabled": True, "nas_nodes_per_layer": 3, "nas_fanout_concat": 4,
                                            "nas_layers": 2}})
    assert "nas_layers: got 2; must be >= 3" in text and "nas_fanout_concat: 4 is more than" in text
    text = problems(tmp_path, {"nas": {"enable": True, "param_range": [5000, 100]}, "training": {"model_name": "auto"}})
    assert "nas.param_range" in text


def test_unsupported_task_type(tmp_path):
    assert "not supported yet" in problems(tmp_path, {"common": {"task_type": "generic_timeseries_regression"}})


def test_nas_result_needs_spec_path(tmp_path):
    assert "model_spec_path: required" in problems(tmp_path, {"training": {"model_name": "NAS_result"}})


def test_resolved_config_round_trips():
    config = config_from_dict({"training": {"training_epochs": 7}})
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(config))))
    assert config_to_dict(again) == config_to_dict(config)


def test_config_reference_is_generated_from_schema():
    from tinyml_modelzoo.config.docgen import render
    doc = Path(__file__).parent.parent / "docs" / "config_reference.md"
    assert doc.read_text() == render(), "regenerate: python -m tinyml_modelzoo.config.docgen > docs/config_reference.md"


def test_partial_channels_must_divide_the_darts_channels(tmp_path):
    text = problems(tmp_path, {"training": {"nas_enabled": True, "nas_model_size": "l", "nas_partial_channels": 3}})
    assert "training.nas_partial_channels: 3 does not divide the 4 channels of the first cell" in text
    config = load_config(write(tmp_path, {"training": {"nas_enabled": True, "nas_model_size": "l",
                                                       "nas_partial_channels": 4}}))
    assert config.training.nas_partial_channels == 4


def test_nas_primitives_are_checked_against_the_ops_and_the_npu(tmp_path):
    def darts(primitives, device="F28P55"):
        return {"common": {"target_device": device}, "training": {"nas_enabled": True, "nas_primitives": primitives}}
    text = problems(tmp_path, darts(["none", "sepconv_3x1"]))
    assert "training.nas_primitives: unknown ['sepconv_3x1']; choose from" in text and "sep_conv_3x1" in text
    text = problems(tmp_path, darts(["none", "avg_pool_3x1", "dil_conv_3x1", "conv_bn_relu_3x1"]))
    assert "['avg_pool_3x1', 'dil_conv_3x1'] cannot run on the F28P55 NPU" in text
    assert "needs at least one op besides 'none'" in problems(tmp_path, darts(["none"]))
    assert "listed more than once" in problems(tmp_path, darts(["skip_connect", "skip_connect"]))
    assert "expected a list" in problems(tmp_path, darts("conv_bn_relu_3x1"))
    ok = load_config(write(tmp_path, darts(["avg_pool_3x1", "dil_conv_3x1"], device="F2837")))
    assert ok.training.nas_primitives == ["avg_pool_3x1", "dil_conv_3x1"]
