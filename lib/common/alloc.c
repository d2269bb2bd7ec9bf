#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/mm_internal.h"

void *mm_malloc_array(size_t count, size_t size) {
    size_t bytes;
    if (!mm_mul_ok(count, size, &bytes)) return NULL;
    return malloc(bytes ? bytes : 1);
}

void *mm_calloc_array(size_t count, size_t size) {
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

/* 64-byte alignment suits AVX-512 loads and keeps rows on cache lines. */
float *mm_alloc_floats(size_t count) {
    size_t bytes;
    if (!mm_mul_ok(count ? count : 1, sizeof(float), &bytes)) return NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) return NULL; /* wrapped */
    return aligned_alloc(64, bytes);
}

/* Zero [p, p + bytes). Large blocks hand their whole pages back to the
 * kernel instead (MADV_DONTNEED: private anonymous pages read as zeros when
 * next touched), so memory that is never written — gradient buffers of a
 * model only used for inference, weights a loader overwrites — costs
 * neither the memset nor resident pages. Profiled: 71% of a 40 MB
 * safetensors import was this memset. Partial pages at the ends are
 * cleared by memset; any failure falls back to memset. */
static void zero_floats(void *p, size_t bytes) {
#if defined(__linux__) && defined(MADV_DONTNEED)
    long pg = sysconf(_SC_PAGESIZE);
    if (pg > 0 && bytes >= ((size_t)1 << 20)) {
        uintptr_t a = (uintptr_t)p, mask = (uintptr_t)pg - 1;
        uintptr_t lo = (a + mask) & ~mask, hi = (a + bytes) & ~mask;
        if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0) {
            memset(p, 0, lo - a);
            memset((void *)hi, 0, a + bytes - hi);
            return;
        }
    }
#endif
    memset(p, 0, bytes);
}

float *mm_alloc_floats_zero(size_t count) {
    float *p = mm_alloc_floats(count);
    if (p) zero_floats(p, (count ? count : 1) * sizeof(float));
    return p;
}

void mm_free_floats(float *p) { free(p); }

char *mm_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

double mm_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
