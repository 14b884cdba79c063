"""NPU rules as data (``rules.RULES``) and one checker (``check_npu``)."""
from .checker import Finding, NpuReport, check_npu, is_npu_valid
from .rules import RULES, Rule

__all__ = ["Finding", "NpuReport", "check_npu", "is_npu_valid", "RULES", "Rule"]
