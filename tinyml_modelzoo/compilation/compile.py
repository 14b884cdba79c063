"""The compilation stage: NPU check -> ONNX -> int8 -> C99 artifacts -> host check.

Writes, inside ``out_dir`` (the run's ``compilation/`` folder)::

    npu_check.json          the NPU report (always, also when it fails)
    model_float.onnx        float model, checked against PyTorch with onnxruntime
    model_int8.onnx         integer ONNX model, checked against run_int8
    model_int8.npz          the QuantizedModel (QuantizedModel.load)
    compile_report.json     CompileResult.to_dict()
    artifacts/mod.h mod.c golden_vectors.h test_main.c
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyml_torchmodelopt.onnx_export import export_int8_onnx, export_onnx, run_int8_onnx
from tinyml_torchmodelopt.profile import profile_model
from tinyml_torchmodelopt.quantization import GraphNet, QuantizedModel, quantize_ptq

from ..config.schema import CompilationConfig
from ..devices import DeviceInfo, estimate_latency_us
from ..errors import UserError
from ..npu import Finding, check_npu
from .codegen import generate_c
from .host_check import host_check
from .onnx_import import import_onnx

GOLDEN_PER_CLASS = 2


log = logging.getLogger("tinyml_modelzoo")

@dataclass(frozen=True)
class CompileResult:
    npu_compatible: bool
    npu_findings: tuple[Finding, ...]
    flash_bytes: int            # const weights + biases + estimated code
    ram_bytes: int              # activation arena + staging + caller's input/output buffers
    latency_us_estimate: float  # devices.estimate_latency_us (NPU when the device has one)
    host_check: str             # 'bit-exact' | 'skipped: no C compiler'
    files: tuple[str, ...]      # relative to out_dir
    weight_bytes: int
    code_bytes_estimate: int
    arena_bytes: int
    activation_bytes: int       # sum of activation buffers without reuse
    params: int
    macs: int
    onnx_max_abs_diff: float
    onnx_int8_check: str        # 'bit-exact' | 'mismatch on k/n vectors'
    golden_vectors: int

    def to_summary(self) -> dict:
        """The ``compilation`` block of summary.json."""
        return {"npu_compatible": self.npu_compatible, "flash_bytes": self.flash_bytes,
                "ram_bytes": self.ram_bytes, "latency_us_estimate": round(self.latency_us_estimate, 1),
                "host_check": self.host_check}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["npu_findings"] = [f.to_dict() for f in self.npu_findings]
        d["files"] = list(self.files)
        return d


def select_golden(x: np.ndarray, y: np.ndarray, per_class: int = GOLDEN_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` samples of every class present (deterministic)."""
    y = np.asarray(y).reshape(-1)
    idx = [i for c in np.unique(y) for i in np.nonzero(y == c)[0][:per_class]]
    idx = sorted(idx)
    return np.asarray(x)[idx], y[idx]


def compile_model(model: nn.Module, quantized: QuantizedModel | None, *, input_shape: tuple[int, int],
                  calibration_x: np.ndarray | None, golden_x: np.ndarray, golden_y: np.ndarray,
                  class_names: list[str], cfg: CompilationConfig, device: DeviceInfo,
                  out_dir: Path) -> CompileResult:
    """Compile a float ``model`` (input ``(N, C, L)``) for ``device``; see module docstring.

    ``quantized`` None: PTQ on ``calibration_x``. Raises ``UserError`` when the NPU
    check fails (only ``npu_check.json`` is written) or data is missing, and
    ``HostCheckError`` when the generated C is not bit-exact.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    input_shape = (int(input_shape[0]), int(input_shape[1]))
    report = check_npu(model, input_shape, device)
    (out_dir / "npu_check.json").write_text(json.dumps(report.to_dict(), indent=2))
    log.info("%s", report.format_table())
    if not report.ok:
        lines = "\n".join(f"  {f.layer}: {f.rule}: found {f.found}; allowed {f.allowed}; fix: {f.fix}"
                          for f in report.findings)
        raise UserError(f"model is not compatible with the {device.name} NPU ({len(report.findings)} "
                        f"violation(s), see {out_dir / 'npu_check.json'}):\n{lines}\n"
                        "Change these layers, or pick a target_device without an NPU.")
    if golden_x is None or len(golden_x) == 0:
        raise UserError("compilation: no golden samples (test split is empty); golden vectors need data")
    if quantized is None:
        if calibration_x is None or len(calibration_x) == 0:
            raise UserError("compilation: calibration data is needed to quantize the model; "
                            "enable the dataset section so training samples are available")
        quantized = quantize_ptq(model, torch.as_tensor(np.asarray(calibration_x), dtype=torch.float32),
                                 input_shape=input_shape)
    if quantized.input_shape != input_shape:
        raise ValueError(f"quantized model expects {quantized.input_shape}, compile input is {input_shape}")

    gx_float, gy = select_golden(golden_x, golden_y)
    gx = quantized.quantize_input(gx_float)
    expected = quantized.run_int8(gx)
    example = torch.as_tensor(np.asarray(gx_float[:4]), dtype=torch.float32)
    diff = export_onnx(model, example, out_dir / "model_float.onnx")
    export_int8_onnx(quantized, out_dir / "model_int8.onnx")
    onnx_out = run_int8_onnx(out_dir / "model_int8.onnx", gx)
    bad = int((onnx_out != expected).reshape(len(gx), -1).any(axis=1).sum())
    onnx_check = "bit-exact" if bad == 0 else f"mismatch on {bad}/{len(gx)} vectors"
    quantized.save(out_dir / "model_int8.npz")

    artifacts = out_dir / "artifacts"
    pad = device.npu_rules.channel_multiple if device.has_npu and device.npu_rules else 1
    code = generate_c(quantized, artifacts, class_names=list(class_names), golden_x=gx, golden_y=gy,
                      pad_channels_to=pad, preset=cfg.preset_name, device_name=device.name)
    check = host_check(artifacts, expected) if cfg.host_check else "skipped: compilation.host_check is False"
    prof = profile_model(model, input_shape)
    latency = estimate_latency_us(prof.macs, prof.params, device, npu=device.has_npu)
    files = ["npu_check.json", "model_float.onnx", "model_int8.onnx", "model_int8.npz", "compile_report.json"]
    files += [str(p.relative_to(out_dir)) for p in code.files]
    result = CompileResult(
        npu_compatible=report.ok, npu_findings=report.findings,
        flash_bytes=code.weight_bytes + code.code_bytes_estimate,
        ram_bytes=code.arena_bytes + code.staging_bytes + code.io_bytes,
        latency_us_estimate=latency, host_check=check, files=tuple(files), weight_bytes=code.weight_bytes,
        code_bytes_estimate=code.code_bytes_estimate, arena_bytes=code.arena_bytes,
        activation_bytes=code.activation_bytes, params=prof.params, macs=prof.macs, onnx_max_abs_diff=diff,
        onnx_int8_check=onnx_check, golden_vectors=len(gx))
    (out_dir / "compile_report.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def compile_onnx(model_path: str | Path, calibration_x: np.ndarray | None, *, golden_x: np.ndarray,
                 golden_y: np.ndarray, class_names: list[str], cfg: CompilationConfig, device: DeviceInfo,
                 out_dir: Path) -> CompileResult:
    """Compile-only mode: a float ONNX model of the supported operator set (see
    ``onnx_import``), quantized with PTQ on ``calibration_x`` ``(N, C, L)``."""
    if calibration_x is None or len(calibration_x) == 0:
        raise UserError(f"compilation.model_path: compiling {model_path} needs calibration data "
                        "(N, C, L); enable the dataset section so samples are available")
    graph = import_onnx(model_path)
    if tuple(np.asarray(calibration_x).shape[1:]) != graph.input_shape:
        raise UserError(f"compilation.model_path: {model_path} expects inputs {graph.input_shape} (C, L); "
                        f"the data has {tuple(np.asarray(calibration_x).shape[1:])}; check the feature settings")
    model = GraphNet(graph).eval()
    return compile_model(model, None, input_shape=graph.input_shape, calibration_x=calibration_x,
                         golden_x=golden_x, golden_y=golden_y, class_names=class_names, cfg=cfg,
                         device=device, out_dir=out_dir)
