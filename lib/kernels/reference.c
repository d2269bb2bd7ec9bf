/* Portable reference kernels: plain C, row-major, exactly the contract of
 * kernels.h. They exist so every BLIS result can be checked against simple
 * code, and so the library works where BLIS is absent.
 *
 * Conventions shared with the BLIS table (so the two agree bit-for-bit on
 * special values, not only approximately on ordinary ones):
 *   - beta == 0: C (or y) is overwritten, never read, so NaN/Inf in it vanish;
 *   - alpha == 0: A and B (x, y) are not read; C = beta * C (BLAS semantics);
 *   - empty dimensions are no-ops (k == 0 gives C = beta * C).
 * Accumulation is in float, one accumulator, in index order. The loop orders
 * are chosen so the inner loop walks contiguous memory; `restrict` tells the
 * compiler the output never overlaps the inputs (a contract of kernels.h). */
#include <string.h>

#include "kernels/kernels.h"

/* x[0..n) *= beta, with beta == 0 writing zeros without reading x. */
static void ref_scale(size_t n, float beta, float *x) {
    if (beta == 1.0f) return;
    if (beta == 0.0f) {
        memset(x, 0, n * sizeof *x);
        return;
    }
    for (size_t j = 0; j < n; j++) x[j] *= beta;
}

static void ref_sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                      const float *a, size_t lda, const float *b, size_t ldb, float beta,
                      float *c, size_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0 || alpha == 0.0f) {
        for (size_t i = 0; i < m; i++) ref_scale(n, beta, c + i * ldc);
        return;
    }
    for (size_t i = 0; i < m; i++) {
        float *restrict ci = c + i * ldc;
        if (!trans_b) {
            /* op(B) = B is k x n: C[i,:] = beta*C[i,:] + sum_p (alpha*opA(i,p)) * B[p,:] */
            ref_scale(n, beta, ci);
            for (size_t p = 0; p < k; p++) {
                float s = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
                const float *restrict bp = b + p * ldb;
                for (size_t j = 0; j < n; j++) ci[j] += s * bp[j];
            }
        } else {
            /* op(B) = B^T, B is n x k: C[i,j] = alpha * dot(opA(i,:), B[j,:]) + beta*C[i,j] */
            for (size_t j = 0; j < n; j++) {
                const float *bj = b + j * ldb;
                float s = 0.0f;
                if (trans_a) {
                    for (size_t p = 0; p < k; p++) s += a[p * lda + i] * bj[p];
                } else {
                    const float *ai = a + i * lda;
                    for (size_t p = 0; p < k; p++) s += ai[p] * bj[p];
                }
                ci[j] = beta == 0.0f ? alpha * s : alpha * s + beta * ci[j];
            }
        }
    }
}

static void ref_sgemv(bool trans, size_t m, size_t n, float alpha, const float *a, size_t lda,
                      const float *x, float beta, float *y) {
    size_t ylen = trans ? n : m;
    size_t xlen = trans ? m : n;
    if (ylen == 0) return;
    if (xlen == 0 || alpha == 0.0f) {
        ref_scale(ylen, beta, y);
        return;
    }
    if (!trans) {
        /* y[i] = alpha * dot(A[i,:], x) + beta * y[i] */
        for (size_t i = 0; i < m; i++) {
            const float *ai = a + i * lda;
            float s = 0.0f;
            for (size_t j = 0; j < n; j++) s += ai[j] * x[j];
            y[i] = beta == 0.0f ? alpha * s : alpha * s + beta * y[i];
        }
    } else {
        /* y[j] = beta * y[j] + sum_i (alpha * x[i]) * A[i,j] */
        float *restrict yr = y;
        ref_scale(n, beta, yr);
        for (size_t i = 0; i < m; i++) {
            float s = alpha * x[i];
            const float *restrict ai = a + i * lda;
            for (size_t j = 0; j < n; j++) yr[j] += s * ai[j];
        }
    }
}

static void ref_sger(size_t m, size_t n, float alpha, const float *x, const float *y, float *a,
                     size_t lda) {
    if (m == 0 || n == 0 || alpha == 0.0f) return;
    for (size_t i = 0; i < m; i++) {
        float s = alpha * x[i];
        float *restrict ai = a + i * lda;
        const float *restrict yr = y;
        for (size_t j = 0; j < n; j++) ai[j] += s * yr[j];
    }
}

const mm_kernels mm_kernels_reference = {
    .name = "reference",
    .backend = MM_BACKEND_REFERENCE,
    .sgemm = ref_sgemm,
    .sgemv = ref_sgemv,
    .sger = ref_sger,
};
