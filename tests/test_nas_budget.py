"""Budget mode of the DARTS search: landing in the window, the derivation with a cost term, and what the
search reports when the budget cannot be met or is spent on the network's fixed part."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas_toys import HostTraffic, _settings, device_path_on_the_cpu, toy_loaders
from tinyml_torchmodelopt.nas import Architect, SearchNetwork, search
from tinyml_torchmodelopt.nas.expected_cost import node_offsets
from tinyml_torchmodelopt.nas.genotypes import Genotype_CNN

torch.set_num_threads(1)


def test_budget_mode_lands_within_20_percent():
    train, valid = toy_loaders(n=128)
    probe = SearchNetwork(2, 3, 3, nodes_per_layer=3, multiplier=3, stem_multiplier=2, input_length=32)
    lo, hi = probe.cost_range('params')
    target = int(lo + 0.3 * (hi - lo))
    result = search(train, valid, _settings(target_params=target, epochs=6, arch_learning_rate=0.02))
    assert abs(result.params / target - 1) <= 0.2, (result.params, target, lo, hi)
    assert probe.derived_cost('params', result.genotype) == result.params  # cost tables are exact


def test_budget_unreachable_is_reported():
    train, valid = toy_loaders()
    with pytest.warns(RuntimeWarning, match='unreachable'):
        result = search(train, valid, _settings(target_params=5, epochs=1))
    assert any('unreachable' in w for w in result.warnings)


def _fake_history(params_per_epoch):
    from tinyml_torchmodelopt.nas.genotypes import EXAMPLE_GENOTYPE, genotype_to_dict
    from tinyml_torchmodelopt.nas.train_cnn_search import EpochRecord
    return [EpochRecord(e, genotype_to_dict(EXAMPLE_GENOTYPE), p, 0, 0.0, 0.0, 0.0, 0.0, 0.0, None, [], [], 1.0, 1.0,
                        e > 0) for e, p in enumerate(params_per_epoch)]  # epoch 0 is a warm-up epoch


def _finish_quietly(net, settings, history, target):
    import warnings

    from tinyml_torchmodelopt.nas.train_cnn_search import _finish
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return _finish(net, settings, history, [], target, 'Memory', 1.0)


def test_budget_missed_by_every_epoch_is_met_by_deriving_the_final_alphas_with_a_cost_term():
    torch.manual_seed(0)
    net = SearchNetwork(2, 3, 3, nodes_per_layer=3, multiplier=3, stem_multiplier=2, input_length=32)
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    lo, hi = net.cost_range('params')
    plain = net.derived_cost('params')
    target = int(lo + 0.25 * (hi - lo)) if plain > (lo + hi) / 2 else int(lo + 0.75 * (hi - lo))
    assert abs(plain / target - 1) > 0.2                           # the plain derivation misses it
    settings = _settings(target_params=target, epochs=4, in_channels=1)
    result = _finish_quietly(net, settings, _fake_history([target, 10 * hi, 10 * hi, 10 * hi]), target)
    assert abs(result.params / target - 1) <= 0.2, (result.params, target)
    assert result.params == net.derived_cost('params', result.genotype)
    assert any('within the budget instead' in w for w in result.warnings)


@pytest.mark.parametrize('pools_only', [True, False])
def test_a_budget_spent_on_the_fixed_network_is_reported(pools_only):
    from tinyml_torchmodelopt.nas.genotypes import EXAMPLE_GENOTYPE, genotype_to_dict
    genes = [('max_pool_3x1', 0), ('skip_connect', 1)] * 3
    genotype = Genotype_CNN(genes, [2, 3, 4], genes, [2, 3, 4]) if pools_only else EXAMPLE_GENOTYPE
    net = SearchNetwork(2, 3, 3, nodes_per_layer=3, multiplier=3, stem_multiplier=2, input_length=32)
    history = [dataclasses.replace(r, genotype=genotype_to_dict(genotype)) for r in _fake_history([900, 1000])]
    result = _finish_quietly(net, _settings(target_params=1000, epochs=2), history, 1000)
    assert any('every cell edge is a pool or a skip: the 1000 parameters' in w and 'a larger budget' in w
               for w in result.warnings) == pools_only


def test_budget_missed_and_not_fittable_takes_the_closest_learned_epoch(monkeypatch):
    net = SearchNetwork(2, 3, 3, nodes_per_layer=4, multiplier=4, input_length=32)
    monkeypatch.setattr(net, 'genotype_within_budget', lambda *a, **k: None)
    # the warm-up epoch is on target but no candidate; 5200 (30% off) is closer than 2600 (35%) and 9900
    result = _finish_quietly(net, _settings(target_params=4000, epochs=4), _fake_history([4000, 2600, 5200, 9900]),
                             4000)
    assert result.params == 5200
    assert any('using epoch 3, the closest' in w for w in result.warnings)


@pytest.mark.parametrize('kind', ['params', 'macs'])
def test_genotype_within_budget_lands_in_the_window_across_the_range(kind):
    torch.manual_seed(1)
    net = SearchNetwork(4, 3, 3, nodes_per_layer=4, multiplier=4, input_length=64)
    lo, hi = net.cost_range(kind)
    for trial in range(4):
        with torch.no_grad():
            for a in net.arch_parameters():
                a.normal_(0, 1.5)
        for share in (0.1, 0.3, 0.6):
            target = lo + share * (hi - lo)
            genotype = net.genotype_within_budget(kind, target)
            assert genotype is not None, (trial, share)
            assert abs(net.derived_cost(kind, genotype) / target - 1) <= 0.2
    plain = net.genotype()
    assert net.genotype_within_budget(kind, net.derived_cost(kind, plain)) == plain  # already inside: unchanged


def _all_derivations(net):
    """Every genotype a derivation of ``net`` can give (two distinct inputs, one non-'none' op each)."""
    ops = [name for name in net.primitives if name != 'none']
    per_node = [[((a, i), (b, j)) for i, j in itertools.combinations(range(t + 2), 2) for a in ops for b in ops]
                for t in range(net.steps)]
    cells = [[g for node in combo for g in node] for combo in itertools.product(*per_node)]
    concat = net.genotype().normal_concat
    return [Genotype_CNN(n, concat, r, concat) for n in cells for r in cells]


def test_genotype_within_budget_is_the_best_log_weight_inside_the_window():
    torch.manual_seed(3)
    net = SearchNetwork(4, 3, 3, nodes_per_layer=2, multiplier=2, input_length=32,
                        primitives=['none', 'max_pool_3x1', 'skip_connect', 'conv_bn_relu_3x1'])
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_(0, 1.5)
    logs = [F.log_softmax(a.detach().double(), -1) for a in (net.alphas_normal, net.alphas_reduce)]
    offsets = node_offsets(net.steps)

    def log_weight(g):
        return sum(float(logs[c][offsets[k // 2] + j, net.primitives.index(op)])
                   for c, genes in enumerate((g.normal, g.reduce)) for k, (op, j) in enumerate(genes))

    every = [(net.derived_cost('params', g), log_weight(g), g) for g in _all_derivations(net)]
    lo, hi = net.cost_range('params')
    plain = net.derived_cost('params')
    for target in np.linspace(lo, hi, 7)[1:-1]:
        inside = [(w, g) for c, w, g in every if abs(c / target - 1) <= 0.2]
        found = net.genotype_within_budget('params', target)
        if abs(plain / target - 1) <= 0.2:
            assert found == net.genotype()
        else:
            assert abs(net.derived_cost('params', found) / target - 1) <= 0.2
            assert log_weight(found) == pytest.approx(max(w for w, _ in inside), abs=1e-9)
    assert net.genotype_within_budget('params', lo / 2) is None  # below the cheapest derivation


@pytest.mark.parametrize('share', [0.5, 2.0])
def test_budget_quadratic_term_pulls_the_expected_cost_to_the_target(share):
    # with a flat data loss and the multiplier at 0 only the augmented-Lagrangian term acts
    torch.manual_seed(0)
    net = SearchNetwork(4, 3, 3, nodes_per_layer=4, multiplier=4, input_length=64)
    expected = float(net.expected_cost('params', normalized=False).detach())
    target = expected / share
    arch = Architect(net, arch_learning_rate=3e-2, penalty_mode='Memory', budget=target, budget_rate=0.0,
                     budget_quadratic=1.0)
    for _ in range(20):
        arch._update_alphas([torch.zeros_like(a) for a in net.arch_parameters()])
    moved = float(net.expected_cost('params', normalized=False).detach())
    assert abs(moved / target - 1) < abs(expected / target - 1) - 0.1


@pytest.mark.parametrize('kind', ['params', 'macs'])
def test_derived_cost_as_a_tensor_equals_the_host_derivation(kind):
    """The device-side cost of the budget update (GPU searches) is that of the derived genotype."""
    torch.manual_seed(3)
    net = SearchNetwork(2, 3, 4, nodes_per_layer=4, multiplier=4, input_length=64)
    for trial in range(30):
        with torch.no_grad():
            for a in net.arch_parameters():
                a.normal_(0, 0.1 + trial / 10)
        cost = net.derived_cost_tensor(kind)
        assert cost.dtype == torch.float64 and cost.dim() == 0
        assert float(cost) == net.derived_cost(kind)


def test_budget_update_on_the_device_follows_the_host_update(monkeypatch):
    """The multiplier update GPU searches use (tensors, no host read), run here on the CPU."""
    settings = _settings(epochs=3, optimization_mode='Memory', target_params=400)
    train, valid = toy_loaders(n=48, batch=12)
    host = search(train, valid, settings)
    device_path_on_the_cpu(monkeypatch)
    calls = []
    on_device = SearchNetwork.derived_cost_tensor
    monkeypatch.setattr(SearchNetwork, 'derived_cost_tensor',
                        lambda net, kind: calls.append(kind) or on_device(net, kind))
    device = search(train, valid, settings)
    assert calls and set(calls) == {'params'}
    for h, d in zip(host.history, device.history):
        assert d.penalty_weight == pytest.approx(h.penalty_weight, rel=1e-4, abs=1e-6)
        assert d.valid_loss == pytest.approx(h.valid_loss, rel=1e-4)
    assert device.history[-1].params == host.history[-1].params


@pytest.mark.parametrize('budget', [None, 3000.0])
def test_the_graphed_alpha_update_reads_nothing_from_the_host(budget, monkeypatch):
    """What a GPU search captures as a CUDA graph (penalty, beta-decay, budget multiplier), checked on
    the CPU: a host read or copy in it would make every capture fail (the search then runs op by op)."""
    net = SearchNetwork(4, 3, 4, nodes_per_layer=4, multiplier=4, input_length=64)
    arch = Architect(net, penalty_mode='Memory', penalty_weight=0.0 if budget else 0.5, beta_decay=0.1,
                     budget=budget)
    if budget:
        arch.penalty_weight = torch.zeros(())  # the device multiplier of the graphed path
    monkeypatch.setattr(arch.optimizer, 'step', lambda: None)  # CPU Adam reads its step count; CUDA's is capturable
    grads = [torch.randn_like(a) for a in net.arch_parameters()]
    arch._alpha_update(grads)  # first call: cost tables and index tensors are built (and cached) here
    with HostTraffic() as traffic:
        arch._alpha_update(grads)
    assert traffic.seen == []
