/* Pruning benchmarks (issue 3): one step per run, JSON lines on stdout.
 *
 *   bench_prune train --out DENSE.mmf [--epochs 3 --seed 42]
 *       784-256-128-10 relu, Adam lr 1e-3, batch 64, 3 epochs on the 60k
 *       Fashion-MNIST training images (the foundation issue's recipe); test
 *       accuracy; saves the dense model.
 *   bench_prune prune --model DENSE.mmf --out OUT.mmf --criterion NAME
 *       --sparsity S --mode oneshot|oneshot_ft|gradual [--ft-epochs 2]
 *       [--end-frac 0.5] [--frequency N] [--format auto|sparse|dense]
 *       oneshot:    mm_pruner_apply, no training, finalize
 *       oneshot_ft: mm_pruner_apply, then fine-tune (Adam lr 1e-3, batch 64)
 *                   with the masks honoured, finalize
 *       gradual:    fine-tune with the pruner attached on the polynomial
 *                   schedule (s_i 0, power 3, t0 0, t_end = end_frac of the
 *                   fine-tuning steps, masks updated every t_end/10 steps
 *                   unless --frequency: the defaults of `mmaint prune`),
 *                   finalize
 *       Reports test accuracy, parameters, non-zeros, bytes, file size and
 *       the kind and sparsity of every layer.
 *   bench_prune infer --model FILE --batch 1|256 [--seconds S]
 *       inference samples/s on the test images (median chunk), like
 *       bench_mmaint infer1/infer256 but for a model file.
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
            fprintf(stderr, "bench_prune: %s failed: %s: %s\n", #call, mm_status_name(st_), \
                    mm_last_error_message());                                               \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

typedef struct args {
    const char *step, *model, *out, *criterion, *mode, *format;
    double sparsity, seconds, end_frac;
    size_t epochs, ft_epochs, batch, frequency;
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

static mm_optimizer *adam(mm_model *m, size_t epochs, unsigned long seed) {
    mm_optimizer *o;
    CHECK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    CHECK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1e-3));
    CHECK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 64));
    CHECK(mm_optimizer_set(o, MM_OPT_EPOCHS, (double)epochs));
    CHECK(mm_optimizer_set(o, MM_OPT_SEED, (double)seed));
    return o;
}

/* "params": ..., "nonzero": ..., "param_bytes": ..., "layers": [...] */
static void emit_model(const mm_model *m) {
    printf("\"params\": %zu, \"nonzero\": %zu, \"param_bytes\": %zu, \"layers\": [",
           mm_model_num_params(m), mm_model_num_nonzero(m), mm_model_param_bytes(m));
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        const char *kind = "?";
        size_t in = 0, out = 0;
        double s = NAN;
        CHECK(mm_model_layer_info(m, l, &kind, &in, &out, NULL));
        CHECK(mm_model_layer_sparsity(m, l, &s));
        printf("%s{\"kind\": \"%s\", \"inputs\": %zu, \"outputs\": %zu, \"sparsity\": %.4f}",
               l ? ", " : "", kind, in, out, s);
    }
    printf("]");
}

static void step_train(const args *a) {
    if (!a->out) {
        fprintf(stderr, "bench_prune train: --out FILE is required\n");
        exit(2);
    }
    mm_dataset *tr = load("train"), *te = load("test");
    mm_model *m;
    CHECK(mm_model_create_from_spec(&m, "784-256-128-10:relu", a->seed));
    mm_optimizer *o = adam(m, a->epochs, a->seed);
    double t0 = bench_now();
    CHECK(mm_optimizer_fit(o, tr, NULL, NULL, NULL, NULL));
    double dt = bench_now() - t0;
    double acc = test_accuracy(m, te);
    CHECK(mm_model_save(m, a->out));
    printf("{\"impl\": \"mmaint\", \"bench\": \"prune_train\", \"recipe\": \"adam lr=1e-3 "
           "batch=64 epochs=%zu seed=%lu\", \"test_accuracy\": %.4f, \"seconds\": %.3f, "
           "\"file\": \"%s\", \"file_size\": %lld, ",
           a->epochs, a->seed, acc, dt, a->out, file_size(a->out));
    emit_model(m);
    printf("}\n");
    mm_optimizer_free(o);
    mm_model_free(m);
    mm_dataset_free(tr);
    mm_dataset_free(te);
}

static void step_prune(const args *a) {
    if (!a->model || !a->out || !a->criterion || !a->mode) {
        fprintf(stderr, "bench_prune prune: --model, --out, --criterion, --mode are required\n");
        exit(2);
    }
    const bool ft = strcmp(a->mode, "oneshot_ft") == 0;
    const bool gradual = strcmp(a->mode, "gradual") == 0;
    if (!ft && !gradual && strcmp(a->mode, "oneshot") != 0) {
        fprintf(stderr, "bench_prune: unknown --mode %s\n", a->mode);
        exit(2);
    }
    mm_model *m;
    CHECK(mm_model_load(&m, a->model));
    mm_dataset *te = load("test");
    mm_dataset *tr = ft || gradual ? load("train") : NULL;
    const double acc_before = test_accuracy(m, te);

    mm_prune_criterion crit;
    CHECK(mm_prune_criterion_from_name(a->criterion, &crit));
    mm_pruner *p;
    CHECK(mm_pruner_create(&p, crit));
    CHECK(mm_pruner_set(p, MM_PRUNE_SPARSITY, a->sparsity));
    CHECK(mm_pruner_set(p, MM_PRUNE_SEED, (double)a->seed));
    int fmt = MM_PRUNE_FORMAT_AUTO;
    if (strcmp(a->format, "sparse") == 0) fmt = MM_PRUNE_FORMAT_SPARSE;
    else if (strcmp(a->format, "dense") == 0) fmt = MM_PRUNE_FORMAT_DENSE;
    CHECK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, fmt));

    double t0 = bench_now(), acc_pruned = NAN;
    mm_optimizer *o = NULL;
    size_t end_step = 0, frequency = 0;
    if (gradual) {
        const size_t spe = (mm_dataset_size(tr) + 63) / 64;
        end_step = (size_t)floor(a->end_frac * (double)(spe * a->ft_epochs));
        if (end_step < 1) end_step = 1;
        CHECK(mm_pruner_set(p, MM_PRUNE_SCHEDULE, MM_PRUNE_POLYNOMIAL));
        CHECK(mm_pruner_set(p, MM_PRUNE_INITIAL_SPARSITY, 0));
        CHECK(mm_pruner_set(p, MM_PRUNE_BEGIN_STEP, 0));
        CHECK(mm_pruner_set(p, MM_PRUNE_END_STEP, (double)end_step));
        frequency = a->frequency ? a->frequency : (end_step / 10 ? end_step / 10 : 1);
        CHECK(mm_pruner_set(p, MM_PRUNE_FREQUENCY, (double)frequency));
        CHECK(mm_pruner_set(p, MM_PRUNE_POWER, 3));
        o = adam(m, a->ft_epochs, a->seed);
        CHECK(mm_pruner_attach(p, o));
        CHECK(mm_optimizer_fit(o, tr, NULL, NULL, NULL, NULL));
        CHECK(mm_pruner_attach(NULL, o));
    } else {
        CHECK(mm_pruner_apply(p, m));
        acc_pruned = test_accuracy(m, te);
        if (ft) {
            o = adam(m, a->ft_epochs, a->seed);
            CHECK(mm_optimizer_fit(o, tr, NULL, NULL, NULL, NULL));
        }
    }
    CHECK(mm_pruner_finalize(p, m, NULL));
    double dt = bench_now() - t0;
    const double acc_after = test_accuracy(m, te);
    CHECK(mm_model_save(m, a->out));
    /* The file must load back to the same model. */
    mm_model *back;
    CHECK(mm_model_load(&back, a->out));
    const double acc_back = test_accuracy(back, te);
    mm_model_free(back);

    printf("{\"impl\": \"mmaint\", \"bench\": \"prune\", \"criterion\": \"%s\", "
           "\"sparsity\": %g, \"mode\": \"%s\", \"ft_epochs\": %zu, ",
           a->criterion, a->sparsity, a->mode, ft || gradual ? a->ft_epochs : (size_t)0);
    if (gradual)
        printf("\"end_step\": %zu, \"frequency\": %zu, ", end_step, frequency);
    printf("\"format\": \"%s\", \"test_accuracy_before\": %.4f, ", a->format, acc_before);
    if (!gradual) printf("\"test_accuracy_pruned\": %.4f, ", acc_pruned);
    printf("\"test_accuracy\": %.4f, \"test_accuracy_reloaded\": %.4f, \"seconds\": %.3f, "
           "\"file\": \"%s\", \"file_size\": %lld, ",
           acc_after, acc_back, dt, a->out, file_size(a->out));
    emit_model(m);
    printf("}\n");
    mm_optimizer_free(o);
    mm_pruner_free(p);
    mm_model_free(m);
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
        fprintf(stderr, "bench_prune infer: --model FILE is required\n");
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
    printf("{\"impl\": \"mmaint\", \"bench\": \"prune_infer%zu\", \"model\": \"%s\", "
           "\"samples_per_s\": %.1f, \"samples\": %zu, \"seconds\": %.3f}\n",
           batch, a->model, rate, n, el);
    free(out);
    mm_model_free(m);
    mm_dataset_free(te);
}

static void usage(void) {
    fprintf(stderr,
            "usage: bench_prune train --out FILE [--epochs N] [--seed N]\n"
            "       bench_prune prune --model FILE --out FILE --criterion NAME --sparsity S\n"
            "                   --mode oneshot|oneshot_ft|gradual [--ft-epochs N]\n"
            "                   [--end-frac F] [--frequency N] [--format auto|sparse|dense]\n"
            "       bench_prune infer --model FILE --batch N [--seconds S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    args a = {.seconds = 1.0, .sparsity = 0.5, .end_frac = 0.5, .epochs = 3, .ft_epochs = 2,
              .batch = 1, .frequency = 0, .seed = 42, .format = "auto"};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (s[0] != '-') {
            a.step = s;
            continue;
        }
        if (!v) usage();
        if (!strcmp(s, "--model")) a.model = v;
        else if (!strcmp(s, "--out")) a.out = v;
        else if (!strcmp(s, "--criterion")) a.criterion = v;
        else if (!strcmp(s, "--mode")) a.mode = v;
        else if (!strcmp(s, "--format")) a.format = v;
        else if (!strcmp(s, "--sparsity")) a.sparsity = atof(v);
        else if (!strcmp(s, "--seconds")) a.seconds = atof(v);
        else if (!strcmp(s, "--end-frac")) a.end_frac = atof(v);
        else if (!strcmp(s, "--epochs")) a.epochs = (size_t)atol(v);
        else if (!strcmp(s, "--ft-epochs")) a.ft_epochs = (size_t)atol(v);
        else if (!strcmp(s, "--batch")) a.batch = (size_t)atol(v);
        else if (!strcmp(s, "--frequency")) a.frequency = (size_t)atol(v);
        else if (!strcmp(s, "--seed")) a.seed = strtoul(v, NULL, 10);
        else usage();
        i++;
    }
    if (!a.step || a.batch == 0) usage();
    CHECK(mm_set_num_threads(1));
    if (!strcmp(a.step, "train")) step_train(&a);
    else if (!strcmp(a.step, "prune")) step_prune(&a);
    else if (!strcmp(a.step, "infer")) step_infer(&a);
    else usage();
    return 0;
}
