"""The DARTS search on a CUDA device gives what it gives on the CPU (skipped without a GPU)."""
import pytest
import torch

from nas_toys import _settings, toy_loaders
from tinyml_torchmodelopt.nas import Architect, SearchNetwork, search
from tinyml_torchmodelopt.nas.cuda_graph import GraphedJointPass, GraphedUpdate, eager_joint_pass

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


def test_supernet_forward_and_gradients_match_the_cpu():
    torch.manual_seed(0)
    net = SearchNetwork(4, 3, 4, nodes_per_layer=3, multiplier=3).double()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    x = torch.randn(8, 1, 48, dtype=torch.float64)
    cpu_out = net(x)
    cpu_grads = torch.autograd.grad(cpu_out.square().sum(), net.arch_parameters())
    net = net.cuda()
    gpu_out = net(x.cuda())
    gpu_grads = torch.autograd.grad(gpu_out.square().sum(), net.arch_parameters())
    assert torch.allclose(gpu_out.cpu(), cpu_out, atol=1e-9)
    for g, c in zip(gpu_grads, cpu_grads):
        assert torch.allclose(g.cpu(), c, atol=1e-8)


@pytest.mark.parametrize('mode', [dict(), dict(warmup_epochs=1), dict(joint_passes=False), dict(unrolled=True),
                                  dict(optimization_mode='Memory', target_params=300)])
def test_search_on_cuda_follows_the_cpu_search(mode, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)  # the same float32 arithmetic as the CPU
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    train, valid = toy_loaders(n=48, batch=12)
    cpu = search(train, valid, _settings(epochs=2, **mode))
    gpu = search(train, valid, _settings(epochs=2, device='cuda', **mode))
    for c, g in zip(cpu.history, gpu.history):
        assert g.train_loss == pytest.approx(c.train_loss, rel=1e-3)
        assert g.valid_loss == pytest.approx(c.valid_loss, rel=1e-3)
    assert torch.allclose(torch.tensor(gpu.history[-1].alphas_normal), torch.tensor(cpu.history[-1].alphas_normal),
                          atol=1e-3)


def _joint_inputs(seed, n=8, length=48):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, 1, length, generator=g).cuda()
    y = torch.randint(0, 3, (2 * n,), generator=g).cuda()
    return x[:n], y[:n], x[n:], y[n:]


def test_graphed_joint_pass_replays_the_eager_pass_on_new_batches():
    torch.manual_seed(0)
    net = SearchNetwork(4, 3, 4, nodes_per_layer=3, multiplier=3).cuda()
    params = net.arch_parameters() + net.weights()
    eager, graphed = eager_joint_pass(net, params), GraphedJointPass(net, params)
    for seed in range(3):  # the first call captures, the next ones replay with other inputs
        batch = _joint_inputs(seed)
        want, got = eager(*batch), graphed(*batch)
        assert not graphed.failed
        assert torch.allclose(got.train_loss, want.train_loss, atol=1e-5)
        assert torch.allclose(got.valid_loss, want.valid_loss, atol=1e-5)
        assert torch.allclose(got.valid_logits, want.valid_logits, atol=1e-5)
        for g, w in zip(got.grads, want.grads):
            assert torch.allclose(g, w, atol=1e-5, rtol=1e-4)
    assert len(graphed.graphs) == 1


def test_a_pass_that_cannot_be_captured_runs_eagerly(caplog):
    torch.manual_seed(0)
    net = SearchNetwork(4, 3, 4, nodes_per_layer=3, multiplier=3).cuda()
    losses = net.joint_losses

    def syncing_losses(*batch):  # reading a value on the host is refused inside a capture
        train, valid = losses(*batch)
        if float(train) < 0:
            raise AssertionError
        return train, valid

    net.joint_losses = syncing_losses
    params = net.arch_parameters() + net.weights()
    graphed = GraphedJointPass(net, params)
    batch = _joint_inputs(1)
    got, want = graphed(*batch), eager_joint_pass(net, params)(*batch)
    assert graphed.failed and 'not captured as a CUDA graph' in caplog.text
    assert torch.allclose(got.train_loss, want.train_loss)


@pytest.mark.parametrize('budget', [None, 3000.0])
def test_graphed_alpha_update_follows_the_eager_update(budget):
    # six updates: three warm-up updates (eager, side stream), the capture (replayed once), two replays
    torch.manual_seed(0)
    nets = [SearchNetwork(4, 3, 4, nodes_per_layer=3, multiplier=3, input_length=48).cuda() for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    settings = dict(penalty_mode='Memory', penalty_weight=0.0 if budget else 0.5, beta_decay=0.1, budget=budget,
                    arch_learning_rate=3e-2)
    eager, graphed = Architect(nets[0], cuda_graphs=False, **settings), Architect(nets[1], **settings)
    gen = torch.Generator(device='cuda').manual_seed(1)
    start = [a.detach().clone() for a in nets[1].arch_parameters()]
    for _ in range(6):
        grads = [torch.randn(a.shape, device='cuda', generator=gen) for a in nets[0].arch_parameters()]
        eager._update_alphas(grads)
        graphed._update_alphas(grads)
        for a, b in zip(nets[0].arch_parameters(), nets[1].arch_parameters()):
            assert torch.allclose(a, b, atol=1e-5)
        assert float(graphed.penalty_weight) == pytest.approx(float(eager.penalty_weight), abs=1e-5)
    assert graphed._graphed_update.graph is not None and not graphed._graphed_update.failed
    assert torch.is_tensor(graphed.penalty_weight) == (budget is not None)
    assert all(not torch.allclose(a, b) for a, b in zip(nets[1].arch_parameters(), start))


def test_an_update_that_cannot_be_captured_runs_eagerly(caplog):
    counter = torch.zeros((), device='cuda')

    def syncing_update(step):
        if float(step) < 0:  # reading a value on the host is refused inside a capture
            raise AssertionError
        counter.add_(step)

    update = GraphedUpdate(syncing_update, warmup_calls=1)
    for _ in range(4):
        update(torch.ones((), device='cuda'))
    assert update.failed and 'not captured as a CUDA graph' in caplog.text
    assert float(counter) == 4.0
    # the aborted capture leaves the CUDA generator usable for eager draws (dropout, noise)
    assert torch.nn.functional.dropout(torch.ones(64, device='cuda'), 0.5).shape == (64,)


def test_graphed_unrolled_gradient_replays_the_eager_one_on_new_batches():
    torch.manual_seed(0)
    net = SearchNetwork(4, 3, 4, nodes_per_layer=3, multiplier=3, input_length=48).cuda()
    arch = Architect(net, unrolled=True, penalty_mode='Memory', penalty_weight=0.5)
    opt = torch.optim.SGD(net.weights(), 0.05, momentum=0.9)
    for w in net.weights():  # eager draws on the GPU, after the failed capture of the test above
        w.grad = 1e-2 * torch.randn_like(w)
    opt.step()  # makes the momentum buffers: from now on the unrolled pass is captured
    for seed in range(3):
        batch = _joint_inputs(seed)
        want, want_loss = arch.unrolled_gradient(*batch, 0.05, opt)
        want_train = arch._virtual_step_train
        got, got_loss = arch._unrolled_gradient(*batch, 0.05, opt)
        assert torch.allclose(got_loss, want_loss, atol=1e-5)
        for g, w in zip(got, want):
            assert torch.allclose(g, w, atol=1e-5, rtol=1e-3)
        for g, w in zip(arch._virtual_step_train[1], want_train[1]):
            assert torch.allclose(g, w, atol=1e-5, rtol=1e-4)
    graphed = arch._graphed_unrolled[1]
    assert not graphed.failed and len(graphed.graphs) == 1
