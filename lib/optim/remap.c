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
            s->layer = l;
            s->index = j;
            s->rows = p->rows;
            s->cols = p->cols;
            if (n_state == 0) continue;
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
    /* free the old buffers that did not move */
    for (size_t i = 0; i < opt->n_slots; i++) {
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
