/* Any layer kind as the dense weights it computes (model_internal.h):
 * what mm_model_get_weights and the exporters read, through each kind's
 * capabilities instead of its name. */
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

bool mm_layer_holds_matrix(const mm_layer *l) {
    const mm_param *w = &l->params[0], *b = &l->params[1];
    return l->n_params >= 2 && strcmp(w->name, "weight") == 0 && w->rows == l->out &&
           w->cols == l->in && strcmp(b->name, "bias") == 0 && b->rows == l->out && b->cols == 1;
}

void mm_dense_view_free(mm_dense_view *v) {
    if (!v) return;
    mm_free_floats(v->owned);
    memset(v, 0, sizeof *v);
}

/* A zeroed out x in + out buffer for the view to own; *w and *b point
 * into it. */
static mm_status own(const mm_layer *l, mm_dense_view *v, float **w, float **b) {
    size_t count;
    if (!mm_mul_ok(l->in, l->out, &count) || count > SIZE_MAX - l->out)
        return mm_oom("dense weights");
    v->owned = mm_alloc_floats_zero(count + l->out ? count + l->out : 1);
    if (!v->owned) return mm_oom("dense weights");
    v->weight = *w = v->owned;
    v->bias = *b = v->owned + count;
    return MM_OK;
}

/* Scatter the stored values of params[0] to their dense positions. */
static mm_status scatter(const mm_layer *l, float *w) {
    const mm_param *vals = &l->params[0];
    const size_t nnz = mm_param_count(vals);
    size_t *pos = mm_malloc_array(nnz ? nnz : 1, sizeof *pos);
    if (!pos) return mm_oom("weight positions");
    mm_status st = l->vt->positions(l, pos);
    if (st == MM_OK)
        for (size_t k = 0; k < nnz; k++) w[pos[k]] = vals->data[k];
    free(pos);
    return st;
}

mm_status mm_dense_view_get(const mm_layer *l, mm_dense_view *v) {
    if (!v) return mm_null_arg("view");
    memset(v, 0, sizeof *v);
    if (!l) return mm_null_arg("layer");
    const unsigned caps = l->vt->caps;
    float *w = NULL, *b = NULL;
    mm_status st;
    if (caps & MM_CAP_QUANTIZED) {
        if ((st = own(l, v, &w, &b)) == MM_OK) st = l->vt->effective_weights(l, true, w, b);
    } else if ((caps & MM_CAP_STORED_WEIGHTS) && l->n_params >= 2) {
        if ((st = own(l, v, &w, &b)) == MM_OK && (st = scatter(l, w)) == MM_OK)
            memcpy(b, l->params[1].data, l->out * sizeof(float));
    } else if (mm_layer_holds_matrix(l)) {
        v->weight = l->params[0].data;
        v->bias = l->params[1].data;
        return MM_OK;
    } else {
        return mm_error(MM_E_UNSUPPORTED, "layer kind %s has no dense weights", l->vt->kind);
    }
    if (st != MM_OK) mm_dense_view_free(v);
    return st;
}

mm_status mm_layer_effective_weights(const mm_layer *l, float *w, float *b) {
    if (l->vt->caps & MM_CAP_QUANTIZED) return l->vt->effective_weights(l, false, w, b);
    mm_dense_view v;
    mm_status st = mm_dense_view_get(l, &v);
    if (st != MM_OK) return st;
    memcpy(w, v.weight, l->in * l->out * sizeof *w);
    memcpy(b, v.bias, l->out * sizeof *b);
    mm_dense_view_free(&v);
    return MM_OK;
}
