"""The command line as a user meets it: bad input gives one clear message, exit 2, no traceback."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tinyml_modelzoo.cli import main


def make_dataset(root: Path, classes=("a", "b"), files=4, length=600, channels=2) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / "classes" / c).mkdir(parents=True)
        for i in range(files):
            data = rng.normal(size=(length, channels))
            header = "time," + ",".join(f"ch{k}" for k in range(channels))
            rows = [header] + [f"{t}," + ",".join(f"{v:.5f}" for v in row) for t, row in enumerate(data)]
            (root / "classes" / c / f"rec{i}.csv").write_text("\n".join(rows) + "\n")
    return root


def write_config(tmp_path: Path, **sections) -> Path:
    base = {"common": {"output_dir": str(tmp_path / "runs")},
            "dataset": {"dataset_name": "mine", "input_data_path": str(tmp_path / "data")},
            "data_processing_feature_extraction": {"feature_extraction_name": "Generic_128Input_RAW_128Feature_1Frame"},
            "training": {"model_name": "CLS_500_NPU", "training_epochs": 1},
            "compilation": {"enable": False}}
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    return code, text


def files_outside_runs(tmp_path: Path) -> set:
    return {p for p in tmp_path.rglob("*") if "runs" not in p.parts}


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "data")


def expect_error(capsys, tmp_path, config, *needles):
    before = files_outside_runs(tmp_path)
    code, text = run_cli(capsys, config)
    assert code == 2, text
    for needle in needles:
        assert needle in text, text
    assert files_outside_runs(tmp_path) == before
    return text


def test_unknown_section(capsys, tmp_path, dataset):
    config = write_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["traning"] = data.pop("training")
    config.write_text(yaml.safe_dump(data))
    expect_error(capsys, tmp_path, config, "traning: unknown section; did you mean 'training'?")
    assert not (tmp_path / "runs").exists()


def test_wrong_type(capsys, tmp_path, dataset):
    expect_error(capsys, tmp_path, write_config(tmp_path, training={"training_epochs": "ten"}),
                 "training.training_epochs: got 'ten'")


def test_split_factor(capsys, tmp_path, dataset):
    expect_error(capsys, tmp_path, write_config(tmp_path, dataset={"split_factor": [0.5, 0.3, 0.3]}),
                 "split_factor", "sum to 1")


def test_unknown_model(capsys, tmp_path, dataset):
    expect_error(capsys, tmp_path, write_config(tmp_path, training={"model_name": "CLS_3k"}), "unknown model 'CLS_3k'")


def test_missing_dataset_folder(capsys, tmp_path):
    expect_error(capsys, tmp_path, write_config(tmp_path), "data")


def test_empty_class_folder(capsys, tmp_path, dataset):
    (dataset / "classes" / "empty").mkdir()
    expect_error(capsys, tmp_path, write_config(tmp_path), "empty")


def test_non_numeric_cell(capsys, tmp_path, dataset):
    path = dataset / "classes" / "a" / "rec1.csv"
    lines = path.read_text().splitlines()
    lines[5] = "4,0.1,oops"
    path.write_text("\n".join(lines) + "\n")
    expect_error(capsys, tmp_path, write_config(tmp_path), "rec1.csv", "oops")


def test_nan_in_file(capsys, tmp_path, dataset):
    path = dataset / "classes" / "b" / "rec2.csv"
    lines = path.read_text().splitlines()
    lines[7] = "6,nan,0.3"
    path.write_text("\n".join(lines) + "\n")
    expect_error(capsys, tmp_path, write_config(tmp_path), "rec2.csv")


def test_different_column_counts(capsys, tmp_path, dataset):
    np.savetxt(dataset / "classes" / "a" / "wide.csv", np.ones((600, 3)), delimiter=",")
    expect_error(capsys, tmp_path, write_config(tmp_path), "column")


def test_annotation_escaping_the_dataset(capsys, tmp_path, dataset):
    (dataset / "annotations").mkdir()
    (dataset / "annotations" / "instances_train_list.txt").write_text("classes/a/rec0.csv\n../../etc/passwd\n")
    (dataset / "annotations" / "instances_val_list.txt").write_text("classes/a/rec1.csv\n")
    (dataset / "annotations" / "instances_test_list.txt").write_text("classes/b/rec1.csv\n")
    expect_error(capsys, tmp_path, write_config(tmp_path), "../../etc/passwd")


def test_help_and_list_models(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert main(["--list-models"]) == 0
    assert "CLS_1k_NPU" in capsys.readouterr().out


def test_real_data_trains_with_yaml_edit_only(capsys, tmp_path, dataset):
    """Multi-channel CSV with a header and a time column: only the YAML changes."""
    code, text = run_cli(capsys, write_config(tmp_path, testing={"enable": True}))
    assert code == 0, text
    summary_path = next((tmp_path / "runs").rglob("summary.json"))
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "success"
    assert summary["dataset"]["input_shape"] == [4, 128]      # 2 raw + 2 per-frame normalised channels
    assert 0 <= summary["test"]["accuracy"] <= 1
    assert not (summary_path.parent / "INCOMPLETE").exists()
