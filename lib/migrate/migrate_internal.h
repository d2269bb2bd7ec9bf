/* Internals shared by the migration formats (safetensors.c, and any other
 * exporter that needs every layer as plain dense weights). Never installed. */
#ifndef MM_MIGRATE_INTERNAL_H
#define MM_MIGRATE_INTERNAL_H

#include "model/model_internal.h"

/* Layer `l` as the dense layer it computes: weight [out x in] row-major and
 * bias [out], as floats. Dense (and qat) layers lend their own parameters
 * (pruned positions are already 0); sparse layers are scattered into a new
 * zeroed matrix; quantized layers (int8, fp16, bf16) give their float
 * master weights when they keep them, else their dequantized weights.
 * Borrowed data stay valid while the layer is not mutated. MM_E_UNSUPPORTED
 * for a kind without dense weights. Free with mm_dense_view_free (safe on a
 * zeroed view and after an error). */
typedef struct mm_dense_view {
    const float *weight, *bias;
    float *owned;  /* weight buffer this view allocated, or NULL */
    mm_layer *tmp; /* dense layer this view built, or NULL */
} mm_dense_view;

mm_status mm_dense_view_get(const mm_layer *l, mm_dense_view *v);
void mm_dense_view_free(mm_dense_view *v);

#endif
