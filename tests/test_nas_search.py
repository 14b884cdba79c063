"""Supernet, architect and search-loop tests (tinyml_torchmodelopt.nas); budget mode: test_nas_budget.py."""
import argparse
import contextlib
import dataclasses

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nas_toys import HostTraffic, _settings, device_path_on_the_cpu, toy_loaders
from tinyml_torchmodelopt.nas import Architect, NetworkCnn, SearchNetwork, derive_genotype, search, search_and_get_model
from tinyml_torchmodelopt.nas import cuda_graph
from tinyml_torchmodelopt.nas.cuda_graph import make_capturable
from tinyml_torchmodelopt.nas.train_cnn_search import settings_from_args
from tinyml_torchmodelopt.nas.utils import spearman
from tinyml_torchmodelopt.profile import profile_model

torch.set_num_threads(1)
ALL = ['none', 'avg_pool_3x1', 'max_pool_3x1', 'skip_connect', 'conv_bn_relu_3x1', 'conv_bn_relu_5x1',
       'conv_bn_relu_7x1', 'sep_conv_3x1', 'dil_conv_3x1']
# separable convs join the fused conv (no per-edge modules: the compiled kernels and joint passes apply)
SEPARABLE = ['none', 'max_pool_3x1', 'skip_connect', 'conv_bn_relu_3x1', 'conv_bn_relu_7x1', 'sep_conv_3x1',
             'sep_conv_5x1', 'sep_conv_7x1']


@pytest.mark.parametrize('primitives', [None, ALL, SEPARABLE, ['none', 'skip_connect', 'sep_conv_5x1']])
@pytest.mark.parametrize('keep_conv_output', [True, False])
def test_fast_supernet_equals_naive_mixture(primitives, keep_conv_output, monkeypatch):
    from tinyml_torchmodelopt.nas import state_block
    if not keep_conv_output:  # backward recomputes the fused conv output
        monkeypatch.setattr(state_block, 'KEEP_CONV_OUTPUT_MAX_BYTES', 0)
    torch.manual_seed(0)
    net = SearchNetwork(2, 3, 4, nodes_per_layer=3, multiplier=2, primitives=primitives).double()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    x = torch.randn(4, 1, 24, dtype=torch.float64)
    fast, naive = net(x), net(x, naive=True)
    assert torch.allclose(fast, naive, atol=1e-10, rtol=1e-9)
    params = net.arch_parameters() + net.weights()
    ga = torch.autograd.grad(fast.square().sum(), params, allow_unused=True)
    gb = torch.autograd.grad(net(x, naive=True).square().sum(), params, allow_unused=True)
    for a, b in zip(ga, gb):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-9)


def test_genotype_from_hand_set_alphas():
    prims = ['none', 'max_pool_3x1', 'skip_connect', 'conv_bn_relu_3x1']
    w = torch.full((5, 4), 0.01)  # 2 nodes -> 2 + 3 edges
    w[0, 0] = 0.97  # 'none' is ignored: the best other op is chosen
    w[0, 3] = 0.02
    w[1, 1] = 0.9
    w[2, 0], w[3, 2], w[4, 3] = 0.9, 0.5, 0.8  # node 1: edge from s1 'none'-dominated
    w[2, 1] = 0.05
    g = derive_genotype(w, w, prims, steps=2, multiplier=2)
    assert g.normal == [('conv_bn_relu_3x1', 0), ('max_pool_3x1', 1),
                        ('skip_connect', 1), ('conv_bn_relu_3x1', 2)]
    assert list(g.normal_concat) == [2, 3]


def _tiny_double_net(seed=0):
    torch.manual_seed(seed)
    net = SearchNetwork(2, 3, 3, nodes_per_layer=2, multiplier=2).double()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_(0, 0.5)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(6, 1, 12, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2]))
            for _ in range(2)]
    return net, data


def test_unrolled_gradient_matches_finite_difference():
    net, ((xt, yt), (xv, yv)) = _tiny_double_net()
    eta, wd = 0.05, 3e-4
    arch = Architect(net, unrolled=True, weight_decay=wd)
    arch.fd_radius = 1e-6  # double precision; DARTS 0.01 crosses ReLU/max-pool kinks on this tiny net
    grads, _ = arch.unrolled_gradient(xt, yt, xv, yv, eta)
    weights = net.weights()

    def f():  # L_val(w - eta * (grad_w L_train + wd w), alpha), weights restored
        g = torch.autograd.grad(net.loss(xt, yt), weights)
        backup = [w.detach().clone() for w in weights]
        with torch.no_grad():
            for w, gi in zip(weights, g):
                w.sub_(eta * (gi + wd * w))
            val = float(net.loss(xv, yv))
            for w, b in zip(weights, backup):
                w.copy_(b)
        return val

    h = 1e-5
    for k, (a, ga) in enumerate(zip(net.arch_parameters(), grads)):
        for idx in [(0, 3), (1, 5), (4, 6), (2, 1)]:
            with torch.no_grad():
                a[idx] += h
            up = f()
            with torch.no_grad():
                a[idx] -= 2 * h
            down = f()
            with torch.no_grad():
                a[idx] += h
            assert abs((up - down) / (2 * h) - float(ga[idx])) <= 1e-5 + 1e-3 * abs(float(ga[idx])), (k, idx)


def test_unrolled_eps_guard_zero_gradient():
    net, ((xt, yt), (xv, yv)) = _tiny_double_net()
    with torch.no_grad():
        for w in net.weights():
            w.zero_()  # balanced labels + zero weights: the validation weight gradient is exactly 0
    arch = Architect(net, unrolled=True)
    assert arch._hessian_vector_product([torch.zeros_like(w) for w in net.weights()],
                                        net.weights(), xt, yt) is None
    arch.step(xt, yt, xv, yv, 0.05)
    for p in net.parameters():
        assert torch.isfinite(p).all()


@pytest.mark.parametrize('mode,kind', [('Memory', 'params'), ('Compute', 'macs')])
def test_penalty_moves_search_to_cheaper_models(mode, kind):
    train, valid = toy_loaders()
    off = search(train, valid, _settings(optimization_mode=None))
    on = search(train, valid, _settings(optimization_mode=mode, penalty_weight=5.0))
    assert getattr(on, kind) < getattr(off, kind)
    assert on.history[-1].expected_cost < on.history[0].expected_cost


@pytest.mark.parametrize('extra', [dict(unrolled=True), dict(warmup_epochs=1, min_steps_per_epoch=3, stem_pool=2),
                                   dict(primitives=tuple(SEPARABLE))])
def test_resume_equals_uninterrupted(tmp_path, extra):
    train, valid = toy_loaders()
    settings = _settings(epochs=3, optimization_mode='Memory', **extra)
    full = search(train, valid, settings)
    ckpt = tmp_path / 'search.pt'

    def stop(record):
        if record.epoch == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        search(train, valid, settings, checkpoint_path=ckpt, on_epoch=stop)
    seen = []
    resumed = search(train, valid, settings, checkpoint_path=ckpt, on_epoch=lambda r: seen.append(r.epoch))
    assert seen == [2]
    assert resumed.genotype == full.genotype
    assert resumed.alphas_normal == full.alphas_normal and resumed.alphas_reduce == full.alphas_reduce
    assert [r.genotype for r in resumed.history] == [r.genotype for r in full.history]


def test_unrolled_step_as_a_device_pass_follows_the_host_step(monkeypatch):
    """What a GPU search replays as a CUDA graph (eps a device tensor, eta an input), run on the CPU."""
    train, valid = toy_loaders(n=48, batch=12)
    settings = _settings(epochs=2, unrolled=True, optimization_mode='Memory')
    host = search(train, valid, settings)
    passes = []
    device_path_on_the_cpu(monkeypatch, graphed_pass=lambda run: passes.append(run) or run)
    device = search(train, valid, settings)
    assert len(passes) == 1  # built once, after the first weight step made the momentum buffers
    for h, d in zip(host.history, device.history):
        assert d.valid_loss == pytest.approx(h.valid_loss, rel=1e-4)
        assert d.train_loss == pytest.approx(h.train_loss, rel=1e-4)
    assert torch.allclose(torch.tensor(device.alphas_normal), torch.tensor(host.alphas_normal), atol=1e-4)


def test_the_graphed_unrolled_pass_reads_nothing_from_the_host(monkeypatch):
    """The unrolled step a GPU search captures (virtual step, four passes, device-side eps), on the CPU."""
    device_path_on_the_cpu(monkeypatch)
    net, ((xt, yt), (xv, yv)) = _tiny_double_net()
    arch = Architect(net, unrolled=True, penalty_mode='Memory', penalty_weight=0.5)
    opt = torch.optim.SGD(net.weights(), 0.05, momentum=0.9)
    for w in net.weights():
        w.grad = torch.ones_like(w)
    opt.step()
    run, eta = arch._unrolled_pass(opt), torch.tensor(0.05, dtype=torch.float64)
    with HostTraffic() as traffic:
        run(xt, yt, xv, yv, eta)
    assert traffic.seen == []


def test_device_hessian_vector_product_is_zero_for_a_zero_gradient(monkeypatch):
    net, ((xt, yt), _) = _tiny_double_net()
    arch = Architect(net, unrolled=True)
    monkeypatch.setattr(Architect, '_graphed', lambda self: True)
    zero = [torch.zeros_like(w) for w in net.weights()]
    for v in (zero, [torch.full_like(w, float('nan')) for w in net.weights()]):
        terms = arch._hessian_vector_product(v, [w.detach().clone() for w in net.weights()], xt, yt)
        assert all(torch.equal(t, torch.zeros_like(t)) for t in terms)


def test_alpha_optimizer_state_of_a_cuda_run_resumes_on_the_cpu():
    # a search on a GPU steps Adam inside a CUDA graph (capturable); its checkpoint must resume anywhere
    net = SearchNetwork(4, 3, 3, nodes_per_layer=3, multiplier=3, input_length=32)
    gpu_like = Architect(net, penalty_mode='Memory', penalty_weight=0.5)
    gpu_like._update_alphas([torch.randn_like(a) for a in net.arch_parameters()])
    make_capturable(gpu_like.optimizer)
    saved = gpu_like.optimizer.state_dict()
    resumed = Architect(net, penalty_mode='Memory', penalty_weight=0.5)
    resumed.load_optimizer_state(saved)
    before = [a.detach().clone() for a in net.arch_parameters()]
    resumed._update_alphas([torch.ones_like(a) for a in net.arch_parameters()])
    assert all(not torch.equal(a, b) for a, b in zip(net.arch_parameters(), before))
    assert resumed.optimizer.state[net.arch_parameters()[0]]['step'] == 2


def test_a_failed_capture_is_followed_by_a_clean_one(monkeypatch, caplog):
    # the CUDA calls faked on the CPU: an aborted capture must leave the generators out of capture mode
    captures = []

    @contextlib.contextmanager
    def capture(graph):
        captures.append(graph)
        yield
        if len(captures) == 1:
            raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, 'CUDAGraph', object)
    monkeypatch.setattr(torch.cuda, 'graph', capture)
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda: None)
    cleaned = []
    monkeypatch.setattr(cuda_graph, '_end_generator_capture', lambda: cleaned.append(len(captures)))
    assert cuda_graph._record(lambda x: x + 1, [torch.ones(2)], 'pass') is None
    assert cleaned == [1] and 'not captured as a CUDA graph' in caplog.text
    graph, out = cuda_graph._record(lambda x: x + 1, [torch.ones(2)], 'pass')
    assert cleaned == [1] and torch.equal(out, torch.full((2,), 2.0))


def test_search_and_get_model_namespace_raw_4d():
    train, valid = toy_loaders(raw=True, four_d=True, channels=2, n=66, batch=32)  # last batch of 1 sample
    args = argparse.Namespace(gpu=0, nas_init_channels=3, num_classes=3, nas_layers=3, in_channels=2,
                              with_input_batchnorm=True, nas_nodes_per_layer=2, nas_multiplier=2,
                              nas_stem_multiplier=2, lr=0.025, momentum=0.9, weight_decay=3e-4, nas_budget=1,
                              nas_optimization_mode='Compute', grad_clip=5, unrolled=False,
                              train_loader=train, valid_loader=valid, mode='cnn', arch_learning_rate=3e-4,
                              arch_weight_decay=1e-3)
    model = search_and_get_model(args)
    assert isinstance(model, NetworkCnn)
    assert model.cells[0].preprocess1[0].out_channels == 3  # exact channels, no rounding
    assert model(torch.randn(4, 2, 32, 1)).shape == (4, 3)
    assert len(model.search_result.history) == 1
    for word, mode in (('memory', 'Memory'), ('COMPUTE', 'Compute'), ('None', None)):  # the seed's words, any case
        assert settings_from_args(argparse.Namespace(**{**vars(args), 'nas_optimization_mode': word})
                                  ).optimization_mode == mode
    for missing in ('num_classes', 'valid_loader'):
        with pytest.raises(ValueError, match=f'args has no {missing}; the Namespace needs'):
            search_and_get_model(argparse.Namespace(**{k: v for k, v in vars(args).items() if k != missing}))


@pytest.mark.parametrize('kind', ['params', 'macs'])
def test_expected_cost_rank_correlation(kind):
    net = SearchNetwork(1, 3, 10, stem_multiplier=3, input_length=256)
    g = torch.Generator().manual_seed(0)
    expected, real = [], []
    for _ in range(30):
        with torch.no_grad():
            for a in net.arch_parameters():
                a.copy_(torch.randn(a.shape, generator=g))
            expected.append(float(net.expected_cost(kind, normalized=False)))
        prof = profile_model(NetworkCnn(1, 3, 10, net.genotype()), (1, 256))
        real.append(getattr(prof, kind))
    assert spearman(expected, real) > 0.9


def test_fast_supernet_without_convs():
    torch.manual_seed(0)
    net = SearchNetwork(2, 3, 3, nodes_per_layer=2, multiplier=2,
                        primitives=['none', 'max_pool_3x1', 'skip_connect']).double()
    x = torch.randn(3, 1, 16, dtype=torch.float64)
    assert torch.allclose(net(x), net(x, naive=True), atol=1e-10)


@pytest.mark.parametrize('reduction_first,primitives', [(False, None), (True, None), (False, SEPARABLE)])
def test_joint_pass_equals_separate_passes(reduction_first, primitives):
    """One pass over [train; valid]: each loss as alone, weights learn from train only, alphas from valid only."""
    torch.manual_seed(0)
    net = SearchNetwork(2, 3, 3 if reduction_first else 4, nodes_per_layer=3, multiplier=2,
                        primitives=primitives).double()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    g = torch.Generator().manual_seed(3)
    xt, xv = (torch.randn(5, 1, 20, generator=g, dtype=torch.float64) for _ in range(2))
    yt, yv = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2, 1, 0, 0])
    weights, alphas = net.weights(), net.arch_parameters()
    lt, lv = net.joint_losses(xt, yt, xv, yv)
    gw = torch.autograd.grad(lt + lv, weights + alphas)
    ref_t, ref_v = net.loss(xt, yt), net.loss(xv, yv)
    assert torch.allclose(lt, ref_t, atol=1e-12) and torch.allclose(lv, ref_v, atol=1e-12)
    ref_w = torch.autograd.grad(ref_t, weights)
    ref_a = torch.autograd.grad(ref_v, alphas)
    for got, want in zip(gw, ref_w + ref_a):
        assert torch.allclose(got, want, atol=1e-10)
    assert net.supports_joint
    with pytest.raises(ValueError, match='equal halves'):
        net.joint_losses(xt, yt, xv[:4], yv[:4])


def test_search_modes_run_and_report_validation_metrics():
    train, valid = toy_loaders(n=48, batch=12)
    for kw in (dict(joint_passes=False), dict(unrolled=True), dict()):
        result = search(train, valid, _settings(epochs=1, **kw))
        rec = result.history[0]
        assert rec.params > 0 and 0.0 <= rec.valid_accuracy <= 1.0 and rec.valid_loss > 0


def test_unrolled_step_reuses_the_virtual_step_weight_gradient():
    net, ((xt, yt), (xv, yv)) = _tiny_double_net()
    ref = torch.autograd.grad(net.loss(xt, yt), net.weights())
    step = Architect(net, unrolled=True).unrolled_step(xt, yt, xv, yv, 0.05)
    for got, want in zip(step.weight_grads, ref):
        assert torch.allclose(got, want, atol=1e-12)


def test_joint_passes_are_chosen_by_activation_size():
    from tinyml_torchmodelopt.nas.train_cnn_search import _use_joint_passes
    from tinyml_torchmodelopt.nas.utils import BatchSource
    train, _ = toy_loaders(n=32, batch=16)
    source = BatchSource(train, torch.device('cpu'))
    net = SearchNetwork(2, 3, 3, nodes_per_layer=3, multiplier=3)
    assert _use_joint_passes(net, _settings(), source)  # tiny supernet: one joint pass
    assert not _use_joint_passes(net, _settings(joint_max_bytes=1024), source)  # over the memory bound
    assert _use_joint_passes(net, _settings(joint_max_bytes=1024, joint_passes=True), source)
    assert not _use_joint_passes(net, _settings(unrolled=True, joint_passes=True), source)


@pytest.mark.parametrize('partial_channels,primitives', [(2, None), (4, None), (2, SEPARABLE)])
def test_partial_channel_supernet_equals_naive_mixture(partial_channels, primitives):
    torch.manual_seed(0)
    net = SearchNetwork(4, 3, 4, nodes_per_layer=3, multiplier=2, partial_channels=partial_channels,
                        primitives=primitives).double()
    assert [c.Cp for c in net.cells] == [4 // partial_channels, 8 // partial_channels, 16 // partial_channels,
                                         16 // partial_channels]
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    x = torch.randn(4, 1, 23, dtype=torch.float64)
    fast, naive = net(x), net(x, naive=True)
    assert torch.allclose(fast, naive, atol=1e-10, rtol=1e-9)
    params = net.arch_parameters() + net.weights()
    ga = torch.autograd.grad(fast.square().sum(), params, allow_unused=True)
    gb = torch.autograd.grad(net(x, naive=True).square().sum(), params, allow_unused=True)
    for a, b in zip(ga, gb):
        assert (a is None) == (b is None)
        assert a is None or torch.allclose(a, b, atol=1e-9)


def test_partial_channels_must_divide_the_channels():
    with pytest.raises(ValueError, match='partial_channels must be >= 1 and divide'):
        SearchNetwork(6, 3, 3, partial_channels=4)


def test_warmup_epochs_train_weights_only():
    train, valid = toy_loaders()
    result = search(train, valid, _settings(epochs=3, warmup_epochs=2))
    first, second, third = result.history
    assert [r.alphas_learned for r in result.history] == [False, False, True]
    assert first.alphas_normal == second.alphas_normal  # alphas frozen through the warm-up ...
    assert third.alphas_normal != second.alphas_normal  # ... and learning afterwards
    assert first.train_loss != second.train_loss  # while the weights learn


def test_warmup_genotypes_are_not_budget_candidates():
    from tinyml_torchmodelopt.nas.genotypes import genotype_to_dict
    train, valid = toy_loaders()
    settings = _settings(epochs=2, warmup_epochs=1, optimization_mode='Memory')
    warm = search(train, valid, settings).history[0]
    # the warm-up genotype (initial alphas) is exactly on budget; it must still not be chosen
    result = search(train, valid, dataclasses.replace(settings, target_params=warm.params))
    assert result.history[0].params == warm.params and not result.history[0].alphas_learned
    assert genotype_to_dict(result.genotype) == result.history[1].genotype


def test_min_steps_per_epoch_cycles_a_small_training_split():
    train, valid = toy_loaders(n=64, batch=16)  # 32 training series: 2 batches per pass
    plain = search(train, valid, _settings(epochs=1))
    cycled = search(train, valid, _settings(epochs=1, min_steps_per_epoch=7))
    # 7 steps = 4 passes of 2 batches (whole passes): 8 batches of 16
    samples = lambda r: round(r.history[0].samples_per_second * r.history[0].seconds)
    assert samples(plain) == 32 and samples(cycled) == 128


def test_max_steps_per_epoch_cuts_a_large_training_split():
    train, valid = toy_loaders(n=128, batch=16)  # 64 training series: 4 batches per pass
    cut = search(train, valid, _settings(epochs=2, max_steps_per_epoch=3))
    samples = [round(r.samples_per_second * r.seconds) for r in cut.history]
    assert samples == [48, 48]


@pytest.mark.parametrize('bad', [dict(warmup_epochs=3), dict(warmup_epochs=-1), dict(min_steps_per_epoch=0),
                                 dict(min_steps_per_epoch=5, max_steps_per_epoch=4)])
def test_search_settings_reject_bad_warmup_and_steps(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        _settings(epochs=3, **bad)


@pytest.mark.parametrize('stem_pool', [2, 4])
def test_stem_pool_supernet_costs_and_final_network(stem_pool):
    torch.manual_seed(0)
    net = SearchNetwork(2, 3, 3, nodes_per_layer=2, multiplier=2, stem_pool=stem_pool, input_length=64).double()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    x = torch.randn(4, 1, 64, dtype=torch.float64)
    assert torch.allclose(net(x), net(x, naive=True), atol=1e-10)
    genotype = net.genotype()
    final = NetworkCnn(2, 3, 3, genotype, nodes_per_layer=2, multiplier=2, stem_pool=stem_pool)
    prof = profile_model(final, (1, 64))
    assert net.derived_cost('params', genotype) == prof.params          # pooling adds no parameters ...
    assert net.derived_cost('macs', genotype) == prof.macs              # ... and the MAC table sees L // pool
    plain = profile_model(NetworkCnn(2, 3, 3, genotype, nodes_per_layer=2, multiplier=2), (1, 64))
    assert prof.params == plain.params and prof.macs < plain.macs
    assert final.stem[-1].kernel_size == stem_pool and final(torch.randn(2, 1, 64)).shape == (2, 3)


def test_stem_pool_is_validated():
    with pytest.raises(ValueError, match='stem_pool'):
        _settings(stem_pool=5)
    train, valid = toy_loaders(length=12)
    with pytest.raises(ValueError, match='stem_pool=4 leaves 3 of 12'):
        search(train, valid, _settings(stem_pool=4, epochs=1))
    train, valid = toy_loaders(length=3)
    with pytest.raises(ValueError, match='inputs of 3 samples are too short'):
        search(train, valid, _settings(epochs=1))


@pytest.mark.parametrize('labels, found', [(4, 'label 3'), (-1, 'label -1')])
def test_labels_outside_num_classes_are_named(labels, found):
    x = torch.randn(32, 1, 16)
    y = torch.arange(32) % 3
    y[5] = 3 if labels == 4 else -1
    bad = DataLoader(TensorDataset(x, y), batch_size=8)
    good, _ = toy_loaders(n=32, length=16)
    with pytest.raises(ValueError, match=f'the validation loader has {found}; labels must be 0..2 for num_classes=3'):
        search(good, bad, _settings(epochs=1))
    big = dataclasses.replace(_settings(epochs=1), in_memory_max_bytes=0)  # streamed batches
    with pytest.raises(ValueError, match=f'the training loader has {found}'):
        search(bad, good, big)


def test_non_finite_inputs_and_a_diverged_search_raise_clear_errors():
    train, valid = toy_loaders(n=32, length=16)
    x = torch.randn(16, 1, 16)
    x[3, 0, 7] = float('nan')
    with pytest.raises(ValueError, match='the validation loader gives non-finite inputs'):
        search(train, DataLoader(TensorDataset(x, torch.arange(16) % 3), batch_size=8), _settings(epochs=1))
    with pytest.raises(FloatingPointError, match='search epoch 2: the loss is no longer finite'):
        search(train, valid, _settings(epochs=2, lr=float('inf')))


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the machine without a GPU')
def test_a_cuda_device_without_cuda_is_refused_by_name():
    train, valid = toy_loaders(n=32, length=16)
    with pytest.raises(ValueError, match="device 'cuda'.*sees no CUDA device"):
        search(train, valid, _settings(epochs=1, device='cuda'))
