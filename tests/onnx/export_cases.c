/* Writes ONNX exports of mmaint models plus their inputs and outputs, for
 * tests/onnx/check_export.py (onnx.checker + a numpy evaluation of the
 * graph's initializers). Public API only.
 *
 *   onnx_export_cases DIR
 *
 * For each case NAME: DIR/NAME.onnx, DIR/NAME.x (float32 little-endian,
 * n x input_dim), DIR/NAME.y (mm_model_predict_proba: the ONNX output,
 * n x output_dim), and a line "NAME n input_dim output_dim" in
 * DIR/cases.txt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"

#define N 32

static int fail(const char *what) {
    fprintf(stderr, "onnx_export_cases: %s: %s: %s\n", what, mm_status_name(mm_last_error()),
            mm_last_error_message());
    return 1;
}

static void fill(float *x, size_t n, uint64_t seed, float lo, float hi) {
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = lo + (hi - lo) * (float)((double)(s >> 40) / (double)(1ULL << 24));
    }
}

static int write_floats(const char *path, const float *v, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    for (size_t i = 0; i < n; i++) { /* little-endian whatever the host */
        uint32_t u;
        memcpy(&u, &v[i], 4);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        fwrite(b, 1, 4, f);
    }
    return fclose(f) != 0;
}

static int emit(const char *dir, const char *name, const mm_model *m, FILE *list) {
    char path[4096];
    const size_t in = mm_model_input_dim(m), out = mm_model_output_dim(m);
    float *x = malloc(N * in * sizeof *x), *y = malloc(N * out * sizeof *y);
    if (!x || !y) return 1;
    fill(x, N * in, 7, -2.0f, 2.0f);
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    if (mm_onnx_export(m, path) != MM_OK) return fail(name);
    if (mm_model_predict_proba(m, x, N, y) != MM_OK) return fail(name);
    snprintf(path, sizeof path, "%s/%s.x", dir, name);
    int bad = write_floats(path, x, N * in);
    snprintf(path, sizeof path, "%s/%s.y", dir, name);
    bad |= write_floats(path, y, N * out);
    fprintf(list, "%s %d %zu %zu\n", name, N, in, out);
    free(x);
    free(y);
    return bad;
}

static mm_model *model(const char *spec, mm_loss loss, float slope) {
    mm_model *m = NULL;
    if (mm_model_create_from_spec(&m, spec, 21) != MM_OK || mm_model_set_loss(m, loss) != MM_OK ||
        mm_model_set_leaky_slope(m, slope) != MM_OK) {
        fail(spec);
        exit(1);
    }
    return m;
}

/* 80% of the weights pruned, every layer finalized to the sparse kind. */
static int prune(mm_model *m) {
    mm_pruner *p;
    if (mm_pruner_create(&p, MM_PRUNE_MAGNITUDE) != MM_OK ||
        mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.8) != MM_OK ||
        mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE) != MM_OK ||
        mm_pruner_apply(p, m) != MM_OK || mm_pruner_finalize(p, m, NULL) != MM_OK)
        return fail("pruning");
    mm_pruner_free(p);
    return 0;
}

/* A model quantized with `scheme`, after pruning when `pruned` (its
 * layers then become sparse_int8). */
static int quantized(const char *dir, const char *name, mm_quant_scheme scheme, int per_channel,
                     int wsym, int pruned, FILE *list) {
    mm_model *m = model("24-16-12-6:relu", MM_LOSS_SOFTMAX_XENT, 0.01f);
    if (pruned && prune(m)) return 1;
    mm_quantizer *q;
    float x[64 * 24];
    fill(x, 64 * 24, 3, -2.0f, 2.0f);
    if (mm_quantizer_create(&q, scheme) != MM_OK) return fail(name);
    if (scheme != MM_QUANT_FP16 && scheme != MM_QUANT_BF16 &&
        (mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, per_channel) != MM_OK ||
         mm_quantizer_set(q, MM_QUANT_WEIGHT_SYMMETRIC, wsym) != MM_OK))
        return fail(name);
    if (scheme == MM_QUANT_INT8_STATIC && mm_quantizer_calibrate(q, m, x, 64) != MM_OK)
        return fail(name);
    if (mm_quantizer_apply(q, m) != MM_OK) return fail(name);
    mm_quantizer_free(q);
    int r = emit(dir, name, m, list);
    mm_model_free(m);
    return r;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: onnx_export_cases DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char path[4096];
    snprintf(path, sizeof path, "%s/cases.txt", dir);
    FILE *list = fopen(path, "w");
    if (!list) {
        perror(path);
        return 1;
    }
    static const struct {
        const char *name, *spec;
        mm_loss loss;
        float slope;
    } dense[] = {
        {"identity", "20-16-12-5:identity", MM_LOSS_SOFTMAX_XENT, 0.01f},
        {"relu", "20-16-12-5:relu", MM_LOSS_SOFTMAX_XENT, 0.01f},
        {"leaky_relu", "20-16-12-5:leaky_relu", MM_LOSS_MSE, 0.15f},
        {"tanh", "20-16-12-5:tanh", MM_LOSS_MSE, 0.01f},
        {"sigmoid", "20-16-12-5:sigmoid", MM_LOSS_SOFTMAX_XENT, 0.01f},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof dense / sizeof dense[0]; i++) {
        mm_model *m = model(dense[i].spec, dense[i].loss, dense[i].slope);
        bad |= emit(dir, dense[i].name, m, list);
        mm_model_free(m);
    }
    bad |= quantized(dir, "int8_weight_only", MM_QUANT_INT8_WEIGHT_ONLY, 1, 1, 0, list);
    bad |= quantized(dir, "int8_weight_only_asym_tensor", MM_QUANT_INT8_WEIGHT_ONLY, 0, 0, 0, list);
    bad |= quantized(dir, "int8_dynamic", MM_QUANT_INT8_DYNAMIC, 1, 1, 0, list);
    bad |= quantized(dir, "int8_static", MM_QUANT_INT8_STATIC, 1, 1, 0, list);
    bad |= quantized(dir, "fp16", MM_QUANT_FP16, 1, 1, 0, list);
    bad |= quantized(dir, "bf16", MM_QUANT_BF16, 1, 1, 0, list);
    /* pruned and quantized: sparse_int8 layers travel as QDQ of their
     * dense int8 form */
    bad |= quantized(dir, "sparse_int8_weight_only", MM_QUANT_INT8_WEIGHT_ONLY, 1, 1, 1, list);
    bad |= quantized(dir, "sparse_int8_dynamic", MM_QUANT_INT8_DYNAMIC, 0, 1, 1, list);
    bad |= quantized(dir, "sparse_int8_static", MM_QUANT_INT8_STATIC, 1, 1, 1, list);
    /* a pruned model kept as the sparse kind */
    mm_model *m = model("24-16-12-6:tanh", MM_LOSS_SOFTMAX_XENT, 0.01f);
    if (prune(m)) return 1;
    bad |= emit(dir, "sparse", m, list);
    mm_model_free(m);
    return (fclose(list) != 0 || bad) ? 1 : 0;
}
