/* Drift detectors (issue 7): detection delay, missed detections and false
 * alarms of ADWIN, Page-Hinkley, DDM and EDDM with their default parameters,
 * on synthetic streams with a known change point, over many seeds; and the
 * update cost (ns per sample).
 *
 *   build/benchmarks/bench_drift [--seeds N] [--stationary LEN]
 *
 * Scenarios (change at t = 5000, stream of 15000, `seeds` runs each):
 *   bern-abrupt   0/1 errors, rate 0.1 -> 0.4 at once
 *   bern-small    0/1 errors, rate 0.1 -> 0.2 at once
 *   bern-gradual  0/1 errors, rate 0.1 -> 0.4 linearly over 2000 samples
 *   gauss-shift   loss N(0.3, 0.1^2) -> N(0.6, 0.1^2) (ADWIN, Page-Hinkley only)
 * delay = first DRIFT at or after the change minus the change point (for the
 * gradual one: minus the start of the ramp); a run with no DRIFT after the
 * change counts as missed; false alarms = DRIFTs before the change. Then
 * stationary streams (rate 0.1; loss N(0.3, 0.1^2)) of LEN samples per seed:
 * false alarms per 100k samples.
 *
 * The same generators (splitmix64, Box-Muller) as tests/test_drift.c.
 * Prints a markdown table. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "mm/mm.h"

typedef struct rng {
    uint64_t s;
} rng;

static double unif(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static double gauss(rng *r) {
    double u1 = unif(r), u2 = unif(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

typedef struct scenario {
    const char *name;
    int gaussian;
    double a0, a1, sd;
    size_t width; /* ramp length, 0 = abrupt */
} scenario;

static const scenario scenarios[] = {
    {"bern-abrupt 0.1->0.4", 0, 0.1, 0.4, 0, 0},
    {"bern-small 0.1->0.2", 0, 0.1, 0.2, 0, 0},
    {"bern-gradual 0.1->0.4 /2000", 0, 0.1, 0.4, 0, 2000},
    {"gauss-shift 0.3->0.6 sd 0.1", 1, 0.3, 0.6, 0.1, 0},
};

#define CHANGE 5000
#define LEN 15000

static double sample(rng *r, const scenario *sc, size_t t) {
    double m = sc->a0;
    if (t >= CHANGE) {
        if (sc->width == 0 || t >= CHANGE + sc->width)
            m = sc->a1;
        else
            m = sc->a0 + (sc->a1 - sc->a0) * (double)(t - CHANGE) / (double)sc->width;
    }
    if (sc->gaussian) return m + sc->sd * gauss(r);
    return unif(r) < m ? 1.0 : 0.0;
}

static void die(mm_status st) {
    fprintf(stderr, "bench_drift: %s: %s\n", mm_status_name(st), mm_last_error_message());
    exit(1);
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int seeds = 200;
    size_t stat_len = 100000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc)
            seeds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--stationary") == 0 && i + 1 < argc)
            stat_len = (size_t)strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--seeds N] [--stationary LEN]\n", argv[0]);
            return 2;
        }
    }
    if (seeds < 1) seeds = 1;
    const mm_drift_kind kinds[] = {MM_DRIFT_ADWIN, MM_DRIFT_PAGE_HINKLEY, MM_DRIFT_DDM,
                                   MM_DRIFT_EDDM};
    size_t *delays = malloc((size_t)seeds * sizeof *delays);
    if (!delays) return 1;
    printf("mmaint %s, %d seeds per scenario, change at t = %d, defaults of each detector\n\n",
           mm_version_string(), seeds, CHANGE);
    printf("| detector | scenario | detected | mean delay | median | p90 | max | false alarms "
           "before change (per run) |\n|---|---|---|---|---|---|---|---|\n");
    for (size_t k = 0; k < 4; k++) {
        int binary = kinds[k] == MM_DRIFT_DDM || kinds[k] == MM_DRIFT_EDDM;
        for (size_t s = 0; s < sizeof scenarios / sizeof scenarios[0]; s++) {
            const scenario *sc = &scenarios[s];
            if (binary && sc->gaussian) continue;
            size_t nd = 0, early = 0;
            double sum = 0;
            for (int seed = 1; seed <= seeds; seed++) {
                mm_drift *d;
                mm_status st = mm_drift_create(&d, kinds[k]);
                if (st != MM_OK) die(st);
                rng r = {(uint64_t)seed * 0x2545F4914F6CDD1DULL + 17};
                for (size_t t = 0; t < LEN; t++) {
                    mm_drift_state ds;
                    if ((st = mm_drift_update(d, sample(&r, sc, t), &ds)) != MM_OK) die(st);
                    if (ds != MM_DRIFT_DRIFT) continue;
                    if (t < CHANGE) {
                        early++;
                    } else {
                        delays[nd++] = t - CHANGE;
                        sum += (double)(t - CHANGE);
                        break;
                    }
                }
                mm_drift_free(d);
            }
            qsort(delays, nd, sizeof *delays, cmp_size);
            if (nd)
                printf("| %s | %s | %zu/%d | %.0f | %zu | %zu | %zu | %.3f |\n",
                       mm_drift_kind_name(kinds[k]), sc->name, nd, seeds, sum / (double)nd,
                       delays[nd / 2], delays[(nd * 9) / 10 < nd ? (nd * 9) / 10 : nd - 1],
                       delays[nd - 1], (double)early / seeds);
            else
                printf("| %s | %s | 0/%d | - | - | - | - | %.3f |\n", mm_drift_kind_name(kinds[k]),
                       sc->name, seeds, (double)early / seeds);
        }
    }

    printf("\nStationary streams, %zu samples x %d seeds: false alarms per 100k samples; update "
           "cost\n\n| detector | stream | false alarms / 100k | runs with >= 1 alarm | ns / update "
           "|\n|---|---|---|---|---|\n",
           stat_len, seeds);
    for (size_t k = 0; k < 4; k++) {
        int binary = kinds[k] == MM_DRIFT_DDM || kinds[k] == MM_DRIFT_EDDM;
        for (int g = 0; g < 2; g++) {
            if (binary && g) continue;
            scenario sc = {g ? "gauss 0.3 sd 0.1" : "bern 0.1", g, 0.3, 0.3, 0.1, 0};
            if (!g) sc.a0 = sc.a1 = 0.1;
            size_t alarms = 0, runs_with = 0;
            double secs = 0;
            double *vals = malloc(stat_len * sizeof *vals);
            if (!vals) return 1;
            for (int seed = 1; seed <= seeds; seed++) {
                mm_drift *d;
                mm_status st = mm_drift_create(&d, kinds[k]);
                if (st != MM_OK) die(st);
                rng r = {(uint64_t)seed * 0xD1B54A32D192ED03ULL + 99};
                for (size_t t = 0; t < stat_len; t++) vals[t] = sample(&r, &sc, 0);
                size_t a = 0;
                double t0 = bench_now();
                for (size_t t = 0; t < stat_len; t++) {
                    mm_drift_state ds;
                    if ((st = mm_drift_update(d, vals[t], &ds)) != MM_OK) die(st);
                    a += ds == MM_DRIFT_DRIFT;
                }
                secs += bench_now() - t0;
                alarms += a;
                runs_with += a > 0;
                mm_drift_free(d);
            }
            free(vals);
            double total = (double)stat_len * seeds;
            printf("| %s | %s | %.2f | %zu/%d | %.1f |\n", mm_drift_kind_name(kinds[k]), sc.name,
                   1e5 * (double)alarms / total, runs_with, seeds, 1e9 * secs / total);
        }
    }
    free(delays);
    return 0;
}
