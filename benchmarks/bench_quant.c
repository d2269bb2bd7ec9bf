/* Quantization benchmarks (issue 4): one step per run, JSON lines on stdout.
 *
 *   bench_quant train --out FP32.mmf [--epochs 3 --seed 42]
 *       784-256-128-10 relu, Adam lr 1e-3, batch 64, 3 epochs on the 60k
 *       Fashion-MNIST training images (the foundation issue's recipe); test
 *       accuracy; saves the float model.
 *   bench_quant sweep --model FP32.mmf --outdir DIR [--cal 512]
 *       loads the data once and quantizes fresh copies of the model with
 *       every configuration: int8 static (per-channel and per-tensor x
 *       minmax, moving-minmax, percentile 99.99, mse, entropy), int8 static
 *       accuracy-aware (per-channel minmax, max drop 0.003 on the test set),
 *       int8 dynamic (per-channel, per-tensor), int8 weight-only
 *       (per-channel), fp16, bf16; no float master weights, except one
 *       static per-channel minmax run with them (for the size table).
 *       Calibration: --cal samples spread evenly over the training set,
 *       a fresh quantizer calibrated for each static configuration. Each
 *       result is saved as DIR/<config>.mmf, loaded back and evaluated
 *       again; one JSON line per configuration with test accuracy
 *       (quantized and reloaded), parameter bytes, file size, layer kinds
 *       and the quantizer's report.
 *   bench_quant infer --model FILE --batch 1|256 [--seconds S]
 *       inference samples/s on the test images (median chunk) of a model
 *       file, like bench_prune infer.
 *   bench_quant race --model A --model B ... [--batch 1] [--reps 11]
 *                    [--seconds 0.3]
 *       the models in one process, interleaved: each repetition times
 *       every model for S seconds (median chunk), in a rotated order; one
 *       JSON line per model with its test accuracy, file bytes, median
 *       samples/s and the median (min..max) of its per-repetition ratio to
 *       each other model. In one process the machine's noise hits all
 *       contenders alike.
 *
 * Fashion-MNIST from $MM_FASHION_DIR (default
 * /usr/share/datasets/fashion-mnist). One thread: mm_set_num_threads(1).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_common.h"
#include "mm/mm.h"

#define CHECK(call)                                                                         \
    do {                                                                                    \
        mm_status st_ = (call);                                                             \
        if (st_ != MM_OK) {                                                                 \
            fprintf(stderr, "bench_quant: %s failed: %s: %s\n", #call, mm_status_name(st_), \
                    mm_last_error_message());                                               \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

#define RACE_MAX 8

typedef struct args {
    const char *step, *model, *out, *outdir;
    const char *models[RACE_MAX];
    size_t n_models, reps;
    double seconds;
    size_t epochs, batch, cal;
    unsigned long seed;
} args;

static const char *data_dir(void) {
    const char *d = getenv("MM_FASHION_DIR");
    return d && *d ? d : "/usr/share/datasets/fashion-mnist";
}

static mm_dataset *load(const char *split) {
    char img[1024], lab[1024];
    const char *p = strcmp(split, "train") == 0 ? "train" : "t10k";
    snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", data_dir(), p);
    snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", data_dir(), p);
    mm_dataset *ds;
    CHECK(mm_dataset_load_idx(&ds, img, lab));
    return ds;
}

static double test_accuracy(const mm_model *m, const mm_dataset *te) {
    double acc;
    CHECK(mm_model_evaluate(m, mm_dataset_features(te), mm_dataset_labels(te), NULL,
                            mm_dataset_size(te), NULL, &acc));
    return acc;
}

static long long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

static void emit_layers(const mm_model *m) {
    printf("\"param_bytes\": %zu, \"layers\": [", mm_model_param_bytes(m));
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        const char *kind = "?";
        CHECK(mm_model_layer_info(m, l, &kind, NULL, NULL, NULL));
        printf("%s\"%s\"", l ? ", " : "", kind);
    }
    printf("]");
}

static void step_train(const args *a) {
    if (!a->out) {
        fprintf(stderr, "bench_quant train: --out FILE is required\n");
        exit(2);
    }
    mm_dataset *tr = load("train"), *te = load("test");
    mm_model *m;
    CHECK(mm_model_create_from_spec(&m, "784-256-128-10:relu", a->seed));
    mm_optimizer *o;
    CHECK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    CHECK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1e-3));
    CHECK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 64));
    CHECK(mm_optimizer_set(o, MM_OPT_EPOCHS, (double)a->epochs));
    CHECK(mm_optimizer_set(o, MM_OPT_SEED, (double)a->seed));
    double t0 = bench_now();
    CHECK(mm_optimizer_fit(o, tr, NULL, NULL, NULL, NULL));
    double dt = bench_now() - t0;
    double acc = test_accuracy(m, te);
    CHECK(mm_model_save(m, a->out));
    printf("{\"impl\": \"mmaint\", \"bench\": \"quant_train\", \"recipe\": \"adam lr=1e-3 "
           "batch=64 epochs=%zu seed=%lu\", \"test_accuracy\": %.4f, \"seconds\": %.3f, "
           "\"file\": \"%s\", \"file_size\": %lld, ",
           a->epochs, a->seed, acc, dt, a->out, file_size(a->out));
    emit_layers(m);
    printf("}\n");
    mm_optimizer_free(o);
    mm_model_free(m);
    mm_dataset_free(tr);
    mm_dataset_free(te);
}

typedef struct qconfig {
    const char *name;
    mm_quant_scheme scheme;
    int per_channel; /* -1: not an int8 setting */
    int observer;    /* -1: not static */
    double max_drop; /* NAN: plain apply */
    int keep_master;
} qconfig;

static const qconfig configs[] = {
    {"static-pc-minmax", MM_QUANT_INT8_STATIC, 1, MM_OBSERVER_MINMAX, NAN, 0},
    {"static-pc-moving", MM_QUANT_INT8_STATIC, 1, MM_OBSERVER_MOVING_MINMAX, NAN, 0},
    {"static-pc-percentile", MM_QUANT_INT8_STATIC, 1, MM_OBSERVER_PERCENTILE, NAN, 0},
    {"static-pc-mse", MM_QUANT_INT8_STATIC, 1, MM_OBSERVER_MSE, NAN, 0},
    {"static-pc-entropy", MM_QUANT_INT8_STATIC, 1, MM_OBSERVER_ENTROPY, NAN, 0},
    {"static-pt-minmax", MM_QUANT_INT8_STATIC, 0, MM_OBSERVER_MINMAX, NAN, 0},
    {"static-pt-moving", MM_QUANT_INT8_STATIC, 0, MM_OBSERVER_MOVING_MINMAX, NAN, 0},
    {"static-pt-percentile", MM_QUANT_INT8_STATIC, 0, MM_OBSERVER_PERCENTILE, NAN, 0},
    {"static-pt-mse", MM_QUANT_INT8_STATIC, 0, MM_OBSERVER_MSE, NAN, 0},
    {"static-pt-entropy", MM_QUANT_INT8_STATIC, 0, MM_OBSERVER_ENTROPY, NAN, 0},
    {"static-pc-minmax-tol", MM_QUANT_INT8_STATIC, 1, MM_OBSERVER_MINMAX, 0.003, 0},
    {"static-pc-minmax-master", MM_QUANT_INT8_STATIC, 1, MM_OBSERVER_MINMAX, NAN, 1},
    {"dynamic-pc", MM_QUANT_INT8_DYNAMIC, 1, -1, NAN, 0},
    {"dynamic-pt", MM_QUANT_INT8_DYNAMIC, 0, -1, NAN, 0},
    {"weight-only-pc", MM_QUANT_INT8_WEIGHT_ONLY, 1, -1, NAN, 0},
    {"fp16", MM_QUANT_FP16, -1, -1, NAN, 0},
    {"bf16", MM_QUANT_BF16, -1, -1, NAN, 0},
};

static void step_sweep(const args *a) {
    if (!a->model || !a->outdir) {
        fprintf(stderr, "bench_quant sweep: --model and --outdir are required\n");
        exit(2);
    }
    mm_model *base;
    CHECK(mm_model_load(&base, a->model));
    mm_dataset *tr = load("train"), *te = load("test");
    const double acc_f = test_accuracy(base, te);
    /* Calibration samples spread evenly over the training set. */
    const size_t n = mm_dataset_size(tr), dim = mm_dataset_dim(tr);
    const size_t k = a->cal < n ? a->cal : n;
    float *cx = malloc(k * dim * sizeof *cx);
    if (!cx) exit(1);
    for (size_t i = 0; i < k; i++)
        memcpy(cx + i * dim,
               mm_dataset_features(tr) + (size_t)(((unsigned long long)i * n) / k) * dim,
               dim * sizeof *cx);
    printf("{\"impl\": \"mmaint\", \"bench\": \"quant_float\", \"test_accuracy\": %.4f, "
           "\"file\": \"%s\", \"file_size\": %lld, ",
           acc_f, a->model, file_size(a->model));
    emit_layers(base);
    printf("}\n");
    fflush(stdout);
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        const qconfig *cf = &configs[c];
        mm_model *m;
        CHECK(mm_model_clone(base, &m));
        mm_quantizer *q;
        CHECK(mm_quantizer_create(&q, cf->scheme));
        CHECK(mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, cf->keep_master));
        if (cf->per_channel >= 0) CHECK(mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, cf->per_channel));
        double tc = 0;
        if (cf->observer >= 0) {
            CHECK(mm_quantizer_set(q, MM_QUANT_OBSERVER, cf->observer));
            double t0 = bench_now();
            CHECK(mm_quantizer_calibrate(q, m, cx, k));
            tc = bench_now() - t0;
        }
        double t0 = bench_now(), acc_tol = NAN;
        if (!isnan(cf->max_drop)) {
            CHECK(mm_quantizer_set(q, MM_QUANT_MAX_DROP, cf->max_drop));
            CHECK(mm_quantizer_apply_with_tolerance(q, m, mm_dataset_features(te),
                                                    mm_dataset_labels(te), mm_dataset_size(te),
                                                    &acc_tol));
        } else {
            CHECK(mm_quantizer_apply(q, m));
        }
        const double tq = bench_now() - t0;
        const double acc = test_accuracy(m, te);
        char path[1200];
        snprintf(path, sizeof path, "%s/%s.mmf", a->outdir, cf->name);
        CHECK(mm_model_save(m, path));
        mm_model *back;
        CHECK(mm_model_load(&back, path));
        const double acc_back = test_accuracy(back, te);
        mm_model_free(back);
        printf("{\"impl\": \"mmaint\", \"bench\": \"quant\", \"config\": \"%s\", "
               "\"scheme\": \"%s\", \"keep_master\": %s, ",
               cf->name, mm_quant_scheme_name(cf->scheme), cf->keep_master ? "true" : "false");
        if (cf->per_channel >= 0)
            printf("\"per_channel\": %s, ", cf->per_channel ? "true" : "false");
        if (cf->observer >= 0)
            printf("\"observer\": \"%s\", \"calibration_samples\": %zu, \"calibration_seconds\": "
                   "%.4f, ",
                   mm_quant_observer_name((mm_quant_observer)cf->observer), k, tc);
        if (!isnan(cf->max_drop))
            printf("\"max_drop\": %g, \"tolerance_data\": \"test\", ", cf->max_drop);
        printf("\"test_accuracy_float\": %.4f, \"test_accuracy\": %.4f, "
               "\"test_accuracy_reloaded\": %.4f, \"quantize_seconds\": %.4f, "
               "\"file\": \"%s\", \"file_size\": %lld, ",
               acc_f, acc, acc_back, tq, path, file_size(path));
        emit_layers(m);
        printf(", \"report\": %s}\n", mm_quantizer_report(q));
        fflush(stdout);
        mm_quantizer_free(q);
        mm_model_free(m);
    }
    free(cx);
    mm_model_free(base);
    mm_dataset_free(tr);
    mm_dataset_free(te);
}

typedef struct infer_ctx {
    const mm_model *m;
    const float *x;
    float *out;
    size_t dim, nb, pos, chunk, batch;
} infer_ctx;

static size_t infer_chunk(void *p) {
    infer_ctx *c = p;
    for (size_t i = 0; i < c->chunk; i++) {
        size_t b = c->pos;
        c->pos = (c->pos + 1) % c->nb;
        CHECK(mm_model_forward(c->m, c->x + b * c->batch * c->dim, c->batch, c->out));
    }
    return c->chunk * c->batch;
}

static void step_infer(const args *a) {
    if (!a->model) {
        fprintf(stderr, "bench_quant infer: --model FILE is required\n");
        exit(2);
    }
    mm_model *m;
    CHECK(mm_model_load(&m, a->model));
    mm_dataset *te = load("test");
    const size_t batch = a->batch;
    float *out = malloc(batch * mm_model_output_dim(m) * sizeof *out);
    infer_ctx c = {m, mm_dataset_features(te), out, mm_dataset_dim(te),
                   mm_dataset_size(te) / batch, 0, batch == 1 ? 1000 : 8, batch};
    infer_chunk(&c); /* warm-up */
    size_t n;
    double el;
    double rate = bench_timed_chunks(infer_chunk, &c, a->seconds, 3, &n, &el);
    printf("{\"impl\": \"mmaint\", \"bench\": \"quant_infer%zu\", \"model\": \"%s\", "
           "\"samples_per_s\": %.1f, \"samples\": %zu, \"seconds\": %.3f}\n",
           batch, a->model, rate, n, el);
    free(out);
    mm_model_free(m);
    mm_dataset_free(te);
}

static double median_of(double *v, size_t n) {
    qsort(v, n, sizeof *v, bench_cmp_double);
    return v[n / 2];
}

static void step_race(const args *a) {
    const size_t M = a->n_models, R = a->reps, batch = a->batch;
    if (M < 2) {
        fprintf(stderr, "bench_quant race: give at least two --model FILE\n");
        exit(2);
    }
    mm_dataset *te = load("test");
    const size_t dim = mm_dataset_dim(te), n_te = mm_dataset_size(te);
    mm_model *m[RACE_MAX];
    infer_ctx c[RACE_MAX];
    double acc[RACE_MAX], *rate = malloc(M * R * sizeof *rate);
    long long bytes[RACE_MAX];
    float *out[RACE_MAX];
    for (size_t i = 0; i < M; i++) {
        CHECK(mm_model_load(&m[i], a->models[i]));
        double loss;
        CHECK(mm_model_evaluate(m[i], mm_dataset_features(te), mm_dataset_labels(te), NULL, n_te,
                                &loss, &acc[i]));
        struct stat sb;
        bytes[i] = stat(a->models[i], &sb) == 0 ? (long long)sb.st_size : -1;
        out[i] = malloc(batch * mm_model_output_dim(m[i]) * sizeof *out[i]);
        c[i] = (infer_ctx){m[i], mm_dataset_features(te), out[i], dim, n_te / batch, 0,
                           batch == 1 ? 1000 : 8, batch};
        infer_chunk(&c[i]); /* warm-up */
    }
    for (size_t r = 0; r < R; r++)
        for (size_t j = 0; j < M; j++) {
            const size_t i = (r + j) % M;
            rate[i * R + r] = bench_timed_chunks(infer_chunk, &c[i], a->seconds, 3, NULL, NULL);
        }
    double *tmp = malloc(R * sizeof *tmp);
    for (size_t i = 0; i < M; i++) {
        for (size_t r = 0; r < R; r++) tmp[r] = rate[i * R + r];
        printf("{\"bench\": \"quant_race%zu\", \"model\": \"%s\", \"test_accuracy\": %.4f, "
               "\"file_bytes\": %lld, \"samples_per_s\": %.1f, \"ratios\": {",
               batch, a->models[i], acc[i], bytes[i], median_of(tmp, R));
        for (size_t k = 0; k < M; k++) {
            if (k == i) continue;
            for (size_t r = 0; r < R; r++) tmp[r] = rate[i * R + r] / rate[k * R + r];
            const double med = median_of(tmp, R);
            printf("%s\"%s\": [%.3f, %.3f, %.3f]", k == (i == 0 ? 1 : 0) ? "" : ", ",
                   a->models[k], med, tmp[0], tmp[R - 1]);
        }
        printf("}, \"reps\": %zu}\n", R);
    }
    free(tmp);
    free(rate);
    for (size_t i = 0; i < M; i++) {
        free(out[i]);
        mm_model_free(m[i]);
    }
    mm_dataset_free(te);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_quant train --out FILE [--epochs N] [--seed N]\n"
                    "       bench_quant sweep --model FILE --outdir DIR [--cal N]\n"
                    "       bench_quant infer --model FILE --batch N [--seconds S]\n"
                    "       bench_quant race --model A --model B ... [--batch N] [--reps R] "
                    "[--seconds S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    args a = {.seconds = 1.0, .epochs = 3, .batch = 1, .cal = 512, .seed = 42, .reps = 11};
    bool seconds_given = false;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (s[0] != '-') {
            a.step = s;
            continue;
        }
        if (!v) usage();
        if (!strcmp(s, "--model")) {
            a.model = v;
            if (a.n_models == RACE_MAX) usage();
            a.models[a.n_models++] = v;
        } else if (!strcmp(s, "--reps")) a.reps = (size_t)atol(v);
        else if (!strcmp(s, "--out")) a.out = v;
        else if (!strcmp(s, "--outdir")) a.outdir = v;
        else if (!strcmp(s, "--seconds")) {
            a.seconds = atof(v);
            seconds_given = true;
        }
        else if (!strcmp(s, "--epochs")) a.epochs = (size_t)atol(v);
        else if (!strcmp(s, "--batch")) a.batch = (size_t)atol(v);
        else if (!strcmp(s, "--cal")) a.cal = (size_t)atol(v);
        else if (!strcmp(s, "--seed")) a.seed = strtoul(v, NULL, 10);
        else usage();
        i++;
    }
    if (!a.step || a.batch == 0 || a.cal == 0 || a.reps == 0) usage();
    if (!seconds_given && !strcmp(a.step, "race")) a.seconds = 0.3;
    CHECK(mm_set_num_threads(1));
    if (!strcmp(a.step, "train")) step_train(&a);
    else if (!strcmp(a.step, "sweep")) step_sweep(&a);
    else if (!strcmp(a.step, "infer")) step_infer(&a);
    else if (!strcmp(a.step, "race")) step_race(&a);
    else usage();
    return 0;
}
