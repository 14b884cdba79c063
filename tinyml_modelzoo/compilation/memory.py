"""Activation memory plan: one static arena, buffers reused by liveness.

Every node output that is not a view (``flatten``), the network input (the
caller's buffer) or the network output (the caller's buffer) gets an arena slice.
A slice lives from the step that writes it to the last step that reads it;
slices whose lifetimes intersect never overlap (so no kernel writes over its own
input). Placement is greedy by size, lowest free offset first.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyml_torchmodelopt.quantization import QuantizedModel

VIEW_OPS = ("flatten",)


@dataclass(frozen=True)
class Buffer:
    name: str          # node that writes it
    size: int          # bytes (int8 elements)
    first: int         # step index of the writer
    last: int          # last step that reads it
    offset: int        # arena offset; -1 for the caller's input/output buffers
    where: str         # "arena" | "input" | "output"


@dataclass(frozen=True)
class MemoryPlan:
    buffers: dict      # node name -> Buffer (views map to their source's buffer)
    arena_bytes: int
    activation_bytes: int   # sum of all arena slices (what no reuse would cost)

    def of(self, name: str) -> Buffer:
        return self.buffers[name]


def root(qm: QuantizedModel, name: str) -> str:
    node = qm.node(name)
    while node.op in VIEW_OPS:
        node = qm.node(node.inputs[0])
    return node.name


def plan_memory(qm: QuantizedModel, sizes: dict[str, int] | None = None) -> MemoryPlan:
    """Plan the arena for ``qm``; ``sizes`` overrides a node's buffer size (channel padding)."""
    sizes = dict(sizes or {})
    steps = {n.name: i for i, n in enumerate(qm.nodes)}
    out_root = root(qm, qm.output_name)
    last: dict[str, int] = {}
    for i, n in enumerate(qm.nodes):
        for src in n.inputs:
            r = root(qm, src)
            last[r] = max(last.get(r, steps[r]), i)
    pending = []
    fixed: dict[str, Buffer] = {}
    for n in qm.nodes:
        if n.op in VIEW_OPS:
            continue
        size = sizes.get(n.name, _elements(n.shape))
        if n.op == "input":
            fixed[n.name] = Buffer(n.name, size, 0, last.get(n.name, 0), -1, "input")
        elif n.name == out_root:
            fixed[n.name] = Buffer(n.name, size, steps[n.name], len(qm.nodes), -1, "output")
        else:
            pending.append((n.name, size, steps[n.name], last.get(n.name, steps[n.name])))
    placed: list[Buffer] = []
    for name, size, first, end in sorted(pending, key=lambda p: (-p[1], p[2])):
        clashes = sorted((b.offset, b.offset + b.size) for b in placed if b.first <= end and first <= b.last)
        offset = 0
        for lo, hi in clashes:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append(Buffer(name, size, first, end, offset, "arena"))
    buffers = {b.name: b for b in placed} | fixed
    for n in qm.nodes:
        if n.op in VIEW_OPS:
            buffers[n.name] = buffers[root(qm, n.name)]
    arena = max((b.offset + b.size for b in placed), default=0)
    return MemoryPlan(buffers, arena, sum(b.size for b in placed))


def _elements(shape: tuple[int, ...]) -> int:
    total = 1
    for d in shape:
        total *= int(d)
    return total
