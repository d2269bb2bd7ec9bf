/* The kernel layer: the only place that knows BLIS. Everything above calls
 * through an mm_kernels table. All matrices are row-major; `lda` etc. are
 * row strides in elements. Never installed. */
#ifndef MM_KERNELS_H
#define MM_KERNELS_H

#include <stdbool.h>
#include <stddef.h>

#include "mm/mm_common.h"

typedef struct mm_kernels {
    const char *name;
    mm_backend backend;

    /* C[m x n] = alpha * op(A) * op(B) + beta * C, row-major.
     * op(A) is m x k (A is k x m when trans_a), op(B) is k x n (B is n x k
     * when trans_b). beta == 0 means C is not read (may hold NaN). */
    void (*sgemm)(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                  const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                  size_t ldc);

    /* y[m] = alpha * A[m x n] x[n] + beta * y   (trans = false)
     * y[n] = alpha * A^T x[m] + beta * y        (trans = true); row-major A.
     * beta == 0 means y is not read. */
    void (*sgemv)(bool trans, size_t m, size_t n, float alpha, const float *a, size_t lda,
                  const float *x, float beta, float *y);

    /* A[m x n] += alpha * x[m] y[n]^T (rank-1 update), row-major A. */
    void (*sger)(size_t m, size_t n, float alpha, const float *x, const float *y, float *a,
                 size_t lda);
} mm_kernels;

/* The table in use now (selected on first use from MM_BACKEND, default BLIS
 * when built with it). Never NULL. Thread-safe. */
const mm_kernels *mm_kernels_get(void);

/* The table of a given backend, or NULL if not built in. */
const mm_kernels *mm_kernels_for(mm_backend backend);

extern const mm_kernels mm_kernels_reference;
#ifdef MM_HAVE_BLIS
extern const mm_kernels mm_kernels_blis;
void mm_blis_set_threads(int n);
#endif

#endif
