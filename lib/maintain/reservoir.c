/* mm_reservoir: uniform reservoir sampling (Vitter's algorithm R) over a
 * stream of labelled samples, the replay memory of the maintainer. */
#include <stdlib.h>
#include <string.h>

#include "common/mm_internal.h"
#include "mm/mm_maintainer.h"

struct mm_reservoir {
    size_t cap, dim, size;
    uint64_t seen;
    float *x;       /* cap * dim */
    int32_t *y;     /* cap */
    mm_rng rng;
};

mm_status mm_reservoir_create(mm_reservoir **out, size_t capacity, size_t dim, uint64_t seed) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (capacity == 0) return mm_error(MM_E_INVALID_ARGUMENT, "reservoir capacity must be >= 1");
    if (dim == 0) return mm_error(MM_E_INVALID_ARGUMENT, "reservoir sample width must be >= 1");
    size_t count;
    if (!mm_mul_ok(capacity, dim, &count))
        return mm_error(MM_E_OUT_OF_RANGE, "reservoir of %zu samples x %zu features is too large",
                        capacity, dim);
    mm_reservoir *r = calloc(1, sizeof *r);
    if (!r) return mm_oom("reservoir");
    r->x = mm_alloc_floats(count);
    r->y = mm_malloc_array(capacity, sizeof *r->y);
    if (!r->x || !r->y) {
        mm_reservoir_free(r);
        return mm_oom("reservoir samples");
    }
    r->cap = capacity;
    r->dim = dim;
    mm_rng_seed(&r->rng, seed);
    *out = r;
    return MM_OK;
}

void mm_reservoir_free(mm_reservoir *r) {
    if (!r) return;
    mm_free_floats(r->x);
    free(r->y);
    free(r);
}

mm_status mm_reservoir_offer(mm_reservoir *r, const float *x, int32_t label, size_t *slot) {
    if (slot) *slot = SIZE_MAX;
    if (!r) return mm_null_arg("reservoir");
    if (!x) return mm_null_arg("x");
    r->seen++;
    size_t s;
    if (r->size < r->cap) {
        s = r->size++;
    } else {
        uint64_t j = mm_rng_below(&r->rng, r->seen);
        if (j >= r->cap) return MM_OK;
        s = (size_t)j;
    }
    memcpy(r->x + s * r->dim, x, r->dim * sizeof *x);
    r->y[s] = label;
    if (slot) *slot = s;
    return MM_OK;
}

size_t mm_reservoir_size(const mm_reservoir *r) { return r ? r->size : 0; }

uint64_t mm_reservoir_seen(const mm_reservoir *r) { return r ? r->seen : 0; }

mm_status mm_reservoir_get(const mm_reservoir *r, size_t index, const float **x, int32_t *label) {
    if (!r) return mm_null_arg("reservoir");
    if (index >= r->size)
        return mm_error(MM_E_OUT_OF_RANGE, "reservoir index %zu, holding %zu samples", index,
                        r->size);
    if (x) *x = r->x + index * r->dim;
    if (label) *label = r->y[index];
    return MM_OK;
}

mm_status mm_reservoir_draw(mm_reservoir *r, size_t k, float *x, int32_t *labels) {
    if (!r) return mm_null_arg("reservoir");
    if (k > 0 && (!x || !labels)) return mm_null_arg(!x ? "x" : "labels");
    if (r->size == 0) return mm_error(MM_E_STATE, "the reservoir is empty");
    for (size_t i = 0; i < k; i++) {
        size_t s = (size_t)mm_rng_below(&r->rng, r->size);
        memcpy(x + i * r->dim, r->x + s * r->dim, r->dim * sizeof *x);
        labels[i] = r->y[s];
    }
    return MM_OK;
}
