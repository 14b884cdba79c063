"""Device facts as data, and the one latency cost model.

Adding a device is one ``DeviceInfo`` entry in ``DEVICES``. The NPU rule
parameters here are read by ``tinyml_modelzoo.npu`` (the checker); the timing
points by ``estimate_latency_us``.

Cost model (``estimate_latency_us``): ``latency_us = overhead_us + us_per_mac * macs``,
fitted by least squares to the device's published timing points. TI publishes
those points per *parameter count* (~1k params 150 us, ~4k 300 us, ~13k 600 us on
the F28P55 NPU; 2000/5000/15000 us CPU-only) but latency follows MACs, so we
assume the MAC counts of TI's reference models equal those of our zoo models of
the same size (``CLS_1k_NPU``, ``CLS_4k_NPU``, ``CLS_13k_NPU``) on the default
1 x 256 input with 4 classes: 32 832, 101 504 and 321 728 MACs. ``params`` is accepted so the
model can grow a weight-loading term; with three points it is not fitted.
The fit gives about 120 us + 1.51 ns/MAC on the NPU (~0.23 CPU cycles per MAC at
150 MHz) and about 477 us + 45 ns/MAC on the CPU (~6.8 cycles/MAC); it reproduces
the published points within 14 % (NPU) and 3 % (CPU). F28P65/F2837 (no NPU) reuse
the F28P55 CPU points scaled by clock (200 MHz) -- an assumption, not a measurement.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class TimingPoint:
    params: int
    macs: int          # assumed MACs of the reference model (see module docstring)
    latency_us: float


@dataclass(frozen=True)
class NpuRules:
    """Parameters of the NPU rules (``tinyml_modelzoo.npu.rules`` applies them)."""
    channel_multiple: int = 4
    first_conv_max_kernel: int = 8
    conv_max_kernel: int = 7
    depthwise_max_kernel: int = 7
    conv_strides: tuple[int, ...] = (1, 2)       # along time: (1,1), (2,1), (2,2) in TI's (H, W) terms
    maxpool_max_kernel: int = 4
    gap_min_length: int = 3                      # "H x W > 2"
    fc_min_in_features: dict = field(default_factory=lambda: {8: 16, 4: 8})
    avgpool_max_kernel: int = 7                  # lowered to a fixed-weight depthwise conv


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    description: str
    has_npu: bool
    cpu_clock_mhz: float
    max_params: int
    weight_bits: int = 8
    activation_bits: int = 8
    npu_rules: NpuRules | None = None
    npu_timing: tuple[TimingPoint, ...] = ()
    cpu_timing: tuple[TimingPoint, ...] = ()
    flash_bytes: int = 0
    ram_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


_REF = ((1000, 32_832), (4000, 101_504), (13000, 321_728))
_CPU_POINTS = tuple(TimingPoint(p, m, t) for (p, m), t in zip(_REF, (2000.0, 5000.0, 15000.0)))

DEVICES: dict[str, DeviceInfo] = {d.name: d for d in (
    DeviceInfo("F28P55", "C2000 F28P55x with the TINPU neural accelerator", has_npu=True, cpu_clock_mhz=150.0,
               max_params=60_000, npu_rules=NpuRules(),
               npu_timing=tuple(TimingPoint(p, m, t) for (p, m), t in zip(_REF, (150.0, 300.0, 600.0))),
               cpu_timing=_CPU_POINTS, flash_bytes=1_024 * 1_024, ram_bytes=133 * 1_024),
    DeviceInfo("F28P65", "C2000 F28P65x, CPU only (no NPU)", has_npu=False, cpu_clock_mhz=200.0,
               max_params=60_000, cpu_timing=tuple(TimingPoint(p.params, p.macs, p.latency_us * 150 / 200)
                                                   for p in _CPU_POINTS),
               flash_bytes=1_280 * 1_024, ram_bytes=242 * 1_024),
    DeviceInfo("F2837", "C2000 F2837xD, CPU only (no NPU)", has_npu=False, cpu_clock_mhz=200.0,
               max_params=60_000, cpu_timing=tuple(TimingPoint(p.params, p.macs, p.latency_us * 150 / 200)
                                                   for p in _CPU_POINTS),
               flash_bytes=1_024 * 1_024, ram_bytes=204 * 1_024),
)}


def get_device(name: str) -> DeviceInfo:
    """The device called ``name`` (case-insensitive); ValueError lists the known ones."""
    for key, device in DEVICES.items():
        if key.lower() == str(name).lower():
            return device
    close = difflib.get_close_matches(str(name).upper(), list(DEVICES), n=2, cutoff=0.5)
    hint = f" did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown target_device {name!r};{hint} known devices: {', '.join(DEVICES)}")


@lru_cache(maxsize=None)
def _fit(points: tuple[TimingPoint, ...]) -> tuple[float, float]:
    """Least-squares (overhead_us, us_per_mac), both clamped to >= 0."""
    macs = np.array([p.macs for p in points], dtype=np.float64)
    t = np.array([p.latency_us for p in points], dtype=np.float64)
    if len(points) == 1:
        return 0.0, float(t[0] / macs[0])
    a = np.stack([np.ones_like(macs), macs], axis=1)
    overhead, per_mac = np.linalg.lstsq(a, t, rcond=None)[0]
    if overhead < 0:  # a negative fixed cost is unphysical: fit through the origin
        return 0.0, float((macs @ t) / (macs @ macs))
    return float(overhead), float(max(per_mac, 0.0))


def latency_coefficients(device: DeviceInfo, npu: bool = True) -> tuple[float, float]:
    """``(overhead_us, us_per_mac)`` of the cost model for ``device``."""
    points = device.npu_timing if (npu and device.has_npu) else device.cpu_timing
    if not points:
        raise ValueError(f"device {device.name} has no published timing points")
    return _fit(points)


def estimate_latency_us(macs: int, params: int, device: DeviceInfo, npu: bool = True) -> float:
    """Estimated inference latency in microseconds (NPU when ``npu`` and the device has one)."""
    if macs < 0 or params < 0:
        raise ValueError(f"macs and params must be >= 0; got {macs}, {params}")
    overhead, per_mac = latency_coefficients(device, npu)
    return float(overhead + per_mac * macs)
