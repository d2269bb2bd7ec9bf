/* mm_dataset internals shared by dataset.c, idx.c and csv.c. Never installed. */
#ifndef MM_DATASET_INTERNAL_H
#define MM_DATASET_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/mm_internal.h"
#include "mm/mm_dataset.h"

struct mm_dataset {
    size_t n;            /* samples */
    size_t dim;          /* features per sample (>= 1) */
    size_t num_classes;  /* 1 + max label, 0 without labels */
    float *x;            /* n*dim floats, row-major, 64-byte aligned (mm_alloc_floats) */
    int32_t *labels;     /* n labels (all >= 0) or NULL */
};

/* Allocate a dataset with uninitialised storage for n*dim features and, if
 * `with_labels`, n labels. num_classes is 0 until mm_ds_finish_labels().
 * On failure records the error and returns its status; *out is NULL. */
mm_status mm_ds_alloc(mm_dataset **out, size_t n, size_t dim, bool with_labels);

/* Recompute num_classes from the labels (all labels must be >= 0). */
void mm_ds_finish_labels(mm_dataset *ds);

#endif
