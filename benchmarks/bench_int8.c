/* int8 kernels (lib/kernels/int8.c) against the fp32 BLIS path, one thread.
 *
 *   bench_int8 [--seconds S]     (S: time per measurement, default 0.2)
 *
 * 1. Per layer of 784-256-128-10 (in -> out) at batch n = 1 and 256:
 *    ns per call of mm_int8_gemm for every int8 variant the CPU has, and of
 *    the float product through the library's kernel table (BLIS by
 *    default): sgemm(N, T) for n = 256, sgemv for n = 1.
 * 2. The whole model's inference, samples/s:
 *    fp32     mm_model_forward (BLIS), relu hidden layers;
 *    dynamic  per layer: mm_int8_quantize_dynamic (per batch) + gemm +
 *             mm_int8_dequant_bias_act (float out);
 *    static   input mm_int8_quantize_rows, then gemm + mm_int8_requantize
 *             (u8) between layers, gemm + dequant at the end.
 * 3. The non-GEMM stages alone, ns per call: quantize_rows and
 *    quantize_dynamic of the n x 784 input, dequant_bias_act (relu) and
 *    requantize of the n x 256 first-layer output.
 * Every figure is the median of 7 blocks; variants are forced with
 * mm_int8_set_isa. Text on stdout. Weights and data are random (speed does
 * not depend on them).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "common/mm_internal.h"
#include "kernels/int8.h"
#include "kernels/kernels.h"
#include "mm/mm.h"

static double g_seconds = 0.2;

typedef void (*op_fn)(void *ctx);

#define NBLOCKS 7

/* Median seconds per call of fn. */
static double time_op(op_fn fn, void *ctx) {
    fn(ctx);
    size_t reps = 0;
    double t0 = bench_now();
    do {
        fn(ctx);
        reps++;
    } while (bench_now() - t0 < g_seconds / NBLOCKS);
    double t[NBLOCKS];
    for (int b = 0; b < NBLOCKS; b++) {
        double s = bench_now();
        for (size_t i = 0; i < reps; i++) fn(ctx);
        t[b] = (bench_now() - s) / (double)reps;
    }
    qsort(t, NBLOCKS, sizeof t[0], bench_cmp_double);
    return t[NBLOCKS / 2];
}

static const size_t dims[4] = {784, 256, 128, 10};
#define NL 3

typedef struct ctx {
    size_t n;
    /* float */
    float *x, *w[NL], *b[NL], *y[NL];
    mm_model *model;
    /* int8 */
    mm_int8_packed *p[NL];
    float ws[NL][256];
    float act_scale[NL + 1];
    int32_t act_zp[NL + 1];
    uint8_t *xq[NL];
    int32_t *acc[NL];
    float scratch_scale;
    int32_t scratch_zp;
    size_t layer;
} ctx;

static void op_fp32_layer(void *v) {
    ctx *c = v;
    size_t l = c->layer, in = dims[l], out = dims[l + 1];
    const float *x = l == 0 ? c->x : c->y[l - 1];
    const mm_kernels *k = mm_kernels_get();
    if (c->n == 1) k->sgemv(false, out, in, 1.0f, c->w[l], in, x, 0.0f, c->y[l]);
    else k->sgemm(false, true, c->n, out, in, 1.0f, x, in, c->w[l], in, 0.0f, c->y[l], out);
}

static void op_int8_layer(void *v) {
    ctx *c = v;
    size_t l = c->layer;
    mm_int8_gemm(c->xq[l], c->n, dims[l], c->act_zp[l], c->p[l], c->acc[l]);
}

static void op_fp32_model(void *v) {
    ctx *c = v;
    mm_model_forward(c->model, c->x, c->n, c->y[NL - 1]);
}

static void op_dynamic_model(void *v) {
    ctx *c = v;
    const float *x = c->x;
    for (size_t l = 0; l < NL; l++) {
        size_t in = dims[l], out = dims[l + 1];
        float s;
        int32_t zp;
        mm_int8_quantize_dynamic(x, c->n, in, false, c->xq[l], &s, &zp);
        mm_int8_gemm(c->xq[l], c->n, in, zp, c->p[l], c->acc[l]);
        mm_int8_epilogue e = {&s, 1, c->ws[l], c->b[l],
                              l + 1 < NL ? MM_ACT_RELU : MM_ACT_IDENTITY, 0.0f};
        mm_int8_dequant_bias_act(c->acc[l], c->n, out, &e, c->y[l]);
        x = c->y[l];
    }
}

static void op_static_model(void *v) {
    ctx *c = v;
    mm_int8_quantize_rows(c->x, c->n, dims[0], c->act_scale[0], c->act_zp[0], c->xq[0]);
    for (size_t l = 0; l < NL; l++) {
        size_t in = dims[l], out = dims[l + 1];
        mm_int8_gemm(c->xq[l], c->n, in, c->act_zp[l], c->p[l], c->acc[l]);
        mm_int8_epilogue e = {&c->act_scale[l], 1, c->ws[l], c->b[l],
                              l + 1 < NL ? MM_ACT_RELU : MM_ACT_IDENTITY, 0.0f};
        if (l + 1 < NL)
            mm_int8_requantize(c->acc[l], c->n, out, &e, c->act_scale[l + 1], c->act_zp[l + 1],
                               c->xq[l + 1]);
        else
            mm_int8_dequant_bias_act(c->acc[l], c->n, out, &e, c->y[l]);
    }
}

static void op_quant(void *v) {
    ctx *c = v;
    mm_int8_quantize_rows(c->x, c->n, dims[0], c->act_scale[0], c->act_zp[0], c->xq[0]);
}

static void op_quant_dyn(void *v) {
    ctx *c = v;
    mm_int8_quantize_dynamic(c->x, c->n, dims[0], false, c->xq[0], &c->scratch_scale,
                             &c->scratch_zp);
}

static void op_dequant(void *v) {
    ctx *c = v;
    mm_int8_epilogue e = {&c->act_scale[0], 1, c->ws[0], c->b[0], MM_ACT_RELU, 0.0f};
    mm_int8_dequant_bias_act(c->acc[0], c->n, dims[1], &e, c->y[0]);
}

static void op_requant(void *v) {
    ctx *c = v;
    mm_int8_epilogue e = {&c->act_scale[0], 1, c->ws[0], c->b[0], MM_ACT_RELU, 0.0f};
    mm_int8_requantize(c->acc[0], c->n, dims[1], &e, c->act_scale[1], c->act_zp[1], c->xq[1]);
}

static void setup(ctx *c, size_t n) {
    memset(c, 0, sizeof *c);
    c->n = n;
    mm_rng r;
    mm_rng_seed(&r, 1);
    c->x = mm_alloc_floats(n * dims[0]);
    for (size_t i = 0; i < n * dims[0]; i++) c->x[i] = mm_rng_uniform(&r);
    if (mm_model_create(&c->model, dims[0], 1) != MM_OK ||
        mm_model_add_dense(c->model, dims[1], MM_ACT_RELU) != MM_OK ||
        mm_model_add_dense(c->model, dims[2], MM_ACT_RELU) != MM_OK ||
        mm_model_add_dense(c->model, dims[3], MM_ACT_IDENTITY) != MM_OK) {
        fprintf(stderr, "model: %s\n", mm_last_error_message());
        exit(1);
    }
    for (size_t l = 0; l < NL; l++) {
        size_t in = dims[l], out = dims[l + 1];
        c->w[l] = mm_alloc_floats(out * in);
        c->b[l] = mm_alloc_floats(out);
        c->y[l] = mm_alloc_floats(n * out);
        int8_t *wq = malloc(out * in);
        for (size_t i = 0; i < out * in; i++) {
            c->w[l][i] = (float)mm_rng_normal(&r) * 0.05f;
            wq[i] = (int8_t)((int)mm_rng_below(&r, 255) - 127);
        }
        for (size_t o = 0; o < out; o++) {
            c->b[l][o] = 0.01f;
            c->ws[l][o] = 0.002f;
        }
        if (mm_int8_pack_weights(wq, out, in, &c->p[l]) != MM_OK) exit(1);
        free(wq);
        c->xq[l] = malloc(n * in);
        c->acc[l] = malloc(n * out * sizeof(int32_t));
        c->act_scale[l] = 1.0f / 255.0f * (float)(l + 1);
        c->act_zp[l] = l == 0 ? 0 : 3;
    }
    mm_int8_quantize_rows(c->x, n, dims[0], c->act_scale[0], 0, c->xq[0]);
    for (size_t l = 1; l < NL; l++)
        for (size_t i = 0; i < n * dims[l]; i++) c->xq[l][i] = (uint8_t)mm_rng_below(&r, 256);
}

static void teardown(ctx *c) {
    free(c->x);
    mm_model_free(c->model);
    for (size_t l = 0; l < NL; l++) {
        free(c->w[l]);
        free(c->b[l]);
        free(c->y[l]);
        mm_int8_packed_free(c->p[l]);
        free(c->xq[l]);
        free(c->acc[l]);
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) g_seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--seconds S]\n", argv[0]);
            return 2;
        }
    }
    mm_set_num_threads(1);
    mm_int8_isa isas[3];
    int nisa = 0;
    for (int k = 0; k <= (int)MM_INT8_ISA_AVX512VNNI; k++)
        if (mm_int8_isa_available((mm_int8_isa)k)) isas[nisa++] = (mm_int8_isa)k;
    printf("int8 kernels vs fp32 (%s), 1 thread; best int8 variant: %s\n\n", mm_backend_name(),
           mm_int8_isa_name(mm_int8_isa_best()));

    static const size_t ns[2] = {1, 256};
    printf("per layer, ns per call (speed-up over fp32 in brackets)\n");
    printf("%-12s %5s %12s", "layer", "n", "fp32");
    for (int k = 0; k < nisa; k++) printf(" %20s", mm_int8_isa_name(isas[k]));
    printf("\n");
    for (int ni = 0; ni < 2; ni++) {
        ctx c;
        setup(&c, ns[ni]);
        for (size_t l = 0; l < NL; l++) {
            c.layer = l;
            double tf = time_op(op_fp32_layer, &c);
            char name[32];
            snprintf(name, sizeof name, "%zux%zu", dims[l], dims[l + 1]);
            printf("%-12s %5zu %12.0f", name, c.n, tf * 1e9);
            for (int k = 0; k < nisa; k++) {
                mm_int8_set_isa(isas[k]);
                double t = time_op(op_int8_layer, &c);
                printf(" %12.0f (%5.1fx)", t * 1e9, tf / t);
            }
            printf("\n");
        }
        mm_int8_set_isa(mm_int8_isa_best());
        teardown(&c);
    }

    printf("\nstages, ns per call\n");
    printf("%-22s %5s", "stage", "n");
    for (int k = 0; k < nisa; k++) printf(" %12s", mm_int8_isa_name(isas[k]));
    printf("\n");
    for (int ni = 0; ni < 2; ni++) {
        ctx c;
        setup(&c, ns[ni]);
        mm_int8_gemm(c.xq[0], c.n, dims[0], c.act_zp[0], c.p[0], c.acc[0]);
        static const char *names[4] = {"quantize_rows 784", "quantize_dynamic 784",
                                       "dequant_bias_act 256", "requantize 256"};
        op_fn fns[4] = {op_quant, op_quant_dyn, op_dequant, op_requant};
        for (int f = 0; f < 4; f++) {
            printf("%-22s %5zu", names[f], c.n);
            for (int k = 0; k < nisa; k++) {
                mm_int8_set_isa(isas[k]);
                printf(" %12.0f", time_op(fns[f], &c) * 1e9);
            }
            printf("\n");
        }
        mm_int8_set_isa(mm_int8_isa_best());
        teardown(&c);
    }

    printf("\nwhole model 784-256-128-10, samples/s (ratio to fp32)\n");
    printf("%-8s %5s %12s", "mode", "n", "fp32");
    for (int k = 0; k < nisa; k++) printf(" %22s", mm_int8_isa_name(isas[k]));
    printf("\n");
    for (int ni = 0; ni < 2; ni++) {
        ctx c;
        setup(&c, ns[ni]);
        double tf = time_op(op_fp32_model, &c);
        static const char *modes[2] = {"dynamic", "static"};
        op_fn fns[2] = {op_dynamic_model, op_static_model};
        for (int m = 0; m < 2; m++) {
            printf("%-8s %5zu %12.0f", modes[m], c.n, (double)c.n / tf);
            for (int k = 0; k < nisa; k++) {
                mm_int8_set_isa(isas[k]);
                double t = time_op(fns[m], &c);
                printf(" %14.0f (%5.1fx)", (double)c.n / t, tf / t);
            }
            printf("\n");
        }
        mm_int8_set_isa(mm_int8_isa_best());
        teardown(&c);
    }
    return 0;
}
