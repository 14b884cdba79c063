"""Post-training quantization and quantization-aware training to TINPU-style int8.

Both start from the deployment graph (``fold_graph``: BN folded, ReLU fused),
calibrate per-tensor power-of-two scales on float activations (max |value|),
and convert with ``_convert``. PTQ then corrects every conv / linear bias for
the mean error the quantized layers before it leave (empirical bias
correction); QAT instead fine-tunes the folded float weights with fake
quantization (straight-through estimator) on the same scales.
"""
from __future__ import annotations

import copy
import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .graph import Graph, fold_graph, trace_graph
from .graph_net import GraphNet, fake_quant, weight_frac
from .int8 import INT8_MAX, INT8_MIN, QNode, QuantizedModel

FRAC_LIMITS = (-16, 24)
BIAS_LIMIT = 2 ** 30   # |bias| bound; keeps acc + rounding inside int32 for our layer sizes
CORRECTION_MAX_BYTES = 256 * 2 ** 20   # live outputs that the bias correction may hold at once
MIN_CORRECTION_SAMPLES = 64   # the memory bound never takes the correction below this

log = logging.getLogger(__name__)


def _frac(max_abs: float) -> int:
    lo, hi = FRAC_LIMITS
    return int(min(hi, max(lo, weight_frac(float(max_abs)) if max_abs > 1e-12 else hi)))


def _input_shape(model: nn.Module, x: torch.Tensor, input_shape) -> tuple[int, int]:
    if input_shape is not None:
        return (int(input_shape[0]), int(input_shape[1]))
    if x.dim() != 3:
        raise ValueError(f"calibration data must be (N, C, L); got shape {tuple(x.shape)}")
    return (int(x.shape[1]), int(x.shape[2]))


def deployment_graph(model: nn.Module, input_shape: tuple[int, int]) -> Graph:
    """Trace and fold ``model`` (eval mode) for inference ``(N, C, L)``."""
    return fold_graph(trace_graph(model, input_shape))


def _convert(net: GraphNet, maxes: dict[str, float], bits: int = 8) -> QuantizedModel:
    if bits != 8:
        raise ValueError(f"only 8-bit weights/activations are implemented; got {bits}")
    frac: dict[str, int] = {}
    qnodes = []
    for n in net.graph.nodes:
        a = dict(n.attrs)
        kw: dict = {}
        if n.op == "input":
            f = _frac(maxes[n.name])
        elif n.op in ("conv", "linear"):
            m = net.layers[net._keys[n.name]]
            w = m.weight.detach().double().numpy()
            b = m.bias.detach().double().numpy()
            fx, fw = frac[n.inputs[0]], weight_frac(float(np.abs(w).max()))
            fw = min(max(fw, FRAC_LIMITS[0]), FRAC_LIMITS[1])
            f = min(_frac(maxes[n.name]), fx + fw)
            wq = np.clip(np.floor(w * 2.0 ** fw + 0.5), INT8_MIN, INT8_MAX).astype(np.int8)
            bq = np.clip(np.floor(b * 2.0 ** (fx + fw) + 0.5), -BIAS_LIMIT, BIAS_LIMIT).astype(np.int32)
            kw = dict(shift=fx + fw - f, weight_frac=fw, weight=wq, bias=bq)
        elif n.op == "cat":
            fs = [frac[i] for i in n.inputs]
            f = min(fs)
            kw = dict(in_shifts=tuple(x - f for x in fs))
        elif n.op == "add":
            fs = [frac[i] for i in n.inputs]
            top = max(fs)
            f = min(_frac(maxes[n.name]), top)
            kw = dict(in_shifts=tuple(top - x for x in fs), shift=top - f)
        elif n.op in ("relu", "maxpool", "avgpool", "gap", "flatten"):
            f = frac[n.inputs[0]]
        else:
            raise ValueError(f"{n.name}: op {n.op!r} cannot be quantized")
        frac[n.name] = f
        qnodes.append(QNode(n.name, n.op, n.inputs, n.shape, a, frac=f, **kw))
    g = net.graph
    return QuantizedModel(tuple(qnodes), g.input_name, g.output_name, g.input_shape)


def _pre_activation(net: GraphNet, node, x: torch.Tensor, quantized: bool) -> torch.Tensor:
    """``node``'s conv / linear without bias and ReLU on input ``x``; int8-rounded weights if ``quantized``."""
    m = net.layers[net._keys[node.name]]
    w = fake_quant(m.weight, weight_frac(m.weight)) if quantized else m.weight
    if node.op == "conv":
        return F.conv1d(x, w, None, m.stride, m.padding, groups=m.groups)
    return F.linear(x, w)


@torch.no_grad()
def correct_biases(net: GraphNet, x: torch.Tensor, act_frac: dict[str, int], batch_size: int = 256) -> None:
    """Empirical bias correction, in place: layer by layer in graph order, shift each
    conv / linear bias so that its output, fed by the int8 layers before it, has the
    float model's mean per channel on ``x``.

    Power-of-two scales leave adds and concats with 1-2 bit requantisations whose
    ties round half up, a systematic error that no later rounding cancels and that
    the global average pool keeps whole (an FFT model measured 0.868 float, 0.787
    int8 before this, 0.862 after).

    One pass over the graph: the int8 and the float outputs of every chunk of ``x``
    advance node by node, each held until its last reader has run, and a layer's
    bias is corrected before its own outputs are computed (running the whole net
    again for every layer cost 20 s of a 25 s compile on 1500-sample inputs). It
    holds the live outputs of all of ``x`` at once instead of all outputs of one
    chunk: :func:`quantize_ptq` bounds how many samples it passes
    (:func:`correction_sample_count`).
    """
    saved = net.act_frac
    net.eval()
    reference = copy.deepcopy(net)   # the float model, biases as they were
    reference.act_frac = None
    net.act_frac = act_frac
    chunks = x.split(batch_size)   # chunks: the arithmetic of each is that of a plain forward of it
    quantized = [{} for _ in chunks]
    floating = [{} for _ in chunks]
    last_reader = {name: i for i, node in enumerate(net.graph.nodes) for name in node.inputs}
    try:
        for i, node in enumerate(net.graph.nodes):
            if node.op in ("conv", "linear"):
                errors = []
                for q_env, f_env in zip(quantized, floating):
                    error = (_pre_activation(net, node, q_env[node.inputs[0]], True)
                             - _pre_activation(reference, node, f_env[node.inputs[0]], False))
                    # (N, C, L) conv or (N, F) linear: a sum per output channel
                    errors.append(error.transpose(0, 1).reshape(error.shape[1], -1).sum(dim=1) / error[0, 0].numel())
                net.layers[net._keys[node.name]].bias -= torch.stack(errors).sum(dim=0) / len(x)
            for chunk, q_env, f_env in zip(chunks, quantized, floating):
                q_env[node.name] = net.node_output(node, q_env, chunk)
                f_env[node.name] = reference.node_output(node, f_env, chunk)
                for name in node.inputs:
                    if last_reader[name] == i:
                        del q_env[name], f_env[name]
    finally:
        net.act_frac = saved


def live_bytes_per_sample(graph: Graph) -> int:
    """The most bytes per sample that :func:`correct_biases` holds at once: the float32 outputs,
    int8-simulated and float, of every node from its computation until its last reader has run."""
    last_reader = {name: i for i, node in enumerate(graph.nodes) for name in node.inputs}
    live: dict[str, int] = {}
    held = peak = 0
    for i, node in enumerate(graph.nodes):
        live[node.name] = int(np.prod(node.shape))
        held += live[node.name]
        peak = max(peak, held)
        for name in dict.fromkeys(node.inputs):
            if last_reader[name] == i:
                held -= live.pop(name)
    return 2 * 4 * peak


def correction_sample_count(graph: Graph, available: int, wanted: int,
                            max_bytes: int = CORRECTION_MAX_BYTES) -> int:
    """How many samples the bias correction uses: ``wanted`` of the ``available`` ones, fewer when
    their live outputs would exceed ``max_bytes`` (never fewer than ``MIN_CORRECTION_SAMPLES``)."""
    by_memory = max(MIN_CORRECTION_SAMPLES, max_bytes // max(1, live_bytes_per_sample(graph)))
    return max(1, min(available, wanted, by_memory))


def quantize_ptq(model: nn.Module, calibration_x: torch.Tensor, *, input_shape: tuple[int, int] | None = None,
                 weight_bits: int = 8, activation_bits: int = 8, bias_correction: bool = True,
                 correction_samples: int = 2048, correction_max_bytes: int = CORRECTION_MAX_BYTES
                 ) -> QuantizedModel:
    """Post-training int8 quantization; ``calibration_x`` is float ``(N, C, L)``.

    Scales come from max |value| on all of ``calibration_x``; with
    ``bias_correction`` the biases are then corrected (:func:`correct_biases`) on
    its first ``correction_samples`` samples, keeping those scales. Long
    multichannel inputs use fewer samples, so that the outputs the correction
    holds stay under ``correction_max_bytes`` (:func:`correction_sample_count`;
    each sample then gives the per-channel means many positions).
    """
    x = torch.as_tensor(calibration_x, dtype=torch.float32)
    if len(x) == 0:
        raise ValueError("calibration data is empty")
    if weight_bits != 8 or activation_bits != 8:
        raise ValueError("only 8-bit weights and activations are implemented")
    net = GraphNet(deployment_graph(model, _input_shape(model, x, input_shape)))
    maxes = net.calibrate(x)
    quantized = _convert(net, maxes)
    if not bias_correction:
        return quantized
    count = correction_sample_count(net.graph, len(x), correction_samples, correction_max_bytes)
    if count < min(len(x), correction_samples):
        log.info("bias correction on %d of %d calibration samples: more would hold over %d MB of layer outputs",
                 count, min(len(x), correction_samples), correction_max_bytes // 2 ** 20)
    correct_biases(net, x[:count], {n.name: n.frac for n in quantized.nodes})
    return _convert(net, maxes)


def quantize_qat(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, epochs: int = 3,
                 lr: float = 1e-3, *, batch_size: int = 64, input_shape: tuple[int, int] | None = None,
                 seed: int = 0, weight_bits: int = 8, activation_bits: int = 8) -> QuantizedModel:
    """Quantization-aware fine-tune of the folded model, then convert.

    BN stays folded (frozen statistics) during the fine-tune; activation scales
    come from a float calibration on ``train_x`` and are re-calibrated after.
    """
    if weight_bits != 8 or activation_bits != 8:
        raise ValueError("only 8-bit weights and activations are implemented")
    x = torch.as_tensor(train_x, dtype=torch.float32)
    y = torch.as_tensor(train_y, dtype=torch.long)
    net = GraphNet(deployment_graph(model, _input_shape(model, x, input_shape)))
    start = _convert(net, net.calibrate(x))
    net.act_frac = {n.name: n.frac for n in start.nodes}
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(int(epochs)):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.act_frac = None
    net.eval()
    return _convert(net, net.calibrate(x))
