"""The DARTS search on a CUDA device gives what it gives on the CPU (skipped without a GPU)."""
import pytest
import torch

from nas_toys import _settings, toy_loaders
from tinyml_torchmodelopt.nas import SearchNetwork, search

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


@pytest.mark.parametrize('mode', [dict(), dict(joint_passes=False), dict(unrolled=True),
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
