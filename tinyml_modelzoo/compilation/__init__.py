"""Compilation stage: NPU check, ONNX, int8, C99 artifacts, host check, reports."""
from .compile import CompileResult, compile_model, compile_onnx, select_golden
from .host_check import HostCheckError

__all__ = ["CompileResult", "compile_model", "compile_onnx", "select_golden", "HostCheckError"]
