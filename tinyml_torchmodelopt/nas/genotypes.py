"""Search-space primitive lists and the genotype (a discrete cell description).

A genotype lists, for every intermediate node of a cell, two ``(op_name, input)``
pairs; ``input`` indexes the cell states ``[s0, s1, node0, node1, ...]``.
``*_concat`` lists the states concatenated into the cell output.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any, Mapping

# The default DARTS search space for time series (1-D ops). Every name must be a
# key of ``operations.OPS``; this list is the only hand-kept copy.
PRIMITIVES_CNN = [
    'none',
    'avg_pool_3x1',
    'max_pool_3x1',
    'skip_connect',
    'conv_bn_relu_3x1',
    'conv_bn_relu_5x1',
    'conv_bn_relu_7x1',
]

# Primitives the TI NPU (F28P55 TINPU) runs. Its guidelines list only *global*
# average pooling, so the 3x1 average pool is left out of the search space for
# NPU targets (rather than lowered to a fixed-weight depthwise conv, which would
# cost MACs the search did not account for). Max pool 3x1 (kernel <= 4),
# convs with kernel <= 7, and the stride-2 1x1 conv of the factorized reduce are
# all NPU-valid.
PRIMITIVES_CNN_NPU = [p for p in PRIMITIVES_CNN if p != 'avg_pool_3x1']

# Separable convs: depthwise conv (kernel <= 7) then pointwise conv, both NPU layers; not in the seed's
# default list above (callers add them: PRIMITIVES_CNN_NPU + SEPARABLE_CONVS).
SEPARABLE_CONVS = ['sep_conv_3x1', 'sep_conv_5x1', 'sep_conv_7x1']
# Every op the NPU runs. Dilated convs are not in TI's NPU guidelines.
NPU_REALISABLE = frozenset(PRIMITIVES_CNN_NPU + SEPARABLE_CONVS)

Genotype_CNN = namedtuple('Genotype_CNN', 'normal normal_concat reduce reduce_concat')


def genotype_to_dict(genotype: Genotype_CNN) -> dict[str, Any]:
    """Plain-data form (lists, str, int) for YAML/JSON."""
    return {
        'normal': [[str(op), int(i)] for op, i in genotype.normal],
        'normal_concat': [int(i) for i in genotype.normal_concat],
        'reduce': [[str(op), int(i)] for op, i in genotype.reduce],
        'reduce_concat': [int(i) for i in genotype.reduce_concat],
    }


def genotype_from_dict(data: Mapping[str, Any]) -> Genotype_CNN:
    """Inverse of :func:`genotype_to_dict` (accepts lists or tuples)."""
    missing = {'normal', 'normal_concat', 'reduce', 'reduce_concat'} - set(data)
    if missing:
        raise ValueError(f"genotype: missing keys {sorted(missing)}")
    return Genotype_CNN(
        normal=[(str(op), int(i)) for op, i in data['normal']],
        normal_concat=[int(i) for i in data['normal_concat']],
        reduce=[(str(op), int(i)) for op, i in data['reduce']],
        reduce_concat=[int(i) for i in data['reduce_concat']],
    )


# Example genotype for 4 nodes per cell (demonstration / tests).
EXAMPLE_GENOTYPE = Genotype_CNN(
    normal=[('conv_bn_relu_3x1', 0), ('skip_connect', 1), ('max_pool_3x1', 0), ('conv_bn_relu_5x1', 1),
            ('conv_bn_relu_3x1', 2), ('skip_connect', 0), ('avg_pool_3x1', 3), ('conv_bn_relu_7x1', 1)],
    normal_concat=[2, 3, 4, 5],
    reduce=[('max_pool_3x1', 0), ('conv_bn_relu_7x1', 1), ('skip_connect', 2), ('conv_bn_relu_5x1', 0),
            ('skip_connect', 1), ('conv_bn_relu_3x1', 3), ('max_pool_3x1', 4), ('skip_connect', 0)],
    reduce_concat=[2, 3, 4, 5],
)
