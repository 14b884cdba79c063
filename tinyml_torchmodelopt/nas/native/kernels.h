/* Fused CPU kernels of the DARTS supernet's state block, one copy per REAL type.
 *
 * Included twice by kernels.c (REAL = float / double, SUF = f32 / f64). Layouts
 * follow fused_ops.py: a state x is (Cx, Nx, L) row-major; the fused conv
 * output and its normalised form xh are (G*C, N*Lo) with row g*C + c; the
 * mixed output is (E, C*N*Lo); W is (E, Wcols) with columns [G conv groups
 * (the first Gr followed by ReLU), shared ops]. Batch-norm statistics are kept
 * per (row, half) at index row*halves + half; with two halves (a joint
 * [train; valid] pass) samples n >= split form the second half.
 *
 * Every function is a plain loop nest over contiguous rows so that gcc
 * vectorises the innermost loop; reductions accumulate in double.
 */

/* Valid output range [*lo0, *lo1) of a tap with input offset off = t - pad. */
static void FN(tap_range)(i64 off, i64 s, i64 L, i64 Lo, i64 *lo0, i64 *lo1) {
    i64 a = off < 0 ? (-off + s - 1) / s : 0;
    i64 b = L - off <= 0 ? 0 : (L - off - 1) / s + 1;
    if (b > Lo) b = Lo;
    if (a > b) a = b;
    *lo0 = a;
    *lo1 = b;
}

/* im2col: out[(t*C + c), n*Lo + lo] = x[c, n, lo*s + t - p] (zero outside), for samples n < N of Nx. */
void FN(im2col)(const REAL *x, i64 C, i64 Nx, i64 N, i64 L, i64 k, i64 s, i64 p, i64 Lo, REAL *out) {
    i64 NLo = N * Lo;
    /* split by samples: the same column ranges the threads of the conv product (gemm.h) then read */
    PRAGMA(omp parallel for schedule(static) if (k * C * N * Lo >= PARALLEL_MIN_WORK))
    for (i64 n = 0; n < N; n++) {
        for (i64 t = 0; t < k; t++) {
            i64 lo0, lo1;
            FN(tap_range)(t - p, s, L, Lo, &lo0, &lo1);
            for (i64 c = 0; c < C; c++) {
                const REAL *xr = x + (c * Nx + n) * L + (t - p);
                REAL *o = out + (t * C + c) * NLo + n * Lo;
                for (i64 lo = 0; lo < lo0; lo++) o[lo] = 0;
                if (s == 1) {
                    memcpy(o + lo0, xr + lo0, (size_t)(lo1 - lo0) * sizeof(REAL));
                } else {
                    for (i64 lo = lo0; lo < lo1; lo++) o[lo] = xr[lo * s];
                }
                for (i64 lo = lo1; lo < Lo; lo++) o[lo] = 0;
            }
        }
    }
}

/* col2im: gx[c, n, lo*s + t - p] += cols[(t*C + c), n*Lo + lo] (the adjoint of im2col). */
void FN(col2im)(const REAL *cols, i64 C, i64 N, i64 L, i64 k, i64 s, i64 p, i64 Lo, REAL *gx) {
    i64 NLo = N * Lo;
    /* split by samples, like the conv product (gemm.h) that wrote cols */
    PRAGMA(omp parallel for collapse(2) schedule(static) if (k * C * N * Lo >= PARALLEL_MIN_WORK))
    for (i64 n = 0; n < N; n++) {
        for (i64 c = 0; c < C; c++) {
            for (i64 t = 0; t < k; t++) {
                i64 lo0, lo1;
                FN(tap_range)(t - p, s, L, Lo, &lo0, &lo1);
                REAL *g = gx + (c * N + n) * L + (t - p);
                const REAL *cr = cols + (t * C + c) * NLo + n * Lo;
                if (s == 1) {
                    for (i64 lo = lo0; lo < lo1; lo++) g[lo] += cr[lo];
                } else {
                    for (i64 lo = lo0; lo < lo1; lo++) g[lo * s] += cr[lo];
                }
            }
        }
    }
}

/* dst[0:n] = src[0:n] with non-temporal stores where the vector unit has them: for a copy that only
 * a much later pass reads, so it neither displaces the cache nor has its old lines read first
 * (writing 72 MB of cold memory: 3.1-3.4 ms instead of 4.7-5.0 ms on the development machine). */
static void FN(stream_copy)(REAL *restrict dst, const REAL *restrict src, i64 n) {
    i64 i = 0;
#if defined(__AVX512F__) || defined(__AVX__)
#if defined(__AVX512F__)
    const i64 vl = 64 / (i64)sizeof(REAL);
#else
    const i64 vl = 32 / (i64)sizeof(REAL);
#endif
    for (; i < n && ((uintptr_t)(dst + i) % (uintptr_t)(vl * (i64)sizeof(REAL))); i++) dst[i] = src[i];
    for (; i + vl <= n; i += vl) {
#if defined(__AVX512F__) && REAL_IS_FLOAT
        _mm512_stream_ps((float *)(dst + i), _mm512_loadu_ps((const float *)(src + i)));
#elif defined(__AVX512F__)
        _mm512_stream_pd((double *)(dst + i), _mm512_loadu_pd((const double *)(src + i)));
#elif REAL_IS_FLOAT
        _mm256_stream_ps((float *)(dst + i), _mm256_loadu_ps((const float *)(src + i)));
#else
        _mm256_stream_pd((double *)(dst + i), _mm256_loadu_pd((const double *)(src + i)));
#endif
    }
    _mm_sfence();  /* the streamed lines are visible before anything after this copy */
#endif
    for (; i < n; i++) dst[i] = src[i];
}

/* Batch-norm statistics of y (R, M*halves) per (row, half), then y normalised in place; keep (if not
 * NULL) gets a streamed copy of the normalised rows, for the backward. */
static void FN(bn_forward_keep)(REAL *y, i64 R, i64 halves, i64 M, double eps, REAL *mean, REAL *rstd,
                                REAL *keep) {
    PRAGMA(omp parallel for schedule(static) if (R * halves * M >= PARALLEL_MIN_WORK))
    for (i64 q = 0; q < R * halves; q++) {
        REAL *v = y + q * M;
        double sum = 0;
        SIMD_SUM(sum)
        for (i64 i = 0; i < M; i++) sum += v[i];
        double mu = sum / (double)M, ss = 0;
        SIMD_SUM(ss)
        for (i64 i = 0; i < M; i++) {
            double d = v[i] - mu;
            ss += d * d;
        }
        REAL m = (REAL)mu, r = (REAL)(1.0 / sqrt(ss / (double)M + eps));
        mean[q] = m;
        rstd[q] = r;
        for (i64 i = 0; i < M; i++) v[i] = (v[i] - m) * r;
        if (keep != NULL) FN(stream_copy)(keep + q * M, v, M);
    }
}

/* Batch-norm statistics of y (R, M*halves) per (row, half), then y normalised in place. */
void FN(bn_forward)(REAL *y, i64 R, i64 halves, i64 M, double eps, REAL *mean, REAL *rstd) {
    FN(bn_forward_keep)(y, R, halves, M, eps, mean, rstd, NULL);
}

/* y normalised in place with given statistics (recomputed conv outputs). */
void FN(bn_apply)(REAL *y, i64 R, i64 halves, i64 M, const REAL *mean, const REAL *rstd) {
    PRAGMA(omp parallel for schedule(static) if (R * halves * M >= PARALLEL_MIN_WORK))
    for (i64 q = 0; q < R * halves; q++) {
        REAL *v = y + q * M;
        REAL m = mean[q], r = rstd[q];
        for (i64 i = 0; i < M; i++) v[i] = (v[i] - m) * r;
    }
}

/* out[e] [+]= sum_g W[e, g] * act_g(xh[g]) + sum_k W[e, G + k] * shared_k(x), act = ReLU for g < Gr.
 * per_edge: candidate group g feeds edge g % E only (the supernet's layout: every edge has its own
 * convs); W's other entries in those columns are structural zeros, skipped. */
void FN(mix_forward)(const REAL *xh, const REAL *x, const REAL *W, i64 E, i64 Wcols, i64 Gr, i64 G,
                     i64 C, i64 N, i64 L, i64 Lo, i64 s, const i64 *kinds, i64 n_shared, i64 per_edge,
                     i64 accumulate, REAL *out) {
    i64 CNLo = C * N * Lo, n_rows = G + n_shared, padded = (n_rows + 3) / 4 * 4;
    ChunkPlan plan = chunk_plan(C, N, 1, Lo);
    PRAGMA(omp parallel if (E * (G + n_shared) * CNLo >= PARALLEL_MIN_WORK))
    {
        REAL *buf = (REAL *)malloc((size_t)(n_shared * plan.cap + POOL_SCRATCH(L, Lo) + 3 * padded) * sizeof(REAL));
        REAL *scratch = buf + n_shared * plan.cap, *floors = scratch + POOL_SCRATCH(L, Lo);
        REAL *ew = floors + padded, *ef = ew + padded;  /* one edge's weights and floors */
        const REAL **rows = (const REAL **)malloc((size_t)(2 * padded + 1) * sizeof(REAL *));
        const REAL **er = rows + padded;  /* one edge's candidate rows */
        PRAGMA(omp for schedule(static))
        for (i64 w = 0; w < plan.count; w++) {
            Chunk k;
            if (!chunk_at(&plan, chunk_of_item(&plan, w), &k)) continue;
            i64 i0 = k.i0, len = k.len;
            FN(shared_chunk)(x, k.c, k.n0, k.n1, N, L, s, Lo, kinds, n_shared, scratch, buf);
            /* candidate rows of this chunk; act(r) = max(r, floor): ReLU for floor 0, identity for -inf */
            for (i64 q = 0; q < padded; q++) {
                rows[q] = q < G ? xh + q * CNLo + i0 : q < n_rows ? buf + (q - G) * len : rows[0];  /* w 0 */
                floors[q] = q < Gr ? 0 : -INFINITY;
            }
            for (i64 e = 0; e < E; e++) {
                REAL *restrict o = out + e * CNLo + i0;
                const REAL *w = W + e * Wcols;
                i64 m = 0;
                for (i64 q = 0; q < n_rows; q++) {
                    if (per_edge && q < G && q % E != e) continue;
                    er[m] = rows[q];
                    ew[m] = w[q];
                    ef[m++] = floors[q];
                }
                if (m == 0 && !accumulate)
                    for (i64 i = 0; i < len; i++) o[i] = 0;
                for (i64 q = m; q % 4; q++) {  /* pad to four candidates with weight 0 */
                    er[q] = er[0];
                    ew[q] = 0;
                    ef[q] = ef[0];
                }
                for (i64 q = 0; q < m; q += 4) {  /* four candidates per pass over o */
                    const REAL *restrict r0 = er[q], *restrict r1 = er[q + 1];
                    const REAL *restrict r2 = er[q + 2], *restrict r3 = er[q + 3];
                    REAL f0 = ef[q], f1 = ef[q + 1], f2 = ef[q + 2], f3 = ef[q + 3];
                    REAL w0 = ew[q], w1 = ew[q + 1], w2 = ew[q + 2], w3 = ew[q + 3];
#define TERMS (w0 * (r0[i] > f0 ? r0[i] : f0) + w1 * (r1[i] > f1 ? r1[i] : f1) + \
               w2 * (r2[i] > f2 ? r2[i] : f2) + w3 * (r3[i] > f3 ? r3[i] : f3))
                    if (q == 0 && !accumulate) {
                        for (i64 i = 0; i < len; i++) o[i] = TERMS;
                    } else {
                        for (i64 i = 0; i < len; i++) o[i] += TERMS;
                    }
#undef TERMS
                }
            }
        }
        free(rows);
        free(buf);
    }
}

/* The gradient through one candidate g on one chunk, with the E <= 6 edges fused into one pass:
 *   o = act'(r) * sum_e w[e*ws] gc_e;   ab[0] = sum o, ab[1] = sum o*r;   cw[e] = sum gc_e * act(r)  (forw)
 * act = ReLU when relu. Always inlined into wrappers with constant EK, relu and forw, so the edge
 * terms unroll and the loop vectorises (branch-free selects) with its reductions in registers. */
static inline __attribute__((always_inline)) void FN(cand_grad_body)(
    const REAL *restrict gc, i64 CNLo, const REAL *w, i64 ws, const REAL *restrict r, i64 len,
    REAL *restrict o, REAL *ab, REAL *cw, const int EK, const int relu, const int forw) {
    const REAL *restrict g0 = gc, *restrict g1 = gc + (EK > 1) * CNLo, *restrict g2 = gc + (EK > 2) * 2 * CNLo;
    const REAL *restrict g3 = gc + (EK > 3) * 3 * CNLo, *restrict g4 = gc + (EK > 4) * 4 * CNLo;
    const REAL *restrict g5 = gc + (EK > 5) * 5 * CNLo;
    REAL w0 = w[0], w1 = EK > 1 ? w[ws] : 0, w2 = EK > 2 ? w[2 * ws] : 0, w3 = EK > 3 ? w[3 * ws] : 0;
    REAL w4 = EK > 4 ? w[4 * ws] : 0, w5 = EK > 5 ? w[5 * ws] : 0;
    REAL a = 0, b = 0, c0 = 0, c1 = 0, c2 = 0, c3 = 0, c4 = 0, c5 = 0;
    PRAGMA(omp simd reduction(+ : a, b, c0, c1, c2, c3, c4, c5))
    for (i64 i = 0; i < len; i++) {
        REAL ri = r[i];
        REAL on = (REAL)(ri > 0);  /* arithmetic, not a branch: keeps the loop vectorisable */
        REAL ci = relu ? ri * on : ri;
        REAL v = w0 * g0[i];
        if (EK > 1) v += w1 * g1[i];
        if (EK > 2) v += w2 * g2[i];
        if (EK > 3) v += w3 * g3[i];
        if (EK > 4) v += w4 * g4[i];
        if (EK > 5) v += w5 * g5[i];
        if (forw) {
            c0 += g0[i] * ci;
            if (EK > 1) c1 += g1[i] * ci;
            if (EK > 2) c2 += g2[i] * ci;
            if (EK > 3) c3 += g3[i] * ci;
            if (EK > 4) c4 += g4[i] * ci;
            if (EK > 5) c5 += g5[i] * ci;
        }
        if (relu) v *= on;
        o[i] = v;
        a += v;
        b += v * ri;
    }
    ab[0] = a;
    ab[1] = b;
    REAL c[6] = {c0, c1, c2, c3, c4, c5};
    for (int j = 0; j < EK; j++) cw[j] = c[j];
}

#define DEFINE_CAND_GRAD(EK, RELU, FORW)                                                                \
    static void FN(cand_grad_##EK##_##RELU##_##FORW)(const REAL *gc, i64 CNLo, const REAL *w, i64 ws,     \
                                                     const REAL *r, i64 len, REAL *o, REAL *ab, REAL *cw) { \
        FN(cand_grad_body)(gc, CNLo, w, ws, r, len, o, ab, cw, EK, RELU, FORW);                           \
    }
#define DEFINE_CAND_GRADS(EK) \
    DEFINE_CAND_GRAD(EK, 0, 0) DEFINE_CAND_GRAD(EK, 0, 1) DEFINE_CAND_GRAD(EK, 1, 0) DEFINE_CAND_GRAD(EK, 1, 1)
DEFINE_CAND_GRADS(1)
DEFINE_CAND_GRADS(2)
DEFINE_CAND_GRADS(3)
DEFINE_CAND_GRADS(4)
DEFINE_CAND_GRADS(5)
DEFINE_CAND_GRADS(6)
#define MAX_FUSED_EDGES 6

typedef void (*FN(CandGradFn))(const REAL *, i64, const REAL *, i64, const REAL *, i64, REAL *, REAL *, REAL *);
#define CAND_GRAD_ROW(EK) \
    {FN(cand_grad_##EK##_0_0), FN(cand_grad_##EK##_0_1), FN(cand_grad_##EK##_1_0), FN(cand_grad_##EK##_1_1)}
static const FN(CandGradFn) FN(cand_grad_table)[MAX_FUSED_EDGES][4] = {
    CAND_GRAD_ROW(1), CAND_GRAD_ROW(2), CAND_GRAD_ROW(3), CAND_GRAD_ROW(4), CAND_GRAD_ROW(5), CAND_GRAD_ROW(6)};

/* cand_grad for any number of edges (several passes); writes the edge sums to gw[e * gws]. */
static void FN(cand_grad_any)(const REAL *gc, i64 CNLo, i64 E, const REAL *w, i64 ws, const REAL *r, i64 len,
                              int relu, int for_w, REAL *o, REAL *ab, double *gw, i64 gws) {
    for (i64 i = 0; i < len; i++) o[i] = 0;
    for (i64 e = 0; e < E; e++) {
        REAL we = w[e * ws];
        const REAL *ge = gc + e * CNLo;
        for (i64 i = 0; i < len; i++) o[i] += we * ge[i];
        if (for_w) {
            REAL acc = 0;
            SIMD_SUM(acc)
            for (i64 i = 0; i < len; i++) acc += ge[i] * (relu && r[i] <= 0 ? 0 : r[i]);
            gw[e * gws] = acc;
        }
    }
    REAL a = 0, b = 0;
    SIMD_SUM2(a, b)
    for (i64 i = 0; i < len; i++) {
        REAL v = relu && r[i] <= 0 ? 0 : o[i];
        o[i] = v;
        a += v;
        b += v * r[i];
    }
    ab[0] = a;
    ab[1] = b;
}

/* gs[k*len + i] = sum_e w[e*ws + k] * gc[e*CNLo + i] for the n_shared shared ops, summed over the
 * edges in order from zero (as one op at a time would), with up to three ops per pass over gc. */
static void FN(shared_grads)(const REAL *gc, i64 CNLo, i64 E, const REAL *w, i64 ws, i64 n_shared, i64 len,
                             REAL *gs) {
    for (i64 i = 0; i < n_shared * len; i++) gs[i] = 0;
    for (i64 k = 0; k < n_shared; k += 3) {
        i64 nk = n_shared - k < 3 ? n_shared - k : 3;
        REAL *restrict s0 = gs + k * len;  /* s1, s2: the next ops' rows, used only when there are such ops */
        REAL *restrict s1 = nk > 1 ? s0 + len : s0, *restrict s2 = nk > 2 ? s0 + 2 * len : s0;
        for (i64 e = 0; e < E; e++) {
            const REAL *restrict ge = gc + e * CNLo;
            REAL w0 = w[e * ws + k], w1 = nk > 1 ? w[e * ws + k + 1] : 0, w2 = nk > 2 ? w[e * ws + k + 2] : 0;
            if (nk == 3) {
                for (i64 i = 0; i < len; i++) {
                    s0[i] += w0 * ge[i];
                    s1[i] += w1 * ge[i];
                    s2[i] += w2 * ge[i];
                }
            } else if (nk == 2) {
                for (i64 i = 0; i < len; i++) {
                    s0[i] += w0 * ge[i];
                    s1[i] += w1 * ge[i];
                }
            } else {
                for (i64 i = 0; i < len; i++) s0[i] += w0 * ge[i];
            }
        }
    }
}

/* Backward of mix_forward, first part.
 *   gy[g] = act_g'(xh[g]) * sum_e W[e, g] gc[e]   (gradient w.r.t. the normalised conv output)
 *   sums[2*q], sums[2*q+1] += sum gy, sum gy * xh  per (row, half) q    (for the BN backward)
 *   gW[e, col] += sum gc[e] * candidate_col    over the samples n >= w_from (alphas: the valid half;
 *                                              w_from is 0 or the split of a joint pass)
 *   gx += shared-op gradients                      (when gx is not NULL)
 * gW and sums are double accumulators, zeroed by the caller.
 */
void FN(mix_backward)(const REAL *gc, const REAL *xh, const REAL *x, const REAL *W, i64 E, i64 Wcols,
                      i64 Gr, i64 G, i64 C, i64 N, i64 L, i64 Lo, i64 s, const i64 *kinds, i64 n_shared,
                      i64 per_edge, i64 halves, i64 split, i64 w_from, REAL *gy, double *sums, double *gW,
                      REAL *gx) {
    i64 CNLo = C * N * Lo;
    ChunkPlan plan = chunk_plan(C, N, halves, Lo);
    /* per-chunk partial sums, added up in chunk order afterwards: results do not depend on threads */
    i64 P = 2 * G + E * Wcols;
    double *part = (double *)calloc((size_t)(plan.count * P + 1), sizeof(double));
    (void)split;
    PRAGMA(omp parallel if (E * G * CNLo >= PARALLEL_MIN_WORK))
    {
    /* buf: the shared ops' outputs, then their gradients (n_shared chunks each) */
    REAL *buf = (REAL *)malloc((size_t)(2 * n_shared * plan.cap + POOL_SCRATCH(L, Lo)) * sizeof(REAL));
    REAL *scratch = buf + 2 * n_shared * plan.cap;
    PRAGMA(omp for schedule(static))
    for (i64 w = 0; w < plan.count; w++) {
        Chunk ck;
        i64 idx = chunk_of_item(&plan, w);
        if (!chunk_at(&plan, idx, &ck)) continue;
        i64 c = ck.c, n0 = ck.n0, n1 = ck.n1, i0 = ck.i0, len = ck.len;
        int for_w = gW != NULL && n0 >= w_from;
        double *pp = part + idx * P, *pw = pp + 2 * G;  /* this chunk's BN sums and grad W */
        for (i64 g = 0; g < G; g++) {
            const REAL *r = xh + g * CNLo + i0;
            REAL *o = gy + g * CNLo + i0;
            REAL ab[2], cw[MAX_FUSED_EDGES];  /* one chunk: REAL partial sums, double totals */
            if (per_edge) {  /* group g feeds edge g % E only; W's other entries keep a zero gradient */
                i64 e = g % E;
                FN(cand_grad_table)[0][2 * (g < Gr) + for_w](gc + e * CNLo + i0, CNLo, W + e * Wcols + g, Wcols, r,
                                                           len, o, ab, cw);
                if (for_w) pw[e * Wcols + g] = cw[0];
            } else if (E <= MAX_FUSED_EDGES) {
                FN(cand_grad_table)[E - 1][2 * (g < Gr) + for_w](gc + i0, CNLo, W + g, Wcols, r, len, o, ab, cw);
            } else {
                FN(cand_grad_any)(gc + i0, CNLo, E, W + g, Wcols, r, len, g < Gr, for_w, o, ab, pw + g, Wcols);
            }
            pp[2 * g] = ab[0];
            pp[2 * g + 1] = ab[1];
            if (for_w && !per_edge && E <= MAX_FUSED_EDGES)
                for (i64 e = 0; e < E; e++) pw[e * Wcols + g] = cw[e];
        }
        if (n_shared && for_w) {  /* alpha gradients of the shared ops: their outputs are needed */
            FN(shared_chunk)(x, c, n0, n1, N, L, s, Lo, kinds, n_shared, scratch, buf);
            for (i64 k = 0; k < n_shared; k++) {
                const REAL *bk = buf + k * len;
                for (i64 e = 0; e < E; e++) {
                    const REAL *ge = gc + e * CNLo + i0;
                    REAL acc = 0;
                    SIMD_SUM(acc)
                    for (i64 i = 0; i < len; i++) acc += ge[i] * bk[i];
                    pw[e * Wcols + G + k] = acc;
                }
            }
        }
        if (n_shared && gx != NULL) {  /* their input gradient: only their weights and gc are needed */
            REAL *gs = buf + n_shared * plan.cap;
            FN(shared_grads)(gc + i0, CNLo, E, W + G, Wcols, n_shared, len, gs);
            for (i64 k = 0; k < n_shared; k++)
                for (i64 n = n0; n < n1; n++) {
                    REAL *gxr = gx + (c * N + n) * L;
                    const REAL *gr = gs + k * len + (n - n0) * Lo;
                    if (kinds[k] == 0) {
                        for (i64 lo = 0; lo < Lo; lo++) gxr[lo] += gr[lo];
                    } else {
                        FN(pool_row_backward)(x + (c * N + n) * L, L, s, Lo, (int)kinds[k], gr, scratch, gxr);
                    }
                }
        }
    }
    free(buf);
    }
    for (i64 idx = 0; idx < plan.count; idx++) {
        Chunk ck;
        if (!chunk_at(&plan, idx, &ck)) continue;
        const double *pp = part + idx * P;
        for (i64 g = 0; g < G; g++) {
            i64 q = (g * C + ck.c) * halves + ck.h;
            sums[2 * q] += pp[2 * g];
            sums[2 * q + 1] += pp[2 * g + 1];
        }
        if (gW != NULL)
            for (i64 j = 0; j < E * Wcols; j++) gW[j] += pp[2 * G + j];
    }
    free(part);
}

/* Backward of mix_forward, second part: gy <- rstd * (gy - mean(gy) - xh * mean(gy * xh)) per (row, half). */
void FN(bn_backward)(REAL *gy, const REAL *xh, i64 R, i64 halves, i64 M, const REAL *rstd,
                     const double *sums) {
    PRAGMA(omp parallel for schedule(static) if (R * halves * M >= PARALLEL_MIN_WORK))
    for (i64 q = 0; q < R * halves; q++) {
        REAL *o = gy + q * M;
        const REAL *r = xh + q * M;
        REAL ma = (REAL)(sums[2 * q] / (double)M), mb = (REAL)(sums[2 * q + 1] / (double)M), rs = rstd[q];
        for (i64 i = 0; i < M; i++) o[i] = rs * (o[i] - ma - r[i] * mb);
    }
}

#undef DEFINE_CAND_GRAD
#undef DEFINE_CAND_GRADS
#undef CAND_GRAD_ROW
#undef MAX_FUSED_EDGES
#undef POOL_SCRATCH
