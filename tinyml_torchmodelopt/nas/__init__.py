"""DARTS neural architecture search for 1-D (time series) CNNs.

No side effects at import; nothing here imports the ``tinyml_modelzoo`` pipeline.
"""
from .architect import Architect, Supernet
from .genotypes import (EXAMPLE_GENOTYPE, PRIMITIVES_CNN, PRIMITIVES_CNN_NPU, Genotype_CNN,
                        genotype_from_dict, genotype_to_dict)
from .model import NetworkCnn
from .model_search_cnn import SearchNetwork, derive_genotype
from .operations import OPS
from .train_cnn_search import (EpochRecord, SearchResult, SearchSettings, build_final_model, search,
                               search_and_get_model, settings_from_args)

__all__ = ['Architect', 'Supernet', 'EXAMPLE_GENOTYPE', 'PRIMITIVES_CNN', 'PRIMITIVES_CNN_NPU', 'Genotype_CNN',
           'genotype_from_dict', 'genotype_to_dict', 'NetworkCnn', 'SearchNetwork', 'derive_genotype', 'OPS',
           'EpochRecord', 'SearchResult', 'SearchSettings', 'build_final_model', 'search',
           'search_and_get_model', 'settings_from_args']
