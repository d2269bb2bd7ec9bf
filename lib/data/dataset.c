/* mm_dataset: construction, accessors, slicing and normalisation.
 * The loaders live in idx.c and csv.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset_internal.h"

mm_status mm_ds_alloc(mm_dataset **out, size_t n, size_t dim, bool with_labels) {
    *out = NULL;
    size_t count;
    if (dim == 0) return mm_error(MM_E_INVALID_ARGUMENT, "dataset dimension must be >= 1");
    if (!mm_mul_ok(n, dim, &count) || count > SIZE_MAX / sizeof(float))
        return mm_error(MM_E_OUT_OF_RANGE, "dataset of %zu x %zu features is too large", n, dim);
    mm_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return mm_oom("dataset");
    ds->n = n;
    ds->dim = dim;
    ds->x = mm_alloc_floats(count);
    if (!ds->x) {
        free(ds);
        return mm_oom("dataset features");
    }
    if (with_labels) {
        ds->labels = mm_malloc_array(n, sizeof(int32_t));
        if (!ds->labels) {
            mm_free_floats(ds->x);
            free(ds);
            return mm_oom("dataset labels");
        }
    }
    *out = ds;
    return MM_OK;
}

void mm_ds_finish_labels(mm_dataset *ds) {
    ds->num_classes = 0;
    if (!ds->labels) return;
    int32_t mx = -1;
    for (size_t i = 0; i < ds->n; i++)
        if (ds->labels[i] > mx) mx = ds->labels[i];
    ds->num_classes = (size_t)((int64_t)mx + 1);
}

MM_API mm_status mm_dataset_create(mm_dataset **out, const float *x, const int32_t *labels,
                                   size_t n, size_t dim) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!x && n > 0) return mm_null_arg("x");
    if (labels) {
        for (size_t i = 0; i < n; i++)
            if (labels[i] < 0)
                return mm_error(MM_E_OUT_OF_RANGE, "label %zu is %ld; labels must be >= 0", i,
                                (long)labels[i]);
    }
    mm_dataset *ds;
    mm_status st = mm_ds_alloc(&ds, n, dim, labels != NULL);
    if (st != MM_OK) return st;
    if (n > 0) {
        memcpy(ds->x, x, n * dim * sizeof(float));
        if (labels) memcpy(ds->labels, labels, n * sizeof(int32_t));
    }
    mm_ds_finish_labels(ds);
    *out = ds;
    return MM_OK;
}

MM_API void mm_dataset_free(mm_dataset *ds) {
    if (!ds) return;
    mm_free_floats(ds->x);
    free(ds->labels);
    free(ds);
}

MM_API size_t mm_dataset_size(const mm_dataset *ds) { return ds ? ds->n : 0; }
MM_API size_t mm_dataset_dim(const mm_dataset *ds) { return ds ? ds->dim : 0; }
MM_API size_t mm_dataset_num_classes(const mm_dataset *ds) { return ds ? ds->num_classes : 0; }
MM_API const float *mm_dataset_features(const mm_dataset *ds) { return ds ? ds->x : NULL; }
MM_API const int32_t *mm_dataset_labels(const mm_dataset *ds) { return ds ? ds->labels : NULL; }

MM_API mm_status mm_dataset_slice(const mm_dataset *ds, size_t start, size_t count,
                                  mm_dataset **out) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!ds) return mm_null_arg("ds");
    if (start > ds->n || count > ds->n - start)
        return mm_error(MM_E_OUT_OF_RANGE,
                        "slice [%zu, %zu + %zu) is outside the dataset of %zu samples", start,
                        start, count, ds->n);
    mm_dataset *s;
    mm_status st = mm_ds_alloc(&s, count, ds->dim, ds->labels != NULL);
    if (st != MM_OK) return st;
    if (count > 0) {
        memcpy(s->x, ds->x + start * ds->dim, count * ds->dim * sizeof(float));
        if (ds->labels) memcpy(s->labels, ds->labels + start, count * sizeof(int32_t));
    }
    mm_ds_finish_labels(s);
    *out = s;
    return MM_OK;
}

/* Common argument checks of the normalisations. */
static mm_status check_norm_args(const mm_dataset *ds, const mm_dataset *ref, const char *fn) {
    if (!ds) return mm_null_arg("ds");
    if (!ref) return mm_null_arg("reference");
    if (ref->dim != ds->dim)
        return mm_error(MM_E_SHAPE, "%s: reference has %zu features, dataset has %zu", fn,
                        ref->dim, ds->dim);
    if (ref->n == 0)
        return mm_error(MM_E_INVALID_ARGUMENT, "%s: reference dataset has no samples", fn);
    return MM_OK;
}

MM_API mm_status mm_dataset_standardize(mm_dataset *ds, const mm_dataset *reference) {
    mm_status st = check_norm_args(ds, reference, "standardize");
    if (st != MM_OK) return st;
    const size_t d = ds->dim, rn = reference->n;
    double *mean = mm_calloc_array(d, sizeof(double));
    double *scale = mm_calloc_array(d, sizeof(double));
    if (!mean || !scale) {
        free(mean);
        free(scale);
        return mm_oom("standardize statistics");
    }
    /* Two passes in double: mean, then the (population) variance around it. */
    for (size_t i = 0; i < rn; i++) {
        const float *row = reference->x + i * d;
        for (size_t j = 0; j < d; j++) mean[j] += row[j];
    }
    for (size_t j = 0; j < d; j++) mean[j] /= (double)rn;
    for (size_t i = 0; i < rn; i++) {
        const float *row = reference->x + i * d;
        for (size_t j = 0; j < d; j++) {
            double t = row[j] - mean[j];
            scale[j] += t * t;
        }
    }
    for (size_t j = 0; j < d; j++) {
        double var = scale[j] / (double)rn;
        if (!isfinite(mean[j]) || !isfinite(var)) {
            free(mean);
            free(scale);
            return mm_error(MM_E_NUMERIC,
                            "standardize: feature %zu of the reference has non-finite statistics "
                            "(NaN or infinite values, or overflow)",
                            j);
        }
        scale[j] = var > 0 ? 1.0 / sqrt(var) : 1.0; /* zero variance: only centre */
    }
    for (size_t i = 0; i < ds->n; i++) {
        float *row = ds->x + i * d;
        for (size_t j = 0; j < d; j++) row[j] = (float)((row[j] - mean[j]) * scale[j]);
    }
    free(mean);
    free(scale);
    return MM_OK;
}

MM_API mm_status mm_dataset_minmax(mm_dataset *ds, const mm_dataset *reference) {
    mm_status st = check_norm_args(ds, reference, "minmax");
    if (st != MM_OK) return st;
    const size_t d = ds->dim, rn = reference->n;
    double *lo = mm_malloc_array(d, sizeof(double));
    double *hi = mm_malloc_array(d, sizeof(double));
    if (!lo || !hi) {
        free(lo);
        free(hi);
        return mm_oom("minmax statistics");
    }
    for (size_t j = 0; j < d; j++) {
        lo[j] = INFINITY;
        hi[j] = -INFINITY;
    }
    size_t nan_feature = SIZE_MAX;
    for (size_t i = 0; i < rn; i++) {
        const float *row = reference->x + i * d;
        for (size_t j = 0; j < d; j++) {
            double v = row[j];
            if (v < lo[j]) lo[j] = v;
            if (v > hi[j]) hi[j] = v;
            if (isnan(v)) nan_feature = j;
        }
    }
    for (size_t j = 0; j < d; j++) {
        if (j == nan_feature || !isfinite(lo[j]) || !isfinite(hi[j])) {
            free(lo);
            free(hi);
            return mm_error(MM_E_NUMERIC,
                            "minmax: feature %zu of the reference has NaN or infinite values", j);
        }
        double range = hi[j] - lo[j];
        hi[j] = range > 0 ? range : 1.0; /* zero range: only shift to 0 */
    }
    /* Values outside the reference's range map outside [0, 1]. */
    for (size_t i = 0; i < ds->n; i++) {
        float *row = ds->x + i * d;
        for (size_t j = 0; j < d; j++) row[j] = (float)((row[j] - lo[j]) / hi[j]);
    }
    free(lo);
    free(hi);
    return MM_OK;
}
