/* Small helpers shared by the C benchmark programs (header-only). */
#ifndef MM_BENCH_COMMON_H
#define MM_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Peak resident set size of this process so far, kB (getrusage ru_maxrss). */
static inline long bench_maxrss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Current resident set size, kB (VmRSS of /proc/self/status; -1 if absent). */
static inline long bench_rss_now_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    long kb = -1;
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "VmRSS:", 6) == 0) {
                kb = strtol(line + 6, NULL, 10);
                break;
            }
        fclose(f);
    }
    return kb;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Run `chunk` (which does some work and returns the samples it did)
 * repeatedly for about `seconds` and at least min_chunks times; return the
 * samples/s of the median chunk, and the totals through the out-params. */
typedef size_t (*bench_chunk_fn)(void *ctx);
static inline double bench_timed_chunks(bench_chunk_fn chunk, void *ctx, double seconds,
                                        int min_chunks, size_t *total, double *elapsed) {
    size_t cap = 64, n = 0;
    double *rates = malloc(cap * sizeof *rates);
    size_t tot = 0;
    double t_all = bench_now();
    for (;;) {
        double t0 = bench_now();
        size_t s = chunk(ctx);
        double dt = bench_now() - t0;
        if (n == cap) {
            cap *= 2;
            rates = realloc(rates, cap * sizeof *rates);
        }
        rates[n++] = (double)s / dt;
        tot += s;
        if ((int)n >= min_chunks && bench_now() - t_all >= seconds) break;
    }
    qsort(rates, n, sizeof *rates, bench_cmp_double);
    double med = rates[n / 2];
    free(rates);
    if (total) *total = tot;
    if (elapsed) *elapsed = bench_now() - t_all;
    return med;
}

#endif
