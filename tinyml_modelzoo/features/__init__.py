"""Feature stage: windows, transforms (``TRANSFORMS`` table) and normalisation.

``extract_features(splits, cfg) -> FeatureSet`` with arrays ``(N, C, L)``;
see ``docs/feature_extraction.md`` for preset names and transforms.
"""
from tinyml_modelzoo.features.extract import FeatureSet, extract_features
from tinyml_modelzoo.features.plan import FeaturePlan, features_per_frame, parse_feature_preset, resolve_plan
from tinyml_modelzoo.features.transforms import TRANSFORMS, apply_transforms

__all__ = ["FeatureSet", "extract_features", "FeaturePlan", "parse_feature_preset", "resolve_plan",
           "features_per_frame", "TRANSFORMS", "apply_transforms"]
