/* mm_pruner_finalize: make pruning physical.
 *
 *  1. Structured: every hidden dense layer l with pruned neurons (bias mask
 *     zeros) becomes a smaller dense layer without those rows of W_l and
 *     entries of b_l, and layer l+1 loses the matching columns of W_{l+1}.
 *     The masked model already computes exactly this (pruned rows and
 *     columns are zero, f(0) of a pruned neuron was folded into b_{l+1}
 *     when it was masked), so outputs are unchanged.
 *  2. Unstructured: every dense layer still carrying a weight mask becomes a
 *     sparse layer (mm_sparse_from_dense) with MM_PRUNE_FORMAT_SPARSE, or
 *     with MM_PRUNE_FORMAT_AUTO where mm_sparse_worthwhile says the sparse
 *     kernels beat dense at its size and density; otherwise it stays dense
 *     with its zeros.
 *  3. Layers that stay dense keep their weight masks, so later training
 *     keeps the pruned weights at zero and files store them compactly;
 *     masks that no longer prune anything were already dropped.
 *
 * An optimizer passed in keeps training: its state tensors are gathered to
 * the surviving weights (rows/columns for shrunk layers, stored entries for
 * sparse ones) through mm_opt_remap_*, so the next step continues as if the
 * removed weights had never existed. All new layers and state are built
 * before anything is swapped: on error the model and optimizer are
 * unchanged. Training caches are dropped (widths changed). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune/pruner_internal.h"

typedef struct fin_layer {
    mm_layer *layer;      /* the layer for this position after finalize */
    bool built;           /* layer is new (ours until committed) */
    mm_layer *shrunk;     /* intermediate shrunk dense layer (when also converted) */
    size_t *keep;         /* kept neurons (rows) when this layer shrinks, else NULL */
    size_t nkeep;
    size_t *gather[MM_LAYER_MAX_PARAMS]; /* per new param: old element of each element */
    mm_opt_param_map map[MM_LAYER_MAX_PARAMS];
    bool has_map;
    bool sparse;    /* converted to the sparse kind */
    bool reordered; /* keep is a new order of the (kept) neurons */
} fin_layer;

static void fin_free(fin_layer *f, size_t L, bool destroy_built) {
    if (!f) return;
    for (size_t l = 0; l < L; l++) {
        if (destroy_built && f[l].built) f[l].layer->vt->destroy(f[l].layer);
        if (f[l].shrunk) f[l].shrunk->vt->destroy(f[l].shrunk);
        free(f[l].keep);
        for (size_t j = 0; j < MM_LAYER_MAX_PARAMS; j++) free(f[l].gather[j]);
    }
    free(f);
}

/* A gathered copy of a mask if it still prunes something, else NULL
 * (*oom set on allocation failure). */
static uint8_t *gather_mask(const uint8_t *mask, const size_t *gather, size_t n, bool *oom) {
    if (!mask) return NULL;
    bool any = false;
    for (size_t i = 0; i < n && !any; i++) any = !mask[gather[i]];
    if (!any) return NULL;
    uint8_t *m = malloc(n);
    if (!m) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) m[i] = mask[gather[i]];
    return m;
}

/* Step 1 for layer l: rows keep[l] (or all), columns keep[l-1] (or all). */
static mm_status build_shrunk(const mm_layer *old, const size_t *rows, size_t nrows,
                              const size_t *cols, size_t ncols, fin_layer *f) {
    mm_layer *nl;
    mm_status st = mm_dense_create(&nl, ncols, nrows, old->act, old->leaky_slope, MM_INIT_AUTO,
                                   NULL);
    if (st != MM_OK) return st;
    f->layer = nl;
    f->built = true;
    const size_t in = old->in;
    size_t *gw = mm_malloc_array(nrows * ncols > 0 ? nrows * ncols : 1, sizeof *gw);
    size_t *gb = mm_malloc_array(nrows, sizeof *gb);
    f->gather[0] = gw;
    f->gather[1] = gb;
    if (!gw || !gb) return mm_oom("shrunk layer");
    const mm_param *ow = &old->params[0], *ob = &old->params[1];
    mm_param *nw = &nl->params[0], *nb = &nl->params[1];
    for (size_t r = 0; r < nrows; r++) {
        const size_t sr = rows ? rows[r] : r;
        gb[r] = sr;
        nb->data[r] = ob->data[sr];
        for (size_t c = 0; c < ncols; c++) {
            const size_t sc = cols ? cols[c] : c;
            gw[r * ncols + c] = sr * in + sc;
            nw->data[r * ncols + c] = ow->data[sr * in + sc];
        }
    }
    bool oom = false;
    nw->mask = gather_mask(ow->mask, gw, nrows * ncols, &oom);
    nb->mask = gather_mask(ob->mask, gb, nrows, &oom);
    if (oom) return mm_oom("shrunk layer mask");
    f->map[0] = (mm_opt_param_map){0, gw};
    f->map[1] = (mm_opt_param_map){1, gb};
    f->has_map = true;
    return MM_OK;
}

/* The sparse layer's parameter holding the stored weights: the one that is
 * not the bias. */
static size_t values_param(const mm_layer *sp) {
    for (size_t j = 0; j < sp->n_params; j++)
        if (strcmp(sp->params[j].name, "bias") != 0) return j;
    return SIZE_MAX;
}

/* Which dense weight does each stored value of the sparse layer hold? The
 * sparse kind keeps its values in its own (tiled) order and says so
 * through mm_sparse_positions. NULL map for a layer without trainable
 * weights. */
static mm_status sparse_gather(const mm_layer *sp, size_t **out) {
    *out = NULL;
    const size_t vj = values_param(sp);
    if (vj == SIZE_MAX) return MM_OK; /* nothing to carry */
    const size_t nnz = mm_param_count(&sp->params[vj]);
    size_t *g = mm_calloc_array(nnz ? nnz : 1, sizeof *g);
    if (!g) return mm_oom("sparse state map");
    mm_status st = mm_sparse_positions(sp, g);
    if (st != MM_OK) {
        free(g);
        return st;
    }
    *out = g;
    return MM_OK;
}

/* Step 2 for the layer at f->layer (the current one or a shrunk one). */
static mm_status build_sparse(fin_layer *f, size_t l, bool need_map) {
    const mm_layer *dense = f->layer;
    mm_layer *sp;
    mm_status st = mm_sparse_from_dense(dense, &sp);
    if (st != MM_OK) return mm_error_prefix(st, "layer %zu", l);
    size_t *g = NULL;
    if (need_map && (st = sparse_gather(sp, &g)) != MM_OK) {
        sp->vt->destroy(sp);
        return st;
    }
    /* compose with the shrink map when the dense layer is itself new */
    const size_t *wprev = f->has_map ? f->gather[0] : NULL;
    const size_t *bprev = f->has_map ? f->gather[1] : NULL;
    if (g && wprev) {
        const size_t vj = values_param(sp);
        const size_t nnz = mm_param_count(&sp->params[vj]);
        for (size_t e = 0; e < nnz; e++) g[e] = wprev[g[e]];
    }
    size_t *gb = NULL;
    if (bprev) {
        gb = mm_malloc_array(dense->out, sizeof *gb);
        if (!gb) {
            free(g);
            sp->vt->destroy(sp);
            return mm_oom("sparse state map");
        }
        memcpy(gb, bprev, dense->out * sizeof *gb);
    }
    /* the dense layer becomes an intermediate (if new) */
    if (f->built) {
        f->shrunk = f->layer;
    }
    for (size_t j = 0; j < MM_LAYER_MAX_PARAMS; j++) {
        free(f->gather[j]);
        f->gather[j] = NULL;
    }
    f->layer = sp;
    f->built = true;
    f->sparse = true;
    f->has_map = true;
    for (size_t j = 0; j < sp->n_params && j < MM_LAYER_MAX_PARAMS; j++) {
        const mm_param *prm = &sp->params[j];
        if (strcmp(prm->name, "bias") == 0) {
            f->gather[j] = gb;
            gb = NULL;
            f->map[j] = (mm_opt_param_map){1, f->gather[j]};
        } else if (j == values_param(sp) && g) {
            f->gather[j] = g;
            g = NULL;
            f->map[j] = (mm_opt_param_map){0, f->gather[j]};
        } else {
            f->map[j] = (mm_opt_param_map){SIZE_MAX, NULL};
        }
    }
    free(g);
    free(gb);
    return MM_OK;
}

/* Unmasked weights of the rows x cols part of a masked dense layer (NULL
 * lists: all). */
static size_t kept_in(const mm_layer *ly, const size_t *rows, size_t nrows, const size_t *cols,
                      size_t ncols) {
    size_t k = 0;
    for (size_t i = 0; i < nrows; i++)
        for (size_t c = 0; c < ncols; c++)
            k += ly->params[0].mask[(rows ? rows[i] : i) * ly->in + (cols ? cols[c] : c)] != 0;
    return k;
}

static size_t unmasked(const mm_param *w) {
    const size_t n = mm_param_count(w);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += w->mask[i] != 0;
    return k;
}

static json_t *finalize_detail(const mm_model *m, const fin_layer *f, size_t params_before,
                               size_t bytes_before, int format) {
    json_t *d = json_object(), *layers = json_array();
    if (!d || !layers) {
        json_decref(d);
        json_decref(layers);
        return NULL;
    }
    static const char *const fmt_names[] = {"auto", "sparse", "dense"};
    int bad = 0;
    bad |= json_object_set_new(d, "format", json_string(fmt_names[format]));
    for (size_t l = 0; l < m->n_layers; l++) {
        if (!f[l].built) continue;
        const mm_layer *ly = m->layers[l];
        json_t *e = json_object();
        if (!e) {
            bad = 1;
            break;
        }
        bad |= json_object_set_new(e, "layer", json_integer((json_int_t)l));
        bad |= json_object_set_new(e, "kind", json_string(ly->vt->kind));
        bad |= json_object_set_new(e, "in", json_integer((json_int_t)ly->in));
        bad |= json_object_set_new(e, "out", json_integer((json_int_t)ly->out));
        if (f[l].reordered) {
            json_t *order = json_array();
            for (size_t j = 0; order && j < f[l].nkeep; j++)
                bad |= json_array_append_new(order, json_integer((json_int_t)f[l].keep[j]));
            bad |= order ? json_object_set_new(e, "neuron_order", order) : 1;
        }
        bad |= json_array_append_new(layers, e);
    }
    bad |= json_object_set_new(d, "layers", layers);
    bad |= json_object_set_new(d, "params_before", json_integer((json_int_t)params_before));
    bad |= json_object_set_new(d, "params_after",
                               json_integer((json_int_t)mm_model_num_params(m)));
    bad |= json_object_set_new(d, "bytes_before", json_integer((json_int_t)bytes_before));
    bad |= json_object_set_new(d, "bytes_after",
                               json_integer((json_int_t)mm_model_param_bytes(m)));
    if (bad) {
        json_decref(d);
        return NULL;
    }
    return d;
}

mm_status mm_prune_finalize_impl(mm_pruner *p, mm_model *m, mm_optimizer *opt) {
    const size_t L = m->n_layers;
    if (L == 0) return mm_error(MM_E_STATE, "model has no layers");
    mm_status st;
    if (opt && (st = mm_opt_check_model(opt)) != MM_OK) return st;
    const int format = (int)p->set[MM_PRUNE_SPARSE_FORMAT];
    fin_layer *f = calloc(L, sizeof *f);
    mm_layer **new_layers = calloc(L, sizeof *new_layers);
    const mm_opt_param_map **maps = calloc(L, sizeof *maps);
    mm_opt_remap *remap = NULL;
    if (!f || !new_layers || !maps) {
        st = mm_oom("finalize");
        goto fail;
    }
    for (size_t l = 0; l < L; l++) f[l].layer = m->layers[l];

    /* 1. neurons kept per hidden layer */
    bool any_shrink = false;
    for (size_t l = 0; l + 1 < L; l++) {
        if (!mm_prune_layer_is_dense(m, l) || !mm_prune_layer_is_dense(m, l + 1)) continue;
        const mm_layer *ly = m->layers[l];
        const uint8_t *bm = ly->params[1].mask;
        if (!bm) continue;
        size_t kept = 0;
        for (size_t j = 0; j < ly->out; j++) kept += bm[j] != 0;
        if (kept == ly->out) continue;
        if (kept == 0) {
            st = mm_error(MM_E_INVALID_ARGUMENT, "layer %zu has every neuron pruned", l);
            goto fail;
        }
        f[l].keep = mm_malloc_array(kept, sizeof *f[l].keep);
        if (!f[l].keep) {
            st = mm_oom("finalize");
            goto fail;
        }
        for (size_t j = 0, c = 0; j < ly->out; j++)
            if (bm[j]) f[l].keep[c++] = j;
        f[l].nkeep = kept;
        any_shrink = true;
    }
    /* 1b. the order of the neurons of hidden layers that will be sparse
     * (mm_sparse_group_rows): rows of W_l and b_l and columns of W_{l+1}
     * move together, through the same shrink step */
    if (p->set[MM_PRUNE_REORDER_NEURONS] != 0 && format != MM_PRUNE_FORMAT_DENSE) {
        for (size_t l = 0; l + 1 < L; l++) {
            const mm_layer *ly = m->layers[l];
            if (!mm_prune_layer_is_dense(m, l) || !mm_prune_layer_is_dense(m, l + 1) ||
                !ly->params[0].mask)
                continue;
            const size_t *rows = f[l].keep, *cols = l > 0 ? f[l - 1].keep : NULL;
            const size_t nrows = rows ? f[l].nkeep : ly->out;
            const size_t ncols = cols ? f[l - 1].nkeep : ly->in;
            if (format == MM_PRUNE_FORMAT_AUTO &&
                !mm_sparse_worthwhile(ncols, nrows, kept_in(ly, rows, nrows, cols, ncols)))
                continue;
            size_t *order;
            if ((st = mm_sparse_group_rows(ly, rows, nrows, cols, ncols, &order)) != MM_OK)
                goto fail;
            if (!order) continue;
            for (size_t i = 0; i < nrows; i++) order[i] = rows ? rows[order[i]] : order[i];
            free(f[l].keep);
            f[l].keep = order;
            f[l].nkeep = nrows;
            f[l].reordered = true;
            any_shrink = true;
        }
    }
    if (any_shrink) {
        for (size_t l = 0; l < L; l++) {
            const bool rows = f[l].keep != NULL;
            const bool cols = l > 0 && f[l - 1].keep != NULL;
            if (!rows && !cols) continue;
            const mm_layer *old = m->layers[l];
            st = build_shrunk(old, f[l].keep, rows ? f[l].nkeep : old->out,
                              cols ? f[l - 1].keep : NULL, cols ? f[l - 1].nkeep : old->in,
                              &f[l]);
            if (st != MM_OK) {
                mm_error_prefix(st, "shrinking layer %zu", l);
                goto fail;
            }
        }
    }

    /* 2. remaining weight masks: sparse kind or dense with zeros */
    if (format != MM_PRUNE_FORMAT_DENSE) {
        for (size_t l = 0; l < L; l++) {
            const mm_layer *ly = f[l].layer;
            if (!mm_layer_has(ly, MM_CAP_DENSE_WEIGHTS) || ly->n_params < 1 || !ly->params[0].mask)
                continue;
            if (format == MM_PRUNE_FORMAT_AUTO &&
                !mm_sparse_worthwhile(ly->in, ly->out, unmasked(&ly->params[0])))
                continue;
            if ((st = build_sparse(&f[l], l, opt != NULL)) != MM_OK) goto fail;
        }
    }

    /* 3. the optimizer's state for the new parameter lists */
    for (size_t l = 0; l < L; l++) {
        new_layers[l] = f[l].layer;
        maps[l] = f[l].built ? f[l].map : NULL;
    }
    if (opt && (st = mm_opt_remap_prepare(opt, new_layers, maps, &remap)) != MM_OK) goto fail;

    /* commit: nothing below can fail except the lineage record */
    const size_t params_before = mm_model_num_params(m);
    const size_t bytes_before = mm_model_param_bytes(m);
    for (size_t l = 0; l < L; l++) {
        if (f[l].built) {
            /* the rewrite keeps wiring and the frozen flag; the optimizer
             * state follows through the remap, which knows the new layer by
             * its own identity */
            const uint64_t uid = f[l].layer->uid; /* the remap's (0 without one) */
            mm_layer *old = mm_graph_swap_layer(m, l, f[l].layer);
            f[l].layer->uid = uid;
            old->vt->destroy(old);
        }
    }
    if ((st = mm_graph_replan(m)) != MM_OK) { /* new widths; only allocation can fail */
        if (opt) mm_opt_remap_free(remap);
        fin_free(f, L, false);
        free(new_layers);
        free(maps);
        return st;
    }
    if (opt) mm_opt_remap_commit(opt, remap);
    json_t *d = finalize_detail(m, f, params_before, bytes_before, format);
    if (d) json_object_set_new(d, "criterion", json_string(p->crit->name));
    fin_free(f, L, false);
    free(new_layers);
    free(maps);
    return mm_prune_lineage(m, "prune_finalize", d);

fail:
    mm_opt_remap_free(remap);
    fin_free(f, L, true);
    free(new_layers);
    free(maps);
    return st;
}
