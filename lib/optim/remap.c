/* Carrying optimizer state across layer replacement (see optim_internal.h):
 * mm_pruner_finalize replaces dense layers by physically smaller ones or by
 * sparse ones, and the optimizer that trains the model must go on with the
 * state of the surviving weights. prepare builds the new slot list and the
 * new state tensors (gathered from the old ones) without touching the
 * optimizer; commit swaps them in. */
#include <stdlib.h>
#include <string.h>

#include "optim/optim_internal.h"

struct mm_opt_remap {
    mm_opt_slot *slots; /* the new slot list */
    bool *fresh;        /* per new slot: its state buffers were allocated here
                           (else they are the old slot's, moved at commit) */
    size_t n_slots;
    bool *moved;        /* per old slot: its buffers move into the new list */
};

void mm_opt_remap_free(mm_opt_remap *r) {
    if (!r) return;
    if (r->slots && r->fresh)
        for (size_t i = 0; i < r->n_slots; i++)
            if (r->fresh[i])
                for (size_t k = 0; k < MM_OPTIM_MAX_STATE; k++)
                    mm_free_floats(r->slots[i].state[k]);
    free(r->slots);
    free(r->fresh);
    free(r->moved);
    free(r);
}

/* Index of the old slot for (layer, param index), or SIZE_MAX. */
static size_t find_old(const mm_optimizer *opt, size_t layer, size_t index) {
    for (size_t i = 0; i < opt->n_slots; i++)
        if (opt->slots[i].layer == layer && opt->slots[i].index == index) return i;
    return SIZE_MAX;
}

mm_status mm_opt_remap_prepare(const mm_optimizer *opt, mm_layer *const *new_layers,
                               const mm_opt_param_map *const *maps, mm_opt_remap **out) {
    *out = NULL;
    mm_status st = mm_opt_check_model(opt);
    if (st != MM_OK) return st;
    const size_t L = opt->n_layers;
    mm_opt_remap *r = calloc(1, sizeof *r);
    if (!r) return mm_oom("optimizer remap");
    r->moved = calloc(opt->n_slots ? opt->n_slots : 1, sizeof *r->moved);
    size_t n_slots = 0;
    for (size_t l = 0; l < L; l++)
        for (size_t j = 0; j < new_layers[l]->n_params; j++)
            if (new_layers[l]->params[j].grad) n_slots++;
    r->slots = calloc(n_slots ? n_slots : 1, sizeof *r->slots);
    r->fresh = calloc(n_slots ? n_slots : 1, sizeof *r->fresh);
    if (!r->moved || !r->slots || !r->fresh) {
        mm_opt_remap_free(r);
        return mm_oom("optimizer remap");
    }
    r->n_slots = n_slots;
    const size_t n_state = opt->has_state ? opt->algo->n_state : 0;
    size_t k = 0;
    for (size_t l = 0; l < L; l++) {
        const mm_layer *ly = new_layers[l];
        for (size_t j = 0; j < ly->n_params; j++) {
            const mm_param *p = &ly->params[j];
            if (!p->grad) continue;
            const size_t si = k++;
            mm_opt_slot *s = &r->slots[si];
            mm_opt_slot_init(s, new_layers[l], l, j);
            const size_t count = mm_param_count(p);
            size_t src = SIZE_MAX;
            const size_t *gather = NULL;
            if (!maps[l]) {
                src = find_old(opt, l, j); /* unchanged layer: same param */
            } else if (maps[l][j].old_index != SIZE_MAX) {
                src = find_old(opt, l, maps[l][j].old_index);
                gather = maps[l][j].gather;
            }
            const mm_opt_slot *os = src != SIZE_MAX ? &opt->slots[src] : NULL;
            /* the layer keeps its lr scale; inherited state keeps its count */
            const size_t any = find_old(opt, l, 0) != SIZE_MAX ? find_old(opt, l, 0)
                                                               : find_old(opt, l, 1);
            if (any != SIZE_MAX) s->lr_scale = opt->slots[any].lr_scale;
            if (os) s->t = os->t;
            if (n_state == 0) continue;
            if (os && !gather && os->rows * os->cols != count) {
                mm_opt_remap_free(r);
                return mm_error(MM_E_INTERNAL,
                                "optimizer remap: layer %zu %s has %zu values, its state %zu", l,
                                p->name, count, os->rows * os->cols);
            }
            if (os && !gather && !r->moved[src]) {
                /* same tensor: move the buffers */
                for (size_t t = 0; t < n_state; t++) s->state[t] = os->state[t];
                r->moved[src] = true;
                continue;
            }
            r->fresh[si] = true;
            for (size_t t = 0; t < n_state; t++) {
                float *buf = mm_alloc_floats_zero(count);
                if (!buf) {
                    mm_opt_remap_free(r);
                    return mm_oom("optimizer state");
                }
                s->state[t] = buf;
                if (!os) continue;
                const float *from = os->state[t];
                if (gather)
                    for (size_t e = 0; e < count; e++) buf[e] = from[gather[e]];
                else
                    memcpy(buf, from, count * sizeof *buf);
            }
        }
    }
    *out = r;
    return MM_OK;
}

void mm_opt_remap_commit(mm_optimizer *opt, mm_opt_remap *r) {
    /* free the old buffers that did not move; the L2-SP anchor is dropped
     * (mm_optimizer_set_anchor must be called again) */
    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_free_floats(opt->slots[i].anchor);
        if (r->moved[i]) continue;
        for (size_t t = 0; t < MM_OPTIM_MAX_STATE; t++) mm_free_floats(opt->slots[i].state[t]);
    }
    free(opt->slots);
    opt->slots = r->slots;
    opt->n_slots = r->n_slots;
    /* has_state is unchanged: every new slot got state if the old ones had it */
    free(r->fresh);
    free(r->moved);
    free(r);
}

/* ---- mm_optimizer_sync: adopt a changed layer list ----------------------
 * Slots are matched by (layer identity, param index, shape): a layer that is
 * still in the model (at any position) keeps its state, step counter and lr
 * scale; anything else starts fresh. Built completely before the swap so
 * that an allocation failure changes nothing. */
mm_status mm_optimizer_sync(mm_optimizer *opt) {
    if (!opt) return mm_null_arg("optimizer");
    mm_model *m = opt->model;
    if (m->n_layers == 0)
        return mm_error(MM_E_STATE, "the model has no layers to optimize");
    size_t n_slots = 0;
    for (size_t l = 0; l < m->n_layers; l++)
        for (size_t j = 0; j < m->layers[l]->n_params; j++)
            if (m->layers[l]->params[j].grad) n_slots++;
    if (n_slots == 0)
        return mm_error(MM_E_STATE, "the model has no trainable parameters");
    mm_opt_slot *slots = calloc(n_slots, sizeof *slots);
    bool *moved = calloc(opt->n_slots ? opt->n_slots : 1, sizeof *moved);
    bool *fresh = calloc(n_slots, sizeof *fresh);
    if (!slots || !moved || !fresh) {
        free(slots);
        free(moved);
        free(fresh);
        return mm_oom("optimizer sync");
    }
    const size_t n_state = opt->has_state ? opt->algo->n_state : 0;
    size_t k = 0;
    mm_status st = MM_OK;
    for (size_t l = 0; l < m->n_layers && st == MM_OK; l++) {
        mm_layer *ly = m->layers[l];
        for (size_t j = 0; j < ly->n_params && st == MM_OK; j++) {
            const mm_param *p = &ly->params[j];
            if (!p->grad) continue;
            mm_opt_slot *s = &slots[k++];
            mm_opt_slot_init(s, ly, l, j);
            size_t src = SIZE_MAX;
            for (size_t i = 0; i < opt->n_slots; i++) {
                const mm_opt_slot *o = &opt->slots[i];
                if (!moved[i] && o->uid == s->uid && o->index == j && o->rows == s->rows &&
                    o->cols == s->cols) {
                    src = i;
                    break;
                }
            }
            if (src != SIZE_MAX) {
                const mm_opt_slot *o = &opt->slots[src];
                for (size_t t = 0; t < MM_OPTIM_MAX_STATE; t++) s->state[t] = o->state[t];
                s->t = o->t;
                s->lr_scale = o->lr_scale;
                moved[src] = true;
                continue;
            }
            fresh[k - 1] = true;
            for (size_t t = 0; t < n_state; t++) {
                s->state[t] = mm_alloc_floats_zero(mm_param_count(p));
                if (!s->state[t]) {
                    st = mm_oom("optimizer state");
                    break;
                }
            }
        }
    }
    if (st != MM_OK) {
        for (size_t i = 0; i < n_slots; i++)
            if (fresh[i])
                for (size_t t = 0; t < MM_OPTIM_MAX_STATE; t++) mm_free_floats(slots[i].state[t]);
        free(slots);
        free(moved);
        free(fresh);
        return st;
    }
    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_free_floats(opt->slots[i].anchor); /* the L2-SP anchor is dropped */
        if (!moved[i])
            for (size_t t = 0; t < MM_OPTIM_MAX_STATE; t++) mm_free_floats(opt->slots[i].state[t]);
    }
    free(opt->slots);
    opt->slots = slots;
    opt->n_slots = n_slots;
    opt->n_layers = m->n_layers;
    free(moved);
    free(fresh);
    return MM_OK;
}
