/* Per-layer GFLOP/s of mmaint's forward/backward matrix products against a
 * direct bli_sgemm on the same shapes, plus where the time of a whole
 * training step goes. JSON lines on stdout.
 *
 *   bench_gemm [--seconds S]     (S: time per measurement, default 0.3)
 *
 * For each dense layer of 784-256-128-10 (in -> out) and batch n, the calls
 * lib/model/dense.c makes (row-major):
 *   fwd : Y[n x out]  = X[n x in] W^T           sgemm(N, T, n, out, in)
 *   dW  : dW[out x in] = dY^T X                  sgemm(T, N, out, in, n)
 *   dX  : dX[n x in]  = dY W                     sgemm(N, N, n, in, out)
 * timed through the kernel table the library uses (mm_kernels_get(), linked
 * from the internal object library) and through bli_sgemm called here
 * directly with the same strides (for n = 1: bli_sgemv / bli_sger, the
 * level-2 calls a direct BLIS user would make).
 *
 * Then the whole model through the public API at batch 64 (and 1): forward,
 * mm_model_backward, mm_optimizer_step (Adam / SGD), so that
 * step - backward = optimizer update and backward - sum(GEMMs) = activations,
 * bias, loss and copies.
 */
#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "kernels/kernels.h"
#include "mm/mm.h"

static double g_seconds = 0.3;

typedef void (*op_fn)(void *ctx);

/* Calls of fn that take about `seconds`. */
static size_t calibrate(op_fn fn, void *ctx, double seconds) {
    fn(ctx);
    fn(ctx);
    double t0 = bench_now();
    size_t reps = 0;
    do {
        fn(ctx);
        reps++;
    } while (bench_now() - t0 < seconds / 10);
    return reps * 10;
}

static double time_block(op_fn fn, void *ctx, size_t per) {
    double s = bench_now();
    for (size_t i = 0; i < per; i++) fn(ctx);
    return (bench_now() - s) / (double)per;
}

#define NBLOCKS 9

/* The same for nf functions, their blocks interleaved in a rotating order so
 * that machine noise hits all alike; medians into t[]. */
static void time_multi(int nf, op_fn *fns, void *ctx, double *t) {
    size_t per[4];
    double blk[4][NBLOCKS];
    for (int f = 0; f < nf; f++) per[f] = calibrate(fns[f], ctx, g_seconds / NBLOCKS);
    for (int i = 0; i < NBLOCKS; i++)
        for (int j = 0; j < nf; j++) {
            int f = (i + j) % nf;
            blk[f][i] = time_block(fns[f], ctx, per[f]);
        }
    for (int f = 0; f < nf; f++) {
        qsort(blk[f], NBLOCKS, sizeof blk[f][0], bench_cmp_double);
        t[f] = blk[f][NBLOCKS / 2];
    }
}

static void time_pair(op_fn fa, op_fn fb, void *ctx, double *ta, double *tb) {
    op_fn fns[2] = {fa, fb};
    double t[2];
    time_multi(2, fns, ctx, t);
    *ta = t[0];
    *tb = t[1];
}

typedef struct gemm_ctx {
    const mm_kernels *k;
    bool ta, tb;
    size_t m, n, kk, lda, ldb, ldc;
    float *a, *b, *c;
    int level2; /* for the direct BLIS call: 0 = gemm, 1 = gemv (n==1 / m==1), 2 = ger (k==1) */
    bool gemv_trans;
    size_t gm, gn;
} gemm_ctx;

static void run_mm(void *p) {
    gemm_ctx *g = p;
    g->k->sgemm(g->ta, g->tb, g->m, g->n, g->kk, 1.0f, g->a, g->lda, g->b, g->ldb, 0.0f, g->c,
                g->ldc);
}

static void run_mm_gemv(void *p) { /* the library's own gemv entry (dense n == 1 paths) */
    gemm_ctx *g = p;
    g->k->sgemv(g->gemv_trans, g->gm, g->gn, 1.0f, g->b, g->gn, g->a, 0.0f, g->c);
}

static void run_blis(void *p) {
    gemm_ctx *g = p;
    float one = 1.0f, zero = 0.0f;
    if (g->level2 == 1) {
        /* y = op(W) x with W stored gm x gn */
        bli_sgemv(g->gemv_trans ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE,
                  (dim_t)g->gm, (dim_t)g->gn, &one, g->b, (inc_t)g->gn, 1, g->a, 1, &zero, g->c,
                  1);
    } else if (g->level2 == 2) {
        /* dW = dy x^T (out x in): zero it then rank-1 update, like beta = 0 */
        memset(g->c, 0, g->m * g->n * sizeof(float));
        bli_sger(BLIS_NO_CONJUGATE, BLIS_NO_CONJUGATE, (dim_t)g->m, (dim_t)g->n, &one, g->a, 1,
                 g->b, 1, g->c, (inc_t)g->ldc, 1);
    } else {
        bli_sgemm(g->ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                  g->tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)g->m, (dim_t)g->n,
                  (dim_t)g->kk, &one, g->a, (inc_t)g->lda, 1, g->b, (inc_t)g->ldb, 1, &zero,
                  g->c, (inc_t)g->ldc, 1);
    }
}

static float *rnd(size_t n) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return p;
}

static void layer_ops(const mm_kernels *k, size_t in, size_t out, size_t n) {
    float *x = rnd(n * in), *w = rnd(out * in), *y = rnd(n * out), *dw = rnd(out * in),
          *dx = rnd(n * in);
    const char *names[3] = {"fwd", "dW", "dX"};
    for (int op = 0; op < 3; op++) {
        gemm_ctx g = {.k = k};
        if (op == 0) { /* Y = X W^T */
            g = (gemm_ctx){k, false, true, n, out, in, in, in, out, x, w, y, 0, false, out, in};
            if (n == 1) g.level2 = 1; /* y = W x */
        } else if (op == 1) { /* dW = dY^T X */
            g = (gemm_ctx){k, true, false, out, in, n, out, in, in, y, x, dw, 0, false, 0, 0};
            if (n == 1) g.level2 = 2;
        } else { /* dX = dY W */
            g = (gemm_ctx){k, false, false, n, in, out, out, in, in, y, w, dx, 0, true, out, in};
            if (n == 1) g.level2 = 1; /* dx = W^T dy */
        }
        double flops = 2.0 * (double)in * (double)out * (double)n;
        /* The library's dense layer uses sgemv itself for n == 1 fwd/dX. */
        double t_mm, t_bl;
        time_pair((n == 1 && op != 1) ? run_mm_gemv : run_mm, run_blis, &g, &t_mm, &t_bl);
        printf("{\"bench\": \"gemm\", \"layer\": \"%zu-%zu\", \"op\": \"%s\", \"batch\": %zu, "
               "\"m\": %zu, \"n\": %zu, \"k\": %zu, \"mm_us\": %.3f, \"blis_us\": %.3f, "
               "\"mm_gflops\": %.2f, \"blis_gflops\": %.2f}\n",
               in, out, names[op], n, g.m, g.n, g.kk, t_mm * 1e6, t_bl * 1e6,
               flops / t_mm * 1e-9, flops / t_bl * 1e-9);
        fflush(stdout);
    }
    free(x);
    free(w);
    free(y);
    free(dw);
    free(dx);
}

/* ---- whole model ------------------------------------------------------- */

typedef struct model_ctx {
    mm_model *m;
    mm_optimizer *o;
    const float *x;
    const int32_t *y;
    float *out;
    size_t n;
} model_ctx;

static void run_fwd(void *p) {
    model_ctx *c = p;
    mm_model_forward(c->m, c->x, c->n, c->out);
}
static void run_bwd(void *p) {
    model_ctx *c = p;
    double loss;
    mm_model_backward(c->m, c->x, c->y, NULL, c->n, &loss);
}
static void run_step(void *p) {
    model_ctx *c = p;
    double loss;
    mm_optimizer_step(c->o, c->x, c->y, NULL, c->n, &loss);
}

static void model_breakdown(size_t n, mm_optim_kind kind, double lr) {
    mm_model *m;
    mm_optimizer *o;
    if (mm_model_create_from_spec(&m, "784-256-128-10:relu", 42) != MM_OK ||
        mm_optimizer_create(&o, m, kind) != MM_OK ||
        mm_optimizer_set(o, MM_OPT_LEARNING_RATE, lr) != MM_OK) {
        fprintf(stderr, "bench_gemm: %s\n", mm_last_error_message());
        exit(1);
    }
    float *x = malloc(n * 784 * sizeof *x), *out = malloc(n * 10 * sizeof *out);
    int32_t *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n * 784; i++) x[i] = (float)rand() / (float)RAND_MAX;
    for (size_t i = 0; i < n; i++) y[i] = (int32_t)(i % 10);
    model_ctx c = {m, o, x, y, out, n};
    op_fn fns[3] = {run_fwd, run_bwd, run_step};
    double t[3];
    time_multi(3, fns, &c, t);
    double t_f = t[0], t_b = t[1], t_s = t[2];
    double fl = 2.0 * (784.0 * 256 + 256.0 * 128 + 128.0 * 10) * (double)n;
    /* backward FLOPs: fwd + dW for all layers + dX for layers 2 and 3 */
    double fl_b = fl * 2 + 2.0 * (256.0 * 128 + 128.0 * 10) * (double)n;
    printf("{\"bench\": \"model\", \"batch\": %zu, \"optim\": \"%s\", \"forward_us\": %.2f, "
           "\"backward_us\": %.2f, \"step_us\": %.2f, \"forward_gflops\": %.2f, "
           "\"backward_gflops\": %.2f, \"step_samples_per_s\": %.1f}\n",
           n, mm_optim_kind_name(kind), t_f * 1e6, t_b * 1e6, t_s * 1e6, fl / t_f * 1e-9,
           fl_b / t_b * 1e-9, (double)n / t_s);
    fflush(stdout);
    free(x);
    free(y);
    free(out);
    mm_optimizer_free(o);
    mm_model_free(m);
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--seconds")) g_seconds = atof(argv[++i]);
    mm_set_num_threads(1);
    bli_thread_set_num_threads(1);
    const mm_kernels *k = mm_kernels_get();
    printf("{\"bench\": \"gemm_info\", \"backend\": \"%s\", \"blis_arch\": \"%s\", "
           "\"version\": \"%s\"}\n",
           k->name, bli_arch_string(bli_arch_query_id()), mm_version_string());
    const size_t dims[4] = {784, 256, 128, 10};
    const size_t batches[3] = {64, 256, 1};
    for (int b = 0; b < 3; b++)
        for (int l = 0; l < 3; l++) layer_ops(k, dims[l], dims[l + 1], batches[b]);
    model_breakdown(64, MM_OPTIM_ADAM, 1e-3);
    model_breakdown(256, MM_OPTIM_ADAM, 1e-3);
    model_breakdown(1, MM_OPTIM_SGD, 0.01);
    return 0;
}
