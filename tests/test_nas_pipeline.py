"""DARTS through the pipeline: NAS/ outputs, NPU rounding, retraining a found spec."""
import json
from types import SimpleNamespace

import pytest
import yaml

from tinyml_modelzoo.cli import main
from tinyml_modelzoo.config import config_from_dict
from tinyml_modelzoo.config.presets import DARTS_PRESETS
from tinyml_modelzoo.devices import get_device
from tinyml_modelzoo.nas_stage import darts_settings, pareto_rows

FEATURES = SimpleNamespace(num_classes=3, in_channels=1, in_length=64, y_train=list(range(300)),
                           y_val=list(range(100)))


@pytest.mark.parametrize("preset", list(DARTS_PRESETS))
def test_every_preset_is_accepted_and_rounded_for_the_npu(preset):
    cfg = config_from_dict({"training": {"nas_enabled": True, "nas_model_size": preset}}).training
    npu = darts_settings(FEATURES, cfg, 0, get_device("F28P55"))
    row = DARTS_PRESETS[preset]
    assert npu.layers == row.layers and npu.nodes_per_layer == row.nodes_per_layer
    assert npu.init_channels % 4 == 0 and npu.init_channels >= row.init_channels
    assert "avg_pool_3x1" not in npu.primitives
    plain = darts_settings(FEATURES, cfg, 0, get_device("F2837"))
    assert plain.init_channels == row.init_channels and "avg_pool_3x1" in plain.primitives


def test_preset_s_searches_in_budget_mode_unless_the_config_says_otherwise():
    def settings(**training):
        cfg = config_from_dict({"training": {"nas_enabled": True, **training}}).training
        return darts_settings(FEATURES, cfg, 0, get_device("F28P55"))
    assert settings().target_params == 4000 and settings().penalty_mode == "Memory"
    assert settings(nas_model_size="s").target_params == 4000
    assert settings(nas_target_params=2500).target_params == 2500
    assert settings(nas_penalty_weight=0.5).target_params is None
    assert settings(nas_target_macs=50000).target_params is None
    assert settings(nas_model_size="m").target_params is None


def test_default_budget_grows_by_one_classifier_row_per_class_beyond_ten():
    from tinyml_torchmodelopt.nas.train_cnn_search import build_final_model
    from tinyml_torchmodelopt.nas.genotypes import Genotype_CNN
    cfg = config_from_dict({"training": {"nas_enabled": True}}).training

    def settings(num_classes):
        features = SimpleNamespace(**{**vars(FEATURES), "num_classes": num_classes})
        return darts_settings(features, cfg, 0, get_device("F28P55"))
    assert settings(10).target_params == 4000 == settings(2).target_params
    many = settings(40)
    genes = [("skip_connect", 0), ("skip_connect", 1)] * many.nodes_per_layer
    concat = list(range(2, 2 + many.nodes_per_layer))
    model = build_final_model(many, Genotype_CNN(genes, concat, genes, concat))
    head = model.classifier[-1]
    assert many.target_params == 4000 + 30 * (head.in_features + 1)  # the real classifier row: 64 weights + bias


def test_nas_primitives_reach_the_search():
    cfg = config_from_dict({"training": {"nas_enabled": True, "nas_primitives": ["skip_connect", "sep_conv_5x1"]}})
    assert darts_settings(FEATURES, cfg.training, 0, get_device("F28P55")).primitives == ("skip_connect",
                                                                                          "sep_conv_5x1")


def test_custom_keys_override_the_preset():
    cfg = config_from_dict({"training": {"nas_enabled": True, "nas_model_size": "l", "nas_layers": 5,
                                         "nas_fanout_concat": 2}}).training
    settings = darts_settings(FEATURES, cfg, 0, get_device("F28P55"))
    assert (settings.layers, settings.multiplier, settings.nodes_per_layer) == (5, 2, 4)


def test_pareto_rows_keep_only_non_dominated_epochs():
    rows = [{"epoch": 1, "params": 100, "supernet_val_accuracy": 0.5},
            {"epoch": 2, "params": 80, "supernet_val_accuracy": 0.6},
            {"epoch": 3, "params": 120, "supernet_val_accuracy": 0.7},
            {"epoch": 4, "params": 130, "supernet_val_accuracy": 0.65}]
    assert [r["epoch"] for r in pareto_rows(rows)] == [2, 3]


def test_tiny_darts_run_then_retrain_the_found_spec(tmp_path):
    base = ["examples/hello_world/config_nas.yaml", "--set", f"common.output_dir={tmp_path / 'runs'}",
            "--set", "dataset.hello_world_files_per_class=4", "--set", "training.nas_epochs=1",
            "--set", "training.nas_nodes_per_layer=2", "--set", "training.nas_fanout_concat=2",
            "--set", "training.training_epochs=1", "--set", "common.run_name=search"]
    assert main(base) == 0
    run_dir = tmp_path / "runs" / "hello_world" / "run" / "search"
    nas = run_dir / "NAS"
    for name in ("search_results.csv", "pareto_frontier.csv", "best_model_spec.yaml", "pareto_plot.png",
                 "alpha_evolution.png", "best_model/best_model.pt", "search_checkpoint.pt"):
        assert (nas / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["nas"]["mode"] == "darts" and summary["nas"]["search_samples_per_second"] > 0
    assert summary["compilation"]["npu_compatible"] and summary["compilation"]["host_check"] == "bit-exact"
    spec = yaml.safe_load((nas / "best_model_spec.yaml").read_text())
    assert spec["kind"] == "darts" and spec["metrics"]["params"] == summary["model"]["params"]

    retrain = ["examples/hello_world/config.yaml", "--set", f"common.output_dir={tmp_path / 'runs'}",
               "--set", "dataset.hello_world_files_per_class=4", "--set", "training.model_name=NAS_result",
               "--set", f"training.model_spec_path={nas / 'best_model_spec.yaml'}",
               "--set", "training.training_epochs=1", "--set", "compilation.enable=False",
               "--set", "common.run_name=retrain"]
    assert main(retrain) == 0
    again = json.loads((tmp_path / "runs" / "hello_world" / "run" / "retrain" / "summary.json").read_text())
    assert again["model"]["params"] == summary["model"]["params"] and "nas" not in again


def test_a_diverged_search_is_a_clear_error(tmp_path, capsys):
    args = ["examples/hello_world/config_nas.yaml", "--set", f"common.output_dir={tmp_path / 'runs'}",
            "--set", "dataset.hello_world_files_per_class=4", "--set", "training.nas_epochs=4",
            "--set", "training.nas_nodes_per_layer=2", "--set", "training.nas_fanout_concat=2",
            "--set", "training.nas_arch_learning_rate=1e38"]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "DARTS search diverged, search epoch" in err and "the loss is no longer finite" in err
    assert "training.nas_arch_learning_rate" in err and "Traceback" not in err


def test_tiny_multi_trial_run_through_the_pipeline(tmp_path):
    args = ["examples/hello_world/config_nas_multitrial.yaml", "--set", f"common.output_dir={tmp_path / 'runs'}",
            "--set", "dataset.hello_world_files_per_class=4", "--set", "nas.num_trials=3",
            "--set", "nas.parallel_trials=1", "--set", "nas.trial_epochs=1", "--set", "training.training_epochs=1",
            "--set", "compilation.enable=False", "--set", "common.run_name=mt"]
    assert main(args) == 0
    run_dir = tmp_path / "runs" / "hello_world" / "run" / "mt"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["nas"]["mode"] == "multi_trial" and summary["nas"]["trials"] == 3
    assert summary["model"]["source"] == "multi_trial"
    for name in ("search_results.csv", "pareto_frontier.csv", "best_model_spec.yaml", "pareto_plot.png",
                 "best_model/best_model.pt"):
        assert (run_dir / "NAS" / name).is_file(), name


def test_arch_learning_rate_scales_with_the_number_of_alpha_updates():
    from tinyml_modelzoo.nas_stage import arch_learning_rate

    def cfg(**training):
        return config_from_dict({"training": {"nas_enabled": True, "batch_size": 32, **training}}).training
    # 320 series / batch 32 = 10 steps, raised to nas_min_steps_per_epoch (20); 5 of 10 epochs warm up
    assert arch_learning_rate(cfg(nas_epochs=10), 320) == pytest.approx(2.0 / (5 * 20))
    assert arch_learning_rate(cfg(nas_epochs=10), 3200) == pytest.approx(2.0 / (5 * 100))
    # 32000 / 32 = 1000 steps, cut to nas_max_steps_per_epoch (250)
    assert arch_learning_rate(cfg(nas_epochs=10), 32000) == pytest.approx(2.0 / (5 * 250))
    assert arch_learning_rate(cfg(nas_epochs=10, nas_warmup_epochs=0), 320) == pytest.approx(2.0 / (10 * 20))
    assert arch_learning_rate(cfg(nas_epochs=50), 32000) == pytest.approx(1e-3)      # floor
    assert arch_learning_rate(cfg(nas_epochs=1), 32) == pytest.approx(3e-2)          # cap
    assert arch_learning_rate(cfg(nas_arch_learning_rate=3e-4), 320) == 3e-4         # the user's value wins


def test_search_steps_per_epoch_are_cycled_up_and_cut_down():
    from tinyml_modelzoo.nas_stage import max_search_steps, search_steps_per_epoch

    def cfg(**training):
        return config_from_dict({"training": {"nas_enabled": True, "batch_size": 32, **training}}).training
    assert [search_steps_per_epoch(cfg(), n) for n in (64, 1600, 8000, 32000)] == [20, 50, 250, 250]
    assert search_steps_per_epoch(cfg(nas_max_steps_per_epoch=None), 32000) == 1000
    assert search_steps_per_epoch(cfg(nas_max_steps_per_epoch=80), 32000) == 80
    # a minimum set above the cap wins over the cap
    assert max_search_steps(cfg(nas_min_steps_per_epoch=300)) == 300
    assert search_steps_per_epoch(cfg(nas_min_steps_per_epoch=300), 32000) == 300


def test_stem_pool_rule_leaves_the_cells_at_most_64_samples():
    from tinyml_modelzoo.nas_stage import stem_pool

    def pool(length, transforms=("RAW_FE", "CONCAT"), **training):
        cfg = config_from_dict({"training": {"nas_enabled": True, **training}}).training
        return stem_pool(cfg, SimpleNamespace(in_length=length, transforms=transforms))
    assert pool(1460) == 4 and pool(427) == 4 and pool(160) == 4 and pool(130) == 4 and pool(129) == 2
    assert pool(128) == 2 and pool(65) == 2 and pool(64) == 1 and pool(24) == 1   # the cells see at most 64 samples
    assert pool(2048, transforms=("FFT_FE", "FFT_POS_HALF", "CONCAT")) == 1        # spectra keep resolution
    assert pool(1460, nas_stem_pool=1) == 1 and pool(256, nas_stem_pool=2) == 2   # the user's value wins


def test_darts_with_a_stem_pool_compiles_bit_exact_and_retrains_from_its_spec(tmp_path):
    base = ["examples/hello_world/config_nas.yaml", "--set", f"common.output_dir={tmp_path / 'runs'}",
            "--set", "dataset.hello_world_files_per_class=4", "--set", "training.nas_epochs=1",
            "--set", "training.nas_nodes_per_layer=2", "--set", "training.nas_fanout_concat=2",
            "--set", "training.nas_stem_pool=2", "--set", "training.training_epochs=1",
            "--set", "common.run_name=pooled"]
    assert main(base) == 0
    run_dir = tmp_path / "runs" / "hello_world" / "run" / "pooled"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["compilation"]["npu_compatible"] and summary["compilation"]["host_check"] == "bit-exact"
    spec = yaml.safe_load((run_dir / "NAS" / "best_model_spec.yaml").read_text())
    assert spec["network"]["stem_pool"] == 2
    from tinyml_modelzoo.model_specs import build_from_spec_dict
    model = build_from_spec_dict(spec, 1, 256, 4)
    assert model.stem[-1].kernel_size == 2 and summary["model"]["params"] == spec["metrics"]["params"]


def test_inputs_too_short_for_the_npu_pool_are_refused_before_searching():
    from tinyml_modelzoo.errors import UserError
    from tinyml_modelzoo.nas_stage import check_pooled_length, pooled_length
    cfg = config_from_dict({"training": {"nas_enabled": True}}).training

    def settings(length, device):
        features = SimpleNamespace(**{**vars(FEATURES), "in_length": length})
        return darts_settings(features, cfg, 0, get_device(device))
    assert pooled_length(settings(9, "F28P55"), 9) == 3 and pooled_length(settings(8, "F28P55"), 8) == 2
    check_pooled_length(settings(9, "F28P55"), 9, get_device("F28P55"))
    check_pooled_length(settings(8, "F2837"), 8, get_device("F2837"))  # no NPU: no pool rule
    with pytest.raises(UserError, match="inputs of 8 samples .* at least 9 samples"):
        check_pooled_length(settings(8, "F28P55"), 8, get_device("F28P55"))


@pytest.mark.parametrize("custom", [{}, {"nas_nodes_per_layer": 3, "nas_fanout_concat": 2},
                                    {"nas_model_size": "m", "nas_fanout_concat": 3}])
def test_length_and_budget_checks_build_the_skeleton_of_any_custom_cell(custom):
    from tinyml_modelzoo.nas_stage import check_pooled_length, pooled_length
    cfg = config_from_dict({"training": {"nas_enabled": True, **custom}}).training
    settings = darts_settings(FEATURES, cfg, 0, get_device("F28P55"))
    assert pooled_length(settings, 64) == 16
    check_pooled_length(settings, 64, get_device("F28P55"))
