"""NPU rules and checker."""
import dataclasses
from collections import OrderedDict

import pytest
from torch import nn

from tinyml_modelzoo.devices import get_device
from tinyml_modelzoo.npu import RULES, NpuReport, check_npu, is_npu_valid

from branchy import Branchy

F28P55 = get_device("F28P55")


def seq(*named):
    return nn.Sequential(OrderedDict(named))


def invalid_model():
    """Four violations of the brief: kernel 9, max pool 5, 6 channels, FC with 8 (and 6) inputs."""
    return seq(("conv1", nn.Conv1d(1, 8, 9, padding=4)), ("bn1", nn.BatchNorm1d(8)), ("relu1", nn.ReLU()),
               ("pool1", nn.MaxPool1d(5)), ("conv2", nn.Conv1d(8, 6, 3, padding=1)), ("relu2", nn.ReLU()),
               ("gap3", nn.AdaptiveAvgPool1d(1)), ("flatten3", nn.Flatten()), ("fc4", nn.Linear(6, 8)),
               ("relu4", nn.ReLU()), ("fc", nn.Linear(8, 3)))


def test_one_finding_per_violation():
    report = check_npu(invalid_model(), (1, 64), F28P55)
    found = {(f.layer, f.rule) for f in report.findings}
    assert found == {("conv1", "first_conv_kernel"), ("pool1", "maxpool_kernel"), ("conv2", "conv_channels"),
                     ("fc4", "fc_in_features"), ("fc", "fc_in_features")}
    assert len(report.findings) == 5 and not report.ok
    by_rule = {f.rule: f for f in report.findings}
    assert by_rule["first_conv_kernel"].found == "kernel=9" and "8" in by_rule["first_conv_kernel"].allowed
    assert "out_channels=6" in by_rule["conv_channels"].found
    assert all(f.fix for f in report.findings)
    table = report.format_table()
    assert all(name in table for name in ("conv1", "pool1", "conv2", "fc4", "maxpool_kernel"))
    assert not is_npu_valid(invalid_model(), (1, 64), F28P55)


def test_report_is_frozen_and_round_trips():
    report = check_npu(invalid_model(), (1, 64), F28P55)
    assert NpuReport.from_dict(report.to_dict()) == report
    assert report.to_dict()["npu_compatible"] is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.findings = ()


def test_device_without_npu_skips_npu_rules():
    report = check_npu(invalid_model(), (1, 64), get_device("F2837"))
    assert report.ok and not report.has_npu and "skipped" in report.format_table()


def test_unsupported_layer_is_reported_on_every_device():
    model = seq(("conv1", nn.Conv1d(1, 8, 3)), ("act1", nn.GELU()), ("gap2", nn.AdaptiveAvgPool1d(1)),
                ("flatten2", nn.Flatten()), ("fc", nn.Linear(8, 2)))
    for name in ("F28P55", "F2837"):
        findings = check_npu(model, (1, 32), get_device(name)).findings
        assert [(f.layer, f.rule, f.found) for f in findings if f.rule == "unsupported_op"] == \
            [("act1", "unsupported_op", "GELU")]


@pytest.mark.parametrize("layer,shape,rule", [
    (nn.Conv1d(8, 8, 9, padding=4, groups=8), (8, 32), "depthwise_conv"),
    (nn.Conv1d(8, 8, 3, padding=1, groups=2), (8, 32), "grouped_conv"),
    (nn.Conv1d(8, 8, 3, stride=3), (8, 32), "conv_stride"),
    (nn.Conv1d(8, 8, 8), (8, 32), "conv_kernel"),
    (nn.AvgPool1d(9, 1), (8, 32), "avgpool_lowering"),
    (nn.MaxPool1d(2), (8, 4), "gap_input_length"),
])
def test_single_rules(layer, shape, rule):
    head = nn.Conv1d(1, shape[0], 1)  # a valid first conv so `layer` is judged as a later layer
    model = seq(("conv0", head), ("layer", layer), ("gap", nn.AdaptiveAvgPool1d(1)), ("flat", nn.Flatten()),
                ("fc", nn.Linear(shape[0], 3)))
    findings = check_npu(model, (1, shape[1]), F28P55).findings
    assert [f.rule for f in findings if f.layer in ("layer", "gap")] == [rule]


def test_accepted_layers():
    model = seq(("input_bn", nn.BatchNorm1d(3)), ("conv1", nn.Conv1d(3, 8, 7, stride=2, padding=3)),
                ("relu1", nn.ReLU()), ("pool2", nn.AvgPool1d(3, 1, 1)), ("conv3", nn.Conv1d(8, 8, 7, groups=8)),
                ("conv4", nn.Conv1d(8, 16, 1)), ("pool5", nn.MaxPool1d(4)), ("gap6", nn.AdaptiveAvgPool1d(1)),
                ("flatten6", nn.Flatten()), ("fc", nn.Linear(16, 4)))
    assert check_npu(model, (3, 64), F28P55).ok   # 3 input channels: zero-padded to 4 by the code generator


def test_first_conv_kernel_8_ok_for_one_channel_only():
    def model(cin):
        return seq(("conv1", nn.Conv1d(cin, 16, 8)), ("gap", nn.AdaptiveAvgPool1d(1)), ("flat", nn.Flatten()),
                   ("fc", nn.Linear(16, 2)))
    assert check_npu(model(1), (1, 32), F28P55).ok
    assert [f.rule for f in check_npu(model(2), (2, 32), F28P55).findings] == ["first_conv_kernel"]


def test_parameter_limit():
    model = seq(("conv1", nn.Conv1d(1, 8, 3)), ("flat", nn.Flatten()), ("fc", nn.Linear(8 * 1022, 8)))
    findings = check_npu(model, (1, 1024), F28P55).findings
    assert [(f.layer, f.rule) for f in findings] == [("model", "max_params")]


def test_multi_branch_model_is_valid():
    report = check_npu(Branchy(cin=1), (1, 64), F28P55)
    assert report.ok, report.format_table()
    assert report.layers_checked > 15


def test_every_rule_has_a_description():
    assert len({r.name for r in RULES}) == len(RULES) and all(r.description for r in RULES)


def test_docs_list_every_rule():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    assert all(f"`{rule.name}`" in doc for rule in RULES) and "`max_params`" in doc
