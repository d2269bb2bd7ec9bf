/* mmaint side of the benchmarks: one benchmark per run, JSON lines on stdout
 * with the same keys as bench_torch.py and bench_fann.c.
 *
 *   bench_mmaint train_step|train_epoch|online|infer1|infer256 [--seconds S]
 *   bench_mmaint accuracy [--optim adamw --lr 1e-3 --wd 0.05 --batch 128
 *                          --epochs 15 --schedule cosine --warmup-epochs 1
 *                          --min-lr 0 --target 0.89 --seed 42]
 *
 * Model 784-256-128-10 relu (He init, seed 42), Fashion-MNIST from
 * $MM_FASHION_DIR (default /usr/share/datasets/fashion-mnist) through
 * mm_dataset_load_idx (pixels scaled to [0, 1]). One thread:
 * mm_set_num_threads(1).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "mm/mm.h"

#define SPEC "784-256-128-10:relu"
#define BATCH 64

#define CHECK(call)                                                                         \
    do {                                                                                    \
        mm_status st_ = (call);                                                             \
        if (st_ != MM_OK) {                                                                 \
            fprintf(stderr, "bench_mmaint: %s failed: %s: %s\n", #call, mm_status_name(st_), \
                    mm_last_error_message());                                               \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

typedef struct args {
    const char *bench;
    double seconds;
    const char *optim;
    double lr, wd, momentum;
    size_t batch, epochs;
    const char *schedule;
    double warmup_epochs, min_lr, target;
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

static mm_model *make_model(unsigned long seed) {
    mm_model *m;
    CHECK(mm_model_create_from_spec(&m, SPEC, seed));
    return m;
}

static void emit_head(const char *bench) {
    printf("{\"impl\": \"mmaint\", \"bench\": \"%s\", \"version\": \"%s\", \"backend\": \"%s\"",
           bench, mm_version_string(), mm_backend_name());
}

/* ---- mini-batch training on prepared batches ---------------------------- */

typedef struct step_ctx {
    mm_optimizer *opt;
    const float *x;
    const int32_t *y;
    size_t dim, nb, pos, chunk, batch;
} step_ctx;

static size_t step_chunk(void *p) {
    step_ctx *c = p;
    double loss;
    for (size_t i = 0; i < c->chunk; i++) {
        size_t b = c->pos;
        c->pos = (c->pos + 1) % c->nb;
        CHECK(mm_optimizer_step(c->opt, c->x + b * c->batch * c->dim, c->y + b * c->batch, NULL,
                                c->batch, &loss));
    }
    return c->chunk * c->batch;
}

static void bench_train_step(const args *a) {
    mm_dataset *tr = load("train");
    long rss_data = bench_rss_now_kb();
    mm_model *m = make_model(42);
    mm_optimizer *o;
    CHECK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    CHECK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1e-3));
    step_ctx c = {o, mm_dataset_features(tr), mm_dataset_labels(tr), mm_dataset_dim(tr),
                  mm_dataset_size(tr) / BATCH, 0, 100, BATCH};
    step_chunk(&c); /* warm-up: allocates Adam state and training caches */
    size_t n;
    double el;
    double rate = bench_timed_chunks(step_chunk, &c, a->seconds, 3, &n, &el);
    emit_head("train_step");
    printf(", \"samples_per_s\": %.1f, \"samples\": %zu, \"seconds\": %.3f, \"rss_kb\": %ld, "
           "\"rss_after_load_kb\": %ld, \"rss_end_kb\": %ld}\n",
           rate, n, el, bench_maxrss_kb(), rss_data, bench_rss_now_kb());
    mm_optimizer_free(o);
    mm_model_free(m);
    mm_dataset_free(tr);
}

/* ---- one epoch of mm_optimizer_fit --------------------------------------- */

static void bench_train_epoch(const args *a) {
    (void)a;
    mm_dataset *tr = load("train");
    long rss_data = bench_rss_now_kb();
    mm_model *m = make_model(42);
    mm_optimizer *o;
    CHECK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    CHECK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1e-3));
    CHECK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, BATCH));
    CHECK(mm_optimizer_set(o, MM_OPT_EPOCHS, 1));
    CHECK(mm_optimizer_set(o, MM_OPT_SEED, 0));
    mm_fit_progress res;
    double t0 = bench_now();
    CHECK(mm_optimizer_fit(o, tr, NULL, NULL, NULL, &res));
    double dt = bench_now() - t0;
    long rss_peak = bench_maxrss_kb(), rss_end = bench_rss_now_kb(); /* before the test set */
    mm_dataset *te = load("test");
    double acc;
    CHECK(mm_model_evaluate(m, mm_dataset_features(te), mm_dataset_labels(te), NULL,
                            mm_dataset_size(te), NULL, &acc));
    size_t n = mm_dataset_size(tr);
    emit_head("train_epoch");
    printf(", \"samples_per_s\": %.1f, \"samples\": %zu, \"seconds\": %.3f, "
           "\"test_accuracy\": %.4f, \"rss_kb\": %ld, \"rss_after_load_kb\": %ld, "
           "\"rss_end_kb\": %ld}\n",
           (double)n / dt, n, dt, acc, rss_peak, rss_data, rss_end);
    mm_optimizer_free(o);
    mm_model_free(m);
    mm_dataset_free(tr);
    mm_dataset_free(te);
}

/* ---- online learning: SGD, one sample per step ---------------------------- */

static void bench_online(const args *a) {
    mm_dataset *tr = load("train");
    mm_model *m = make_model(42);
    mm_optimizer *o;
    CHECK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    CHECK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.01));
    step_ctx c = {o, mm_dataset_features(tr), mm_dataset_labels(tr), mm_dataset_dim(tr),
                  20000, 0, 500, 1};
    step_chunk(&c);
    size_t n;
    double el;
    double rate = bench_timed_chunks(step_chunk, &c, a->seconds, 3, &n, &el);
    emit_head("online");
    printf(", \"samples_per_s\": %.1f, \"samples\": %zu, \"seconds\": %.3f}\n", rate, n, el);
    mm_optimizer_free(o);
    mm_model_free(m);
    mm_dataset_free(tr);
}

/* ---- inference ----------------------------------------------------------- */

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

static void bench_infer(const args *a, size_t batch) {
    mm_dataset *te = load("test");
    mm_model *m = make_model(42);
    float *out = malloc(batch * 10 * sizeof *out);
    infer_ctx c = {m, mm_dataset_features(te), out, mm_dataset_dim(te),
                   mm_dataset_size(te) / batch, 0, batch == 1 ? 1000 : 8, batch};
    infer_chunk(&c);
    size_t n;
    double el;
    double rate = bench_timed_chunks(infer_chunk, &c, a->seconds, 3, &n, &el);
    char name[32];
    snprintf(name, sizeof name, "infer%zu", batch);
    emit_head(name);
    printf(", \"samples_per_s\": %.1f, \"samples\": %zu, \"seconds\": %.3f}\n", rate, n, el);
    free(out);
    mm_model_free(m);
    mm_dataset_free(te);
}

/* ---- accuracy recipe: time to the target test accuracy -------------------- */

typedef struct acc_ctx {
    double t0, target;
    int hit_epoch;
    double hit_seconds;
    double accs[1024];
    size_t n_accs;
} acc_ctx;

static int acc_cb(const mm_fit_progress *p, void *user) {
    acc_ctx *c = user;
    if (p->event != MM_FIT_EPOCH_END) return 0;
    double el = bench_now() - c->t0;
    if (c->n_accs < 1024) c->accs[c->n_accs++] = p->val_accuracy;
    if (c->hit_epoch == 0 && p->val_accuracy >= c->target) {
        c->hit_epoch = (int)p->epoch + 1;
        c->hit_seconds = el;
    }
    printf("{\"impl\": \"mmaint\", \"bench\": \"accuracy_epoch\", \"epoch\": %u, "
           "\"test_accuracy\": %.4f, \"seconds\": %.3f, \"lr\": %.3g}\n",
           p->epoch + 1, p->val_accuracy, el, p->learning_rate);
    fflush(stdout);
    return 0;
}

static void bench_accuracy(const args *a) {
    mm_dataset *tr = load("train"), *te = load("test");
    mm_model *m = make_model(a->seed);
    mm_optim_kind kind;
    CHECK(mm_optim_kind_from_name(a->optim, &kind));
    mm_optimizer *o;
    CHECK(mm_optimizer_create(&o, m, kind));
    CHECK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, a->lr));
    CHECK(mm_optimizer_set(o, MM_OPT_WEIGHT_DECAY, a->wd));
    if (kind == MM_OPTIM_SGD && a->momentum > 0) {
        CHECK(mm_optimizer_set(o, MM_OPT_MOMENTUM, a->momentum));
        CHECK(mm_optimizer_set(o, MM_OPT_NESTEROV, 1));
    }
    size_t n = mm_dataset_size(tr), spe = (n + a->batch - 1) / a->batch;
    CHECK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, (double)a->batch));
    CHECK(mm_optimizer_set(o, MM_OPT_EPOCHS, (double)a->epochs));
    CHECK(mm_optimizer_set(o, MM_OPT_SEED, (double)a->seed));
    if (strcmp(a->schedule, "cosine") == 0) {
        CHECK(mm_optimizer_set(o, MM_OPT_SCHEDULE, MM_SCHEDULE_COSINE));
        CHECK(mm_optimizer_set(o, MM_OPT_WARMUP_STEPS, round(a->warmup_epochs * (double)spe)));
        CHECK(mm_optimizer_set(o, MM_OPT_TOTAL_STEPS, (double)(a->epochs * spe)));
        CHECK(mm_optimizer_set(o, MM_OPT_MIN_LR, a->min_lr));
    }
    acc_ctx c = {.target = a->target};
    c.t0 = bench_now();
    CHECK(mm_optimizer_fit(o, tr, te, acc_cb, &c, NULL));
    double total = bench_now() - c.t0;
    double best = 0;
    emit_head("accuracy");
    printf(", \"recipe\": \"%s lr=%g wd=%g batch=%zu epochs=%zu schedule=%s", a->optim, a->lr,
           a->wd, a->batch, a->epochs, a->schedule);
    if (strcmp(a->schedule, "cosine") == 0)
        printf(" warmup_epochs=%g min_lr=%g", a->warmup_epochs, a->min_lr);
    printf("\", \"accuracies\": [");
    for (size_t i = 0; i < c.n_accs; i++) {
        printf("%s%.4f", i ? ", " : "", c.accs[i]);
        if (c.accs[i] > best) best = c.accs[i];
    }
    printf("], \"final_accuracy\": %.4f, \"best_accuracy\": %.4f, ",
           c.n_accs ? c.accs[c.n_accs - 1] : NAN, best);
    if (c.hit_epoch)
        printf("\"epochs_to_target\": %d, \"seconds_to_target\": %.3f, ", c.hit_epoch,
               c.hit_seconds);
    else
        printf("\"epochs_to_target\": null, \"seconds_to_target\": null, ");
    printf("\"seconds_total\": %.3f, \"target\": %g, \"rss_kb\": %ld}\n", total, a->target,
           bench_maxrss_kb());
    mm_optimizer_free(o);
    mm_model_free(m);
    mm_dataset_free(tr);
    mm_dataset_free(te);
}

static void usage(void) {
    fprintf(stderr,
            "usage: bench_mmaint train_step|train_epoch|online|infer1|infer256|accuracy\n"
            "       [--seconds S] [--optim adam|adamw|sgd] [--lr X] [--wd X] [--momentum X]\n"
            "       [--batch N] [--epochs N] [--schedule constant|cosine]\n"
            "       [--warmup-epochs X] [--min-lr X] [--target X] [--seed N]\n");
    exit(2);
}

int main(int argc, char **argv) {
    args a = {NULL, 1.5, "adamw", 1e-3, 0.0, 0.9, 128, 15, "cosine", 1.0, 0.0, 0.89, 42};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (s[0] != '-') {
            a.bench = s;
            continue;
        }
        if (!v) usage();
        if (!strcmp(s, "--seconds")) a.seconds = atof(v);
        else if (!strcmp(s, "--optim")) a.optim = v;
        else if (!strcmp(s, "--lr")) a.lr = atof(v);
        else if (!strcmp(s, "--wd")) a.wd = atof(v);
        else if (!strcmp(s, "--momentum")) a.momentum = atof(v);
        else if (!strcmp(s, "--batch")) a.batch = (size_t)atol(v);
        else if (!strcmp(s, "--epochs")) a.epochs = (size_t)atol(v);
        else if (!strcmp(s, "--schedule")) a.schedule = v;
        else if (!strcmp(s, "--warmup-epochs")) a.warmup_epochs = atof(v);
        else if (!strcmp(s, "--min-lr")) a.min_lr = atof(v);
        else if (!strcmp(s, "--target")) a.target = atof(v);
        else if (!strcmp(s, "--seed")) a.seed = strtoul(v, NULL, 10);
        else usage();
        i++;
    }
    if (!a.bench) usage();
    CHECK(mm_set_num_threads(1));
    if (!strcmp(a.bench, "train_step")) bench_train_step(&a);
    else if (!strcmp(a.bench, "train_epoch")) bench_train_epoch(&a);
    else if (!strcmp(a.bench, "online")) bench_online(&a);
    else if (!strcmp(a.bench, "infer1")) bench_infer(&a, 1);
    else if (!strcmp(a.bench, "infer256")) bench_infer(&a, 256);
    else if (!strcmp(a.bench, "accuracy")) bench_accuracy(&a);
    else usage();
    return 0;
}
