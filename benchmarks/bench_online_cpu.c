/* Online steps (n = 1) per thread-CPU-second on 784-256-128-10 for one
 * optimizer configuration: sgd (the fused path), momentum (SGD momentum 0.9
 * + weight decay 1e-4, the general path), adam, adamw. Thread CPU time, so
 * a machine shared with other jobs does not distort it; best of 5 windows.
 * Used to check that the numeric guards of the step cost nothing measurable
 * (benchmarks/RESULTS.md, "Transfer learning"): build it against two
 * library versions and run them interleaved.
 *   bench_online_cpu sgd|momentum|adam|adamw [SECONDS]            */
#include <mm/mm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define CHECK(call)                                                                         \
    do {                                                                                    \
        mm_status st_ = (call);                                                             \
        if (st_ != MM_OK) {                                                                 \
            fprintf(stderr, "bench_online_cpu: %s: %s\n", #call, mm_last_error_message()); \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_online_cpu sgd|momentum|adam|adamw [SECONDS]\n");
        return 2;
    }
    const char *kind = argv[1];
    const double secs = argc > 2 ? atof(argv[2]) : 2.0;
    mm_optim_kind k = MM_OPTIM_SGD;
    if (!strcmp(kind, "adam")) k = MM_OPTIM_ADAM;
    else if (!strcmp(kind, "adamw")) k = MM_OPTIM_ADAMW;
    else if (strcmp(kind, "sgd") && strcmp(kind, "momentum")) {
        fprintf(stderr, "bench_online_cpu: unknown configuration '%s'\n", kind);
        return 2;
    }
    mm_model *m;
    mm_optimizer *o;
    CHECK(mm_model_create_from_spec(&m, "784-256-128-10:relu", 42));
    CHECK(mm_optimizer_create(&o, m, k));
    if (!strcmp(kind, "momentum")) {
        CHECK(mm_optimizer_set(o, MM_OPT_MOMENTUM, 0.9));
        CHECK(mm_optimizer_set(o, MM_OPT_WEIGHT_DECAY, 1e-4));
    }
    CHECK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, k == MM_OPTIM_SGD ? 1e-3 : 1e-4));
    enum { N = 512, D = 784 };
    float *x = malloc((size_t)N * D * sizeof *x);
    int32_t y[N];
    if (!x) return 1;
    unsigned s = 1;
    for (size_t i = 0; i < (size_t)N * D; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)(s >> 8) / 16777216.0f;
    }
    for (int i = 0; i < N; i++) y[i] = i % 10;
    for (int i = 0; i < 200; i++) CHECK(mm_optimizer_step(o, x + (i % N) * D, y + i % N, NULL, 1, NULL));
    double best = 0;
    for (int r = 0; r < 5; r++) {
        long n = 0;
        const double t0 = cpu_now();
        while (cpu_now() - t0 < secs / 5)
            for (int i = 0; i < 50; i++, n++)
                CHECK(mm_optimizer_step(o, x + (n % N) * D, y + n % N, NULL, 1, NULL));
        const double rate = (double)n / (cpu_now() - t0);
        if (rate > best) best = rate;
    }
    printf("%s %.0f steps/s\n", kind, best);
    mm_optimizer_free(o);
    mm_model_free(m);
    free(x);
    return 0;
}
