"""The library never imports the pipeline (STYLE.md pattern 5)."""
import pkgutil
import subprocess
import sys

import tinyml_torchmodelopt


def test_importing_every_library_module_leaves_the_pipeline_unloaded():
    modules = [m.name for m in pkgutil.walk_packages(tinyml_torchmodelopt.__path__, "tinyml_torchmodelopt.")]
    assert {"tinyml_torchmodelopt.nas", "tinyml_torchmodelopt.quantization", "tinyml_torchmodelopt.profile",
            "tinyml_torchmodelopt.train", "tinyml_torchmodelopt.onnx_export"} <= set(modules)
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "loaded = [m for m in sys.modules if m.startswith('tinyml_modelzoo')]\n"
            "sys.exit(f'pipeline modules loaded: {loaded}' if loaded else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
