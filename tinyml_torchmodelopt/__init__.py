"""Reusable model-optimisation library: NAS, quantization, profiling.

Never imports the ``tinyml_modelzoo`` pipeline; it takes tensors, loaders,
modules and dataclasses and returns results.
"""
