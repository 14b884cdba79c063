"""Where a compiled supernet cell (:mod:`.cell_block`) keeps its buffers, and its call tables.

A cell runs as one ``cell_forward`` and one ``cell_backward`` call (``native/state.h``): one row
per state block, each the arguments of a ``state_forward`` / ``state_backward`` call, pointers as
(base, byte offset) pairs into a short list of base pointers. The buffer choices are those of
:func:`.state_block.native_block_forward` and :func:`.state_block.native_block_backward`, made once
per cell and input shape instead of once per state and call:

* forward: the two preprocessed inputs and the node buffer live in one new allocation, the
  arena; every state block's kept conv output, im2col patches (for weight gradients only) and
  batch-norm statistics in one new allocation of its own (a few MB at most: one allocation per
  cell, tens of MB, made glibc keep ~40-100 MB more resident in a search); patches not kept go to
  scratch. Unlike the state-block path, every conv output is made in scratch, where the mixing
  reads it while it is still in the cache, and a kept one is streamed into its kept buffer
  (non-temporal stores: l steps 1-5 % faster); conv outputs too large to keep stay in scratch only;
* backward: the gradients of the nodes and of the preprocessed inputs, recomputed conv outputs and
  every temporary live in one scratch buffer; batch-norm sums and alpha gradients in one zeroed
  float64 buffer, weight gradients in one zeroed buffer whose views are returned.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import torch

from . import state_block
from .fused_ops import _block_table, _stat_groups
from .state_block import _shared_codes

NULL = (-1, 0)
_ALIGN = 64  # bytes: every buffer starts on a cache line


class _Layout:
    """Byte offsets of buffers packed into one allocation."""

    def __init__(self, itemsize: int):
        self.itemsize, self.bytes = itemsize, 0

    def take(self, elems: int) -> int:
        offset = self.bytes
        self.bytes += -(-elems * self.itemsize // _ALIGN) * _ALIGN
        return offset

    def elems(self) -> int:
        return -(-self.bytes // self.itemsize)


@dataclass
class _Block:
    """One state block of the cell: its geometry and where its forward put things."""
    conf: state_block.BlockConf
    Cx: int
    L: int
    Lo: int
    conv: bool
    E: int
    Wcols: int
    x: tuple  # (base, byte offset) pairs, as in the tables
    weight: tuple
    W: tuple
    table: tuple = NULL
    table_largest_first: tuple = NULL
    codes: tuple = NULL
    xh: tuple | None = None  # kept (normalised conv output), None: recomputed in the backward
    cols: tuple | None = None  # kept patches
    mean: tuple = NULL
    rstd: tuple = NULL

    @property
    def R(self) -> int:
        return self.conf.n_bn_relu + self.conf.n_bn

    @property
    def pointwise(self) -> bool:
        return self.conf.kmax == 1 and self.conf.stride == 1


@dataclass
class CellPlan:
    """The forward table and buffer sizes of one cell for one input shape; backward tables by need."""
    blocks: list
    itemsize: int
    N: int
    split: int | None
    halves: int
    forward_table: ctypes.Array
    arena_elems: int
    kept_elems: list  # per block: elements of its kept buffers (0: none)
    scratch_elems: int
    nodes_offset: int  # elements into the arena
    row_elems: int  # one node
    statics: list  # the cached tensors whose pointers the tables use (kept alive here)
    static_ptrs: list
    n_states: int
    backward_tables: dict = field(default_factory=dict)

    def bases(self, arena, kept, scratch, s0, s1, weights, Ws, acc=None, grad_w=None, grad_s=(None, None)):
        """The base pointers of a call, in the order of :func:`_bases_layout`: arena, scratch, s0, s1,
        the two preprocessing and the n state weights, the mixing matrices, the backward's accumulators
        and gradients, every block's kept buffers, then the statics."""
        tensors = [arena, scratch, s0, s1, *weights, *Ws, acc, grad_w, *grad_s, *kept]
        ptrs = [None if t is None else t.data_ptr() for t in tensors]
        return (ctypes.c_void_p * (len(ptrs) + len(self.static_ptrs)))(*ptrs, *self.static_ptrs)  # not a tensor:
        # no host-to-device traffic in a pass that a GPU search captures (tests check it on the CPU)


def _bases_layout(n: int) -> dict:
    """Indices into the base pointers for a cell of n states (see :meth:`CellPlan.bases`)."""
    return dict(arena=0, scratch=1, s=(2, 3), weight=lambda b: 4 + b, W=lambda j: 6 + n + j,
                acc=6 + 2 * n, grad_w=7 + 2 * n, grad_s=(8 + 2 * n, 9 + 2 * n), kept=lambda b: 10 + 2 * n + b,
                statics=12 + 3 * n)


def forward_plan(spec, s0: torch.Tensor, s1: torch.Tensor, Ws, weights, split, need_w) -> CellPlan:
    """Lay out the forward of a cell (``spec`` as in :func:`.cell_block.native_cell`) for these inputs."""
    pre_confs, confs, steps, multiplier, C = spec
    n = len(confs)
    idx = _bases_layout(n)
    itemsize, N = s0.element_size(), s0.shape[1]
    halves = _stat_groups(split, N)
    keep_max = state_block.KEEP_CONV_OUTPUT_MAX_BYTES
    arena, scratch = _Layout(itemsize), _Layout(itemsize)
    statics: list = []

    def static(t: torch.Tensor) -> tuple:
        statics.append(t)
        return idx['statics'] + len(statics) - 1, 0

    one = static(torch.ones(1, 1, dtype=s0.dtype))
    blocks = []
    pre_out = []
    for i, (s, conf) in enumerate(zip((s0, s1), pre_confs)):
        Cx, _, L = s.shape
        Lo = (L - 1) // conf.stride + 1
        blocks.append(_Block(conf, Cx, L, Lo, True, 1, 1, (idx['s'][i], 0), (idx['weight'](i), 0), one))
        pre_out.append(Lo)
    if pre_out[0] != pre_out[1]:
        raise ValueError(f"the preprocessed cell inputs differ in length: {pre_out}")
    L_state = pre_out[0]
    L_node = (L_state - 1) // confs[0].stride + 1
    row_elems = C * N * L_node
    pre_offsets = [arena.take(C * N * L_state), arena.take(C * N * L_state)]
    nodes_offset = arena.take(steps * row_elems)
    for j, (conf, W) in enumerate(zip(confs, Ws)):
        x = (idx['arena'], pre_offsets[j] if j < 2 else nodes_offset + (j - 2) * row_elems * itemsize)
        E, Wcols = W.shape
        conv = weights[j] is not None
        L = L_state if j < 2 else L_node  # the nodes are at the cell's output length (reduction cells)
        weight = (idx['weight'](2 + j), 0) if conv else NULL
        blocks.append(_Block(conf, C, L, (L - 1) // conf.stride + 1, conv, E, Wcols, x, weight, (idx['W'](j), 0)))
    rows, fwd_scratch, kept_elems = [], {}, []
    for b, block in enumerate(blocks):
        conf, R = block.conf, block.R
        kept = _Layout(itemsize)
        block.codes = static(_shared_codes(conf.shared))
        if block.conv:
            block.table = static(_block_table(conf.blocks))
            block.table_largest_first = static(_block_table(conf.blocks, largest_first=True))
            keep = R * N * block.Lo * itemsize <= keep_max
            keep_patches = b < 2 or need_w[b - 2]
            patches = block.conf.kmax * block.Cx * N * block.Lo
            if block.pointwise:
                cols = block.x
            elif keep and keep_patches:
                cols = (idx['kept'](b), kept.take(patches))
            else:
                fwd_scratch['patches'] = max(fwd_scratch.get('patches', 0), patches)
                cols = 'patches'
            # the conv output is made in scratch, still warm for the mixing; a kept one is streamed out
            fwd_scratch['conv_out'] = max(fwd_scratch.get('conv_out', 0), R * N * block.Lo)
            xh = 'conv_out'
            if keep:
                block.xh = (idx['kept'](b), kept.take(R * N * block.Lo))
            block.cols = cols if keep and keep_patches else None
            block.mean = (idx['kept'](b), kept.take(R * halves))
            block.rstd = (idx['kept'](b), kept.take(R * halves))
        else:
            cols = xh = NULL
        out = (idx['arena'], pre_offsets[b] if b < 2 else nodes_offset + max(0, b - 3) * row_elems * itemsize)
        rows.append((block, cols, xh, out, b >= 3))  # states after the first add into their nodes
        kept_elems.append(kept.elems())
    scratch_at = {name: (idx['scratch'], scratch.take(elems)) for name, elems in fwd_scratch.items()}
    table = []
    for block, cols, xh, out, accumulate in rows:
        cols, xh = scratch_at.get(cols, cols), scratch_at.get(xh, xh)
        table.append([*block.x, *cols, *block.weight, *block.table, *xh, *(block.xh or NULL), *block.mean,
                      *block.rstd, *block.W, *block.codes, *out, *_geometry(block, N, halves), int(accumulate)])
    return CellPlan(blocks, itemsize, N, split, halves, _int_array(table), arena.elems(), kept_elems,
                    scratch.elems(), nodes_offset // itemsize, row_elems, statics, [t.data_ptr() for t in statics],
                    n)


def _geometry(block: _Block, N: int, halves: int) -> list:
    """ldw, nblocks, Cx, N, L, Lo, stride, kmax, R, halves, E, Wcols, Gr, G, Cc, n_shared, per_edge: the integer
    arguments the two state calls share (state_forward takes eps after halves, as a separate argument)."""
    conf, C = block.conf, block.conf.channels
    ldw = conf.kmax * block.Cx if block.conv else 0
    return [ldw, len(conf.blocks), block.Cx, N, block.L, block.Lo, conf.stride, conf.kmax, block.R, halves,
            block.E, block.Wcols, conf.n_bn_relu // C, block.R // C, C, len(conf.shared), int(conf.per_edge)]


@dataclass
class BackwardPlan:
    """The backward table of a cell for one set of wanted gradients, and where the results land."""
    table: ctypes.Array
    rows: int
    scratch_elems: int
    grad_nodes: int  # element offsets into the scratch
    grad_p: tuple  # per preprocessed input: element offset or None
    grad_p_elems: int
    acc_elems: int
    alpha_grads: dict  # state -> element offset of its float64 mixing gradient in the accumulators
    weight_grads: dict  # block (0, 1 preprocessing, 2 + j states) -> element offset of its weight gradient
    grad_w_elems: int
    pre_pointwise: tuple  # per preprocessing block: its conv writes the whole input gradient


def backward_plan(plan: CellPlan, need_s, need_pre, need_W, need_w) -> BackwardPlan:
    """Lay out the backward of ``plan``'s cell for the gradients wanted (autograd's needs_input_grad)."""
    key = (tuple(need_s), tuple(need_pre), tuple(need_W), tuple(need_w))
    if key not in plan.backward_tables:
        plan.backward_tables[key] = _backward_plan(plan, *key)
    return plan.backward_tables[key]


def _backward_plan(plan: CellPlan, need_s, need_pre, need_W, need_w) -> BackwardPlan:
    n, N, halves, blocks = plan.n_states, plan.N, plan.halves, plan.blocks
    idx = _bases_layout(n)
    itemsize = plan.itemsize
    scratch, acc, grad_w = _Layout(itemsize), _Layout(8), _Layout(itemsize)
    p_req = [need_s[i] or need_pre[i] for i in range(2)]
    node_req = any(need_W) or any(need_w) or any(p_req)
    grad_nodes = scratch.take((n - 1) * plan.row_elems) // itemsize  # n states feed n - 1 nodes
    pre_elems = [blocks[2].Cx * N * blocks[2].L] * 2
    grad_p = tuple(scratch.take(pre_elems[i]) // itemsize if p_req[i] else None for i in range(2))
    temp: dict = {}

    def need_temp(name, elems):
        temp[name] = max(temp.get(name, 0), elems)
        return name

    # states in reverse (a node's gradient is complete before the state that reads it), then preprocessing
    order = [(2 + j, node_req if j >= 2 else p_req[j], need_w[j], need_W[j]) for j in reversed(range(n))]
    order += [(i, need_s[i], need_pre[i], False) for i in range(2) if p_req[i]]
    rows, alpha_grads, weight_grads = [], {}, {}
    for b, want_x, want_w, want_W in order:
        block = blocks[b]
        conf, R = block.conf, block.R
        recompute = block.conv and block.xh is None
        if recompute:
            xh = need_temp('conv_out', R * N * block.Lo)
            cols = block.x if block.pointwise else need_temp('patches', conf.kmax * block.Cx * N * block.Lo)
        else:
            xh = block.xh if block.conv else NULL
            cols = block.cols if block.cols is not None else NULL
            if block.conv and want_w and block.cols is None:
                raise AssertionError("a weight gradient without kept patches")  # forward keeps them then
        gy = need_temp('grad_conv_out', R * N * block.Lo) if block.conv else NULL
        sums = (idx['acc'], acc.take(2 * R * halves))
        gW = NULL
        if want_W:
            gW = (idx['acc'], acc.take(block.E * block.Wcols))
            alpha_grads[b - 2] = gW[1] // 8
        if b < 2:  # preprocessing: its input gradient is a new tensor (grad_s), its edge gradient grad_p
            gc = (idx['scratch'], grad_p[b] * itemsize)
            gx = (idx['grad_s'][b], 0) if want_x else NULL
            pointwise_gx = block.conv and block.pointwise and not conf.shared
        else:
            j = b - 2
            gc = (idx['scratch'], (grad_nodes + max(0, j - 1) * plan.row_elems) * itemsize)
            into = grad_p[j] if j < 2 else grad_nodes + (j - 2) * plan.row_elems
            gx = (idx['scratch'], into * itemsize) if want_x else NULL
            pointwise_gx = False
        gcols = NULL
        if want_x and block.conv:
            gcols = gx if pointwise_gx else need_temp('grad_patches', conf.kmax * block.Cx * N * block.Lo)
        gw = NULL
        if block.conv and want_w:
            offset = grad_w.take(R * conf.kmax * block.Cx)
            weight_grads[b] = offset // itemsize
            gw = (idx['grad_w'], offset)
        rows.append([gc, block.x, cols, block.weight, block.table, block.table_largest_first, xh, block.mean,
                     block.rstd, block.W, block.codes, gy, sums, gW, gx, gcols, gw, block, recompute])
    scratch_at = {name: (idx['scratch'], scratch.take(elems)) for name, elems in temp.items()}
    table = []
    for *ptrs, block, recompute in rows:
        pairs = [scratch_at.get(p, p) if isinstance(p, str) else p for p in ptrs]
        table.append([v for p in pairs for v in p] + _geometry(block, N, halves) +
                     [plan.split or 0, int(recompute)])
    pre_pointwise = tuple(blocks[i].conv and blocks[i].pointwise and not blocks[i].conf.shared for i in range(2))
    return BackwardPlan(_int_array(table), len(table), scratch.elems(), grad_nodes, grad_p, pre_elems[0],
                        acc.elems(), alpha_grads, weight_grads, grad_w.elems(), pre_pointwise)


def _int_array(rows: list) -> ctypes.Array:
    """A table as a C int64 array (a ctypes array, not a tensor: see :meth:`CellPlan.bases`)."""
    flat = [v for row in rows for v in row]
    return (ctypes.c_longlong * len(flat))(*flat)
