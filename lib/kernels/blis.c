/* BLIS kernel table: the only translation unit that includes <blis.h>.
 *
 * All matrices are row-major, so every BLIS call passes the stored matrix's
 * strides as rs = ld, cs = 1 and lets BLIS_TRANSPOSE describe op(). The BLIS
 * typed API takes non-const pointers; inputs are never written through them.
 *
 * Routing, from measurements on the development machine (AMD EPYC, BLIS
 * 0.9.0 picks its zen3 kernels; 1 thread):
 *   - sgemv / sger go straight to bli_sgemv_ex / bli_sger_ex with a cached
 *     context. At the model's shapes (256x784, 128x256, 10x128) they run the
 *     AVX2 level-1f/1v kernels and cost 10.6 us / 1.7 us / 0.12 us per gemv,
 *     8-16x faster than a plain C loop; calling the dotxf/axpyf kernels by
 *     hand saved at most ~30 ns, not worth depending on kernel internals.
 *   - sgemm with m == 1 or n == 1 is a gemv, with k == 1 a rank-1 update, and
 *     tiny problems (m*n*k <= MM_BLIS_SMALL_GEMM) are a loop of gemv calls:
 *     bli_sgemm has a fixed cost of ~1.2 us (packing, control tree, thread
 *     decorator) and at m == 1 it was 1.3x slower than bli_sgemv on 256x784
 *     and ~9x slower on 10x128 (1150 ns vs 136 ns); k == 1 was ~2x slower
 *     than bli_sger. (With more than one BLIS thread a large m == 1 product
 *     could gain from the threaded gemm; batch-1 work runs single-threaded,
 *     so we keep the simpler rule.)
 *   - Degenerate sizes never reach BLIS: m or n == 0 is a no-op, k == 0 or
 *     alpha == 0 gives C = beta * C (beta == 0 writes zeros without reading).
 *   - BLIS aborts the process on strides it considers invalid. A row stride
 *     smaller than the row width is a caller bug, but the library must not
 *     abort, so such calls go to the reference kernels (which simply follow
 *     the given strides); for single-row matrices the stride is irrelevant and
 *     is raised to the width. */
#include "kernels/kernels.h"

#ifdef MM_HAVE_BLIS

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <blis.h>

/* Multiply-add count up to which sgemm is done as one gemv per row of C. */
#define MM_BLIS_SMALL_GEMM 16384u

static _Atomic(cntx_t *) g_cntx;

/* The BLIS context for this CPU (constant once BLIS is initialised; a race
 * between first callers stores the same pointer twice). */
static cntx_t *blis_cntx(void) {
    cntx_t *c = atomic_load_explicit(&g_cntx, memory_order_acquire);
    if (c == NULL) {
        c = bli_gks_query_cntx();
        atomic_store_explicit(&g_cntx, c, memory_order_release);
    }
    return c;
}

/* A rows x cols row-major matrix with row stride ld is one BLIS accepts. */
static bool ld_ok(size_t rows, size_t cols, size_t ld) { return rows <= 1 || ld >= cols; }

/* Row stride to pass to BLIS (callers have checked ld_ok; cols >= 1). */
static inc_t blis_rs(size_t cols, size_t ld) { return (inc_t)(ld < cols ? cols : ld); }

static void scale_vec(size_t n, float beta, float *x, size_t incx) {
    if (beta == 1.0f) return;
    if (beta == 0.0f) {
        if (incx == 1) {
            memset(x, 0, n * sizeof *x);
        } else {
            for (size_t j = 0; j < n; j++) x[j * incx] = 0.0f;
        }
        return;
    }
    for (size_t j = 0; j < n; j++) x[j * incx] *= beta;
}

static void scale_rows(size_t m, size_t n, float beta, float *c, size_t ldc) {
    if (beta == 1.0f) return;
    for (size_t i = 0; i < m; i++) scale_vec(n, beta, c + i * ldc, 1);
}

static void blis_sgemv(bool trans, size_t m, size_t n, float alpha, const float *a, size_t lda,
                       const float *x, float beta, float *y) {
    size_t ylen = trans ? n : m;
    size_t xlen = trans ? m : n;
    if (ylen == 0) return;
    if (xlen == 0 || alpha == 0.0f) {
        scale_vec(ylen, beta, y, 1);
        return;
    }
    if (!ld_ok(m, n, lda)) {
        mm_kernels_reference.sgemv(trans, m, n, alpha, a, lda, x, beta, y);
        return;
    }
    /* m, n are the stored matrix's dimensions (BLIS derives the vector
     * lengths with bli_set_dims_with_trans). */
    bli_sgemv_ex(trans ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, (dim_t)m,
                 (dim_t)n, &alpha, (float *)a, blis_rs(n, lda), 1, (float *)x, 1, &beta, y, 1,
                 blis_cntx(), NULL);
}

static void blis_sger(size_t m, size_t n, float alpha, const float *x, const float *y, float *a,
                      size_t lda) {
    if (m == 0 || n == 0 || alpha == 0.0f) return;
    if (!ld_ok(m, n, lda)) {
        mm_kernels_reference.sger(m, n, alpha, x, y, a, lda);
        return;
    }
    bli_sger_ex(BLIS_NO_CONJUGATE, BLIS_NO_CONJUGATE, (dim_t)m, (dim_t)n, &alpha, (float *)x, 1,
                (float *)y, 1, a, blis_rs(n, lda), 1, blis_cntx(), NULL);
}

static bool small_gemm(size_t m, size_t n, size_t k) {
    const size_t s = MM_BLIS_SMALL_GEMM;
    if (m > s || n > s || k > s) return false;
    size_t mn = m * n; /* <= 2^28: no overflow even with 32-bit size_t */
    return mn <= s && mn * k <= s;
}

static void blis_sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                       const float *a, size_t lda, const float *b, size_t ldb, float beta,
                       float *c, size_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0 || alpha == 0.0f) {
        scale_rows(m, n, beta, c, ldc);
        return;
    }
    /* Stored shapes: A is m x k (k x m if trans_a), B is k x n (n x k if trans_b). */
    size_t a_cols = trans_a ? m : k, a_rows = trans_a ? k : m;
    size_t b_cols = trans_b ? k : n, b_rows = trans_b ? n : k;
    if (!ld_ok(a_rows, a_cols, lda) || !ld_ok(b_rows, b_cols, ldb) || !ld_ok(m, n, ldc)) {
        mm_kernels_reference.sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const inc_t rsa = blis_rs(a_cols, lda), rsb = blis_rs(b_cols, ldb), rsc = blis_rs(n, ldc);
    float *pa = (float *)a, *pb = (float *)b;
    cntx_t *cntx = blis_cntx();

    if (k == 1) {
        /* C = beta*C + alpha * x y^T with x = op(A)[:,0] (m), y = op(B)[0,:] (n). */
        inc_t incx = trans_a ? 1 : rsa;
        inc_t incy = trans_b ? rsb : 1;
        scale_rows(m, n, beta, c, ldc);
        bli_sger_ex(BLIS_NO_CONJUGATE, BLIS_NO_CONJUGATE, (dim_t)m, (dim_t)n, &alpha, pa, incx,
                    pb, incy, c, rsc, 1, cntx, NULL);
        return;
    }
    if (n == 1) {
        /* C[:,0] (stride ldc) = alpha * op(A) x + beta * C[:,0], x = op(B)[:,0] (k). */
        inc_t incx = trans_b ? 1 : rsb;
        if (trans_a) {
            bli_sgemv_ex(BLIS_TRANSPOSE, BLIS_NO_CONJUGATE, (dim_t)k, (dim_t)m, &alpha, pa, rsa,
                         1, pb, incx, &beta, c, rsc, cntx, NULL);
        } else {
            bli_sgemv_ex(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, (dim_t)m, (dim_t)k, &alpha, pa, rsa,
                         1, pb, incx, &beta, c, rsc, cntx, NULL);
        }
        return;
    }
    if (m == 1 || small_gemm(m, n, k)) {
        /* Row i of C: C[i,:] = alpha * op(B)^T x + beta * C[i,:], x = op(A)[i,:] (k). */
        inc_t incx = trans_a ? rsa : 1;
        for (size_t i = 0; i < m; i++) {
            float *x = trans_a ? pa + i : pa + i * (size_t)rsa;
            float *y = c + i * (size_t)rsc;
            if (trans_b) { /* B is n x k: y = B x */
                bli_sgemv_ex(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, (dim_t)n, (dim_t)k, &alpha, pb,
                             rsb, 1, x, incx, &beta, y, 1, cntx, NULL);
            } else { /* B is k x n: y = B^T x */
                bli_sgemv_ex(BLIS_TRANSPOSE, BLIS_NO_CONJUGATE, (dim_t)k, (dim_t)n, &alpha, pb,
                             rsb, 1, x, incx, &beta, y, 1, cntx, NULL);
            }
        }
        return;
    }
    /* The thread count comes from BLIS's global setting (mm_blis_set_threads). */
    bli_sgemm(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
              trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &alpha,
              pa, rsa, 1, pb, rsb, 1, &beta, c, rsc, 1);
}

void mm_blis_set_threads(int n) {
    if (n < 1) n = 1;
    bli_thread_set_num_threads((dim_t)n);
}

const mm_kernels mm_kernels_blis = {
    .name = "blis",
    .backend = MM_BACKEND_BLIS,
    .sgemm = blis_sgemm,
    .sgemv = blis_sgemv,
    .sger = blis_sger,
};

#else

/* Built without BLIS: keep the translation unit non-empty (ISO C). */
typedef int mm_blis_not_built;

#endif
