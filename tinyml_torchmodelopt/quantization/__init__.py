"""TINPU-style int8 quantization: power-of-two scales, BN folding, integer reference.

``quantize_ptq`` / ``quantize_qat`` turn a float ``nn.Module`` (sequential or a
DAG of standard 1-D layers joined by ``torch.cat`` / ``+``, traced with
``torch.fx``) into a ``QuantizedModel`` whose ``run_int8`` is the bit-exact
integer reference for generated C code. Layout ``(N, C, L)``.
"""
from .graph import Graph, Node, fold_graph, trace_graph
from .graph_net import GraphNet
from .int8 import QNode, QuantizedModel, rshift_round
from .quantize import deployment_graph, quantize_ptq, quantize_qat

__all__ = ["Graph", "Node", "trace_graph", "fold_graph", "GraphNet", "QNode", "QuantizedModel",
           "rshift_round", "deployment_graph", "quantize_ptq", "quantize_qat"]
