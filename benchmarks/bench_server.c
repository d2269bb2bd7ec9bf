/* Serving while updating (issue 7): reader throughput of mm_server_predict
 * with a concurrent writer publishing new versions, against the same reader
 * alone, and against mm_model_predict called directly (the cost of
 * acquire + release).
 *
 *   build/benchmarks/bench_server [--spec 784-256-128-10:relu] [--batch 1]
 *                                 [--seconds 1] [--reps 7] [--rate 0,100]
 *
 * One reader thread predicts batches of `batch` random inputs in a loop for
 * `seconds`; in the "with writer" phases a second thread publishes a model
 * (a clone of one of two prepared versions) either as fast as it can
 * (rate 0) or `rate` times per second, or (--maintainer) runs guarded
 * maintenance: an mm_maintainer with the server attached learns a stream
 * (random inputs labelled by another model, SGD, windows of 200 samples)
 * and publishes every accepted window. Phases are interleaved `reps` times;
 * medians are printed as a markdown table. The machine's cores are shared:
 * run it on a quiet machine, 1 reader + 1 writer for 2 cores. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "mm/mm.h"

static void check(mm_status st, const char *what) {
    if (st != MM_OK) {
        fprintf(stderr, "bench_server: %s: %s: %s\n", what, mm_status_name(st),
                mm_last_error_message());
        exit(1);
    }
}

typedef struct ctx {
    mm_server *server;
    const mm_model *direct; /* non-NULL: call mm_model_predict on it instead */
    mm_model *versions[2];
    float *x;
    int32_t *labels;
    size_t batch;
    double seconds;
    double rate; /* publishes per second, 0 = as fast as possible */
    mm_maintainer *mt; /* the maintainer writer */
    float *sx;         /* its stream */
    int32_t *sy;
    size_t stream_n, stream_pos, dim;
    atomic_int stop;
    uint64_t publishes;
    double reads_per_s;
} ctx;

static void *writer_main(void *arg) {
    ctx *c = arg;
    uint64_t n = 0;
    double t0 = bench_now();
    while (!atomic_load(&c->stop)) {
        check(mm_server_publish(c->server, c->versions[n & 1], NULL), "publish");
        n++;
        if (c->rate > 0) {
            double next = t0 + (double)n / c->rate;
            double wait = next - bench_now();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
    }
    c->publishes = n;
    return NULL;
}

static void *maintainer_main(void *arg) {
    ctx *c = arg;
    const uint64_t v0 = mm_server_version(c->server);
    while (!atomic_load(&c->stop)) {
        const size_t k = 100;
        if (c->stream_pos + k > c->stream_n) c->stream_pos = 0;
        check(mm_maintainer_feed(c->mt, c->sx + c->stream_pos * c->dim, c->sy + c->stream_pos, k, NULL),
              "feed");
        c->stream_pos += k;
    }
    c->publishes = mm_server_version(c->server) - v0;
    return NULL;
}

static void reader_run(ctx *c) {
    uint64_t n = 0;
    double t0 = bench_now(), t;
    do {
        for (int i = 0; i < 64; i++) {
            if (c->direct)
                check(mm_model_predict(c->direct, c->x, c->batch, c->labels), "predict");
            else
                check(mm_server_predict(c->server, c->x, c->batch, c->labels, NULL), "predict");
        }
        n += 64;
        t = bench_now();
    } while (t - t0 < c->seconds);
    c->reads_per_s = (double)n * (double)c->batch / (t - t0);
}

/* One phase: reader alone (writer = 0) or with a writer thread. */
static double phase(ctx *c, int writer, const mm_model *direct, double *pubs_per_s) {
    c->direct = direct;
    atomic_store(&c->stop, 0);
    pthread_t th;
    if (writer && pthread_create(&th, NULL, writer == 2 ? maintainer_main : writer_main, c) != 0)
        exit(1);
    double t0 = bench_now();
    reader_run(c);
    if (writer) {
        atomic_store(&c->stop, 1);
        pthread_join(th, NULL);
        if (pubs_per_s) *pubs_per_s = (double)c->publishes / (bench_now() - t0);
    }
    return c->reads_per_s;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    const char *spec = "784-256-128-10:relu";
    size_t batch = 1;
    double seconds = 1.0;
    int reps = 7;
    double rates[8] = {0, 100};
    int n_rates = 2, maintainer = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--maintainer") == 0) {
            maintainer = 1;
            continue;
        }
        if (i + 1 >= argc) goto usage;
        if (strcmp(argv[i], "--spec") == 0)
            spec = argv[++i];
        else if (strcmp(argv[i], "--batch") == 0)
            batch = (size_t)strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rate") == 0) {
            n_rates = 0;
            for (char *tok = strtok(argv[++i], ","); tok && n_rates < 8; tok = strtok(NULL, ","))
                rates[n_rates++] = atof(tok);
        } else
            goto usage;
    }
    if (batch < 1 || reps < 1 || reps > 64 || seconds <= 0 || n_rates < 1) goto usage;

    ctx c;
    memset(&c, 0, sizeof c);
    c.batch = batch;
    c.seconds = seconds;
    check(mm_model_create_from_spec(&c.versions[0], spec, 1), "model");
    check(mm_model_create_from_spec(&c.versions[1], spec, 2), "model");
    size_t in = mm_model_input_dim(c.versions[0]);
    c.x = malloc(batch * in * sizeof *c.x);
    c.labels = malloc(batch * sizeof *c.labels);
    if (!c.x || !c.labels) return 1;
    srand(3);
    for (size_t i = 0; i < batch * in; i++) c.x[i] = (float)rand() / (float)RAND_MAX;
    check(mm_server_create(&c.server, c.versions[0]), "server");
    if (maintainer) { /* a learnable stream: labels from the other version */
        c.dim = in;
        c.stream_n = 20000;
        c.sx = malloc(c.stream_n * in * sizeof *c.sx);
        c.sy = malloc(c.stream_n * sizeof *c.sy);
        if (!c.sx || !c.sy) return 1;
        for (size_t i = 0; i < c.stream_n * in; i++) c.sx[i] = (float)rand() / (float)RAND_MAX;
        check(mm_model_predict(c.versions[1], c.sx, c.stream_n, c.sy), "labels");
        check(mm_maintainer_create(&c.mt, c.versions[0], MM_OPTIM_SGD), "maintainer");
        check(mm_maintainer_set(c.mt, MM_MAINT_WINDOW, 200), "window");
        check(mm_maintainer_set(c.mt, MM_MAINT_GUARD_THRESHOLD, 1), "threshold"); /* publish each */
        check(mm_maintainer_set_optimizer(c.mt, MM_OPT_LEARNING_RATE, 0.01), "lr");
        check(mm_maintainer_attach_server(c.mt, c.server), "attach");
    }

    double direct[64], alone[64], with[8][64], pubs[8][64], maint[64], maint_pubs[64];
    for (int r = 0; r < reps; r++) {
        direct[r] = phase(&c, 0, c.versions[0], NULL);
        alone[r] = phase(&c, 0, NULL, NULL);
        for (int k = 0; k < n_rates; k++) {
            c.rate = rates[k];
            with[k][r] = phase(&c, 1, NULL, &pubs[k][r]);
        }
        if (maintainer) maint[r] = phase(&c, 2, NULL, &maint_pubs[r]);
    }
    double a = median(alone, reps);
    printf("mmaint %s (%s backend), model %s, batch %zu, 1 reader%s, %d x %.1f s interleaved, "
           "medians; %ld kB max RSS\n\n",
           mm_version_string(), mm_backend_name(), spec, batch, n_rates ? " + 1 writer" : "", reps,
           seconds, bench_maxrss_kb());
    printf("| reader | writer publishes/s | predictions/s | vs reader alone |\n|---|---|---|---|\n");
    printf("| mm_model_predict (no server) | - | %.0f | %.1f%% |\n", median(direct, reps),
           100.0 * median(direct, reps) / a);
    printf("| mm_server_predict, alone | - | %.0f | 100%% |\n", a);
    for (int k = 0; k < n_rates; k++) {
        double w = median(with[k], reps);
        printf("| mm_server_predict + writer (%s) | %.0f | %.0f | %.1f%% |\n",
               rates[k] > 0 ? "paced" : "flat out", median(pubs[k], reps), w, 100.0 * w / a);
    }
    if (maintainer) {
        double w = median(maint, reps);
        printf("| mm_server_predict + guarded maintenance (window 200) | %.0f | %.0f | %.1f%% |\n",
               median(maint_pubs, reps), w, 100.0 * w / a);
    }
    mm_maintainer_free(c.mt);
    free(c.sx);
    free(c.sy);
    mm_server_free(c.server);
    mm_model_free(c.versions[0]);
    mm_model_free(c.versions[1]);
    free(c.x);
    free(c.labels);
    return 0;
usage:
    fprintf(stderr,
            "usage: %s [--spec S] [--batch N] [--seconds S] [--reps N] [--rate R1,R2,...] "
            "[--maintainer]\n",
            argv[0]);
    return 2;
}
