"""C99 integer kernels, one entry per op; the generator emits only those used.

Semantics match ``tinyml_torchmodelopt.quantization.int8`` bit for bit. Right
shifts of negative numbers are written so that they are floor shifts on any C99
compiler (C leaves ``>>`` of negative values implementation-defined).
"""

COMMON = r"""
static int64_t tml_rshift_round(int64_t v, int s)
{
    if (s <= 0) {
        return v;
    }
    v += (int64_t)1 << (s - 1);
    return v >= 0 ? (v >> s) : ~((~v) >> s);   /* floor(v / 2^s) */
}

static tml_q7_t tml_sat(int64_t v, int relu)
{
    const int64_t lo = relu ? 0 : -128;
    return (tml_q7_t)(v < lo ? lo : (v > 127 ? 127 : v));
}
"""

FLOOR_DIV = r"""
static int32_t tml_round_div(int32_t sum, int32_t n)
{
    /* floor((2 * sum + n) / (2 * n)): sum / n rounded half up */
    const int32_t a = 2 * sum + n;
    const int32_t b = 2 * n;
    int32_t q = a / b;
    if ((a % b) != 0 && a < 0) {
        q -= 1;
    }
    return q;
}
"""

KERNELS = {
    "conv": r"""
static void tml_conv1d(const tml_q7_t *x, int cin, int lin, const tml_q7_t *w, const int32_t *b,
                       int cout, int k, int stride, int pad, int groups, int shift, int relu,
                       tml_q7_t *y, int lout)
{
    const int cin_g = cin / groups;
    const int cout_g = cout / groups;
    int o, t, ci, j;
    for (o = 0; o < cout; ++o) {
        const int c0 = (o / cout_g) * cin_g;
        const tml_q7_t *wo = w + (long)o * cin_g * k;
        for (t = 0; t < lout; ++t) {
            int32_t acc = b[o];
            const int start = t * stride - pad;
            for (ci = 0; ci < cin_g; ++ci) {
                const tml_q7_t *xc = x + (long)(c0 + ci) * lin;
                const tml_q7_t *wc = wo + ci * k;
                for (j = 0; j < k; ++j) {
                    const int p = start + j;
                    if (p >= 0 && p < lin) {
                        acc += (int32_t)xc[p] * (int32_t)wc[j];
                    }
                }
            }
            y[(long)o * lout + t] = tml_sat(tml_rshift_round(acc, shift), relu);
        }
    }
}
""",
    "linear": r"""
static void tml_linear(const tml_q7_t *x, int nin, const tml_q7_t *w, const int32_t *b, int nout,
                       int shift, int relu, tml_q7_t *y)
{
    int o, i;
    for (o = 0; o < nout; ++o) {
        int32_t acc = b[o];
        const tml_q7_t *wo = w + (long)o * nin;
        for (i = 0; i < nin; ++i) {
            acc += (int32_t)x[i] * (int32_t)wo[i];
        }
        y[o] = tml_sat(tml_rshift_round(acc, shift), relu);
    }
}
""",
    "maxpool": r"""
static void tml_maxpool1d(const tml_q7_t *x, int c, int lin, int k, int stride, int pad,
                          tml_q7_t *y, int lout)
{
    int ch, t, j;
    for (ch = 0; ch < c; ++ch) {
        for (t = 0; t < lout; ++t) {
            int best = -129;
            for (j = 0; j < k; ++j) {
                const int p = t * stride - pad + j;
                if (p >= 0 && p < lin && x[(long)ch * lin + p] > best) {
                    best = x[(long)ch * lin + p];
                }
            }
            y[(long)ch * lout + t] = (tml_q7_t)best;
        }
    }
}
""",
    "avgpool": r"""
static void tml_avgpool1d(const tml_q7_t *x, int c, int lin, int k, int stride, int pad,
                          int count_include_pad, tml_q7_t *y, int lout)
{
    int ch, t, j;
    for (ch = 0; ch < c; ++ch) {
        for (t = 0; t < lout; ++t) {
            int32_t sum = 0;
            int32_t n = 0;
            for (j = 0; j < k; ++j) {
                const int p = t * stride - pad + j;
                if (p >= 0 && p < lin) {
                    sum += x[(long)ch * lin + p];
                    n += 1;
                }
            }
            y[(long)ch * lout + t] = (tml_q7_t)tml_round_div(sum, count_include_pad ? k : n);
        }
    }
}
""",
    "gap": r"""
static void tml_global_avgpool(const tml_q7_t *x, int c, int lin, tml_q7_t *y)
{
    int ch, t;
    for (ch = 0; ch < c; ++ch) {
        int32_t sum = 0;
        for (t = 0; t < lin; ++t) {
            sum += x[(long)ch * lin + t];
        }
        y[ch] = (tml_q7_t)tml_round_div(sum, lin);
    }
}
""",
    "relu": r"""
static void tml_relu(const tml_q7_t *x, int n, tml_q7_t *y)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = x[i] > 0 ? x[i] : 0;
    }
}
""",
    "cat": r"""
static void tml_copy_shift(const tml_q7_t *x, int n, int shift, tml_q7_t *y)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = tml_sat(tml_rshift_round(x[i], shift), 0);
    }
}
""",
    "add": r"""
static void tml_add(const tml_q7_t *a, int shift_a, const tml_q7_t *b, int shift_b, int n,
                    int shift, int relu, tml_q7_t *y)
{
    int i;
    for (i = 0; i < n; ++i) {
        const int64_t acc = (int64_t)a[i] * ((int64_t)1 << shift_a) + (int64_t)b[i] * ((int64_t)1 << shift_b);
        y[i] = tml_sat(tml_rshift_round(acc, shift), relu);
    }
}
""",
}

# Rough C28x code bytes per kernel and per call site (documented in docs/deployment.md).
CODE_BYTES = {"base": 512, "conv": 420, "linear": 200, "maxpool": 180, "avgpool": 260, "gap": 140,
              "relu": 60, "cat": 120, "add": 180, "call": 40}
