"""Dataset stage: read a class-folder dataset (or make ``hello_world``) and split it.

``load_dataset(cfg, seed, config_dir, run_dir) -> DatasetSplits``; see
``docs/dataset_format.md`` for the folder layout and the errors users may see.
"""
from tinyml_modelzoo.datasets.loader import load_dataset
from tinyml_modelzoo.datasets.readers import SUPPORTED_EXTENSIONS
from tinyml_modelzoo.datasets.recording import SPLITS, DatasetSplits, Recording

__all__ = ["load_dataset", "DatasetSplits", "Recording", "SPLITS", "SUPPORTED_EXTENSIONS"]
