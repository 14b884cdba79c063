/* A whole state block (state_block.native_block_forward / native_block_backward) in one call: the
 * kernels above in the order the Python code ran them one call each. A cell state cost four to
 * five ctypes calls and their Python wrappers per direction; preset l runs ~330 states per
 * search step. Included like kernels.h, after gemm.h. Buffers are the caller's (it decides
 * what is kept for the backward and what is scratch); NULL marks what a state does not have.
 *
 * Geometry: x is (Cx, N, L); the fused conv (weight (R, kmax*Cx), row stride ldw, blocks as in
 * conv_blocks_forward) writes R rows of N*Lo columns; candidates have Cc channels (G groups, Gr of
 * them with a ReLU); W is the (E, Wcols) mixing matrix; codes / n_shared the shared ops. */

/* cols == x: a pointwise conv, whose patches are x itself (no im2col). */
static void FN(state_conv)(const REAL *x, i64 Cx, i64 N, i64 L, i64 Lo, i64 stride, i64 kmax, REAL *cols,
                           const REAL *weight, i64 ldw, const i64 *blocks, i64 nblocks, REAL *xh) {
    if (cols != x) FN(im2col)(x, Cx, N, N, L, kmax, stride, kmax / 2, Lo, cols);
    FN(conv_blocks_forward)(weight, ldw, blocks, nblocks, kmax, Cx, cols, N * Lo, N * Lo, xh, N * Lo);
}

/* Forward: conv, batch-norm statistics and normalisation (mean, rstd per row and half), mixing into
 * out (accumulate: added). weight == NULL: no conv candidates, only the mixing of the shared ops.
 * keep (if not NULL): a streamed copy of the normalised conv output for the backward, while xh is a
 * buffer still warm in the cache (the conv product and the mixing then stay in the cache). */
void FN(state_forward)(const REAL *x, REAL *cols, const REAL *weight, const i64 *blocks, REAL *xh, REAL *keep,
                       REAL *mean, REAL *rstd, const REAL *W, const i64 *codes, REAL *out, i64 ldw, i64 nblocks,
                       i64 Cx, i64 N, i64 L, i64 Lo, i64 stride, i64 kmax, i64 R, i64 halves, double eps, i64 E,
                       i64 Wcols, i64 Gr, i64 G, i64 Cc, i64 n_shared, i64 per_edge, i64 accumulate) {
    if (weight != NULL) {
        FN(state_conv)(x, Cx, N, L, Lo, stride, kmax, cols, weight, ldw, blocks, nblocks, xh);
        FN(bn_forward_keep)(xh, R, halves, N * Lo / halves, eps, mean, rstd, keep);
    }
    FN(mix_forward)(xh, x, W, E, Wcols, Gr, G, Cc, N, L, Lo, stride, codes, n_shared, per_edge, accumulate, out);
}

/* Backward for the edge gradients gc (E, Cc*N*Lo).
 *   recompute: xh (and cols) are scratch to refill from x (the conv output was not kept);
 *   gy: scratch for the gradient of the conv output; sums / gW: zeroed double accumulators
 *   (gW NULL: no alpha gradient); gx: the input gradient, added to (NULL: not wanted);
 *   gcols: scratch for the input gradient's patches, or gx itself for a pointwise conv (written);
 *   grad_w (NULL: not wanted): the weight gradient from the first P columns of cols (zeroed rows
 *   outside each block's taps are left alone); split: train samples of a joint pass (0: none). */
void FN(state_backward)(const REAL *gc, const REAL *x, REAL *cols, const REAL *weight, const i64 *blocks,
                        const i64 *blocks_largest_first, REAL *xh, const REAL *mean, const REAL *rstd,
                        const REAL *W, const i64 *codes, REAL *gy, double *sums, double *gW, REAL *gx, REAL *gcols,
                        REAL *grad_w, i64 ldw, i64 nblocks, i64 Cx, i64 N, i64 L, i64 Lo, i64 stride, i64 kmax,
                        i64 R, i64 halves, i64 E, i64 Wcols, i64 Gr, i64 G, i64 Cc, i64 n_shared, i64 per_edge,
                        i64 split, i64 recompute) {
    i64 M = N * Lo / halves, NLo = N * Lo;
    if (weight != NULL && recompute) {
        FN(state_conv)(x, Cx, N, L, Lo, stride, kmax, cols, weight, ldw, blocks, nblocks, xh);
        FN(bn_apply)(xh, R, halves, M, mean, rstd);
    }
    /* the shared ops add their input gradient to gx first; without them gx may be a pointwise
     * conv's output below, which writes it */
    FN(mix_backward)(gc, xh, x, W, E, Wcols, Gr, G, Cc, N, L, Lo, stride, codes, n_shared, per_edge, halves, split,
                     split, gy, sums, gW, n_shared ? gx : NULL);
    if (weight == NULL) return;
    FN(bn_backward)(gy, xh, R, halves, M, rstd, sums);
    if (gx != NULL) {
        FN(conv_blocks_input_grad)(weight, ldw, blocks_largest_first, nblocks, kmax, Cx, gy, NLo, NLo, gcols, NLo);
        if (gcols != gx) FN(col2im)(gcols, Cx, N, L, kmax, stride, kmax / 2, Lo, gx);
    }
    if (grad_w != NULL)
        FN(conv_blocks_weight_grad)(gy, NLo, blocks, nblocks, kmax, Cx, cols, NLo, (split ? split : N) * Lo, grad_w,
                                    kmax * Cx);
}

/* A whole supernet cell per call and direction (cell_block.py): row r of `table` holds the arguments
 * of one state_forward / state_backward call in the order of its signature, the pointers first as
 * (base, byte offset) pairs into `bases` (base -1: NULL), then the integers. The rows are the cell's
 * state blocks in the order they run; eps is the batch-norm epsilon of every row. */
#ifndef CELL_TABLE_LAYOUT
#define CELL_TABLE_LAYOUT
#define CELL_FORWARD_PTRS 11
#define CELL_FORWARD_INTS 18
#define CELL_BACKWARD_PTRS 17
#define CELL_BACKWARD_INTS 19

static void cell_pointers(void *const *bases, const i64 *pairs, int n, void **out) {
    for (int k = 0; k < n; k++) out[k] = pairs[2 * k] < 0 ? NULL : (char *)bases[pairs[2 * k]] + pairs[2 * k + 1];
}
#endif

void FN(cell_forward)(void *const *bases, const i64 *table, i64 rows, double eps) {
    for (i64 r = 0; r < rows; r++) {
        const i64 *t = table + r * (2 * CELL_FORWARD_PTRS + CELL_FORWARD_INTS), *v = t + 2 * CELL_FORWARD_PTRS;
        void *p[CELL_FORWARD_PTRS];
        cell_pointers(bases, t, CELL_FORWARD_PTRS, p);
        FN(state_forward)(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], v[0], v[1], v[2], v[3],
                          v[4], v[5], v[6], v[7], v[8], v[9], eps, v[10], v[11], v[12], v[13], v[14], v[15], v[16],
                          v[17]);
    }
}

void FN(cell_backward)(void *const *bases, const i64 *table, i64 rows) {
    for (i64 r = 0; r < rows; r++) {
        const i64 *t = table + r * (2 * CELL_BACKWARD_PTRS + CELL_BACKWARD_INTS), *v = t + 2 * CELL_BACKWARD_PTRS;
        void *p[CELL_BACKWARD_PTRS];
        cell_pointers(bases, t, CELL_BACKWARD_PTRS, p);
        FN(state_backward)(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13],
                           p[14], p[15], p[16], v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10],
                           v[11], v[12], v[13], v[14], v[15], v[16], v[17], v[18]);
    }
}
