"""Feature presets: parse a preset name into a ``FeaturePlan`` and apply config overrides.

``Generic_<N>Input_<RAW|FFTBIN|FFT>_<F>Feature_<K>Frame``: an example is N input
samples per channel, cut into K frames of ``frame_size = N / K`` samples, each
turned into F features; L = F * K. TI-style ``FFT1024Input_256Feature_1Frame_Full_Bandwidth``
reads the same way. ``Custom_*`` takes everything from the config.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass

import numpy as np

from tinyml_modelzoo.config.schema import FeatureConfig
from tinyml_modelzoo.errors import UserError
from tinyml_modelzoo.features.transforms import TRANSFORMS, apply_transforms

log = logging.getLogger(__name__)
KEY = "data_processing_feature_extraction"

# Transform lists per preset kind. FFT keeps the lowest F bins unless the name says
# Full_Bandwidth (then, like FFTBIN, the whole band is averaged into F bins).
KIND_TRANSFORMS = {
    "RAW": ("RAW_FE", "CONCAT"),
    "FFTBIN": ("FFT_FE", "FFT_POS_HALF", "DC_REMOVE", "ABS", "BINNING", "LOG_DB", "CONCAT"),
    "FFT": ("FFT_FE", "FFT_POS_HALF", "DC_REMOVE", "ABS", "TRUNCATE", "LOG_DB", "CONCAT"),
}
# Default hop as a fraction of the example window: raw windows do not overlap (each
# sample used once); spectral windows are long, so half overlap (as in Welch's method).
DEFAULT_STRIDE = {"RAW": 1.0, "SPECTRAL": 0.5}
_GENERIC = re.compile(r"^Generic_(?P<n>\d+)Input_(?P<kind>RAW|FFTBIN|FFT)_(?P<f>\d+)Feature_(?P<k>\d+)Frame"
                      r"(?P<rest>_.*)?$", re.IGNORECASE)
_TI = re.compile(r"^(?P<kind>RAW|FFTBIN|FFT)_?(?P<n>\d+)Input_(?P<f>\d+)Feature_(?P<k>\d+)Frame(?P<rest>_.*)?$",
                 re.IGNORECASE)
EXAMPLES = ("Generic_256Input_RAW_256Feature_1Frame", "Generic_512Input_RAW_128Feature_1Frame",
            "Generic_1024Input_FFTBIN_64Feature_8Frame", "FFT1024Input_256Feature_1Frame_Full_Bandwidth")


@dataclass(frozen=True)
class FeaturePlan:
    """How recordings become examples ``(C, L)``; sizes in samples.

    An example spans ``window`` samples: ``num_frame_concat`` frames of
    ``frame_size`` samples, every ``frame_skip``-th consecutive frame. Examples
    start every ``hop`` samples. Each frame yields ``feature_size_per_frame``
    values (None: whatever the transforms produce).
    """
    name: str
    kind: str  # RAW | FFT | FFTBIN | CUSTOM
    frame_size: int | None
    feature_size_per_frame: int | None
    num_frame_concat: int = 1
    transforms: tuple[str, ...] = ()
    frame_skip: int = 1
    stride_size: float | None = None  # None: DEFAULT_STRIDE
    log_mul: float = 20.0
    log_base: float = 10.0
    log_threshold: float = 1e-12
    scale: float | None = None
    offset: float | None = None
    normalize: bool = True
    keep_raw_channels: bool = False  # also emit the channels without the frame normalisation (C -> 2C)

    @property
    def window(self) -> int:
        """Samples one example spans."""
        return self.frame_size * ((self.num_frame_concat - 1) * self.frame_skip + 1)

    @property
    def hop(self) -> int:
        """Samples between the starts of consecutive examples of a recording."""
        return max(1, int(round(self.stride_size * self.window)))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["transforms"] = list(self.transforms)
        return data


def parse_feature_preset(name: str) -> FeaturePlan:
    """Plan of preset ``name``; ``Custom_*`` gives an empty plan filled from the config."""
    if name.lower().startswith("custom"):
        return FeaturePlan(name, "CUSTOM", None, None)
    match = _GENERIC.match(name) or _TI.match(name)
    if not match:
        raise UserError(f"{KEY}.feature_extraction_name: cannot read {name!r}; expected "
                        f"Generic_<N>Input_<RAW|FFTBIN|FFT>_<F>Feature_<K>Frame (e.g. {', '.join(EXAMPLES)}), "
                        "or Custom_<anything> with feat_ext_transform, frame_size, feature_size_per_frame")
    n, f, k, kind = int(match["n"]), int(match["f"]), int(match["k"]), match["kind"].upper()
    if k == 0 or n % k or f == 0:
        raise UserError(f"{KEY}.feature_extraction_name: {name!r}: {n} input samples do not split into {k} "
                        f"equal frames with {f} features; in Generic_<N>Input_<KIND>_<F>Feature_<K>Frame N must be "
                        f"K x frame_size and F >= 1 (e.g. {EXAMPLES[2]}: 8 frames of 128 samples)")
    rest = (match["rest"] or "").lower()
    transforms = KIND_TRANSFORMS[kind]
    if kind == "FFT" and "full_bandwidth" in rest:
        transforms = KIND_TRANSFORMS["FFTBIN"]
    elif rest and "bandwidth" not in rest:
        log.warning("%s.feature_extraction_name: ignoring suffix %r of %s", KEY, match["rest"], name)
    return FeaturePlan(name, kind, n // k, f, k, transforms)


def resolve_plan(cfg: FeatureConfig) -> FeaturePlan:
    """Preset plan with every explicitly set config field applied, validated."""
    plan = parse_feature_preset(cfg.feature_extraction_name)
    overrides = {key: getattr(cfg, key) for key in ("frame_size", "feature_size_per_frame", "num_frame_concat",
                                                    "frame_skip", "stride_size", "log_mul", "log_base",
                                                    "log_threshold", "scale", "offset")
                 if getattr(cfg, key) is not None}
    if cfg.feat_ext_transform is not None:
        overrides["transforms"] = _transform_names(cfg.feat_ext_transform)
    plan = dataclasses.replace(plan, normalize=bool(cfg.normalize), **overrides)
    if not plan.transforms or plan.frame_size is None:
        missing = "feat_ext_transform" if not plan.transforms else "frame_size"
        raise UserError(f"{KEY}.{missing}: required for {plan.name!r} (a Custom_* preset); e.g. "
                        "feat_ext_transform: [FFT_FE, FFT_POS_HALF, ABS, BINNING, LOG_DB], frame_size: 256, "
                        "feature_size_per_frame: 32")
    if cfg.feat_ext_transform is None:  # an explicit transform list is used as written
        plan = _with_frame_normalization(plan, cfg.frame_normalization, cfg.frame_normalization_keep_raw)
    if plan.stride_size is None:
        spectral = "FFT_FE" in plan.transforms
        plan = dataclasses.replace(plan, stride_size=DEFAULT_STRIDE["SPECTRAL" if spectral else "RAW"])
    features_per_frame(plan)  # raises UserError when the sizes do not fit the transforms
    return plan


FRAME_NORMALIZATION_TRANSFORM = {"dc_remove": "DC_REMOVE", "normalize": "NORMALIZE"}


def _with_frame_normalization(plan: FeaturePlan, mode: str, keep_raw: bool = False) -> FeaturePlan:
    """Insert DC_REMOVE / NORMALIZE before CONCAT of a time-domain plan (no FFT_FE).

    Spectral plans are left alone (their DC_REMOVE drops bin 0 and LOG_DB already
    turns gains into offsets), and so is a plan that already has the transform.
    ``keep_raw``: the extractor also emits the channels without it (C -> 2C).
    """
    name = FRAME_NORMALIZATION_TRANSFORM.get(mode)
    if name is None or "FFT_FE" in plan.transforms or name in plan.transforms:
        return plan
    transforms = list(plan.transforms)
    at = transforms.index("CONCAT") if "CONCAT" in transforms else len(transforms)
    transforms.insert(at, name)
    return dataclasses.replace(plan, transforms=tuple(transforms), keep_raw_channels=bool(keep_raw))


def raw_channel_plan(plan: FeaturePlan) -> FeaturePlan | None:
    """The plan of the extra raw channels (the frame normalisation left out), or None."""
    if not plan.keep_raw_channels:
        return None
    names = FRAME_NORMALIZATION_TRANSFORM.values()
    return dataclasses.replace(plan, transforms=tuple(t for t in plan.transforms if t not in names),
                               keep_raw_channels=False)


def features_per_frame(plan: FeaturePlan) -> int:
    """F: values each frame yields, found by running the transforms on one dummy frame."""
    with np.errstate(all="ignore"):
        return apply_transforms(np.ones((1, plan.frame_size)), plan).shape[-1]


def _transform_names(names) -> tuple[str, ...]:
    if isinstance(names, str):
        names = [names]
    upper = tuple(str(n).strip().upper() for n in names)
    unknown = [n for n in upper if n not in TRANSFORMS]
    if unknown or not upper:
        raise UserError(f"{KEY}.feat_ext_transform: unknown transform(s) {unknown or names}; "
                        f"known: {', '.join(TRANSFORMS)}")
    return upper
