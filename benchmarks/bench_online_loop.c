/* In-process C baseline for bench_python.py: the online-learning loop of
 * `bench_mmaint online` (mm_optimizer_step with n = 1 over consecutive
 * samples), as a shared module that Python loads with ctypes. Timing C
 * chunks and Python chunks alternately in one process pairs each Python
 * measurement with a C one taken a few milliseconds apart, so the load of a
 * shared machine hits both alike. */
#include <stddef.h>
#include <stdint.h>

#include "mm/mm.h"

#if defined(__GNUC__)
#  define BENCH_EXPORT __attribute__((visibility("default")))
#else
#  define BENCH_EXPORT
#endif

/* `count` steps on samples start, start+1, ... (mod n) of x (n*dim floats)
 * and y (n labels). Returns MM_OK or the first failing status. */
BENCH_EXPORT int bench_online_chunk(mm_optimizer *opt, const float *x, const int32_t *y,
                                    size_t dim, size_t n, size_t start, size_t count);

BENCH_EXPORT int bench_online_chunk(mm_optimizer *opt, const float *x, const int32_t *y,
                                    size_t dim, size_t n, size_t start, size_t count) {
    double loss;
    for (size_t k = 0; k < count; k++) {
        size_t i = (start + k) % n;
        mm_status st = mm_optimizer_step(opt, x + i * dim, y + i, NULL, 1, &loss);
        if (st != MM_OK) return st;
    }
    return MM_OK;
}
