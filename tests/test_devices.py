"""Device registry and latency cost model."""
import dataclasses

import pytest

from tinyml_modelzoo.devices import DEVICES, estimate_latency_us, get_device, latency_coefficients


def test_f28p55_is_first_and_has_an_npu():
    first = next(iter(DEVICES.values()))
    assert first.name == "F28P55" and first.has_npu and first.npu_rules is not None
    assert first.max_params == 60_000 and first.cpu_clock_mhz == 150.0
    assert (first.weight_bits, first.activation_bits) == (8, 8)


def test_other_devices_are_data_without_npu():
    for name in ("F28P65", "F2837"):
        device = get_device(name)
        assert not device.has_npu and device.npu_rules is None and device.cpu_timing


def test_lookup_is_case_insensitive_and_unknown_lists_known():
    assert get_device("f28p55") is DEVICES["F28P55"]
    with pytest.raises(ValueError) as err:
        get_device("F28P5")
    message = str(err.value)
    assert "F28P5" in message and all(name in message for name in DEVICES)


def test_device_info_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEVICES["F28P55"].max_params = 1


@pytest.mark.parametrize("npu,tolerance", [(True, 0.15), (False, 0.05)])
def test_cost_model_passes_near_published_points(npu, tolerance):
    device = get_device("F28P55")
    points = device.npu_timing if npu else device.cpu_timing
    assert [p.latency_us for p in points] == ([150, 300, 600] if npu else [2000, 5000, 15000])
    for p in points:
        estimate = estimate_latency_us(p.macs, p.params, device, npu=npu)
        assert abs(estimate - p.latency_us) <= tolerance * p.latency_us, (p, estimate)


def test_cost_model_is_monotonic_and_npu_is_faster():
    device = get_device("F28P55")
    overhead, per_mac = latency_coefficients(device)
    assert overhead > 0 and per_mac > 0
    small, big = (estimate_latency_us(m, 1000, device) for m in (10_000, 500_000))
    assert small < big
    assert estimate_latency_us(100_000, 4000, device) < estimate_latency_us(100_000, 4000, device, npu=False)


def test_device_without_npu_uses_cpu_model():
    device = get_device("F2837")
    assert estimate_latency_us(100_000, 4000, device, npu=True) == estimate_latency_us(100_000, 4000, device,
                                                                                        npu=False)
    with pytest.raises(ValueError):
        estimate_latency_us(-1, 0, device)


def test_reference_macs_are_those_of_the_zoo_models():
    registry = pytest.importorskip("tinyml_modelzoo.zoo.registry")
    pytest.importorskip("tinyml_modelzoo.zoo.classifiers")
    from tinyml_modelzoo.zoo.spec import build_model
    from tinyml_torchmodelopt.profile import profile_model
    for point, name in zip(get_device("F28P55").npu_timing, ("CLS_1k_NPU", "CLS_4k_NPU", "CLS_13k_NPU")):
        try:
            spec = registry.get_model_spec(name)
        except KeyError:
            pytest.skip(f"{name} not registered")
        model = build_model(spec, 1, 256, 4)
        assert profile_model(model, (1, 256)).macs == point.macs
