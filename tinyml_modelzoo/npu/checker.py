"""The one NPU checker: trace the model, apply ``RULES``, report every violation."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from tinyml_torchmodelopt.profile import count_params
from tinyml_torchmodelopt.quantization.graph import trace_graph

from ..devices import DeviceInfo
from .rules import RULES, conv_role


@dataclass(frozen=True)
class Finding:
    layer: str
    rule: str
    found: str
    allowed: str
    fix: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NpuReport:
    device: str
    has_npu: bool
    params: int
    layers_checked: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        return {"device": self.device, "has_npu": self.has_npu, "npu_compatible": self.ok, "params": self.params,
                "layers_checked": self.layers_checked, "findings": [f.to_dict() for f in self.findings]}

    @classmethod
    def from_dict(cls, data: dict) -> "NpuReport":
        return cls(data["device"], data["has_npu"], data["params"], data["layers_checked"],
                   tuple(Finding(**f) for f in data["findings"]))

    def format_table(self) -> str:
        head = f"NPU check for {self.device}: " + (
            "skipped (device has no NPU)" if not self.has_npu and self.ok else
            "OK" if self.ok else f"{len(self.findings)} violation(s)")
        head += f", {self.params} params, {self.layers_checked} layers"
        if self.ok:
            return head
        cols = ("layer", "rule", "found", "allowed", "fix")
        rows = [cols] + [tuple(getattr(f, c) for c in cols) for f in self.findings]
        width = [max(len(r[i]) for r in rows) for i in range(len(cols))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in width))
        return "\n".join([head, *lines])


def check_npu(model: nn.Module, input_shape: tuple[int, int], device: DeviceInfo) -> NpuReport:
    """Check ``model`` for input ``(C, L)`` against ``device``'s NPU rules.

    Devices without an NPU skip the NPU rules; unsupported layer types and the
    parameter limit are checked for every device.
    """
    params = count_params(model)
    findings: list[Finding] = []
    try:
        graph = trace_graph(model, tuple(input_shape))
    except ValueError as exc:
        return NpuReport(device.name, device.has_npu, params, 0,
                         (Finding("model", "traceable", str(exc)[:200], "torch.fx-traceable model",
                                  "avoid data-dependent control flow in forward()"),))
    rules = device.npu_rules
    shapes = {n.name: n.shape for n in graph.nodes}
    seen_conv = False
    checked = 0
    for node in graph.nodes:
        if node.op == "input":
            continue
        checked += 1
        role = "*"
        if node.op == "conv":
            role = conv_role(node, first=not seen_conv)
            seen_conv = True
        for rule in RULES:
            if node.op not in rule.ops or (rule.npu_only and (not device.has_npu or rules is None)):
                continue
            if "*" not in rule.roles and role not in rule.roles:
                continue
            if rule.name == "gap_input_length":
                length = shapes[node.inputs[0]][-1]
                result = None if length >= rules.gap_min_length else (
                    f"input length={length}", f">= {rules.gap_min_length}", "pool less before the global average pool")
            else:
                result = rule.check(node, rules)
            if result is not None:
                findings.append(Finding(node.name, rule.name, *result))
    if params > device.max_params:
        findings.append(Finding("model", "max_params", f"{params} params", f"<= {device.max_params}",
                                "use fewer channels or layers"))
    return NpuReport(device.name, device.has_npu, params, checked, tuple(findings))


def is_npu_valid(model: nn.Module, input_shape: tuple[int, int], device: DeviceInfo) -> bool:
    return check_npu(model, input_shape, device).ok
