/* Thin matrix products of the supernet's convs, one copy per REAL type (included like kernels.h).
 *
 * The fused convs multiply a small weight matrix (tens of rows and columns) by a
 * long patch matrix (thousands of columns): C (M, N) = A (M, K) @ B (K, N) with
 * M, K <= a few hundred and N = samples * length. BLAS libraries thread such
 * shapes poorly: on 2 cores MKL ran them no faster than on one (35-75 GFLOP/s).
 * Here every thread owns whole column tiles of C, so the threads never share an
 * output, and a tile's B columns stay in L1 while all rows of A pass over them
 * (2-4x MKL's speed on these shapes on 2 cores).
 *
 * The register tile is MR rows x 2 vectors of columns, sized for the vector unit
 * the compiler targets: 8 x 32 floats with AVX-512 (16 accumulators of 32
 * registers), 6 x 16 with AVX (12 of 16), 4 x 8 otherwise. Each element of C is
 * the sum over k in ascending order, like a plain loop.
 */

#if defined(__AVX512F__)
#define GEMM_VBYTES 64
#define GEMM_MR 8
#elif defined(__AVX__)
#define GEMM_VBYTES 32
#define GEMM_MR 6
#else
#define GEMM_VBYTES 16
#define GEMM_MR 4
#endif

/* Products smaller than this (multiply-adds) run on one thread: waking a team costs more. */
#define GEMM_PARALLEL_MIN_MACS (1 << 18)

typedef REAL FN(vec) __attribute__((vector_size(GEMM_VBYTES)));
typedef REAL FN(uvec) __attribute__((vector_size(GEMM_VBYTES), aligned(sizeof(REAL)), may_alias));
#define VL (GEMM_VBYTES / (i64)sizeof(REAL))
#define NR (2 * VL)

/* One MR x NR tile: c[i, :] (+)= sum_k a[k*MR + i] * b[k, :]; only the first mr rows are stored. */
static inline void FN(gemm_tile)(const REAL *a, i64 K, const REAL *b, i64 ldb, REAL *c, i64 ldc, i64 mr,
                                 int accumulate) {
    FN(vec) c0[GEMM_MR], c1[GEMM_MR];
    for (int i = 0; i < GEMM_MR; i++) {
        c0[i] = (FN(vec)){0};
        c1[i] = (FN(vec)){0};
    }
    for (i64 k = 0; k < K; k++) {
        FN(vec) b0 = *(const FN(uvec) *)(b + k * ldb), b1 = *(const FN(uvec) *)(b + k * ldb + VL);
        const REAL *ak = a + k * GEMM_MR;
        PRAGMA(GCC unroll 8)
        for (int i = 0; i < GEMM_MR; i++) {
            c0[i] += ak[i] * b0;
            c1[i] += ak[i] * b1;
        }
    }
    for (i64 i = 0; i < mr; i++) {
        FN(uvec) *out0 = (FN(uvec) *)(c + i * ldc), *out1 = (FN(uvec) *)(c + i * ldc + VL);
        if (accumulate) {
            c0[i] += *out0;
            c1[i] += *out1;
        }
        *out0 = c0[i];
        *out1 = c1[i];
    }
}

/* The last n < NR columns: B and C through zero-padded NR-wide copies. */
static void FN(gemm_tail)(const REAL *pa, i64 Mp, i64 M, i64 K, const REAL *B, i64 ldb, i64 n, REAL *C,
                          i64 ldc, int accumulate) {
    REAL *bt = calloc((size_t)(K * NR), sizeof(REAL));
    REAL ct[GEMM_MR * NR];
    for (i64 k = 0; k < K; k++) memcpy(bt + k * NR, B + k * ldb, (size_t)n * sizeof(REAL));
    for (i64 i = 0; i < Mp; i += GEMM_MR) {
        i64 mr = M - i < GEMM_MR ? M - i : GEMM_MR;
        FN(gemm_tile)(pa + i * K, K, bt, NR, ct, NR, mr, 0);
        for (i64 r = 0; r < mr; r++) {
            REAL *row = C + (i + r) * ldc;
            for (i64 j = 0; j < n; j++) row[j] = (accumulate ? row[j] : 0) + ct[r * NR + j];
        }
    }
    free(bt);
}

/* C (M, N; row stride ldc) = [C +] A @ B, A (M, K) with strides (sa_row, sa_col) (e.g. a transposed
 * view), B (K, N) with row stride ldb. */
void FN(gemm)(const REAL *A, i64 sa_row, i64 sa_col, i64 M, i64 K, const REAL *B, i64 ldb, i64 N, REAL *C,
              i64 ldc, i64 accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (i64 i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(REAL));
        return;
    }
    /* A in panels of MR rows, k-major within a panel (zero rows past M): a tile reads it contiguously. */
    i64 Mp = (M + GEMM_MR - 1) / GEMM_MR * GEMM_MR;
    REAL *pa = malloc((size_t)(Mp * K) * sizeof(REAL));
    for (i64 i = 0; i < Mp; i++)
        for (i64 k = 0; k < K; k++)
            pa[(i / GEMM_MR) * GEMM_MR * K + k * GEMM_MR + i % GEMM_MR] = i < M ? A[i * sa_row + k * sa_col] : 0;
    i64 tiles = N / NR;
    int acc = accumulate != 0;
    PRAGMA(omp parallel for schedule(static) if (M * K * N >= GEMM_PARALLEL_MIN_MACS))
    for (i64 j = 0; j < tiles; j++)
        for (i64 i = 0; i < Mp; i += GEMM_MR)
            FN(gemm_tile)(pa + i * K, K, B + j * NR, ldb, C + i * ldc + j * NR, ldc, M - i < GEMM_MR ? M - i : GEMM_MR,
                          acc);
    if (N % NR) FN(gemm_tail)(pa, Mp, M, K, B + tiles * NR, ldb, N % NR, C + tiles * NR, ldc, acc);
    free(pa);
}

/* Weight gradients: C (M, N) = [C +] A (M, P) @ B (N, P)^T with P long (samples * length) and both
 * operands contiguous along P, so every element of C is a dot product of two rows. A register tile
 * holds NT_MR x NT_NR vector accumulators; P is cut into NT_PIECES fixed pieces (by P alone, so the
 * result does not depend on the thread count) whose partial tiles are added in piece order. With
 * the static schedule a thread takes whole pieces: the samples whose columns it wrote before. */
#define NT_MR 4
#define NT_NR 4
#define NT_PIECES 4

static inline void FN(gemm_nt_tile)(const REAL *A, i64 lda, i64 mr, const REAL *B, i64 ldb, i64 nr, i64 P,
                                    REAL *out) {
    FN(vec) acc[NT_MR][NT_NR];
    const REAL *a[NT_MR], *b[NT_NR];
    for (int i = 0; i < NT_MR; i++) a[i] = A + (i < mr ? i : 0) * lda;  /* missing rows repeat row 0 */
    for (int j = 0; j < NT_NR; j++) b[j] = B + (j < nr ? j : 0) * ldb;
    for (int i = 0; i < NT_MR; i++)
        for (int j = 0; j < NT_NR; j++) acc[i][j] = (FN(vec)){0};
    i64 Pv = P / VL * VL;
    for (i64 p = 0; p < Pv; p += VL) {
        FN(vec) bv[NT_NR];
        for (int j = 0; j < NT_NR; j++) bv[j] = *(const FN(uvec) *)(b[j] + p);
        for (int i = 0; i < NT_MR; i++) {
            FN(vec) av = *(const FN(uvec) *)(a[i] + p);
            for (int j = 0; j < NT_NR; j++) acc[i][j] += av * bv[j];
        }
    }
    for (int i = 0; i < NT_MR; i++)
        for (int j = 0; j < NT_NR; j++) {
            REAL s = 0;
            for (int e = 0; e < VL; e++) s += acc[i][j][e];
            for (i64 p = Pv; p < P; p++) s += a[i][p] * b[j][p];
            out[i * NT_NR + j] = s;
        }
}

void FN(gemm_nt)(const REAL *A, i64 lda, i64 M, const REAL *B, i64 ldb, i64 N, i64 P, REAL *C, i64 ldc,
                 i64 accumulate) {
    if (M <= 0 || N <= 0) return;
    i64 pieces = P >= NT_PIECES * 64 * VL ? NT_PIECES : 1;
    i64 tm = (M + NT_MR - 1) / NT_MR, tn = (N + NT_NR - 1) / NT_NR, tiles = tm * tn;
    REAL *part = malloc((size_t)(pieces * tiles * NT_MR * NT_NR) * sizeof(REAL));
    PRAGMA(omp parallel for schedule(static) if (M * N * P >= GEMM_PARALLEL_MIN_MACS))
    for (i64 w = 0; w < pieces * tiles; w++) {
        i64 piece = w / tiles, t = w % tiles, i = t / tn * NT_MR, j = t % tn * NT_NR;
        i64 p0 = P * piece / pieces / VL * VL, p1 = piece == pieces - 1 ? P : P * (piece + 1) / pieces / VL * VL;
        FN(gemm_nt_tile)(A + i * lda + p0, lda, M - i < NT_MR ? M - i : NT_MR, B + j * ldb + p0, ldb,
                         N - j < NT_NR ? N - j : NT_NR, p1 - p0, part + w * NT_MR * NT_NR);
    }
    for (i64 i = 0; i < M; i++)
        for (i64 j = 0; j < N; j++) {
            i64 t = i / NT_MR * tn + j / NT_NR, r = i % NT_MR * NT_NR + j % NT_NR;
            REAL s = part[t * NT_MR * NT_NR + r];
            for (i64 piece = 1; piece < pieces; piece++) s += part[(piece * tiles + t) * NT_MR * NT_NR + r];
            C[i * ldc + j] = accumulate ? C[i * ldc + j] + s : s;
        }
    free(part);
}

/* The products of one fused conv: blocks[3b..3b+2] = (r0, r1, k) are output rows [r0, r1) that use
 * the k centred taps of kmax, i.e. the weight columns / patch rows [lo, lo + k*C), lo = (kmax/2 - k/2)*C.
 * One call runs them all (the Python loop over blocks cost more than the small products). */
static i64 FN(tap_offset)(i64 kmax, i64 k, i64 C) { return (kmax / 2 - k / 2) * C; }

/* out[r0:r1] = W[r0:r1, lo:lo+kC] @ cols[lo:lo+kC] for every block. */
void FN(conv_blocks_forward)(const REAL *W, i64 ldw, const i64 *blocks, i64 nblocks, i64 kmax, i64 C,
                             const REAL *cols, i64 ldcols, i64 ncols, REAL *out, i64 ldo) {
    for (i64 b = 0; b < nblocks; b++) {
        i64 r0 = blocks[3 * b], r1 = blocks[3 * b + 1], k = blocks[3 * b + 2], lo = FN(tap_offset)(kmax, k, C);
        FN(gemm)(W + r0 * ldw + lo, ldw, 1, r1 - r0, k * C, cols + lo * ldcols, ldcols, ncols, out + r0 * ldo, ldo, 0);
    }
}

/* gcols = sum over blocks of W[r0:r1, lo:lo+kC]^T @ g[r0:r1] into rows [lo, lo+kC) (the input gradient's
 * patches). Blocks must come largest kernel first: a kmax block writes every row, otherwise gcols is zeroed. */
void FN(conv_blocks_input_grad)(const REAL *W, i64 ldw, const i64 *blocks, i64 nblocks, i64 kmax, i64 C,
                                const REAL *g, i64 ldg, i64 ncols, REAL *gcols, i64 ldgc) {
    for (i64 b = 0; b < nblocks; b++) {
        i64 r0 = blocks[3 * b], r1 = blocks[3 * b + 1], k = blocks[3 * b + 2], lo = FN(tap_offset)(kmax, k, C);
        int first_full = b == 0 && k == kmax;
        if (b == 0 && !first_full)
            for (i64 r = 0; r < kmax * C; r++) memset(gcols + r * ldgc, 0, (size_t)ncols * sizeof(REAL));
        FN(gemm)(W + r0 * ldw + lo, 1, ldw, k * C, r1 - r0, g + r0 * ldg, ldg, ncols, gcols + lo * ldgc, ldgc,
                 !first_full);
    }
}

/* grad_w[r0:r1, lo:lo+kC] = g[r0:r1, :P] @ cols[lo:lo+kC, :P]^T for every block (other entries untouched). */
void FN(conv_blocks_weight_grad)(const REAL *g, i64 ldg, const i64 *blocks, i64 nblocks, i64 kmax, i64 C,
                                 const REAL *cols, i64 ldcols, i64 P, REAL *grad_w, i64 ldgw) {
    for (i64 b = 0; b < nblocks; b++) {
        i64 r0 = blocks[3 * b], r1 = blocks[3 * b + 1], k = blocks[3 * b + 2], lo = FN(tap_offset)(kmax, k, C);
        FN(gemm_nt)(g + r0 * ldg, ldg, r1 - r0, cols + lo * ldcols, ldcols, k * C, P, grad_w + r0 * ldgw + lo, ldgw, 0);
    }
}

#undef VL
#undef NR
#undef NT_MR
#undef NT_NR
#undef NT_PIECES
