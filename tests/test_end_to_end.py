"""End to end through the command line: the smoke example in the default suite, hello_world as slow."""
import json
from pathlib import Path

import pytest

from tinyml_modelzoo.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples" / "hello_world"


def run(tmp_path, config, *sets) -> tuple[dict, Path]:
    args = [str(config), "--set", f"common.output_dir={tmp_path / 'runs'}"]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    summary_path = next((tmp_path / "runs").rglob("summary.json"))
    return json.loads(summary_path.read_text()), summary_path.parent


def test_smoke_example_runs_every_stage(tmp_path):
    summary, run_dir = run(tmp_path, EXAMPLES / "config_smoke.yaml")
    assert summary["status"] == "success"
    assert summary["task_type"] == "generic_timeseries_classification"
    assert summary["target_device"] == "F28P55"
    assert {"name", "params", "macs"} <= set(summary["model"])
    assert {"accuracy", "f1", "accuracy_int8"} <= set(summary["test"])
    assert {"npu_compatible", "flash_bytes", "ram_bytes", "latency_us_estimate",
            "host_check"} <= set(summary["compilation"])
    assert {"data", "training", "testing", "compilation"} <= set(summary["timings"])
    for name in ("config_resolved.yaml", "run.log", "training/model.pt", "training/model.onnx",
                 "training/training_curves.png", "testing/metrics.json", "testing/confusion_matrix.csv",
                 "testing/confusion_matrix.png", "compilation/npu_check.json"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "INCOMPLETE").exists()
    assert "test float: accuracy" in (run_dir / "run.log").read_text()


def test_interrupted_run_resumes_without_retraining(tmp_path, monkeypatch):
    import tinyml_modelzoo.pipeline as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_test", interrupted)
    config = EXAMPLES / "config_smoke.yaml"
    args = [str(config), "--set", f"common.output_dir={tmp_path / 'runs'}", "--set", "compilation.enable=False"]
    assert main(args) == 130
    run_dir = next((tmp_path / "runs").rglob("summary.json")).parent
    assert (run_dir / "INCOMPLETE").exists()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    monkeypatch.undo()
    assert main(["--resume", str(run_dir)]) == 0
    assert "training already finished" in (run_dir / "run.log").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "success"
    assert not (run_dir / "INCOMPLETE").exists()


@pytest.mark.slow
def test_hello_world_showcase_accuracy(tmp_path):
    summary, _ = run(tmp_path, EXAMPLES / "config.yaml")
    assert summary["test"]["accuracy"] >= 0.90
    assert summary["compilation"]["host_check"] == "bit-exact"
