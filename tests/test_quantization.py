"""TINPU-style int8 quantization: folding, PTQ/QAT, the integer reference, int8 ONNX."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from tinyml_torchmodelopt.onnx_export import export_int8_onnx, export_onnx, run_int8_onnx
from tinyml_torchmodelopt.quantization import (GraphNet, QuantizedModel, deployment_graph, fold_graph, quantize_ptq,
                                               quantize_qat, rshift_round, trace_graph)
from tinyml_torchmodelopt.quantization.graph_net import fake_quant

from branchy import Branchy, randomize_bn

torch.set_num_threads(1)


def toy_data(n=240, length=64, seed=0):
    """Three classes of noisy sines (frequencies 2, 5, 9 cycles per window), (N, 1, L)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    t = np.arange(length) / length
    phase = rng.uniform(0, 2 * np.pi, n)
    x = np.sin(2 * np.pi * np.array([2, 5, 9])[y, None] * t + phase[:, None]) * rng.uniform(0.5, 2.0, (n, 1))
    x = x + 0.3 * rng.standard_normal((n, length))
    return torch.tensor(x[:, None, :], dtype=torch.float32), torch.tensor(y)


def small_cnn():
    return nn.Sequential(OrderedDict([
        ("input_bn", nn.BatchNorm1d(1)), ("conv1", nn.Conv1d(1, 8, 5, 2, 2, bias=False)), ("bn1", nn.BatchNorm1d(8)),
        ("relu1", nn.ReLU()), ("pool2", nn.MaxPool1d(2)), ("conv3", nn.Conv1d(8, 16, 3, 1, 1, bias=False)),
        ("bn3", nn.BatchNorm1d(16)), ("relu3", nn.ReLU()), ("gap4", nn.AdaptiveAvgPool1d(1)),
        ("flatten4", nn.Flatten()), ("fc", nn.Linear(16, 3))]))


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x, y = toy_data()
    model = small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(40):
        model.train()
        for i in range(0, len(x), 60):
            loss = nn.functional.cross_entropy(model(x[i:i + 60]), y[i:i + 60])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), x, y


def test_bn_folding_equals_float():
    for model, shape in ((randomize_bn(Branchy(cin=2)), (2, 32)), (randomize_bn(small_cnn()), (1, 64))):
        folded = fold_graph(trace_graph(model, shape))
        assert not [n for n in folded.nodes if n.op in ("bn", "identity")]
        x = torch.randn(16, *shape)
        torch.testing.assert_close(GraphNet(folded)(x), model(x), atol=1e-5, rtol=1e-5)


def test_graph_net_bn_runs_where_batch_norm_rejects_a_zero_eps(monkeypatch):
    # some PyTorch releases (2.11) reject batch_norm(eps=0), which GraphNet's affine BN leaves used
    real = torch.nn.functional.batch_norm

    def strict(*args, **kwargs):
        eps = kwargs.get("eps", args[7] if len(args) > 7 else 1e-5)
        if eps <= 0:
            raise ValueError(f"batch_norm eps must be positive, but got {eps}")
        return real(*args, **kwargs)
    monkeypatch.setattr(torch.nn.functional, "batch_norm", strict)
    graph = trace_graph(randomize_bn(small_cnn()), (1, 64))
    bn = [n for n in graph.nodes if n.op == "bn"]
    net = GraphNet(graph).eval()
    x = torch.randn(8, 1, 64)
    with torch.no_grad():
        out = net.outputs(x)
    for n in bn:
        scale = torch.as_tensor(n.params["scale"], dtype=torch.float32)[:, None]
        shift = torch.as_tensor(n.params["shift"], dtype=torch.float32)[:, None]
        torch.testing.assert_close(out[n.name], out[n.inputs[0]] * scale + shift)


def test_input_bn_stays_exact_with_zero_padding():
    # Folding the input BN into a padded first conv would be wrong at the edges; we keep an affine op.
    model = randomize_bn(small_cnn())
    folded = fold_graph(trace_graph(model, (1, 64)))
    first = folded.nodes[1]
    assert first.op == "conv" and first.attrs.get("from_bn") and first.attrs["kernel"] == 1


def test_relu_is_fused_and_shared_tensors_are_not():
    folded = fold_graph(trace_graph(randomize_bn(Branchy(cin=2)), (2, 32)))
    ops = {n.name: n for n in folded.nodes}
    assert ops["stem.0"].attrs["relu"] is False          # stem output also feeds the max pool and the add
    assert any(n.op == "relu" for n in folded.nodes)      # so the ReLU of op_a stays a separate op


def test_ptq_predictions_close_to_float(trained):
    model, x, y = trained
    float_pred = model(x).argmax(1).numpy()
    assert (float_pred == y.numpy()).mean() > 0.9
    q = quantize_ptq(model, x[:120])
    logits = q.predict(x.numpy())
    assert logits.dtype == np.float32
    assert (logits.argmax(1) == float_pred).mean() >= 0.95
    assert np.abs(logits - model(x).detach().numpy()).max() < 0.5 * np.abs(model(x).detach().numpy()).max()
    # batches of any size give the same integers as one run over everything
    whole = q.run_int8(q.quantize_input(x.numpy()))
    np.testing.assert_array_equal(q.predict(x.numpy(), batch_size=7), logits)
    np.testing.assert_array_equal(logits, (whole * 2.0 ** -q.output_frac).astype(np.float32))


def test_qat_fine_tune_keeps_accuracy(trained):
    model, x, y = trained
    q = quantize_qat(model, x, y, epochs=2, lr=1e-3, batch_size=60)
    assert isinstance(q, QuantizedModel)
    assert (q.predict(x.numpy()).argmax(1) == y.numpy()).mean() > 0.85
    assert model.training is False and model(x[:2]).shape == (2, 3)   # the float model is untouched


def test_integer_semantics():
    v = np.array([-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5], dtype=np.int64)
    # round half up after an arithmetic shift: -2.5 -> -2, -1.5 -> -1, -0.5 -> 0, 0.5 -> 1
    assert rshift_round(v, 1).tolist() == [-2, -2, -1, -1, 0, 0, 1, 1, 2, 2, 3]
    model = nn.Sequential(OrderedDict([("pool", nn.AvgPool1d(3, 1, 1, count_include_pad=False)),
                                       ("gap", nn.AdaptiveAvgPool1d(1)), ("flat", nn.Flatten()),
                                       ("fc", nn.Linear(1, 1))]))
    q = quantize_ptq(model, torch.randn(4, 1, 5))
    xi = np.array([[[1, 2, 4, -3, -4]]], dtype=np.int8)
    outs = q.run_int8(xi, all_outputs=True)
    # windows: [1,2]/2=1.5->2, [1,2,4]/3=2.33->2, [2,4,-3]/3=1, [4,-3,-4]/3=-1, [-3,-4]/2=-3.5->-3
    assert outs["pool"].tolist() == [[[2, 2, 1, -1, -3]]]
    assert outs["gap"].tolist() == [[[0]]]                # 1/5 = 0.2 -> 0
    with pytest.raises(ValueError):
        q.run_int8(xi.astype(np.int16))


def test_fake_quant_is_the_integer_reference():
    # ties round half up, as rshift_round does (torch.round would give 0, 2, -0, -2, 2)
    assert fake_quant(torch.tensor([0.5, 1.5, -0.5, -1.5, 2.5]), 0).tolist() == [1, 2, 0, -1, 3]
    torch.manual_seed(0)
    model = randomize_bn(Branchy(cin=2)).eval()
    x = torch.randn(64, 2, 32)
    q = quantize_ptq(model, x, bias_correction=False)
    net = GraphNet(deployment_graph(model, (2, 32)))
    net.act_frac = {n.name: n.frac for n in q.nodes}
    with torch.no_grad():
        fake = net.outputs(x)
    ints = q.run_int8(q.quantize_input(x.numpy()), all_outputs=True)
    for n in q.nodes:   # QAT trains exactly what the device computes, node by node
        np.testing.assert_array_equal(fake[n.name].numpy(), ints[n.name].astype(np.float32) * 2.0 ** -n.frac,
                                      err_msg=n.name)


@pytest.mark.parametrize("seed", [0, 1])
def test_ptq_bias_correction_removes_the_mean_error(seed):
    torch.manual_seed(seed)
    model = randomize_bn(Branchy(cin=2)).eval()
    x, x_test = torch.randn(512, 2, 32), torch.randn(512, 2, 32)
    reference = model(x_test).detach().numpy()
    mean_error = {}
    for correct in (False, True):
        q = quantize_ptq(model, x, bias_correction=correct)
        mean_error[correct] = np.abs((q.predict(x_test.numpy()) - reference).mean(axis=0)).mean()
    assert mean_error[True] < 0.5 * mean_error[False]


def test_bias_correction_in_one_pass_equals_rerunning_the_net_per_layer():
    import copy
    from tinyml_torchmodelopt.quantization.quantize import _pre_activation, correct_biases
    torch.manual_seed(0)
    model = randomize_bn(Branchy(cin=2)).eval()
    x = torch.randn(100, 2, 32)
    act_frac = {n.name: n.frac for n in quantize_ptq(model, x, bias_correction=False).nodes}
    net = GraphNet(deployment_graph(model, (2, 32))).eval()
    fast, slow, reference = copy.deepcopy(net), copy.deepcopy(net), copy.deepcopy(net)
    correct_biases(fast, x, act_frac, batch_size=32)  # 4 chunks, the last one short
    slow.act_frac = act_frac
    with torch.no_grad():  # the definition: each layer's int8 input from a whole run of the net corrected so far
        for node in (n for n in slow.graph.nodes if n.op in ("conv", "linear")):
            errors = []
            for chunk in x.split(32):
                error = (_pre_activation(slow, node, slow.outputs(chunk)[node.inputs[0]], True)
                         - _pre_activation(reference, node, reference.outputs(chunk)[node.inputs[0]], False))
                errors.append(error.transpose(0, 1).reshape(error.shape[1], -1).sum(dim=1) / error[0, 0].numel())
            slow.layers[slow._keys[node.name]].bias -= torch.stack(errors).sum(dim=0) / len(x)
    corrected = 0
    for key, layer in fast.layers.items():
        if isinstance(layer, (nn.Conv1d, nn.Linear)):
            assert torch.equal(layer.bias, slow.layers[key].bias), key
            corrected += not torch.equal(layer.bias, net.layers[key].bias)
    assert corrected >= 3 and fast.act_frac is None  # biases moved; the net is float again afterwards


def test_live_bytes_per_sample_is_the_largest_set_of_outputs_alive_at_once():
    from tinyml_torchmodelopt.quantization.graph import Graph, Node
    from tinyml_torchmodelopt.quantization.quantize import live_bytes_per_sample
    nodes = (Node("x", "input", (), (2, 32)), Node("a", "conv", ("x",), (4, 32)),
             Node("b", "conv", ("a",), (4, 32)), Node("c", "add", ("a", "b"), (4, 32)),
             Node("g", "gap", ("c",), (4,)))
    # x alone 64; a 192, then x is done: 128; b 256; c 384, then a and b are done; g 132
    assert live_bytes_per_sample(Graph(nodes, "x", "g", (2, 32))) == 2 * 4 * 384  # int8-simulated + float


def test_bias_correction_takes_fewer_samples_when_their_outputs_exceed_the_budget():
    from tinyml_torchmodelopt.quantization.quantize import (MIN_CORRECTION_SAMPLES, correction_sample_count,
                                                             live_bytes_per_sample)
    torch.manual_seed(0)
    model = randomize_bn(Branchy(cin=2)).eval()
    x = torch.randn(300, 2, 32)
    graph = deployment_graph(model, (2, 32))
    per_sample = live_bytes_per_sample(graph)
    assert correction_sample_count(graph, 300, 2048, 100 * per_sample) == 100
    assert correction_sample_count(graph, 300, 2048, 1) == MIN_CORRECTION_SAMPLES
    assert correction_sample_count(graph, 30, 2048, 1) == 30
    assert correction_sample_count(graph, 300, 2048, 1000 * per_sample) == 300

    def biases(q):
        return [n.bias for n in q.nodes if n.op in ("conv", "linear")]
    bounded = biases(quantize_ptq(model, x, correction_max_bytes=100 * per_sample))
    first_100 = biases(quantize_ptq(model, x, correction_samples=100))
    every_sample = biases(quantize_ptq(model, x))
    assert all(np.array_equal(a, b) for a, b in zip(bounded, first_100))  # scales still from all 300
    assert not all(np.array_equal(a, b) for a, b in zip(bounded, every_sample))


def test_int8_outputs_and_file_round_trip(tmp_path):
    model = randomize_bn(Branchy(cin=2))
    x = torch.randn(20, 2, 32)
    q = quantize_ptq(model, x)
    xi = q.quantize_input(x.numpy())
    out = q.run_int8(xi)
    assert out.dtype == np.int8 and out.shape == (20, 3)
    loaded = QuantizedModel.load(q.save(tmp_path / "q.npz"))
    assert np.array_equal(loaded.run_int8(xi), out) and loaded.input_frac == q.input_frac


@pytest.mark.parametrize("which", ["sequential", "multi-branch"])
def test_onnx_float_and_int8_agree_with_references(tmp_path, which, trained):
    if which == "sequential":
        model, x, _ = trained
        x = x[:32]
    else:
        model, x = randomize_bn(Branchy(cin=2)), torch.randn(32, 2, 48)
    assert export_onnx(model, x[:4], tmp_path / "f.onnx") < 1e-4
    q = quantize_ptq(model, x)
    export_int8_onnx(q, tmp_path / "q.onnx")
    xi = q.quantize_input(x.numpy())
    assert np.array_equal(run_int8_onnx(tmp_path / "q.onnx", xi), q.run_int8(xi))


def test_unsupported_layer_is_a_value_error():
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 14, 2))
    with pytest.raises(ValueError, match="GELU"):
        quantize_ptq(model, torch.randn(4, 1, 16))
