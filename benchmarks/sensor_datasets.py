"""Small, noisy, sensor-like classification datasets for accuracy benchmarks.

Each generator returns ``(classes, recordings)``: the sorted class names and a list
of ``(class_name, array (T, C) float32, sample_rate_hz)``. Everything is a function
of the seed only (one ``numpy.random.default_rng([seed, dataset, i])`` per recording).
``write_dataset`` writes the TI folder format the pipeline reads::

    <root>/<name>/classes/<class>/<class>_<i>.csv     header: time,<ch0>,<ch1>,...

One file is one series; the recommended ``feature_extraction_name`` in ``DATASETS``
uses frame size = series length, so each file gives exactly one example.

The data are deliberately small (tens to ~200 series), overlapping between classes
and full of nuisance variation (amplitude, phase, speed, drift, sensor noise).

    python benchmarks/sensor_datasets.py --out /tmp/sensor_data --seed 0
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dataset_kit import DatasetSpec, Recording, _per_class, _rng, write_spec, write_suite_cli  # noqa: F401 (re-exported)


def _drift(rng, n, scale):
    """Slow random baseline drift: a random low-order polynomial plus a slow sine."""
    t = np.linspace(-1, 1, n)
    return scale * (rng.normal() * t + 0.5 * rng.normal() * t ** 2
                    + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.8) * t + rng.uniform(0, 2 * np.pi)))


# ---------------------------------------------------------------- motor vibration
MOTOR_CLASSES = ("bearing_outer", "imbalance", "looseness", "misalignment", "normal")


def motor_vibration(seed: int = 0, n_per_class: int = 24):
    """3-axis accelerometer on a motor, fs 4096 Hz, 1024 samples (0.25 s), 5 conditions.

    Shaft speed 18-35 Hz varies per recording. Every machine has some residual 1x/2x,
    structural resonance and broadband noise; the faults add, at overlapping strength:
    imbalance (radial 1x in quadrature), misalignment (axial 2x/3x), looseness (many
    harmonics and half-harmonics, clipped), outer-race bearing defect (impulses at
    3.1-3.6 x shaft speed ringing a 700-1500 Hz resonance, amplitude-modulated).
    """
    fs, n = 4096.0, 1024
    t = np.arange(n) / fs

    def one(rng, k):
        cls = MOTOR_CLASSES[k]
        f0 = rng.uniform(18, 35)
        ph = rng.uniform(0, 2 * np.pi, 8)
        gains = rng.uniform(0.7, 1.3, 3)
        x = np.zeros((n, 3))
        r1 = rng.uniform(0.15, 0.7)          # residual imbalance
        r2 = rng.uniform(0.05, 0.35)         # residual misalignment
        if cls == "imbalance":
            r1 = rng.uniform(0.6, 1.6)
        if cls == "misalignment":
            r2 = rng.uniform(0.3, 1.0)
        x[:, 0] += r1 * np.sin(2 * np.pi * f0 * t + ph[0])
        x[:, 1] += r1 * np.cos(2 * np.pi * f0 * t + ph[0]) * rng.uniform(0.6, 1.0)
        x[:, 2] += 0.3 * r1 * np.sin(2 * np.pi * f0 * t + ph[1])
        axial = 1.5 if cls == "misalignment" else 0.6
        for h, a in ((2, 1.0), (3, 0.5)):
            x[:, 2] += axial * r2 * a * np.sin(2 * np.pi * h * f0 * t + ph[h])
            x[:, 0] += 0.5 * r2 * a * np.sin(2 * np.pi * h * f0 * t + ph[h + 2])
        if cls == "looseness":
            amp = rng.uniform(0.15, 0.45)
            for h in (0.5, 1.5, 2, 3, 4, 5, 6):
                a = amp / np.sqrt(h) * rng.uniform(0.5, 1.5)
                x[:, :2] += a * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi))[:, None]
        # structural resonance excited by everything (nuisance)
        fr_s = rng.uniform(300, 600)
        x += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * fr_s * t + ph[6])[:, None] * rng.uniform(0.5, 1, 3)
        if cls == "bearing_outer":
            bpfo = rng.uniform(3.1, 3.6) * f0
            fr = rng.uniform(700, 1500)
            decay = rng.uniform(250, 600)
            amp = rng.uniform(0.4, 1.3)
            imp = np.zeros(n)
            t0 = rng.uniform(0, 1 / bpfo)
            while t0 < t[-1]:
                tt = t - t0
                m = tt >= 0
                a = amp * (1 + 0.4 * np.sin(2 * np.pi * f0 * t0)) * rng.uniform(0.6, 1.2)
                imp[m] += a * np.exp(-decay * tt[m]) * np.sin(2 * np.pi * fr * tt[m])
                t0 += 1 / bpfo * (1 + rng.normal(0, 0.02))
            x += imp[:, None] * np.array([1.0, rng.uniform(0.4, 0.9), rng.uniform(0.2, 0.5)])
        if cls == "looseness":
            lim = np.quantile(np.abs(x[:, :2]), 0.9)
            x[:, :2] = np.clip(x[:, :2], -lim, lim)
        x += rng.uniform(0.25, 0.55) * rng.normal(size=(n, 3))
        x += _drift(rng, n, 0.1)[:, None]
        return x * gains, fs

    return _per_class(MOTOR_CLASSES, n_per_class, 1, seed, one)


# ---------------------------------------------------------------- arc fault current
ARC_CLASSES = ("arc", "normal_linear", "normal_switching")


def _load_current(rng, t, f, switching):
    """A linear or switching-mode (rectifier / phase-cut) load current."""
    th = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
    if not switching:
        return np.sin(th) + rng.uniform(0, 0.08) * np.sin(3 * th + rng.uniform(0, 6))
    if rng.random() < 0.5:     # capacitor-input rectifier: narrow pulses at the voltage peaks
        w = rng.uniform(2, 5)
        return np.sign(np.sin(th)) * np.abs(np.sin(th)) ** (w * 2) * 1.6
    alpha = rng.uniform(0.2, 0.7) * np.pi     # phase-cut (dimmer): sharp step plus ringing
    ph = np.mod(th, np.pi)
    on = ph > alpha
    i = np.where(on, np.sin(th), 0.0)
    step = np.diff(on.astype(float), prepend=on[0]) > 0
    ring = np.convolve(step.astype(float), np.exp(-np.arange(40) / 8.0) * np.sin(np.arange(40) * 1.3),
                       mode="full")[:len(t)]
    return i + 0.3 * ring


def arc_fault(seed: int = 0, n_per_class: int = 40):
    """Line current, 1 channel, fs 12 kHz, 1200 samples (5-6 cycles of 50/60 Hz), 3 classes.

    ``arc``: a linear or switching load with 'shoulders' (current held near zero after
    each zero crossing) and broadband bursts in a random subset of half-cycles;
    ``normal_switching`` (rectifier pulses or dimmer steps with ringing) is the
    confusing negative. Gain, mains frequency, phase, load harmonics and noise vary.
    """
    fs, n = 12000.0, 1200
    t = np.arange(n) / fs

    def one(rng, k):
        cls = ARC_CLASSES[k]
        f = rng.choice([50.0, 60.0]) * rng.uniform(0.99, 1.01)
        switching = cls == "normal_switching" or (cls == "arc" and rng.random() < 0.4)
        i = _load_current(rng, t, f, switching)
        if cls == "arc":
            shoulder = rng.uniform(0.05, 0.3)
            i = np.where(np.abs(i) < shoulder * np.max(np.abs(i)), i * rng.uniform(0.0, 0.3), i)
            hc = int(np.ceil(t[-1] * f * 2)) + 1
            active = rng.random(hc) < rng.uniform(0.3, 0.9)
            half = np.floor(2 * f * t).astype(int)
            burst = rng.normal(size=n) * rng.uniform(0.05, 0.25)
            burst = np.convolve(burst, [1, -0.5], mode="same")       # high-pass-ish, broadband
            i = i + burst * active[half] * (np.abs(i) > 0.05)
        if cls != "arc" and rng.random() < 0.3:                    # a harmless switching transient
            pos = rng.integers(0, n - 60)
            i[pos:pos + 60] += rng.uniform(0.1, 0.4) * np.exp(-np.arange(60) / 10) * np.sin(np.arange(60) * 2.1)
        i = i * rng.uniform(0.3, 3.0)
        i += rng.uniform(0.01, 0.06) * np.abs(i).max() * rng.normal(size=n)
        return i[:, None], fs

    return _per_class(ARC_CLASSES, n_per_class, 2, seed, one)


# ---------------------------------------------------------------- human activity (HAR)
HAR_CLASSES = ("downstairs", "lying", "sitting", "standing", "upstairs", "walking")


def _rot(rng, deg):
    a, b, c = np.deg2rad(rng.normal(0, deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def human_activity(seed: int = 0, n_per_class: int = 22):
    """Waist accelerometer (x, y, z in g), fs 50 Hz, 128 samples (2.56 s), 6 activities.

    Walking / upstairs / downstairs differ in cadence, impact sharpness and vertical
    asymmetry (overlapping ranges); sitting / standing differ only by a few degrees of
    trunk tilt and sway; the phone orientation is randomly rotated (+-12 deg) per subject.
    """
    fs, n = 50.0, 128
    t = np.arange(n) / fs

    def one(rng, k):
        cls = HAR_CLASSES[k]
        g = np.array([0.0, 0.0, 1.0])
        tilt = {"sitting": rng.uniform(8, 25), "standing": rng.uniform(0, 12), "lying": rng.uniform(75, 95)}
        a = np.zeros((n, 3))
        if cls in tilt:
            th = np.deg2rad(tilt[cls])
            g = np.array([np.sin(th), 0.0, np.cos(th)])
            sway = rng.uniform(0.005, 0.03)
            a += sway * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 6))[:, None] * rng.normal(size=3)
            if rng.random() < 0.3:                # fidgeting
                p = rng.integers(0, n - 20)
                a[p:p + 20] += rng.normal(0, 0.08, (20, 3))
        else:
            cad = {"walking": rng.uniform(1.6, 2.1), "upstairs": rng.uniform(1.3, 1.8),
                   "downstairs": rng.uniform(1.7, 2.2)}[cls]
            amp = {"walking": rng.uniform(0.2, 0.45), "upstairs": rng.uniform(0.15, 0.4),
                   "downstairs": rng.uniform(0.3, 0.6)}[cls]
            sharp = {"walking": 1.0, "upstairs": 0.6, "downstairs": 2.0}[cls] * rng.uniform(0.7, 1.3)
            ph = 2 * np.pi * cad * t * (1 + 0.03 * np.sin(2 * np.pi * 0.3 * t)) + rng.uniform(0, 6)
            vert = amp * (np.sin(ph) + 0.5 * sharp * np.sin(2 * ph + 0.5) + 0.25 * sharp * np.sin(3 * ph))
            if cls == "upstairs":
                vert += 0.1 * amp * np.sin(ph / 2)          # leg asymmetry
            a[:, 2] += vert
            a[:, 0] += amp * 0.5 * np.sin(ph + rng.uniform(0, 1)) + (0.08 if cls != "walking" else 0.0) * rng.normal()
            a[:, 1] += amp * 0.4 * np.sin(ph / 2 + rng.uniform(0, 6))     # lateral sway: half cadence
            g = np.array([np.sin(np.deg2rad(rng.uniform(-5, 10))), 0.0, 1.0])
        a += g
        a = a @ _rot(rng, 12).T
        a += rng.uniform(0.01, 0.04) * rng.normal(size=(n, 3))
        a += _drift(rng, n, 0.01)[:, None]
        return a, fs

    return _per_class(HAR_CLASSES, n_per_class, 3, seed, one)


# ---------------------------------------------------------------- ECG beats
ECG_CLASSES = ("apc", "normal", "pvc", "rbbb")


def ecg_beats(seed: int = 0, n_per_class: int = 35):
    """Single ECG beats (lead II-like, mV), fs 360 Hz, 160 samples, 4 morphologies.

    Gaussian-wave beat model (P, Q, R, S, T) with per-'patient' widths, amplitudes and
    timing; ``apc`` (early, abnormal P), ``pvc`` (no P, wide QRS, discordant T),
    ``rbbb`` (wide notched R-R'), ``normal``. Baseline wander, mains hum, EMG noise and
    +-8-sample R-peak jitter are nuisances.
    """
    fs, n = 360.0, 160
    t = np.arange(n) / fs

    def g(mu, sig, a):
        return a * np.exp(-0.5 * ((t - mu) / sig) ** 2)

    def one(rng, k):
        cls = ECG_CLASSES[k]
        r = 0.22 + rng.integers(-8, 9) / fs
        w = rng.uniform(0.8, 1.25)                     # patient width factor
        amp = rng.uniform(0.6, 1.6)
        pr = rng.uniform(0.12, 0.18)
        pa = rng.uniform(0.1, 0.25)
        if cls == "apc":
            pr = rng.uniform(0.07, 0.12)
            pa = rng.uniform(-0.2, 0.02)
        x = np.zeros(n)
        if cls != "pvc":
            x += g(r - pr, 0.018 * w, pa)
        if cls == "pvc":
            s = rng.choice([-1, 1])
            x += g(r, 0.022 * w * rng.uniform(1.3, 2.0), s * rng.uniform(0.9, 1.6))
            x += g(r + 0.05 * w, 0.02 * w, -s * rng.uniform(0.1, 0.4))
            x += g(r + 0.2 * w, 0.05 * w, -s * rng.uniform(0.2, 0.5))
        else:
            x += g(r - 0.025 * w, 0.008 * w, -rng.uniform(0.05, 0.2))
            x += g(r, 0.011 * w, rng.uniform(0.8, 1.3))
            x += g(r + 0.025 * w, 0.009 * w, -rng.uniform(0.1, 0.3))
            if cls == "rbbb":
                x += g(r + rng.uniform(0.035, 0.055) * w, 0.012 * w, rng.uniform(0.2, 0.6))
            x += g(r + rng.uniform(0.22, 0.3) * w, 0.04 * w, rng.uniform(0.1, 0.35) * (1 if cls != "rbbb" else rng.choice([-1, 1])))
        if cls == "apc":                               # the previous beat's T wave, early
            x += g(rng.uniform(0.0, 0.05), 0.04, rng.uniform(0.15, 0.35))
        x *= amp
        x += 0.3 * _drift(rng, n, 1.0)
        x += rng.uniform(0, 0.05) * np.sin(2 * np.pi * rng.choice([50, 60]) * t + rng.uniform(0, 6))
        x += rng.uniform(0.02, 0.08) * rng.normal(size=n)
        return x[:, None], fs

    return _per_class(ECG_CLASSES, n_per_class, 4, seed, one)


# ---------------------------------------------------------------- gestures (IMU)
GESTURE_CLASSES = ("circle_ccw", "circle_cw", "shake", "swipe_left", "swipe_right", "tap")


def gestures(seed: int = 0, n_per_class: int = 20):
    """Wrist IMU: accelerometer (3) + gyroscope (3), fs 50 Hz, 100 samples, 6 gestures.

    Each gesture is a smooth trajectory performed at a random speed (0.7-1.4x), onset,
    size and hand orientation (+-30 deg); gyro bias, drift and sensor noise. circle_cw
    and circle_ccw differ only by the sense of rotation; swipes by sign.
    """
    fs, n = 50.0, 100

    def one(rng, k):
        cls = GESTURE_CLASSES[k]
        speed = rng.uniform(0.7, 1.4)
        dur = rng.uniform(0.9, 1.5) / speed                     # seconds
        onset = rng.uniform(0.05, max(0.1, n / fs - dur - 0.05))
        t = np.arange(n) / fs
        u = np.clip((t - onset) / dur, 0, 1)                    # 0..1 progress
        env = np.sin(np.pi * u) ** 2
        size = rng.uniform(0.3, 1.5)
        acc = np.zeros((n, 3))
        gyr = np.zeros((n, 3))
        if cls.startswith("circle"):
            s = 1 if cls == "circle_cw" else -1
            ph = 2 * np.pi * u * rng.uniform(1.0, 2.0)
            acc[:, 0] = size * env * np.cos(ph)
            acc[:, 1] = s * size * env * np.sin(ph)
            gyr[:, 2] = s * size * env * rng.uniform(1.5, 3)
        elif cls.startswith("swipe"):
            s = 1 if cls == "swipe_right" else -1
            acc[:, 0] = s * size * np.sin(2 * np.pi * u) * (u > 0) * (u < 1)
            gyr[:, 1] = s * 0.8 * size * env
            acc[:, 2] = 0.2 * size * env * rng.normal()
        elif cls == "shake":
            f = rng.uniform(3, 6)
            acc[:, 1] = size * env * np.sin(2 * np.pi * f * (t - onset))
            gyr[:, 0] = 1.5 * size * env * np.cos(2 * np.pi * f * (t - onset))
        else:                                                   # tap: two short impacts
            for p in (onset, onset + rng.uniform(0.2, 0.4) / speed):
                m = np.exp(-0.5 * ((t - p) / 0.02) ** 2)
                acc[:, 2] -= size * 1.5 * m
                gyr[:, 0] += 0.5 * size * m * rng.normal()
        acc[:, 2] += 1.0                                        # gravity
        r = _rot(rng, 30)
        acc, gyr = acc @ r.T, gyr @ r.T
        acc += rng.uniform(0.05, 0.25) * rng.normal(size=(n, 3))
        gyr += rng.uniform(0.05, 0.3) * rng.normal(size=(n, 3)) + rng.normal(0, 0.2, 3)
        gyr += _drift(rng, n, 0.05)[:, None]
        return np.concatenate([acc, gyr], axis=1), fs

    return _per_class(GESTURE_CLASSES, n_per_class, 5, seed, one)


# ---------------------------------------------------------------- power quality
PQ_CLASSES = ("flicker", "harmonics", "normal", "sag", "swell", "transient")


def power_quality(seed: int = 0, n_per_class: int = 25):
    """Mains voltage (per unit), 1 channel, 64 samples/cycle, 640 samples (10 cycles), 6 classes.

    Sag (15-60 % dip) and swell (12-40 %) of random start and length (1-6 cycles),
    harmonic distortion (3rd/5th/7th, 3-12 %), oscillatory transient (300-1500 Hz,
    decaying), flicker (5-12 % modulation at 5-20 Hz). All classes carry background
    harmonics (0-3 %), +-4 % amplitude, +-0.5 Hz frequency, random phase and noise.
    """
    spc, cycles = 64, 10
    n = spc * cycles
    f0 = 50.0
    fs = f0 * spc
    t = np.arange(n) / fs

    def one(rng, k):
        cls = PQ_CLASSES[k]
        f = f0 + rng.uniform(-0.5, 0.5)
        ph = rng.uniform(0, 2 * np.pi)
        a = np.full(n, rng.uniform(0.96, 1.04))
        v_h = np.zeros(n)
        for h in (3, 5, 7):
            lvl = rng.uniform(0, 0.03)
            if cls == "harmonics":
                lvl = rng.uniform(0.03, 0.12)
            v_h += lvl * np.sin(h * (2 * np.pi * f * t + ph) + rng.uniform(0, 2 * np.pi))
        if cls in ("sag", "swell"):
            start = rng.uniform(0, 0.1)
            length = rng.uniform(1, 6) / f
            m = (t >= start) & (t < start + length)
            depth = rng.uniform(0.15, 0.6) if cls == "sag" else -rng.uniform(0.12, 0.4)
            a = a * (1 - depth * m)
        if cls == "flicker":
            a = a * (1 + rng.uniform(0.05, 0.12) * np.sin(2 * np.pi * rng.uniform(5, 20) * t + rng.uniform(0, 6)))
        v = a * np.sin(2 * np.pi * f * t + ph) + v_h
        if cls == "transient":
            t0 = rng.uniform(0.01, 0.18)
            tt = t - t0
            m = tt >= 0
            v[m] += rng.uniform(0.2, 0.8) * np.exp(-tt[m] * rng.uniform(300, 1000)) * np.sin(
                2 * np.pi * rng.uniform(300, 1500) * tt[m] + rng.uniform(0, 6))
        v += rng.uniform(0.005, 0.03) * rng.normal(size=n)
        return v[:, None] * rng.uniform(0.9, 1.1) * 325.0, fs     # volts, uncalibrated gain

    return _per_class(PQ_CLASSES, n_per_class, 6, seed, one)


# ---------------------------------------------------------------- very short: sensor spikes
SPIKE_CLASSES = ("double_spike", "noise_only", "pulse", "spike", "step")


def sensor_spikes(seed: int = 0, n_per_class: int = 40):
    """Very short windows (32 samples, 2 channels: raw and reference sensor), 5 event types.

    A narrow ``spike`` (1-2 samples), a ``double_spike``, a wider ``pulse`` (4-9
    samples), a ``step`` or ``noise_only``, at a random position and amplitude
    (about 2-12 noise sigmas, 20 % of events inverted), on drift and offset; the
    reference channel sees the event attenuated (0-50 %) and its own noise.
    """
    n, fs = 32, 100.0
    tt = np.arange(n)

    def one(rng, k):
        cls = SPIKE_CLASSES[k]
        sig = rng.uniform(0.15, 0.35)
        a = rng.uniform(0.8, 1.8) * rng.choice([-1, 1]) if rng.random() < 0.2 else rng.uniform(0.8, 1.8)
        p = rng.integers(4, n - 8)
        e = np.zeros(n)
        if cls == "spike":
            e[p] = a
            if rng.random() < 0.5:
                e[p + 1] = a * rng.uniform(0.2, 0.6)
        elif cls == "double_spike":
            e[p] = a
            q = min(n - 1, p + rng.integers(2, 6))
            e[q] = a * rng.uniform(0.5, 1.0)
        elif cls == "pulse":
            w = rng.uniform(1.5, 3.5)
            e = 0.8 * a * np.exp(-0.5 * ((tt - p) / w) ** 2)
        elif cls == "step":
            e = 0.6 * a * (tt >= p) * (1 - np.exp(-(tt - p).clip(0) / rng.uniform(0.5, 2)))
        base = _drift(rng, n, rng.uniform(0.05, 0.3)) + rng.normal(0, 0.5)      # drift and sensor offset
        x0 = base + e + sig * rng.normal(size=n)
        x1 = 0.8 * base + rng.uniform(0, 0.5) * e + sig * rng.normal(size=n)
        return np.stack([x0, x1], axis=1), fs

    return _per_class(SPIKE_CLASSES, n_per_class, 7, seed, one)


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("motor_vibration", motor_vibration, "Generic_1024Input_FFTBIN_128Feature_1Frame", ("x", "y", "z"),
                "3-axis motor vibration, 1024 samples, 5 fault classes, 24 series per class"),
    DatasetSpec("arc_fault", arc_fault, "Generic_1200Input_RAW_1200Feature_1Frame", ("current",),
                "line current, 1200 samples, arc vs linear vs switching loads, 40 series per class"),
    DatasetSpec("human_activity", human_activity, "Generic_128Input_RAW_128Feature_1Frame", ("ax", "ay", "az"),
                "waist accelerometer, 128 samples, 6 activities, 22 series per class"),
    DatasetSpec("ecg_beats", ecg_beats, "Generic_160Input_RAW_160Feature_1Frame", ("lead_ii",),
                "single ECG beats, 160 samples, 4 morphologies, 35 series per class"),
    DatasetSpec("gestures", gestures, "Generic_100Input_RAW_100Feature_1Frame",
                ("ax", "ay", "az", "gx", "gy", "gz"), "wrist IMU, 6 channels, 100 samples, 6 gestures, 20 per class"),
    DatasetSpec("power_quality", power_quality, "Generic_640Input_RAW_640Feature_1Frame", ("voltage",),
                "mains voltage, 640 samples, 6 disturbance classes, 25 series per class"),
    DatasetSpec("sensor_spikes", sensor_spikes, "Generic_32Input_RAW_32Feature_1Frame", ("raw", "reference"),
                "very short (32 samples) 2-channel event windows, 5 classes, 40 per class"),
)}


def generate(name: str, seed: int = 0) -> tuple[list[str], list[Recording]]:
    """Classes and recordings of dataset ``name`` (deterministic in ``seed``)."""
    return DATASETS[name].make(seed)


def write_dataset(name: str, root: Path, seed: int = 0) -> Path:
    """Write ``root/name/classes/<class>/<class>_<i>.csv`` (time column + channels); return ``root/name``."""
    return write_spec(DATASETS[name], root, seed)


def main(argv=None):
    write_suite_cli(DATASETS, __doc__, "/tmp/sensor_data", argv)


if __name__ == "__main__":
    main()
