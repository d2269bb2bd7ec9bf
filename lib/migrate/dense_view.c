/* Any layer kind as the dense weights it computes (migrate_internal.h). */
#include <stdlib.h>
#include <string.h>

#include "migrate/migrate_internal.h"
#include "prune/prune_internal.h" /* mm_sparse_positions */
#include "quant/quant_internal.h" /* mm_qlayer_to_dense */

void mm_dense_view_free(mm_dense_view *v) {
    if (!v) return;
    mm_free_floats(v->owned);
    if (v->tmp) v->tmp->vt->destroy(v->tmp);
    memset(v, 0, sizeof *v);
}

/* params[0] "weight" [out, in] and params[1] "bias" [out]. */
static bool has_dense_params(const mm_layer *l) {
    const mm_param *w = &l->params[0], *b = &l->params[1];
    return l->n_params >= 2 && strcmp(w->name, "weight") == 0 && w->rows == l->out &&
           w->cols == l->in && strcmp(b->name, "bias") == 0 && b->rows == l->out && b->cols == 1;
}

mm_status mm_dense_view_get(const mm_layer *l, mm_dense_view *v) {
    if (!v) return mm_null_arg("view");
    memset(v, 0, sizeof *v);
    if (!l) return mm_null_arg("layer");
    if (mm_layer_is_quantized(l)) {
        mm_status st = mm_qlayer_to_dense(l, &v->tmp);
        if (st != MM_OK) return st;
        v->weight = v->tmp->params[0].data;
        v->bias = v->tmp->params[1].data;
        return MM_OK;
    }
    if (strcmp(l->vt->kind, "sparse") == 0 && l->n_params >= 2) {
        const mm_param *vals = &l->params[0];
        size_t nnz = mm_param_count(vals), count;
        if (!mm_mul_ok(l->in, l->out, &count)) return mm_oom("dense weights");
        size_t *pos = mm_malloc_array(nnz ? nnz : 1, sizeof *pos);
        v->owned = mm_alloc_floats_zero(count ? count : 1);
        if (!pos || !v->owned) {
            free(pos);
            mm_dense_view_free(v);
            return mm_oom("dense weights");
        }
        mm_status st = mm_sparse_positions(l, pos);
        if (st == MM_OK)
            for (size_t k = 0; k < nnz; k++) v->owned[pos[k]] = vals->data[k];
        free(pos);
        if (st != MM_OK) {
            mm_dense_view_free(v);
            return st;
        }
        v->weight = v->owned;
        v->bias = l->params[1].data;
        return MM_OK;
    }
    if (has_dense_params(l)) {
        v->weight = l->params[0].data;
        v->bias = l->params[1].data;
        return MM_OK;
    }
    return mm_error(MM_E_UNSUPPORTED, "layer kind %s has no dense weights to export",
                    l->vt->kind);
}
