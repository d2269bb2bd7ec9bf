/* Per-call cost of the small calls an embedding program makes per sample:
 * batch-1 inference (forward, predict) and online steps, on the
 * 784-256-128-10 relu model (seed 42) and Fashion-MNIST test images. For
 * before/after comparisons of a change to one of those paths:
 *
 *   bench_calls forward|predict|step [--count N] [--reps R] [--batch B]
 *                                    [--warm W]
 *
 * runs W warm-up calls (default 100), then R repetitions of N calls (N
 * samples at batch B, default 1000 x 1, R = 15) and prints one JSON line:
 * the median and every repetition in ns per call. The calls themselves are
 * in run_calls(), so
 *
 *   valgrind --tool=callgrind --toggle-collect=run_calls \
 *       bench_calls predict --reps 1 --warm 0
 *
 * counts exactly the instructions of N calls (stable on a noisy machine,
 * unlike times). The program uses the public API only, so one binary can
 * time two builds of the library in alternation (LD_LIBRARY_PATH).
 * One thread (mm_set_num_threads(1)); data from $MM_FASHION_DIR (default
 * /usr/share/datasets/fashion-mnist). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "mm/mm.h"

#define CHECK(call)                                                                        \
    do {                                                                                   \
        mm_status st_ = (call);                                                            \
        if (st_ != MM_OK) {                                                                \
            fprintf(stderr, "bench_calls: %s failed: %s: %s\n", #call, mm_status_name(st_), \
                    mm_last_error_message());                                              \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

typedef enum { FORWARD, PREDICT, STEP } mode;

typedef struct ctx {
    mode mode;
    mm_model *m;
    mm_optimizer *opt;
    const float *x;
    const int32_t *y;
    size_t dim, count, batch, n;
    float *out;
    int32_t *labels;
} ctx;

/* N calls of the benchmarked function (callgrind: --toggle-collect=run_calls). */
__attribute__((noinline)) void run_calls(ctx *c);
__attribute__((noinline)) void run_calls(ctx *c) {
    for (size_t i = 0; i + c->batch <= c->count; i += c->batch) {
        const float *xi = c->x + (i % c->n) * c->dim;
        switch (c->mode) {
        case FORWARD: CHECK(mm_model_forward(c->m, xi, c->batch, c->out)); break;
        case PREDICT: CHECK(mm_model_predict(c->m, xi, c->batch, c->labels)); break;
        case STEP:
            CHECK(mm_optimizer_step(c->opt, xi, c->y + i % c->n, NULL, c->batch, NULL));
            break;
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_calls forward|predict|step [--count N] [--reps R] "
                        "[--batch B]\n");
        return 2;
    }
    ctx c = {0};
    const char *name = argv[1];
    if (!strcmp(name, "forward")) c.mode = FORWARD;
    else if (!strcmp(name, "predict")) c.mode = PREDICT;
    else if (!strcmp(name, "step")) c.mode = STEP;
    else {
        fprintf(stderr, "bench_calls: unknown mode '%s'\n", name);
        return 2;
    }
    size_t reps = 15, warm_calls = 100;
    c.count = 1000;
    c.batch = 1;
    for (int i = 2; i + 1 < argc; i += 2) {
        size_t v = (size_t)strtoull(argv[i + 1], NULL, 10);
        if (!strcmp(argv[i], "--count")) c.count = v;
        else if (!strcmp(argv[i], "--reps")) reps = v;
        else if (!strcmp(argv[i], "--batch")) c.batch = v;
        else if (!strcmp(argv[i], "--warm")) warm_calls = v;
        else {
            fprintf(stderr, "bench_calls: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (c.batch == 0 || c.count < c.batch || reps == 0) {
        fprintf(stderr, "bench_calls: need --batch >= 1, --count >= batch, --reps >= 1\n");
        return 2;
    }
    CHECK(mm_set_num_threads(1));
    const char *d = getenv("MM_FASHION_DIR");
    char img[1024], lab[1024];
    snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz",
             d && *d ? d : "/usr/share/datasets/fashion-mnist");
    snprintf(lab, sizeof lab, "%s/t10k-labels-idx1-ubyte.gz",
             d && *d ? d : "/usr/share/datasets/fashion-mnist");
    mm_dataset *ds;
    CHECK(mm_dataset_load_idx(&ds, img, lab));
    CHECK(mm_model_create_from_spec(&c.m, "784-256-128-10:relu", 42));
    c.x = mm_dataset_features(ds);
    c.y = mm_dataset_labels(ds);
    c.dim = mm_dataset_dim(ds);
    c.n = mm_dataset_size(ds) - c.batch; /* every batch stays inside the set */
    c.out = malloc(c.batch * mm_model_output_dim(c.m) * sizeof *c.out);
    c.labels = malloc(c.batch * sizeof *c.labels);
    if (c.mode == STEP) {
        CHECK(mm_optimizer_create(&c.opt, c.m, MM_OPTIM_SGD));
        CHECK(mm_optimizer_set(c.opt, MM_OPT_LEARNING_RATE, 1e-3));
    }
    ctx warm = c;
    warm.count = warm_calls;
    if (warm_calls) run_calls(&warm);
    double *ns = malloc(reps * sizeof *ns);
    for (size_t r = 0; r < reps; r++) {
        double t0 = bench_now();
        run_calls(&c);
        ns[r] = (bench_now() - t0) * 1e9 / (double)(c.count / c.batch);
    }
    double *sorted = malloc(reps * sizeof *sorted);
    memcpy(sorted, ns, reps * sizeof *ns);
    qsort(sorted, reps, sizeof *sorted, bench_cmp_double);
    printf("{\"impl\": \"mmaint\", \"bench\": \"calls_%s\", \"version\": \"%s\", \"backend\": "
           "\"%s\", \"batch\": %zu, \"calls\": %zu, \"median_ns_per_call\": %.1f, \"reps_ns\": [",
           name, mm_version_string(), mm_backend_name(), c.batch, c.count / c.batch,
           sorted[reps / 2]);
    for (size_t r = 0; r < reps; r++) printf("%s%.1f", r ? ", " : "", ns[r]);
    printf("]}\n");
    free(ns);
    free(sorted);
    free(c.out);
    free(c.labels);
    mm_optimizer_free(c.opt);
    mm_model_free(c.m);
    mm_dataset_free(ds);
    return 0;
}
