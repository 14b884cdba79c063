/* Fused CPU kernels of the DARTS supernet (see kernels.h), compiled on first use
 * by tinyml_torchmodelopt/nas/native/__init__.py and called through ctypes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef long long i64;

/* Reductions vectorise only when the compiler may reorder the sum (-fopenmp-simd). */
#define PRAGMA(x) _Pragma(#x)
#define SIMD_SUM(a) PRAGMA(omp simd reduction(+ : a))
#define SIMD_SUM2(a, b) PRAGMA(omp simd reduction(+ : a, b))

/* The mixing kernels work per chunk of whole samples (rows of Lo) of one channel and one
 * batch-norm half, so that a chunk's candidate rows stay in L1/L2 while every edge and
 * candidate passes over them. */
#define CHUNK_ELEMS 2048

typedef struct {
    i64 C, N, halves, Lo, per, cap;
    i64 c, h, n0, n1, i0, len;  /* the current chunk: samples [n0, n1) of channel c, half h */
} Chunks;

static Chunks chunks_start(i64 C, i64 N, i64 halves, i64 Lo) {
    i64 per = CHUNK_ELEMS / Lo > 0 ? CHUNK_ELEMS / Lo : 1;
    Chunks it = {C, N, halves, Lo, per, per * Lo, 0, 0, 0, 0, 0, 0};
    return it;
}

static int chunks_next(Chunks *it) {
    i64 size = it->N / it->halves;
    i64 end = it->h == it->halves - 1 ? it->N : (it->h + 1) * size;
    if (it->len == 0) {
        it->n0 = 0;  /* first call */
    } else if (it->n1 < end) {
        it->n0 = it->n1;
    } else {
        if (++it->h == it->halves) {
            it->h = 0;
            if (++it->c == it->C) return 0;
        }
        it->n0 = it->h * size;
        end = it->h == it->halves - 1 ? it->N : (it->h + 1) * size;
    }
    it->n1 = it->n0 + it->per < end ? it->n0 + it->per : end;
    it->i0 = (it->c * it->N + it->n0) * it->Lo;
    it->len = (it->n1 - it->n0) * it->Lo;
    return it->len > 0;
}

#define REAL float
#define SUF f32
#include "kernels.h"
#undef REAL
#undef SUF

#define REAL double
#define SUF f64
#include "kernels.h"
#undef REAL
#undef SUF
