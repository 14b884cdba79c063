/* The supernet's shared 3-tap pools, one copy per REAL type (included like kernels.h, before it): the
 * max and average pool candidates and their gradients, which the mixing kernels of kernels.h compute per
 * chunk of samples (stride-1 outputs over a whole chunk at once, everything else a row at a time). */

/* 3-tap pools (padding 1, count_include_pad=False) on one row, branch-free so that they vectorise:
 * the row is copied between one pad on each side (xp, L + 2 values), window lo covers
 * xp[lo*s .. lo*s + 2]. Scratch for both functions: 2*(L + 2) + 3*Lo values. */
#define POOL_SCRATCH(L, Lo) (2 * ((L) + 2) + 3 * (Lo))

static void FN(pad_row)(const REAL *x, i64 L, REAL pad, REAL *xp) {
    xp[0] = pad;
    memcpy(xp + 1, x, (size_t)L * sizeof(REAL));
    xp[L + 1] = pad;
}

/* Inputs inside window lo (the average pool's divisor). */
static REAL FN(window_count)(i64 lo, i64 s, i64 L) {
    i64 a = lo * s - 1 < 0 ? 0 : lo * s - 1, b = lo * s + 1 > L - 1 ? L - 1 : lo * s + 1;
    return (REAL)(b - a + 1);
}

/* One window of three values; pool_row_s and pool_rows_1 share these expressions (and so their bits). */
static inline REAL FN(max3)(REAL a, REAL b, REAL c) {
    REAL m = a > b ? a : b;
    return m > c ? m : c;
}

static inline REAL FN(sum3)(REAL a, REAL b, REAL c) { return a + b + c; }

/* One row (Lo outputs) of a 3-tap pool: kind 1 max, 2 avg. Inlined into pool_row with s = 1 as a
 * constant (most rows), so that its loops vectorise, and with any s. */
static inline __attribute__((always_inline)) void FN(pool_row_s)(const REAL *x, i64 L, i64 s, i64 Lo, int kind,
                                                                 REAL *scratch, REAL *out) {
    REAL *xp = scratch;
    if (kind == 1) {
        FN(pad_row)(x, L, -INFINITY, xp);
        for (i64 lo = 0; lo < Lo; lo++) out[lo] = FN(max3)(xp[lo * s], xp[lo * s + 1], xp[lo * s + 2]);
    } else {
        FN(pad_row)(x, L, 0, xp);
        for (i64 lo = 0; lo < Lo; lo++) out[lo] = FN(sum3)(xp[lo * s], xp[lo * s + 1], xp[lo * s + 2]) / (REAL)3;
        out[0] = FN(sum3)(xp[0], xp[1], xp[2]) / FN(window_count)(0, s, L);
        out[Lo - 1] = FN(sum3)(xp[(Lo - 1) * s], xp[(Lo - 1) * s + 1], xp[(Lo - 1) * s + 2]) /
                      FN(window_count)(Lo - 1, s, L);
    }
}

/* Stride 1 over `rows` rows of L >= 2 values stored one after another (samples of one channel): one
 * loop over all of them, then each row's first and last output again with its pads. Short rows (L = 64
 * in preset l's last cells) spent more on the per-row copy and loop ends than on the pool. */
static void FN(pool_rows_1)(const REAL *x, i64 rows, i64 L, int kind, REAL *out) {
    i64 len = rows * L;
    if (kind == 1) {
        for (i64 i = 1; i < len - 1; i++) out[i] = FN(max3)(x[i - 1], x[i], x[i + 1]);
        for (i64 r = 0; r < len; r += L) {
            out[r] = FN(max3)(-INFINITY, x[r], x[r + 1]);
            out[r + L - 1] = FN(max3)(x[r + L - 2], x[r + L - 1], -INFINITY);
        }
    } else {
        REAL first = FN(window_count)(0, 1, L), last = FN(window_count)(L - 1, 1, L);
        for (i64 i = 1; i < len - 1; i++) out[i] = FN(sum3)(x[i - 1], x[i], x[i + 1]) / (REAL)3;
        for (i64 r = 0; r < len; r += L) {
            out[r] = FN(sum3)(0, x[r], x[r + 1]) / first;
            out[r + L - 1] = FN(sum3)(x[r + L - 2], x[r + L - 1], 0) / last;
        }
    }
}

static void FN(pool_row)(const REAL *x, i64 L, i64 s, i64 Lo, int kind, REAL *scratch, REAL *out) {
    if (s == 1) FN(pool_row_s)(x, L, 1, Lo, kind, scratch, out);
    else FN(pool_row_s)(x, L, s, Lo, kind, scratch, out);
}

/* Each window's gradient g[lo] split over its three taps (ta first, tb middle, tc last): max to the first
 * maximum of the window (as PyTorch), avg evenly. Returns 1 when the three shares are equal (avg: only ta
 * is written). Inlined with s = 1 as a constant, like pool_row_s. */
static inline __attribute__((always_inline)) int FN(window_shares)(const REAL *x, i64 L, i64 s, i64 Lo, int kind,
                                                                   const REAL *g, REAL *xp, REAL *ta, REAL *tb,
                                                                   REAL *tc) {
    if (kind == 1) {
        FN(pad_row)(x, L, -INFINITY, xp);
        for (i64 lo = 0; lo < Lo; lo++) {
            REAL a = xp[lo * s], b = xp[lo * s + 1], c = xp[lo * s + 2];
            REAL m = a > b ? a : b;
            m = m > c ? m : c;
            REAL va = a == m ? g[lo] : 0;
            REAL vb = a != m && b == m ? g[lo] : 0;
            ta[lo] = va;
            tb[lo] = vb;
            tc[lo] = g[lo] - va - vb;
        }
        return 0;
    }
    for (i64 lo = 0; lo < Lo; lo++) ta[lo] = g[lo] / (REAL)3;
    ta[0] = g[0] / FN(window_count)(0, s, L);
    ta[Lo - 1] = g[Lo - 1] / FN(window_count)(Lo - 1, s, L);
    return 1;
}

/* Gradient of pool_row added to gx. */
static void FN(pool_row_backward)(const REAL *x, i64 L, i64 s, i64 Lo, int kind, const REAL *g, REAL *scratch,
                                  REAL *gx) {
    REAL *xp = scratch, *gxp = xp + L + 2, *ta = gxp + L + 2, *tb = ta + Lo, *tc = tb + Lo;
    int equal = s == 1 ? FN(window_shares)(x, L, 1, Lo, kind, g, xp, ta, tb, tc)
                       : FN(window_shares)(x, L, s, Lo, kind, g, xp, ta, tb, tc);
    if (equal) tb = tc = ta;
    if (s == 1 && L >= 3) {
        /* input l is the last tap of window l - 1, the middle one of window l and the first one of window
         * l + 1: one pass adds the three shares, in the order of the passes below (the ends have fewer) */
        gx[0] += ((REAL)0 + ta[1]) + tb[0];
        for (i64 l = 1; l < L - 1; l++) gx[l] += (((REAL)0 + ta[l + 1]) + tb[l]) + tc[l - 1];
        gx[L - 1] += ((REAL)0 + tb[L - 1]) + tc[L - 2];
        return;
    }
    memset(gxp, 0, (size_t)(L + 2) * sizeof(REAL));
    for (i64 lo = 0; lo < Lo; lo++) gxp[lo * s] += ta[lo];
    for (i64 lo = 0; lo < Lo; lo++) gxp[lo * s + 1] += tb[lo];
    for (i64 lo = 0; lo < Lo; lo++) gxp[lo * s + 2] += tc[lo];
    for (i64 l = 0; l < L; l++) gx[l] += gxp[l + 1];
}

/* Shared op outputs of samples [n0, n1) of channel c: buf[k*len + (n - n0)*Lo + lo], len = (n1 - n0)*Lo;
 * kinds 0 skip (stride 1), 1 max, 2 avg. */
static void FN(shared_chunk)(const REAL *x, i64 c, i64 n0, i64 n1, i64 N, i64 L, i64 s, i64 Lo,
                             const i64 *kinds, i64 n_shared, REAL *scratch, REAL *buf) {
    i64 len = (n1 - n0) * Lo;
    const REAL *xc = x + (c * N + n0) * L;  /* the chunk's rows, one after another */
    for (i64 k = 0; k < n_shared; k++) {
        REAL *o = buf + k * len;
        if (kinds[k] == 0) {
            memcpy(o, xc, (size_t)len * sizeof(REAL));  /* skip: stride 1 only */
        } else if (s == 1 && L >= 2) {
            FN(pool_rows_1)(xc, n1 - n0, L, (int)kinds[k], o);
        } else {
            for (i64 n = 0; n < n1 - n0; n++)
                FN(pool_row)(xc + n * L, L, s, Lo, (int)kinds[k], scratch, o + n * Lo);
        }
    }
}
