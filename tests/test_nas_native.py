"""The compiled supernet kernels (tinyml_torchmodelopt/nas/native) against the PyTorch kernels."""
import logging

import pytest
import torch

from tinyml_torchmodelopt.nas import cell_block, fused_ops, model_search_cnn, native, state_block
from tinyml_torchmodelopt.nas.model_search_cnn import SearchNetwork

# with a C compiler present the kernels must build: a failed build fails these tests instead of skipping them
THREADS = torch.get_num_threads()
needs_kernels = pytest.mark.skipif(native.find_compiler() is None, reason="no C compiler: PyTorch kernels only")


def _torch_only(monkeypatch):
    monkeypatch.setattr(native, 'kernels', lambda: None)


def _block_inputs(C, N, L, E, kernels, fr, shared, dtype, seed):
    """A state x with many exact ties (small integers) so max-pool routing is exercised."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, (C, N, L), generator=g).to(dtype)
    groups = [k for k in kernels for _ in range(E)] + [1] * (E if fr else 0)
    kmax = max(groups)
    weight = torch.zeros(len(groups) * C, kmax * C, dtype=dtype)
    for i, k in enumerate(groups):
        lo = (kmax // 2 - k // 2) * C
        weight[i * C:(i + 1) * C, lo:lo + k * C] = torch.randn(C, k * C, generator=g, dtype=dtype)
    blocks, start = [], 0
    for i, k in enumerate(groups):
        if i + 1 == len(groups) or groups[i + 1] != k:
            blocks.append((start * C, (i + 1) * C, k))
            start = i + 1
    W = torch.rand(E, len(groups) + len(shared), generator=g, dtype=dtype)
    n_bn = E * C if fr else 0
    return x, weight, kmax, W, tuple(blocks), len(groups) * C - n_bn, n_bn


def _run_block(x, weight, kmax, W, blocks, stride, n_bn_relu, n_bn, shared, split):
    x, weight, W = (t.clone().requires_grad_() for t in (x, weight, W))
    out = state_block.state_block(x, weight, kmax, W, blocks, stride, n_bn_relu, n_bn, shared, split=split)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    grads = torch.autograd.grad((out * probe).sum() + out.square().sum(), (x, weight, W))
    return (out.detach(), *grads)


def _assert_native_matches_torch(monkeypatch, block_inputs, stride, shared, split):
    """One state block through the compiled kernels and through the PyTorch kernels: output and gradients."""
    x, weight, kmax, W, blocks, n_bn_relu, n_bn = block_inputs
    fast = _run_block(x, weight, kmax, W, blocks, stride, n_bn_relu, n_bn, shared, split)
    _torch_only(monkeypatch)
    ref = _run_block(x, weight, kmax, W, blocks, stride, n_bn_relu, n_bn, shared, split)
    for name, a, b in zip(('out', 'grad x', 'grad weight', 'grad W'), fast, ref):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-9), name


@needs_kernels
@pytest.mark.parametrize('stride, L, shared', [(1, 11, ('skip', 'max', 'avg')), (2, 13, ('max', 'avg')),
                                               (2, 16, ('max',)), (1, 1, ('skip', 'max')), (1, 2, ('max', 'avg')),
                                               (1, 3, ('max', 'avg')), (1, 4, ('max', 'avg'))])
@pytest.mark.parametrize('split', [None, 3])
@pytest.mark.parametrize('keep', [True, False])
def test_native_state_block_equals_torch_kernels(stride, L, shared, split, keep, monkeypatch):
    if not keep:
        monkeypatch.setattr(state_block, 'KEEP_CONV_OUTPUT_MAX_BYTES', 0)
    block_inputs = _block_inputs(3, 6, L, 2, [3, 5, 7], stride == 2, shared, torch.float64, seed=L)
    _assert_native_matches_torch(monkeypatch, block_inputs, stride, shared, split)


@needs_kernels
@pytest.mark.parametrize('stride', [1, 2])
def test_native_state_block_over_many_chunks_and_threads_equals_torch_kernels(stride, monkeypatch):
    """Enough samples for several chunks per channel (kernels.c: 2048 values each) and for the threads: the
    pools run over whole chunks of rows at once and redo the rows' ends, which one small chunk cannot show."""
    shared = ('skip', 'max', 'avg') if stride == 1 else ('max', 'avg')
    block_inputs = _block_inputs(3, 500, 11, 2, [3, 5], stride == 2, shared, torch.float64, seed=7)
    _assert_native_matches_torch(monkeypatch, block_inputs, stride, shared, None)


@needs_kernels
@pytest.mark.parametrize('stride, L, shared', [(1, 11, ('skip', 'max', 'avg')), (2, 13, ('max',))])
@pytest.mark.parametrize('split', [None, 3])
def test_native_per_edge_state_block_skips_only_structural_zeros(stride, L, shared, split, monkeypatch):
    """per_edge (the supernet's layout: conv group g feeds edge g % E) gives the dense result."""
    E = 3
    x, weight, kmax, W, blocks, n_bn_relu, n_bn = _block_inputs(2, 6, L, E, [3, 5], stride == 2, shared,
                                                                torch.float64, seed=L)
    G = (n_bn_relu + n_bn) // 2
    layout = torch.ones_like(W)
    layout[:, :G] = (torch.arange(G) % E == torch.arange(E)[:, None]).to(W.dtype)
    W = W * layout

    def run(per_edge):
        xs, ws, Ws = (t.clone().requires_grad_() for t in (x, weight, W))
        out = state_block.state_block(xs, ws, kmax, Ws, blocks, stride, n_bn_relu, n_bn, shared, split=split,
                                      channels=2, per_edge=per_edge)
        probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        return (out.detach(), *torch.autograd.grad((out * probe).sum() + out.square().sum(), (xs, ws, Ws)))

    fast = run(True)
    _torch_only(monkeypatch)
    dense = run(True)  # the PyTorch kernels ignore per_edge: the dense computation
    for name, a, b in zip(('out', 'grad x', 'grad weight'), fast, dense):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-9), name
    assert torch.allclose(fast[3], dense[3] * layout, atol=1e-9, rtol=1e-9)  # the structural zeros: grad 0
    assert not torch.allclose(fast[3], dense[3], atol=1e-6)  # ... which the dense product does not give


@needs_kernels
def test_native_float32_supernet_matches_torch_kernels(monkeypatch):
    torch.manual_seed(0)
    net = SearchNetwork(4, 3, 3, nodes_per_layer=3, multiplier=2, input_length=40)
    x, y = torch.randn(8, 1, 40), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def grads():
        net.zero_grad()
        lt, lv = net.joint_losses(x[:4], y[:4], x[4:], y[4:])
        (lt + lv).backward()
        return [lt.detach(), lv.detach()] + [p.grad.clone() for p in net.parameters()]

    fast = grads()
    _torch_only(monkeypatch)
    ref = grads()
    for a, b in zip(fast, ref):
        assert torch.allclose(a, b, atol=2e-5, rtol=1e-4)


@needs_kernels
@pytest.mark.parametrize('k, stride, padding, L, N', [
    (7, 1, 3, 9, 4), (5, 2, 2, 10, 4), (1, 2, 0, 7, 4), (3, 1, 1, 2, 4),
    (7, 1, 3, 2, 4),  # the outer taps miss every sample
    (5, 1, 2, 33, 21),  # blocks of several samples (a copy per row and block)
    (7, 1, 3, 64, 300),  # enough work for the threads
])
def test_native_im2col_and_its_adjoint(k, stride, padding, L, N, monkeypatch):
    x = torch.randn(3, N, L, dtype=torch.float64)
    fast, fast_first = fused_ops._patches(x, k, stride, padding), fused_ops._patches(x, k, stride, padding, 2)
    g = torch.randn_like(fast)
    fast_adj = fused_ops._col2im(g, x.shape, k, stride, padding)
    _torch_only(monkeypatch)
    assert torch.equal(fast, fused_ops._patches(x, k, stride, padding))
    assert torch.equal(fast_first, fused_ops._patches(x, k, stride, padding, 2))
    assert torch.allclose(fast_adj, fused_ops._col2im(g, x.shape, k, stride, padding), atol=1e-12)
    # adjoint: <patches(x), g> == <x, col2im(g)>
    assert torch.allclose((fast * g).sum(), (x * fast_adj).sum(), atol=1e-9)


@needs_kernels
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('M, K, N', [(1, 1, 1), (7, 3, 45), (8, 28, 96), (13, 112, 515), (64, 5, 2048), (3, 0, 40)])
@pytest.mark.parametrize('transposed, accumulate', [(False, False), (True, True), (True, False)])
def test_native_thin_matmul_equals_torch(dtype, M, K, N, transposed, accumulate):
    g = torch.Generator().manual_seed(M * N + K)
    a = torch.randn(K, M, generator=g, dtype=dtype).t() if transposed else torch.randn(M, K, generator=g, dtype=dtype)
    wide_b = torch.randn(K, N + 9, generator=g, dtype=dtype)
    b = wide_b[:, 4:N + 4]  # rows with a stride of their own
    out = torch.randn(M + 2, N + 3, generator=g, dtype=dtype)
    expected = out.clone()
    expected[1:M + 1, :N] = (expected[1:M + 1, :N] if accumulate else 0) + a @ b
    fused_ops._mm_into(out[1:M + 1, :N], a, b, accumulate)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert torch.allclose(out, expected, atol=tol * max(K, 1), rtol=tol)  # and nothing outside the view written


@needs_kernels
@pytest.mark.parametrize('blocks, N', [(((0, 8, 7), (8, 20, 5), (20, 24, 3)), 2048),  # a full first block
                                       (((0, 12, 5), (12, 15, 3), (15, 16, 1)), 99),  # zeroed first, a tail
                                       (((0, 16, 3),), 40)])
def test_native_conv_blocks_equal_their_products_one_by_one(blocks, N):
    """One call per direction runs all kernel-size blocks of a fused conv (the input gradient adds them)."""
    C, kmax = 4, 7
    g = torch.Generator().manual_seed(N)
    rows = blocks[-1][1]
    wmat = torch.randn(rows, kmax * C + 3, generator=g, dtype=torch.float64)[:, :kmax * C]  # own row stride
    cols = torch.randn(kmax * C, N, generator=g, dtype=torch.float64)
    grad = torch.randn(rows, N, generator=g, dtype=torch.float64)
    out = torch.full((rows, N), float('nan'), dtype=torch.float64)
    gcols = torch.full((kmax * C, N), float('nan'), dtype=torch.float64)
    want_out, want_gcols = torch.zeros(rows, N, dtype=torch.float64), torch.zeros(kmax * C, N, dtype=torch.float64)
    for r0, r1, k in blocks:
        lo = (kmax // 2 - k // 2) * C
        want_out[r0:r1] = wmat[r0:r1, lo:lo + k * C] @ cols[lo:lo + k * C]
        want_gcols[lo:lo + k * C] += wmat[r0:r1, lo:lo + k * C].t() @ grad[r0:r1]
    K = native.kernels()
    K.call('conv_blocks_forward', torch.float64, wmat, wmat.stride(0), fused_ops._block_table(blocks), len(blocks),
           kmax, C, cols, N, N, out, N)
    K.call('conv_blocks_input_grad', torch.float64, wmat, wmat.stride(0),
           fused_ops._block_table(blocks, largest_first=True), len(blocks), kmax, C, grad, N, N, gcols, N)
    assert torch.allclose(out, want_out, atol=1e-12) and torch.allclose(gcols, want_gcols, atol=1e-12)


@needs_kernels
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('M, N, P', [(1, 1, 1), (5, 7, 33), (4, 8, 1024), (13, 30, 4099), (64, 112, 2048), (3, 2, 0)])
def test_native_weight_gradient_product_equals_torch(dtype, M, N, P):
    g = torch.Generator().manual_seed(M * N + P)
    a = torch.randn(M, P + 5, generator=g, dtype=dtype)[:, 2:P + 2]  # column slices: rows with their own stride
    b = torch.randn(N, P + 3, generator=g, dtype=dtype)[:, :P]
    out = torch.randn(M + 2, N + 3, generator=g, dtype=dtype)
    expected = out.clone()
    expected[1:M + 1, 2:N + 2] = a @ b.t()
    fused_ops._mm_nt_into(out[1:M + 1, 2:N + 2], a, b)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert torch.allclose(out, expected, atol=tol * max(P, 1), rtol=tol)  # and nothing outside the view written
    again = torch.empty(M, N, dtype=dtype)
    torch.set_num_threads(1)
    try:
        fused_ops._mm_nt_into(again, a, b)
    finally:
        torch.set_num_threads(THREADS)
    assert torch.equal(again, out[1:M + 1, 2:N + 2])  # the same sums whatever the thread count


def test_missing_compiler_falls_back_to_torch_kernels(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv('CC', str(tmp_path / 'no-such-cc'))
    monkeypatch.setenv('TINYML_NATIVE_CACHE', str(tmp_path / 'cache'))
    native.reset()
    try:
        with caplog.at_level(logging.WARNING, logger=native.__name__):
            assert native.kernels() is None
        assert 'slower PyTorch kernels' in caplog.text
        assert not list((tmp_path / 'cache').glob('*.so'))
        net = SearchNetwork(2, 3, 3, nodes_per_layer=2, multiplier=2)
        net(torch.randn(2, 1, 16)).sum().backward()  # still trains
    finally:
        monkeypatch.undo()
        native.reset()


def test_unwritable_cache_builds_in_the_temporary_folder(monkeypatch, tmp_path):
    blocked = tmp_path / 'cache-is-a-file'
    blocked.write_text('not a folder')  # mkdir below it fails, as on a read-only home folder
    monkeypatch.setenv('TINYML_NATIVE_CACHE', str(blocked / 'native'))
    monkeypatch.setattr(native.tempfile, 'gettempdir', lambda: str(tmp_path / 'tmp'))
    native.reset()
    try:
        kernels = native.kernels()
        if native.find_compiler() is None:
            pytest.skip('no C compiler')
        assert kernels is not None and kernels.path.parent == native.fallback_cache_dir()
        assert str(kernels.path).startswith(str(tmp_path / 'tmp'))
    finally:
        monkeypatch.undo()
        native.reset()


def _fake_compiler(tmp_path, script: str) -> str:
    path = tmp_path / 'cc'
    path.write_text('#!/bin/sh\n' + script)
    path.chmod(0o755)
    return str(path)


def test_a_failed_build_is_reported_and_leaves_nothing_behind(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv('CC', _fake_compiler(tmp_path, 'echo "cc: internal error 42" >&2\nexit 1\n'))
    monkeypatch.setenv('TINYML_NATIVE_CACHE', str(tmp_path / 'cache'))
    native.reset()
    try:
        with caplog.at_level(logging.WARNING, logger=native.__name__):
            assert native.kernels() is None
        assert 'internal error 42' in caplog.text and 'slower PyTorch kernels' in caplog.text
        assert list((tmp_path / 'cache').iterdir()) == []  # no library, no half-built objects
    finally:
        monkeypatch.undo()
        native.reset()


@needs_kernels
def test_a_compiler_without_openmp_still_builds_both_precisions(monkeypatch, tmp_path):
    real = native.find_compiler()
    calls = tmp_path / 'calls'
    # refuses -fopenmp, as compilers without OpenMP support do; passes everything else to the real one
    script = f'echo "$@" >> {calls}\ncase "$*" in *-fopenmp\ *|*-fopenmp) exit 1;; esac\nexec {real} "$@"\n'
    monkeypatch.setenv('CC', _fake_compiler(tmp_path, script))
    monkeypatch.setenv('TINYML_NATIVE_CACHE', str(tmp_path / 'cache'))
    native.reset()
    try:
        kernels = native.kernels()
        assert kernels is not None
        for dtype in (torch.float32, torch.float64):  # both precisions' objects linked into one library
            x, cols = torch.arange(6, dtype=dtype).reshape(1, 2, 3), torch.empty(3, 2 * 3, dtype=dtype)
            kernels.call('im2col', dtype, x, 1, 2, 2, 3, 3, 1, 1, 3, cols)
            assert torch.equal(cols[1], x.reshape(-1))  # the middle tap is the input itself
        built = [line for line in calls.read_text().splitlines() if '-fopenmp ' not in line + ' ']
        assert sum('-DKERNELS_ONLY=' in line for line in built) == 2
    finally:
        monkeypatch.undo()
        native.reset()


def test_native_can_be_disabled_by_environment(monkeypatch):
    monkeypatch.setenv('TINYML_NAS_NATIVE', '0')
    native.reset()
    try:
        assert native.kernels() is None
    finally:
        monkeypatch.undo()
        native.reset()


@needs_kernels
def test_native_supernet_without_conv_candidates_equals_naive():
    torch.manual_seed(0)
    net = SearchNetwork(2, 3, 3, nodes_per_layer=2, multiplier=2,
                        primitives=['none', 'max_pool_3x1', 'avg_pool_3x1', 'skip_connect']).double()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    x = torch.randn(4, 1, 15, dtype=torch.float64)
    assert torch.allclose(net(x), net(x, naive=True), atol=1e-10)
    params = net.arch_parameters() + net.weights()
    ga = torch.autograd.grad(net(x).square().sum(), params, allow_unused=True)
    gb = torch.autograd.grad(net(x, naive=True).square().sum(), params, allow_unused=True)
    for a, b in zip(ga, gb):
        assert (a is None) == (b is None)
        assert a is None or torch.allclose(a, b, atol=1e-9)


@needs_kernels
@pytest.mark.parametrize('per_edge', [0, 1])
def test_native_alpha_gradient_does_not_depend_on_thread_count(per_edge):
    """Chunk partial sums are added in a fixed order, so resumed searches stay bit-exact."""
    K = native.kernels()
    g = torch.Generator().manual_seed(0)
    C, N, L, E, G, split = 2, 40, 300, 3, 9, 20
    x, xh = torch.randn(C, N, L, generator=g), torch.randn(G * C, N * L, generator=g)
    W, gc = torch.rand(E, G + 2, generator=g), torch.randn(E, C * N * L, generator=g)
    codes = torch.tensor([0, 1])
    threads, results = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            gy, sums = torch.empty(G * C, N * L), torch.zeros(4 * G * C, dtype=torch.float64)
            grad_W, gx = torch.zeros(E, G + 2, dtype=torch.float64), torch.zeros_like(x)
            K.call('mix_backward', x.dtype, gc, xh, x, W, E, G + 2, 6, G, C, N, L, L, 1, codes, 2, per_edge, 2, split,
                   split,
                   gy, sums, grad_W, gx)
            results.append((gy, sums, grad_W, gx))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@needs_kernels
@pytest.mark.parametrize('joint', [False, True])
@pytest.mark.parametrize('frozen_part', [None, 'weights', 'alphas'])
@pytest.mark.parametrize('keep_bytes', [2 ** 20, 0])
def test_native_cell_node_equals_the_node_per_state_path(joint, frozen_part, keep_bytes, monkeypatch):
    """One autograd node per cell (cell_block.py) gives the losses and gradients of one node per state,
    with the conv outputs kept or (keep_bytes 0) recomputed in the backward."""
    monkeypatch.setattr(state_block, 'KEEP_CONV_OUTPUT_MAX_BYTES', keep_bytes)
    torch.manual_seed(0)
    net = SearchNetwork(4, 3, 5, nodes_per_layer=3, multiplier=2, input_length=40).double()
    x, y = torch.randn(8, 1, 40, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    frozen = {'weights': net.weights(), 'alphas': net.arch_parameters(), None: []}[frozen_part]
    for p in frozen:
        p.requires_grad_(False)
    wanted = [p for p in net.parameters() if p.requires_grad]
    cells = []
    monkeypatch.setattr(cell_block._NativeCell, 'apply', _recording(cell_block._NativeCell.apply, cells))

    def run():
        losses = net.joint_losses(x[:4], y[:4], x[4:], y[4:]) if joint else (net.loss(x, y),)
        return [loss.detach() for loss in losses], torch.autograd.grad(sum(losses), wanted)

    one_node = run()
    assert len(cells) == len(net.cells)  # every cell ran as one node
    monkeypatch.setattr(model_search_cnn, 'native_cell', lambda *args: None)
    per_state = run()
    assert torch.allclose(torch.stack(one_node[0]), torch.stack(per_state[0]), rtol=1e-12)
    for a, b in zip(one_node[1], per_state[1]):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def _recording(apply, calls):
    def wrapped(*args):
        calls.append(args[0])
        return apply(*args)
    return wrapped


@needs_kernels
def test_native_cell_refuses_a_second_backward_clearly():
    net = SearchNetwork(2, 3, 3, nodes_per_layer=2, multiplier=2)
    loss = net.loss(torch.randn(4, 1, 16), torch.tensor([0, 1, 2, 0]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match='retain_graph is not supported by the compiled cell'):
        loss.backward()


def _cell_nodes(loss):
    """The autograd nodes of the compiled cells in the graph of ``loss``."""
    seen, todo, cells = set(), [loss.grad_fn], []
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if getattr(node, 'kept_patches', None) is not None:
            cells.append(node)
        todo.extend(next_fn for next_fn, _ in node.next_functions)
    return cells


@needs_kernels
def test_native_cell_keeps_patches_only_for_weight_gradients():
    torch.manual_seed(0)
    net = SearchNetwork(8, 3, 3, nodes_per_layer=2, multiplier=2, input_length=32)
    x, y = torch.randn(4, 1, 32), torch.tensor([0, 1, 2, 0])
    for weights_learn in (True, False):
        for p in net.weights():
            p.requires_grad_(weights_learn)
        cells = _cell_nodes(net.loss(x, y))
        assert len(cells) == 3
        kept = [k for cell in cells for k in cell.kept_patches]  # per state with convs
        assert kept and all(k == weights_learn for k in kept)


@needs_kernels
@pytest.mark.parametrize('split', [None, 3])
def test_native_weight_gradient_without_kept_patches_equals_with_them(split):
    # the patches are kept only for weight gradients; asked for anyway, the backward rebuilds them
    x, weight, kmax, W, blocks, n_bn_relu, n_bn = _block_inputs(3, 6, 13, 2, [3, 5, 7], True, ('max',),
                                                              torch.float64, seed=4)
    conf = state_block.BlockConf(blocks, kmax, 2, n_bn_relu, n_bn, ('max',), 3, None, False)
    gc = torch.linspace(-1, 1, W.shape[0] * 3 * 6 * 7, dtype=torch.float64).view(W.shape[0], -1)
    grads = []
    for keep_patches in (True, False):
        out, saved = state_block.native_block_forward(x, weight, W, conf, split, keep_patches=keep_patches)
        assert (saved[4] is None) != keep_patches
        state_block.native_block_forward(x.flip(2), weight, W, conf, split, keep_patches=False)  # new scratch
        grads.append(state_block.native_block_backward(saved, conf, split, gc, True, True, True))
    for a, b in zip(*grads):
        assert torch.equal(a, b)
