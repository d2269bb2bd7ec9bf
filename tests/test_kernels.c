/* Kernel layer: every backend against a naive double-precision triple loop,
 * BLIS against the reference kernels, and the backend selection API. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mm_internal.h"
#include "kernels/kernels.h"
#include "testutil.h"

#ifdef MM_HAVE_BLIS
#include <blis.h>
#endif

static const float SENTINEL = 777.25f; /* padding of outputs: must survive */

static const mm_kernels *const tables[] = {
    &mm_kernels_reference,
#ifdef MM_HAVE_BLIS
    &mm_kernels_blis,
#endif
};
#define N_TABLES (sizeof tables / sizeof tables[0])

static const size_t dims[] = {1, 2, 3, 7, 17, 64, 65, 256, 784};
#define N_DIMS (sizeof dims / sizeof dims[0])

/* ---- helpers ------------------------------------------------------------- */

static float *xalloc(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* A rows x cols matrix with row stride ld >= cols (padding set to `pad`). */
static float *make_matrix(size_t rows, size_t cols, size_t ld, uint64_t seed, float pad) {
    size_t total = rows ? (rows - 1) * ld + cols : 0;
    size_t alloc = rows * ld > total ? rows * ld : total;
    float *m = xalloc(alloc);
    for (size_t i = 0; i < alloc; i++) m[i] = pad;
    for (size_t i = 0; i < rows; i++) mm_test_fill(m + i * ld, cols, seed * 1000003u + i, -1.0f, 1.0f);
    return m;
}

static double opel(const float *x, size_t ld, bool trans, size_t r, size_t c) {
    return trans ? (double)x[c * ld + r] : (double)x[r * ld + c];
}

/* out[i*n+j] = alpha * sum_p op(A)[i,p] op(B)[p,j] + beta * C[i,j], in double;
 * beta == 0 ignores C, alpha == 0 ignores A and B. */
static void naive_gemm(bool ta, bool tb, size_t m, size_t n, size_t k, double alpha,
                       const float *a, size_t lda, const float *b, size_t ldb, double beta,
                       const float *c, size_t ldc, double *out) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            if (alpha != 0)
                for (size_t p = 0; p < k; p++) s += opel(a, lda, ta, i, p) * opel(b, ldb, tb, p, j);
            out[i * n + j] = alpha * s + (beta == 0 ? 0.0 : beta * (double)c[i * ldc + j]);
        }
}

static double tolerance(size_t k, float alpha, float beta) {
    /* Inputs are in [-1, 1): float accumulation error grows with k. */
    return 1e-5 * (double)(k + 2) * fabs((double)alpha) + 1e-5 * fabs((double)beta) + 1e-6;
}

/* Compare an m x n float result (stride ld) with a double one; check that
 * the padding of every row still holds SENTINEL. */
static void check_result(const char *what, const float *got, size_t m, size_t n, size_t ld,
                         const double *want, double tol) {
    double worst = 0;
    size_t wi = 0, wj = 0;
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            double d = fabs((double)got[i * ld + j] - want[i * n + j]);
            if (isnan(d) || d > worst) {
                worst = isnan(d) ? INFINITY : d;
                wi = i;
                wj = j;
            }
        }
        for (size_t j = n; j < ld; j++)
            ck_assert_msg(got[i * ld + j] == SENTINEL, "%s: padding of row %zu col %zu written",
                          what, i, j);
    }
    ck_assert_msg(worst <= tol, "%s: max error %g > tol %g at (%zu,%zu): got %g want %g", what,
                  worst, tol, wi, wj, m ? (double)got[wi * ld + wj] : 0.0,
                  m ? want[wi * n + wj] : 0.0);
}

/* One sgemm case on one table, checked against the naive loop. If `cmp` is
 * given (an m x n result with stride n from another backend) the result must
 * also agree with it. The result is copied into `keep` (m x n) if non-NULL. */
static void gemm_case(const mm_kernels *kt, bool ta, bool tb, size_t m, size_t n, size_t k,
                      float alpha, float beta, size_t pad, uint64_t seed, float *keep) {
    size_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    size_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    size_t lda = a_cols + pad, ldb = b_cols + 2 * pad, ldc = n + pad;
    /* Padding of inputs is NaN: reading it would poison the result. */
    float *a = make_matrix(a_rows, a_cols, lda, seed, NAN);
    float *b = make_matrix(b_rows, b_cols, ldb, seed + 1, NAN);
    float *c = make_matrix(m, n, ldc, seed + 2, SENTINEL);
    if (beta == 0.0f)
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) c[i * ldc + j] = NAN; /* must not propagate */
    double *want = malloc((m * n > 0 ? m * n : 1) * sizeof *want);
    ck_assert_ptr_nonnull(want);
    naive_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, want);

    kt->sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    char what[160];
    snprintf(what, sizeof what, "%s sgemm ta=%d tb=%d m=%zu n=%zu k=%zu alpha=%g beta=%g pad=%zu",
             kt->name, ta, tb, m, n, k, (double)alpha, (double)beta, pad);
    check_result(what, c, m, n, ldc, want, tolerance(k, alpha, beta));
    if (keep)
        for (size_t i = 0; i < m; i++) memcpy(keep + i * n, c + i * ldc, n * sizeof *c);
    free(a);
    free(b);
    free(c);
    free(want);
}

/* Run a gemm case on every table; BLIS must match the reference closely. */
static void gemm_all(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, float beta,
                     size_t pad, uint64_t seed) {
    float *res[N_TABLES];
    for (size_t t = 0; t < N_TABLES; t++) {
        res[t] = xalloc(m * n);
        gemm_case(tables[t], ta, tb, m, n, k, alpha, beta, pad, seed, res[t]);
    }
    for (size_t t = 1; t < N_TABLES; t++) {
        double d = mm_test_max_abs_diff(res[0], res[t], m * n);
        ck_assert_msg(d <= tolerance(k, alpha, beta),
                      "%s vs %s sgemm ta=%d tb=%d m=%zu n=%zu k=%zu: max diff %g", tables[t]->name,
                      tables[0]->name, ta, tb, m, n, k, d);
    }
    for (size_t t = 0; t < N_TABLES; t++) free(res[t]);
}

static const float alphas[] = {1.0f, -0.5f, 2.25f};
static const float betas[] = {0.0f, 1.0f, -1.5f, 0.3f};

/* ---- sgemm --------------------------------------------------------------- */

START_TEST(test_gemm_small_all_dims) {
    /* Every combination of small dims, all trans flags, with padding. */
    static const size_t small[] = {1, 2, 3, 7, 17};
    uint64_t seed = 1;
    for (size_t im = 0; im < 5; im++)
        for (size_t in = 0; in < 5; in++)
            for (size_t ik = 0; ik < 5; ik++)
                for (int t = 0; t < 4; t++) {
                    float alpha = alphas[seed % 3], beta = betas[seed % 4];
                    gemm_all(t & 1, t & 2, small[im], small[in], small[ik], alpha, beta,
                             seed % 3, seed);
                    seed++;
                }
}
END_TEST

START_TEST(test_gemm_random_shapes) {
    /* Random shapes from the full list (odd, 1-sized, model-sized), bounded
     * work per case. _i selects one of the four trans combinations. */
    mm_rng rng;
    mm_rng_seed(&rng, 1234 + (uint64_t)_i);
    bool ta = _i & 1, tb = _i & 2;
    int done = 0;
    while (done < 40) {
        size_t m = dims[mm_rng_below(&rng, N_DIMS)];
        size_t n = dims[mm_rng_below(&rng, N_DIMS)];
        size_t k = dims[mm_rng_below(&rng, N_DIMS)];
        if (m * n * k > (size_t)4 << 20) continue;
        float alpha = alphas[mm_rng_below(&rng, 3)], beta = betas[mm_rng_below(&rng, 4)];
        size_t pad = (size_t)mm_rng_below(&rng, 4);
        gemm_all(ta, tb, m, n, k, alpha, beta, pad, mm_rng_next(&rng) % 100000);
        done++;
    }
}
END_TEST

START_TEST(test_gemm_model_shapes) {
    /* The 784-256-128-10 network: forward X W^T, backward dY W, weight grad
     * dY^T X, at batch 1 and batch 64. */
    static const size_t layers[3][2] = {{256, 784}, {128, 256}, {10, 128}};
    static const size_t batches[] = {1, 64};
    for (size_t l = 0; l < 3; l++)
        for (size_t bi = 0; bi < 2; bi++) {
            size_t out = layers[l][0], in = layers[l][1], bs = batches[bi];
            gemm_all(false, true, bs, out, in, 1.0f, 0.0f, 0, 10 + l); /* Y = X W^T */
            gemm_all(false, false, bs, in, out, 1.0f, 0.0f, 1, 20 + l); /* dX = dY W */
            gemm_all(true, false, out, in, bs, -0.5f, 1.0f, 0, 30 + l); /* W += a dY^T X */
        }
}
END_TEST

START_TEST(test_gemm_degenerate) {
    for (size_t t = 0; t < N_TABLES; t++) {
        const mm_kernels *kt = tables[t];
        float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
        float c[6];
        /* m == 0 and n == 0: nothing is touched. */
        for (int i = 0; i < 6; i++) c[i] = SENTINEL;
        kt->sgemm(false, false, 0, 3, 2, 1.0f, a, 2, b, 3, 0.0f, c, 3);
        kt->sgemm(false, false, 2, 0, 2, 1.0f, a, 2, b, 0, 0.0f, c, 3);
        for (int i = 0; i < 6; i++) ck_assert_float_eq(c[i], SENTINEL);
        /* k == 0: C = beta * C; with beta == 0, NaN in C disappears. */
        for (int i = 0; i < 6; i++) c[i] = (float)i;
        kt->sgemm(false, true, 2, 3, 0, 1.0f, a, 1, b, 1, 2.0f, c, 3);
        for (int i = 0; i < 6; i++) ck_assert_float_eq(c[i], 2.0f * (float)i);
        for (int i = 0; i < 6; i++) c[i] = NAN;
        kt->sgemm(true, false, 2, 3, 0, 1.0f, a, 1, b, 1, 0.0f, c, 3);
        for (int i = 0; i < 6; i++) ck_assert_float_eq(c[i], 0.0f);
        /* k == 0 with beta == 1 leaves C alone. */
        for (int i = 0; i < 6; i++) c[i] = (float)i;
        kt->sgemm(false, false, 2, 3, 0, 1.0f, a, 1, b, 3, 1.0f, c, 3);
        for (int i = 0; i < 6; i++) ck_assert_float_eq(c[i], (float)i);
        /* alpha == 0: A and B are not read (BLAS semantics). */
        float an[4] = {NAN, NAN, NAN, NAN};
        for (int i = 0; i < 6; i++) c[i] = (float)i;
        kt->sgemm(false, false, 2, 3, 2, 0.0f, an, 2, an, 3, -1.0f, c, 3);
        for (int i = 0; i < 6; i++) ck_assert_float_eq(c[i], -(float)i);
    }
}
END_TEST

START_TEST(test_gemm_odd_strides) {
    /* Single-row matrices with a meaningless (zero) row stride, and a read-only
     * A whose rows overlap (lda < k): no backend may abort; all agree. */
    float a[64], b[64 * 8], c_ref[8], c[8];
    mm_test_fill(a, 64, 5, -1, 1);
    mm_test_fill(b, 64 * 8, 6, -1, 1);
    for (size_t t = 0; t < N_TABLES; t++) {
        /* m == 1, lda = ldc = 0 */
        double want[8];
        naive_gemm(false, false, 1, 8, 16, 1.0, a, 0, b, 8, 0.0, NULL, 0, want);
        for (int j = 0; j < 8; j++) c[j] = NAN;
        tables[t]->sgemm(false, false, 1, 8, 16, 1.0f, a, 0, b, 8, 0.0f, c, 0);
        check_result(tables[t]->name, c, 1, 8, 8, want, tolerance(16, 1, 0));
        /* overlapping rows of A: 4 x 16 with lda = 8 */
        double want2[4 * 8];
        naive_gemm(false, false, 4, 8, 16, 1.0, a, 8, b, 8, 0.0, NULL, 0, want2);
        float c2[4 * 8];
        tables[t]->sgemm(false, false, 4, 8, 16, 1.0f, a, 8, b, 8, 0.0f, c2, 8);
        check_result(tables[t]->name, c2, 4, 8, 8, want2, tolerance(16, 1, 0));
        /* gemv and ger with a single row and lda = 0 */
        tables[t]->sgemv(false, 1, 16, 1.0f, a, 0, b, 0.0f, c);
        double d = 0;
        for (int p = 0; p < 16; p++) d += (double)a[p] * (double)b[p];
        ck_assert_double_le(fabs(c[0] - d), 1e-5);
        memcpy(c_ref, a, sizeof c_ref);
        tables[t]->sger(1, 8, 2.0f, b, b + 8, c_ref, 0);
        for (int j = 0; j < 8; j++)
            ck_assert_double_le(fabs((double)c_ref[j] - ((double)a[j] + 2.0 * b[0] * b[8 + j])),
                                1e-6);
    }
}
END_TEST

/* ---- sgemv --------------------------------------------------------------- */

static void gemv_case(const mm_kernels *kt, bool trans, size_t m, size_t n, float alpha,
                      float beta, size_t pad, uint64_t seed, float *keep) {
    size_t lda = n + pad;
    size_t xlen = trans ? m : n, ylen = trans ? n : m;
    float *a = make_matrix(m, n, lda, seed, NAN);
    float *x = xalloc(xlen);
    float *y = xalloc(ylen + 4);
    mm_test_fill(x, xlen, seed + 7, -1, 1);
    mm_test_fill(y, ylen, seed + 8, -1, 1);
    if (beta == 0.0f)
        for (size_t i = 0; i < ylen; i++) y[i] = NAN;
    for (size_t i = 0; i < 4; i++) y[ylen + i] = SENTINEL; /* guard after y */
    double *want = malloc((ylen ? ylen : 1) * sizeof *want);
    ck_assert_ptr_nonnull(want);
    /* y = op(A) x as a gemm with one column: op(A) (ylen x xlen) times x (xlen x 1). */
    naive_gemm(trans, false, ylen, 1, xlen, alpha, a, lda, x, 1, beta, y, 1, want);

    kt->sgemv(trans, m, n, alpha, a, lda, x, beta, y);

    char what[128];
    snprintf(what, sizeof what, "%s sgemv trans=%d m=%zu n=%zu alpha=%g beta=%g", kt->name, trans,
             m, n, (double)alpha, (double)beta);
    check_result(what, y, ylen, 1, 1, want, tolerance(xlen, alpha, beta));
    for (size_t i = 0; i < 4; i++)
        ck_assert_msg(y[ylen + i] == SENTINEL, "%s: wrote past the end of y", what);
    if (keep) memcpy(keep, y, ylen * sizeof *y);
    free(a);
    free(x);
    free(y);
    free(want);
}

START_TEST(test_gemv) {
    uint64_t seed = 100;
    for (size_t im = 0; im < N_DIMS; im++)
        for (size_t in = 0; in < N_DIMS; in++)
            for (int trans = 0; trans < 2; trans++) {
                size_t m = dims[im], n = dims[in];
                float alpha = alphas[seed % 3], beta = betas[seed % 4];
                size_t ylen = trans ? n : m;
                float *res[N_TABLES];
                for (size_t t = 0; t < N_TABLES; t++) {
                    res[t] = xalloc(ylen);
                    gemv_case(tables[t], trans, m, n, alpha, beta, seed % 3, seed, res[t]);
                }
                for (size_t t = 1; t < N_TABLES; t++)
                    ck_assert_double_le(mm_test_max_abs_diff(res[0], res[t], ylen),
                                        tolerance(trans ? m : n, alpha, beta));
                for (size_t t = 0; t < N_TABLES; t++) free(res[t]);
                seed++;
            }
}
END_TEST

START_TEST(test_gemv_degenerate) {
    for (size_t t = 0; t < N_TABLES; t++) {
        float a[6] = {1, 2, 3, 4, 5, 6}, x[3] = {1, 1, 1}, y[3];
        /* empty input dimension: y = beta * y (beta == 0 clears NaN) */
        y[0] = y[1] = NAN;
        tables[t]->sgemv(false, 2, 0, 1.0f, a, 0, x, 0.0f, y);
        ck_assert_float_eq(y[0], 0.0f);
        ck_assert_float_eq(y[1], 0.0f);
        y[0] = 1;
        y[1] = 2;
        y[2] = 3;
        tables[t]->sgemv(true, 0, 3, 1.0f, a, 3, x, -2.0f, y);
        ck_assert_float_eq(y[0], -2.0f);
        ck_assert_float_eq(y[2], -6.0f);
        /* empty output: untouched */
        y[0] = SENTINEL;
        tables[t]->sgemv(true, 2, 0, 1.0f, a, 3, x, 0.0f, y);
        ck_assert_float_eq(y[0], SENTINEL);
        /* alpha == 0: A and x not read */
        float an[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
        y[0] = 1;
        y[1] = 2;
        tables[t]->sgemv(false, 2, 3, 0.0f, an, 3, an, 0.5f, y);
        ck_assert_float_eq(y[0], 0.5f);
        ck_assert_float_eq(y[1], 1.0f);
    }
}
END_TEST

/* ---- sger ---------------------------------------------------------------- */

START_TEST(test_ger) {
    uint64_t seed = 500;
    for (size_t im = 0; im < N_DIMS; im++)
        for (size_t in = 0; in < N_DIMS; in++) {
            size_t m = dims[im], n = dims[in], pad = seed % 3, lda = n + pad;
            float alpha = seed % 2 ? -0.75f : 1.0f;
            float *x = xalloc(m), *y = xalloc(n);
            mm_test_fill(x, m, seed, -1, 1);
            mm_test_fill(y, n, seed + 1, -1, 1);
            float *res[N_TABLES];
            for (size_t t = 0; t < N_TABLES; t++) {
                float *a = make_matrix(m, n, lda, seed + 2, SENTINEL);
                double *want = malloc(m * n * sizeof *want);
                ck_assert_ptr_nonnull(want);
                for (size_t i = 0; i < m; i++)
                    for (size_t j = 0; j < n; j++)
                        want[i * n + j] =
                            (double)a[i * lda + j] + (double)alpha * (double)x[i] * (double)y[j];
                tables[t]->sger(m, n, alpha, x, y, a, lda);
                char what[96];
                snprintf(what, sizeof what, "%s sger m=%zu n=%zu", tables[t]->name, m, n);
                check_result(what, a, m, n, lda, want, 1e-6);
                res[t] = xalloc(m * n);
                for (size_t i = 0; i < m; i++) memcpy(res[t] + i * n, a + i * lda, n * sizeof *a);
                free(a);
                free(want);
            }
            for (size_t t = 1; t < N_TABLES; t++)
                ck_assert_double_le(mm_test_max_abs_diff(res[0], res[t], m * n), 1e-6);
            for (size_t t = 0; t < N_TABLES; t++) free(res[t]);
            free(x);
            free(y);
            seed++;
        }
}
END_TEST

START_TEST(test_ger_degenerate) {
    for (size_t t = 0; t < N_TABLES; t++) {
        float a[4] = {1, 2, 3, 4}, nan2[2] = {NAN, NAN};
        tables[t]->sger(0, 2, 1.0f, nan2, nan2, a, 2);
        tables[t]->sger(2, 0, 1.0f, nan2, nan2, a, 2);
        tables[t]->sger(2, 2, 0.0f, nan2, nan2, a, 2); /* alpha == 0: x, y not read */
        for (int i = 0; i < 4; i++) ck_assert_float_eq(a[i], (float)(i + 1));
    }
}
END_TEST

/* ---- backend selection --------------------------------------------------- */

START_TEST(test_backend_select) {
    MM_ASSERT_OK(mm_backend_select(MM_BACKEND_REFERENCE));
    ck_assert_int_eq(mm_backend_current(), MM_BACKEND_REFERENCE);
    ck_assert_str_eq(mm_backend_name(), "reference");
    ck_assert_ptr_eq(mm_kernels_get(), &mm_kernels_reference);

#ifdef MM_HAVE_BLIS
    MM_ASSERT_OK(mm_backend_select(MM_BACKEND_BLIS));
    ck_assert_int_eq(mm_backend_current(), MM_BACKEND_BLIS);
    ck_assert_str_eq(mm_backend_name(), "blis");
    ck_assert_ptr_eq(mm_kernels_get(), &mm_kernels_blis);
    ck_assert_ptr_eq(mm_kernels_for(MM_BACKEND_BLIS), &mm_kernels_blis);
#else
    MM_ASSERT_STATUS(mm_backend_select(MM_BACKEND_BLIS), MM_E_UNSUPPORTED);
    ck_assert(strstr(mm_last_error_message(), "BLIS") != NULL);
    ck_assert_int_eq(mm_backend_current(), MM_BACKEND_REFERENCE);
    ck_assert_ptr_null(mm_kernels_for(MM_BACKEND_BLIS));
#endif
    mm_backend before = mm_backend_current();
    MM_ASSERT_STATUS(mm_backend_select((mm_backend)99), MM_E_INVALID_ARGUMENT);
    ck_assert(strlen(mm_last_error_message()) > 0);
    MM_ASSERT_STATUS(mm_backend_select((mm_backend)0), MM_E_INVALID_ARGUMENT);
    ck_assert_int_eq(mm_backend_current(), before);
    ck_assert_ptr_eq(mm_kernels_for(MM_BACKEND_REFERENCE), &mm_kernels_reference);
    ck_assert_ptr_null(mm_kernels_for((mm_backend)99));
}
END_TEST

START_TEST(test_num_threads) {
    MM_ASSERT_STATUS(mm_set_num_threads(0), MM_E_OUT_OF_RANGE);
    ck_assert(strlen(mm_last_error_message()) > 0);
    MM_ASSERT_STATUS(mm_set_num_threads(-3), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_set_num_threads(1025), MM_E_OUT_OF_RANGE);
    MM_ASSERT_OK(mm_set_num_threads(1024));
    MM_ASSERT_OK(mm_set_num_threads(2));
    /* A large product with 2 BLIS threads still matches the reference. */
    gemm_all(false, true, 128, 256, 784, 1.0f, 0.0f, 0, 77);
    gemm_all(true, false, 256, 128, 96, 0.5f, 1.0f, 1, 78);
#ifdef MM_HAVE_BLIS
    ck_assert_int_eq((int)bli_thread_get_num_threads(), 2);
#endif
    MM_ASSERT_OK(mm_set_num_threads(1));
#ifdef MM_HAVE_BLIS
    ck_assert_int_eq((int)bli_thread_get_num_threads(), 1);
#endif
}
END_TEST

/* The next tests rely on running in a fresh (forked) process, where the
 * backend has not been chosen yet. Without fork mode they pass vacuously. */
static bool fresh_process(void) {
    const char *f = getenv("CK_FORK");
    return !(f && strcmp(f, "no") == 0);
}

START_TEST(test_env_reference) {
    if (!fresh_process()) return;
    setenv("MM_BACKEND", "reference", 1);
    ck_assert_ptr_eq(mm_kernels_get(), &mm_kernels_reference);
    ck_assert_int_eq(mm_backend_current(), MM_BACKEND_REFERENCE);
}
END_TEST

START_TEST(test_env_unknown_falls_back) {
    if (!fresh_process()) return;
    setenv("MM_BACKEND", "cuda-please", 1);
#ifdef MM_HAVE_BLIS
    ck_assert_int_eq(mm_backend_current(), MM_BACKEND_BLIS);
#else
    ck_assert_int_eq(mm_backend_current(), MM_BACKEND_REFERENCE);
#endif
}
END_TEST

START_TEST(test_env_blis_default_one_thread) {
    if (!fresh_process()) return;
    /* The environment asks for more threads; mmaint's default is 1. */
    setenv("MM_BACKEND", "blis", 1);
    setenv("OMP_NUM_THREADS", "2", 1);
    setenv("BLIS_NUM_THREADS", "2", 1);
#ifdef MM_HAVE_BLIS
    ck_assert_ptr_eq(mm_kernels_get(), &mm_kernels_blis);
    ck_assert_int_eq((int)bli_thread_get_num_threads(), 1);
#else
    ck_assert_ptr_eq(mm_kernels_get(), &mm_kernels_reference);
#endif
}
END_TEST

static void *first_use(void *arg) {
    *(const mm_kernels **)arg = mm_kernels_get();
    return NULL;
}

START_TEST(test_first_use_threads) {
    if (!fresh_process()) return;
    unsetenv("MM_BACKEND");
    enum { NT = 8 };
    pthread_t th[NT];
    const mm_kernels *got[NT];
    for (int i = 0; i < NT; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, first_use, &got[i]), 0);
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < NT; i++) {
        ck_assert_ptr_nonnull(got[i]);
        ck_assert_ptr_eq(got[i], mm_kernels_get());
    }
#ifdef MM_HAVE_BLIS
    ck_assert_ptr_eq(mm_kernels_get(), &mm_kernels_blis);
#else
    ck_assert_ptr_eq(mm_kernels_get(), &mm_kernels_reference);
#endif
}
END_TEST

static Suite *kernels_suite(void) {
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("gemm");
    tcase_add_test(tc, test_gemm_small_all_dims);
    tcase_add_loop_test(tc, test_gemm_random_shapes, 0, 4);
    tcase_add_test(tc, test_gemm_model_shapes);
    tcase_add_test(tc, test_gemm_degenerate);
    tcase_add_test(tc, test_gemm_odd_strides);
    suite_add_tcase(s, tc);

    tc = tcase_create("gemv_ger");
    tcase_add_test(tc, test_gemv);
    tcase_add_test(tc, test_gemv_degenerate);
    tcase_add_test(tc, test_ger);
    tcase_add_test(tc, test_ger_degenerate);
    suite_add_tcase(s, tc);

    tc = tcase_create("backend");
    tcase_add_test(tc, test_backend_select);
    tcase_add_test(tc, test_num_threads);
    tcase_add_test(tc, test_env_reference);
    tcase_add_test(tc, test_env_unknown_falls_back);
    tcase_add_test(tc, test_env_blis_default_one_thread);
    tcase_add_test(tc, test_first_use_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(kernels_suite()); }
