"""C99 code generation for a ``QuantizedModel``: mod.h, mod.c, golden_vectors.h, test_main.c.

Static memory only: weights are ``const`` arrays (flash), activations live in
one ``static`` arena planned by ``memory.plan_memory``. Layout ``(C, L)``
channel-major, as in PyTorch.

NPU layout choice: on a device with an NPU, a first conv with a channel count
that is not a multiple of 4 gets zero-padded input channels (zero weights, and
its input copied into a zero-filled staging buffer), as the NPU needs. This
changes no value, so the integer reference stays bit-exact.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyml_torchmodelopt.quantization import QNode, QuantizedModel

from .kernels_c import CODE_BYTES, COMMON, FLOOR_DIV, KERNELS
from .memory import MemoryPlan, plan_memory, root

PREFIX = "tinyml_model"


@dataclass(frozen=True)
class CodegenResult:
    files: tuple[Path, ...]
    weight_bytes: int          # const weights + biases as emitted (padding included)
    code_bytes_estimate: int
    arena_bytes: int
    activation_bytes: int      # sum of all activation buffers (no reuse)
    staging_bytes: int         # zero-padded input copy (NPU channel padding), 0 if none
    io_bytes: int              # caller's input + output buffers


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _array(values: np.ndarray, per_line: int = 16) -> str:
    flat = [str(int(v)) for v in np.asarray(values).ravel()]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return "{\n    " + ",\n    ".join(lines) + "\n}" if flat else "{0}"


def _first_conv(qm: QuantizedModel) -> QNode | None:
    for n in qm.nodes:
        if n.op == "conv" and not n.attrs.get("from_bn"):
            return n
    return None


def generate_c(qm: QuantizedModel, out_dir: Path, *, class_names: list[str], golden_x: np.ndarray,
               golden_y: np.ndarray, pad_channels_to: int = 1, preset: str = "default",
               device_name: str = "") -> CodegenResult:
    """Write the four C files into ``out_dir``; ``golden_x`` int8 ``(N, C, L)``, labels ``golden_y``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    first = _first_conv(qm)
    pad_conv, pad_to = None, 0   # a single-channel first conv is NPU-native: no padding
    if first is not None and pad_channels_to > 1 and first.attrs["in_channels"] > 1 \
            and first.attrs["in_channels"] % pad_channels_to:
        pad_conv = first
        pad_to = -(-first.attrs["in_channels"] // pad_channels_to) * pad_channels_to
    sizes = {}
    src_root = root(qm, pad_conv.inputs[0]) if pad_conv else None
    staging = 0
    if pad_conv is not None:
        length = qm.node(pad_conv.inputs[0]).shape[-1]
        if qm.node(src_root).op == "input":
            staging = pad_to * length
        else:
            sizes[src_root] = pad_to * length
    plan = plan_memory(qm, sizes)

    def ptr(name: str) -> str:
        if name == src_root and staging and pad_conv is not None:
            return "tml_staging"
        b = plan.of(name)
        return {"input": "input", "output": "output"}.get(b.where, f"(tml_arena + {b.offset})")

    used: list[str] = []
    weights: list[str] = []
    body: list[str] = []
    weight_bytes = 0
    if staging:
        c, length = qm.input_shape
        body += [f"    /* NPU layout: zero-pad the input channels {c} -> {pad_to} */",
                 f"    for (i = 0; i < {c * length}; ++i) {{", "        tml_staging[i] = input[i];", "    }",
                 f"    for (i = {c * length}; i < {pad_to * length}; ++i) {{", "        tml_staging[i] = 0;",
                 "    }"]
    for n in qm.nodes:
        if n.op in ("input", "flatten"):
            continue
        a, ident = n.attrs, _ident(n.name)
        x = [ptr(i) for i in n.inputs]
        y = ptr(n.name)
        in_shape = qm.node(n.inputs[0]).shape
        used.append(n.op)
        body.append(f"    /* {n.name}: {n.op} -> {tuple(n.shape)}, 2^{-n.frac} */")
        if n.op in ("conv", "linear"):
            w = n.weight
            cin = a.get("in_channels", 0)
            if n is pad_conv:
                w = np.concatenate([w, np.zeros((w.shape[0], pad_to - cin, w.shape[2]), np.int8)], axis=1)
                cin = pad_to
            weights.append(f"/* {n.name}: weights 2^{-n.weight_frac}, bias 2^{-(n.frac + n.shift)} */")
            weights.append(f"static const tml_q7_t w_{ident}[{w.size}] = {_array(w)};")
            weights.append(f"static const int32_t b_{ident}[{n.bias.size}] = {_array(n.bias)};")
            weight_bytes += w.size + 4 * n.bias.size
            relu = int(bool(a.get("relu")))
            if n.op == "conv":
                body.append(f"    tml_conv1d({x[0]}, {cin}, {in_shape[-1]}, w_{ident}, b_{ident}, {a['out_channels']}, "
                            f"{a['kernel']}, {a['stride']}, {a['padding']}, {a['groups']}, {n.shift}, {relu}, "
                            f"{y}, {n.shape[-1]});")
            else:
                body.append(f"    tml_linear({x[0]}, {a['in_features']}, w_{ident}, b_{ident}, {a['out_features']}, "
                            f"{n.shift}, {relu}, {y});")
        elif n.op == "maxpool":
            body.append(f"    tml_maxpool1d({x[0]}, {in_shape[0]}, {in_shape[1]}, {a['kernel']}, {a['stride']}, "
                        f"{a['padding']}, {y}, {n.shape[-1]});")
        elif n.op == "avgpool":
            body.append(f"    tml_avgpool1d({x[0]}, {in_shape[0]}, {in_shape[1]}, {a['kernel']}, {a['stride']}, "
                        f"{a['padding']}, {int(a['count_include_pad'])}, {y}, {n.shape[-1]});")
        elif n.op == "gap":
            body.append(f"    tml_global_avgpool({x[0]}, {in_shape[0]}, {in_shape[1]}, {y});")
        elif n.op == "relu":
            body.append(f"    tml_relu({x[0]}, {int(np.prod(n.shape))}, {y});")
        elif n.op == "cat":
            offset = 0
            for src, sh, s in zip(n.inputs, x, n.in_shifts):
                size = int(np.prod(qm.node(src).shape))
                body.append(f"    tml_copy_shift({sh}, {size}, {s}, {y} + {offset});")
                offset += size
        elif n.op == "add":
            (sa, sb) = n.in_shifts
            body.append(f"    tml_add({x[0]}, {sa}, {x[1]}, {sb}, {int(np.prod(n.shape))}, {n.shift}, "
                        f"{int(bool(a.get('relu')))}, {y});")
        else:
            raise ValueError(f"{n.name}: no C kernel for op {n.op!r}")
        if pad_conv is not None and not staging and n.name == src_root:
            total, used_elems = sizes[src_root], int(np.prod(n.shape))
            body += [f"    for (i = {used_elems}; i < {total}; ++i) {{",
                     f"        {y}[i] = 0;   /* NPU layout: zero input channels of {pad_conv.name} */", "    }"]
    kinds = list(dict.fromkeys(used))
    n_in = int(np.prod(qm.input_shape))
    n_out = int(np.prod(qm.output_shape))
    files = (
        _write(out_dir / "mod.h", _header(qm, class_names, plan, n_in, n_out, preset, device_name)),
        _write(out_dir / "mod.c", _source(kinds, weights, body, plan, staging, n_out, class_names)),
        _write(out_dir / "golden_vectors.h", _golden(qm, golden_x, golden_y)),
        _write(out_dir / "test_main.c", TEST_MAIN),
    )
    code = CODE_BYTES["base"] + sum(CODE_BYTES[k] for k in kinds) + CODE_BYTES["call"] * len(used)
    code += sum(len(c) + 1 for c in class_names)
    return CodegenResult(files, weight_bytes, code, plan.arena_bytes, plan.activation_bytes, staging, n_in + n_out)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _header(qm, class_names, plan: MemoryPlan, n_in, n_out, preset, device_name) -> str:
    c, length = qm.input_shape
    return f"""/* Generated by tinyml-modelzoo for {device_name or 'a C99 target'} (preset {preset}). Do not edit.
 *
 * int8 inference of the trained network; static memory only (no malloc).
 * Input:  (C, L) = ({c}, {length}) channel-major, x_q = round(x * 2^{qm.input_frac}) saturated to [-128, 127].
 * Output: {n_out} int8 logits, logit = y_q * 2^{-qm.output_frac}.
 * Not re-entrant: one static activation arena of {plan.arena_bytes} bytes.
 */
#ifndef TINYML_MODEL_H
#define TINYML_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

/* C28x has no 8-bit type: int8 data is held in int16_t there (values stay in [-128, 127]). */
#if defined(__TMS320C28XX__)
typedef int16_t tml_q7_t;
#else
typedef int8_t tml_q7_t;
#endif

#define TINYML_MODEL_IN_CHANNELS {c}
#define TINYML_MODEL_IN_LENGTH {length}
#define TINYML_MODEL_INPUT_SIZE {n_in}
#define TINYML_MODEL_OUTPUT_SIZE {n_out}
#define TINYML_MODEL_NUM_CLASSES {len(class_names)}
#define TINYML_MODEL_INPUT_FRAC_BITS {qm.input_frac}
#define TINYML_MODEL_OUTPUT_FRAC_BITS {qm.output_frac}
#define TINYML_MODEL_ARENA_BYTES {plan.arena_bytes}

extern const char *const tinyml_model_class_names[TINYML_MODEL_NUM_CLASSES];

/* Run the network: input[TINYML_MODEL_INPUT_SIZE] -> output[TINYML_MODEL_OUTPUT_SIZE] (int8 logits). */
void tinyml_model_run(const tml_q7_t *input, tml_q7_t *output);

/* Run the network and return the index of the largest logit (first one on ties). */
int tinyml_model_predict(const tml_q7_t *input);

#ifdef __cplusplus
}}
#endif

#endif /* TINYML_MODEL_H */
"""


def _source(kinds, weights, body, plan: MemoryPlan, staging, n_out, class_names) -> str:
    parts = ['/* Generated by tinyml-modelzoo. Do not edit. */', '#include "mod.h"', ""]
    if any(k in kinds for k in ("conv", "linear", "cat", "add")):
        parts.append(COMMON)
    if any(k in kinds for k in ("avgpool", "gap")):
        parts.append(FLOOR_DIV)
    parts += [KERNELS[k] for k in kinds]
    names = ", ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in class_names)
    parts += [f"const char *const tinyml_model_class_names[TINYML_MODEL_NUM_CLASSES] = {{{names}}};", ""]
    parts += weights
    parts += ["", f"static tml_q7_t tml_arena[{max(plan.arena_bytes, 1)}];"]
    if staging:
        parts.append(f"static tml_q7_t tml_staging[{staging}];")
    loop_var = any("for (i" in line for line in body)
    parts += ["", "void tinyml_model_run(const tml_q7_t *input, tml_q7_t *output)", "{"]
    if loop_var:
        parts.append("    int i;")
    if not any("input" in line for line in body if not line.lstrip().startswith("/*")):
        parts.append("    (void)input;")
    parts += body + ["}", "", "int tinyml_model_predict(const tml_q7_t *input)", "{",
                     f"    tml_q7_t out[{n_out}];", "    int i, best = 0;", "    tinyml_model_run(input, out);",
                     f"    for (i = 1; i < {n_out}; ++i) {{", "        if (out[i] > out[best]) {",
                     "            best = i;", "        }", "    }", "    return best;", "}", ""]
    return "\n".join(parts)


def _golden(qm: QuantizedModel, gx: np.ndarray, gy: np.ndarray) -> str:
    expected = qm.run_int8(gx)
    n = len(gx)
    rows_in = ",\n".join(_array(v) for v in gx.reshape(n, -1))
    rows_out = ",\n".join(_array(v) for v in expected.reshape(n, -1))
    return f"""/* Golden vectors: int8 inputs and the int8 reference outputs (run_int8). Generated. */
#ifndef TINYML_GOLDEN_VECTORS_H
#define TINYML_GOLDEN_VECTORS_H

#include "mod.h"

#define TINYML_GOLDEN_COUNT {n}

static const tml_q7_t tinyml_golden_inputs[TINYML_GOLDEN_COUNT][TINYML_MODEL_INPUT_SIZE] = {{
{rows_in}
}};

static const tml_q7_t tinyml_golden_outputs[TINYML_GOLDEN_COUNT][TINYML_MODEL_OUTPUT_SIZE] = {{
{rows_out}
}};

static const int tinyml_golden_labels[TINYML_GOLDEN_COUNT] = {_array(np.asarray(gy, dtype=np.int64))};

#endif /* TINYML_GOLDEN_VECTORS_H */
"""


TEST_MAIN = r"""/* Host test: every golden vector must reproduce the int8 reference exactly. Generated. */
#include <stdio.h>

#include "mod.h"
#include "golden_vectors.h"

int main(void)
{
    int v, i, failures = 0, correct = 0;
    tml_q7_t out[TINYML_MODEL_OUTPUT_SIZE];
    for (v = 0; v < TINYML_GOLDEN_COUNT; ++v) {
        int mismatch = 0;
        tinyml_model_run(tinyml_golden_inputs[v], out);
        printf("out %d:", v);
        for (i = 0; i < TINYML_MODEL_OUTPUT_SIZE; ++i) {
            printf(" %d", (int)out[i]);
            if (out[i] != tinyml_golden_outputs[v][i]) {
                mismatch = 1;
            }
        }
        printf("\n");
        failures += mismatch;
        correct += tinyml_model_predict(tinyml_golden_inputs[v]) == tinyml_golden_labels[v];
    }
    printf("golden vectors: %d/%d bit-exact, %d/%d predicted correctly\n",
           TINYML_GOLDEN_COUNT - failures, TINYML_GOLDEN_COUNT, correct, TINYML_GOLDEN_COUNT);
    return failures == 0 ? 0 : 1;
}
"""
