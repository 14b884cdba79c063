"""Search space, final network and genotype tests (tinyml_torchmodelopt.nas)."""
import json

import pytest
import torch
import torch.fx
import torch.nn.functional as F

from tinyml_torchmodelopt.nas import (EXAMPLE_GENOTYPE, OPS, PRIMITIVES_CNN, PRIMITIVES_CNN_NPU, NetworkCnn,
                                      genotype_from_dict, genotype_to_dict)
from tinyml_torchmodelopt.nas import fused_ops
from tinyml_torchmodelopt.nas.fused_ops import scratch
from tinyml_torchmodelopt.nas.model import reduction_layers
from tinyml_torchmodelopt.nas.pool_ops import pool3_backward, pool3_forward
from tinyml_torchmodelopt.profile import profile_model

torch.set_num_threads(1)


@pytest.mark.parametrize('name', sorted(OPS))
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('length', [16, 15])
def test_primitive_shape_and_stride(name, stride, length):
    op = OPS[name](4, stride, True)
    out = op(torch.randn(3, 4, length))
    assert out.shape == (3, 4, -(-length // stride))


def test_primitive_lists_come_from_ops():
    assert set(PRIMITIVES_CNN) <= set(OPS) and PRIMITIVES_CNN[0] == 'none' and len(PRIMITIVES_CNN) == 7
    assert 'avg_pool_3x1' not in PRIMITIVES_CNN_NPU
    assert set(PRIMITIVES_CNN_NPU) < set(PRIMITIVES_CNN)


def test_reduction_layers_halve_once():
    assert reduction_layers(3) == (1, 2)
    assert reduction_layers(12) == (4, 8)
    model = NetworkCnn(2, 3, 6, EXAMPLE_GENOTYPE)
    lengths = []
    s0 = s1 = model.stem(torch.randn(2, 1, 64))
    for cell in model.cells:
        s0, s1 = s1, cell(s0, s1)
        lengths.append(s1.shape[-1])
    assert lengths == [64, 64, 32, 32, 16, 16]


def _analytic_params(C, ncls, layers, genotype, in_ch, stem_mult, nodes, mult):
    def op_params(name, c, stride):
        if name.startswith('conv_bn_relu_'):
            return c * c * int(name[-3]) + 2 * c
        if name == 'skip_connect' and stride == 2:
            return c * c + 2 * c
        return 0
    Cs = stem_mult * C
    total = 2 * in_ch + in_ch * Cs * 3 + 2 * Cs
    Cpp, Cp, Cc = Cs, Cs, C
    for i in range(layers):
        red = i in reduction_layers(layers)
        Cc = Cc * 2 if red else Cc
        total += Cpp * Cc + 2 * Cc + Cp * Cc + 2 * Cc
        for name, j in (genotype.reduce if red else genotype.normal):
            total += op_params(name, Cc, 2 if red and j < 2 else 1)
        Cpp, Cp = Cp, mult * Cc
    return total + Cp * ncls + ncls


@pytest.mark.parametrize('C,layers', [(1, 3), (4, 5)])
def test_param_count_analytic_and_profile(C, layers):
    model = NetworkCnn(C, 3, layers, EXAMPLE_GENOTYPE, 1, True, 4, 4, 3)
    expected = _analytic_params(C, 3, layers, EXAMPLE_GENOTYPE, 1, 3, 4, 4)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert profile_model(model, (1, 64)).params == expected


def test_fx_trace_and_4d_input():
    model = NetworkCnn(2, 3, 3, EXAMPLE_GENOTYPE).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 1, 32)
    assert torch.allclose(traced(x), model(x))
    assert torch.allclose(model(x.unsqueeze(-1)), model(x))
    targets = {n.target for n in traced.graph.nodes if n.op == 'call_function'}
    assert targets <= {torch.cat, __import__('operator').add}


def test_batchnorm_batch_of_one_trains():
    model = NetworkCnn(2, 3, 3, EXAMPLE_GENOTYPE).train()
    model(torch.randn(1, 1, 32)).sum().backward()


def test_genotype_json_round_trip():
    data = json.loads(json.dumps(genotype_to_dict(EXAMPLE_GENOTYPE)))
    g = genotype_from_dict(data)
    assert genotype_to_dict(g) == genotype_to_dict(EXAMPLE_GENOTYPE)
    model = NetworkCnn(1, 3, 3, g)
    assert model(torch.randn(2, 1, 16)).shape == (2, 3)


@pytest.mark.parametrize('kind', ['max', 'avg'])
@pytest.mark.parametrize('stride,length', [(1, 7), (2, 7), (2, 8), (1, 2)])
def test_pool3_matches_torch_pools(kind, stride, length):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-2, 3, (3, 4, length), generator=g).double().requires_grad_()  # many ties
    ref = (F.max_pool1d(x, 3, stride, 1) if kind == 'max'
           else F.avg_pool1d(x, 3, stride, 1, count_include_pad=False))
    out = pool3_forward(x.detach(), kind, stride)
    assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-12)
    w = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    assert torch.allclose(pool3_backward(w, x.detach(), out, kind, stride), torch.autograd.grad((ref * w).sum(), x)[0])


def test_scratch_buffers_are_reused_per_role_and_grow():
    like = torch.zeros(1)
    a = scratch('test_role', (2, 3), like)
    b = scratch('test_role', (3, 2), like)
    assert b.shape == (3, 2) and b.data_ptr() == a.data_ptr()  # the same memory, not a new allocation
    assert scratch('other_role', (2, 3), like).data_ptr() != a.data_ptr()
    assert scratch('test_role', (2, 3), like.double()).dtype == torch.float64
    grown = scratch('test_role', (5, 5), like)
    assert grown.shape == (5, 5) and grown.is_contiguous()
    grown.fill_(1.0)  # the whole (larger) buffer is writable
    fused_ops.release_scratch()
    assert not fused_ops._SCRATCH.__dict__.get('buffers')


def test_supernet_weights_follow_moves_and_loaded_parameters():
    from tinyml_torchmodelopt.nas.model_search_cnn import SearchNetwork
    net = SearchNetwork(1, 3, 3, input_length=32)
    expected = [p for n, p in net.named_parameters() if not n.startswith('alphas_')]
    first = net.weights()
    assert all(a is b for a, b in zip(first, expected)) and len(first) == len(expected)
    first.clear()  # callers get a list of their own
    assert len(net.weights()) == len(expected)
    net.double()
    assert all(w.dtype == torch.float64 for w in net.weights())
    fresh = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    net.load_state_dict(fresh, assign=True)  # new parameter objects
    current = [p for n, p in net.named_parameters() if not n.startswith('alphas_')]
    assert all(a is b for a, b in zip(net.weights(), current))
    assert all(not w.any() for w in net.weights())
