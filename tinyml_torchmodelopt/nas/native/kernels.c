/* Fused CPU kernels of the DARTS supernet (see kernels.h), compiled on first use
 * by tinyml_torchmodelopt/nas/native/__init__.py and called through ctypes. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

typedef long long i64;

/* Reductions vectorise only when the compiler may reorder the sum (-fopenmp-simd). */
#define PRAGMA(x) _Pragma(#x)
#define SIMD_SUM(a) PRAGMA(omp simd reduction(+ : a))
#define SIMD_SUM2(a, b) PRAGMA(omp simd reduction(+ : a, b))

/* The mixing kernels work per chunk of whole samples (rows of Lo) of one channel and one
 * batch-norm half, so that a chunk's candidate rows stay in L1/L2 while every edge and
 * candidate passes over them. Chunks are independent work items for the OpenMP threads
 * (PyTorch's own OpenMP runtime: the library shares its libgomp, so torch.set_num_threads
 * applies); without OpenMP the pragmas are ignored and everything runs serially. */
#define CHUNK_ELEMS 2048

/* Loops with less work (elements times candidates) run on one thread: waking a team costs more. */
#define PARALLEL_MIN_WORK 65536

typedef struct {
    i64 N, halves, Lo, per, cap, per_half, count;
} ChunkPlan;

typedef struct {
    i64 c, h, n0, n1, i0, len;  /* samples [n0, n1) of channel c, batch-norm half h */
} Chunk;

static ChunkPlan chunk_plan(i64 C, i64 N, i64 halves, i64 Lo) {
    i64 per = CHUNK_ELEMS / Lo > 0 ? CHUNK_ELEMS / Lo : 1;
    i64 largest = N - (halves - 1) * (N / halves);
    i64 per_half = (largest + per - 1) / per;
    ChunkPlan p = {N, halves, Lo, per, per * Lo, per_half, C * halves * per_half};
    return p;
}

/* Chunk number idx of the plan; 0 when it is empty (a shorter half). */
static int chunk_at(const ChunkPlan *p, i64 idx, Chunk *k) {
    i64 j = idx % p->per_half, ch = idx / p->per_half;
    k->h = ch % p->halves;
    k->c = ch / p->halves;
    i64 start = k->h * (p->N / p->halves);
    i64 end = k->h == p->halves - 1 ? p->N : start + p->N / p->halves;
    k->n0 = start + j * p->per;
    if (k->n0 >= end) return 0;
    k->n1 = k->n0 + p->per < end ? k->n0 + p->per : end;
    k->i0 = (k->c * p->N + k->n0) * p->Lo;
    k->len = (k->n1 - k->n0) * p->Lo;
    return 1;
}

/* The chunk number of work item w: items run half by half, then sample chunk by sample chunk, then
 * channel by channel, so that a static split of the items gives each thread the samples whose columns
 * it wrote in the conv product before (gemm.h splits by columns). Results are stored by chunk number. */
static i64 chunk_of_item(const ChunkPlan *p, i64 w) {
    i64 C = p->count / (p->halves * p->per_half);
    i64 h = w / (p->per_half * C), rest = w % (p->per_half * C);
    return ((rest % C) * p->halves + h) * p->per_half + rest / C;
}

/* FN(name): the copy of a function for the current REAL type, e.g. gemm_f32. */
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUF)

/* Both precisions by default; KERNELS_ONLY=32 or 64 builds one of them, so that the two can be
 * compiled at once as separate objects (the build on first use takes half as long on two cores). */
#if !defined(KERNELS_ONLY) || KERNELS_ONLY == 32
#define REAL float
#define SUF f32
#define REAL_IS_FLOAT 1
#include "pools.h"
#include "kernels.h"
#include "gemm.h"
#include "state.h"
#undef REAL
#undef SUF
#undef REAL_IS_FLOAT
#endif

#if !defined(KERNELS_ONLY) || KERNELS_ONLY == 64
#define REAL double
#define SUF f64
#define REAL_IS_FLOAT 0
#include "pools.h"
#include "kernels.h"
#include "gemm.h"
#include "state.h"
#undef REAL
#undef SUF
#undef REAL_IS_FLOAT
#endif
