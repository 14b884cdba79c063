"""tinyml-modelzoo: YAML-driven pipeline from sensor recordings to tiny NPU models."""
__version__ = "0.1.0"
