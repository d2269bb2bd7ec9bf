#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

float *mm_alloc_floats_zero(size_t count) {
    float *p = mm_alloc_floats(count);
    /* A plain memset, on purpose: handing large blocks back to the kernel
     * with madvise(MADV_DONTNEED) saved ~40% of a big import, but zeroes
     * only private anonymous memory, which a host's allocator need not
     * give, and qemu-user before 8.1 (the cross test's) ignores it: stale
     * data would pass as zeros. */
    if (p) memset(p, 0, (count ? count : 1) * sizeof(float));
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
