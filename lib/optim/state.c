/* Optimizer state in a model file: the model itself
 * (mm_file_writer_add_model), one F32 tensor per state tensor of every
 * trainable parameter, named "optimizer.layers.<i>.<param>.<state>"
 * ("optimizer.layers.0.weight.m"), and a __metadata__ key "optimizer" whose
 * value is a JSON object:
 *
 *   {"format": 1, "kind": "adam", "step": 120, "epoch": 2, "sched_total": 200,
 *    "params": 4, "state": ["m", "v"],
 *    "settings": {"learning_rate": 0.001, "beta1": 0.9, ...}}
 *
 * "state" lists the state tensors present ([] for SGD that never used
 * momentum); "params" is the number of trainable tensors. Optional members
 * (absent in files of older versions, which then load with the defaults):
 * "param_steps" (updates applied to each trainable tensor, in parameter
 * order; default: "step" for all), "lr_scale" (per trainable tensor, the
 * per-layer learning-rate multiplier; default 1), "grad_norm_avg" and
 * "grad_norm_count" (the running gradient norm of MM_OPT_GRAD_SPIKE). Settings are the
 * ones the algorithm uses, as doubles with full precision, so load +
 * continue is bit-identical to never stopping. A state tensor lists its
 * elements in the order of the parameter's tensor in the file (for sparse
 * layers the CSR order of weight_values, not the tiled order in memory:
 * mm_layer_vtable.file_order), so other tools can line them up. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/mmfile.h"
#include "optim/optim_internal.h"

#define STATE_FORMAT 1

static char *state_tensor_name(const mm_optimizer *opt, const mm_opt_slot *s, size_t k) {
    const mm_param *p = mm_opt_slot_param(opt, s);
    const char *sn = opt->algo->state_names[k];
    size_t cap = strlen(p->name) + strlen(sn) + 64;
    char *name = malloc(cap);
    if (name) snprintf(name, cap, "optimizer.layers.%zu.%s.%s", s->layer, p->name, sn);
    return name;
}

/* The file positions of the slot's elements (mm_layer_vtable.file_order),
 * or *pos = NULL when they are in memory order. */
static mm_status slot_file_order(const mm_optimizer *opt, const mm_opt_slot *s, size_t **pos) {
    *pos = NULL;
    const mm_layer *layer = opt->model->layers[s->layer];
    if (!layer->vt->file_order) return MM_OK;
    size_t *p = mm_malloc_array(s->rows * s->cols, sizeof *p);
    if (!p) return mm_oom("optimizer state order");
    mm_status st = layer->vt->file_order(layer, s->index, p);
    if (st != MM_OK) {
        free(p);
        return st;
    }
    *pos = p;
    return MM_OK;
}

static char *state_json(const mm_optimizer *opt) {
    json_t *root = json_object();
    json_t *settings = json_object();
    json_t *states = json_array();
    if (!root || !settings || !states) {
        json_decref(root);
        json_decref(settings);
        json_decref(states);
        return NULL;
    }
    int bad = 0;
    bad |= json_object_set_new(root, "format", json_integer(STATE_FORMAT));
    bad |= json_object_set_new(root, "kind", json_string(opt->algo->name));
    bad |= json_object_set_new(root, "step", json_integer((json_int_t)opt->step));
    bad |= json_object_set_new(root, "epoch", json_integer((json_int_t)opt->epoch));
    bad |= json_object_set_new(root, "sched_total", json_integer((json_int_t)opt->sched_total));
    bad |= json_object_set_new(root, "params", json_integer((json_int_t)opt->n_slots));
    if (opt->has_state)
        for (size_t k = 0; k < opt->algo->n_state; k++)
            bad |= json_array_append_new(states, json_string(opt->algo->state_names[k]));
    bad |= json_object_set_new(root, "state", states);
    json_t *steps = json_array(), *scales = json_array();
    if (!steps || !scales) bad = 1;
    for (size_t i = 0; !bad && i < opt->n_slots; i++) {
        bad |= json_array_append_new(steps, json_integer((json_int_t)opt->slots[i].t));
        bad |= json_array_append_new(scales, json_real(opt->slots[i].lr_scale));
    }
    bad |= json_object_set_new(root, "param_steps", steps);
    bad |= json_object_set_new(root, "lr_scale", scales);
    bad |= json_object_set_new(root, "grad_norm_avg", json_real(opt->gnorm_avg));
    bad |= json_object_set_new(root, "grad_norm_count", json_integer((json_int_t)opt->gnorm_count));
    for (int p = MM_OPT_PARAM_FIRST; p <= MM_OPT_PARAM_LAST; p++) {
        if (!mm_opt_param_applies(opt, (mm_opt_param)p)) continue;
        /* whether steps are recorded is the running program's choice (the
         * CLI records its own events), not part of the training state */
        if (p == MM_OPT_LINEAGE) continue;
        bad |= json_object_set_new(settings, mm_opt_param_name((mm_opt_param)p),
                                   json_real(opt->set[p]));
    }
    bad |= json_object_set_new(root, "settings", settings);
    char *text = bad ? NULL
                     : json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                            JSON_REAL_PRECISION(17));
    json_decref(root);
    return text;
}

mm_status mm_optimizer_save(const mm_optimizer *opt, const char *path) {
    if (!opt) return mm_null_arg("optimizer");
    if (!path) return mm_null_arg("path");
    mm_status st = mm_opt_check_model(opt);
    if (st != MM_OK) return st;

    const size_t n_state = opt->has_state ? opt->algo->n_state : 0;
    char **names = calloc(opt->n_slots * (n_state ? n_state : 1), sizeof *names);
    /* state in file order where the layer stores its parameter otherwise
     * (the writer borrows these until commit) */
    float **reordered = calloc(opt->n_slots * (n_state ? n_state : 1), sizeof *reordered);
    char *meta = state_json(opt);
    mm_file_writer *w = NULL;
    if (!names || !reordered || !meta) {
        st = mm_oom("optimizer state description");
        goto out;
    }
    if ((st = mm_file_writer_create(&w)) != MM_OK) goto out;
    if ((st = mm_file_writer_add_model(w, opt->model)) != MM_OK) goto out;
    for (size_t i = 0; i < opt->n_slots && st == MM_OK; i++) {
        const mm_opt_slot *s = &opt->slots[i];
        size_t *pos = NULL;
        if (n_state && (st = slot_file_order(opt, s, &pos)) != MM_OK) break;
        for (size_t k = 0; k < n_state; k++) {
            char *name = names[i * n_state + k] = state_tensor_name(opt, s, k);
            if (!name) {
                st = mm_oom("tensor name");
                break;
            }
            const float *data = s->state[k];
            if (pos) {
                float *r = reordered[i * n_state + k] = mm_alloc_floats(s->rows * s->cols);
                if (!r) {
                    st = mm_oom("optimizer state");
                    break;
                }
                for (size_t e = 0; e < s->rows * s->cols; e++) r[pos[e]] = s->state[k][e];
                data = r;
            }
            st = mm_file_writer_add_f32(w, name, data, s->rows, s->cols, s->cols == 1);
            if (st != MM_OK) break;
        }
        free(pos);
    }
    if (st == MM_OK) st = mm_file_writer_add_meta(w, "optimizer", meta);
    if (st == MM_OK) st = mm_file_writer_commit(w, path);
    if (st != MM_OK) mm_error_prefix(st, "saving optimizer state to %s", path);
out:
    mm_file_writer_free(w);
    if (names)
        for (size_t i = 0; i < opt->n_slots * n_state; i++) free(names[i]);
    free(names);
    if (reordered)
        for (size_t i = 0; i < opt->n_slots * n_state; i++) mm_free_floats(reordered[i]);
    free(reordered);
    free(meta);
    return st;
}

/* A non-negative integer member of the state object. */
static mm_status get_count(const json_t *root, const char *key, uint64_t *out) {
    const json_t *v = json_object_get(root, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return mm_error(MM_E_FORMAT, "optimizer state: \"%s\" must be a non-negative integer",
                        key);
    *out = (uint64_t)json_integer_value(v);
    return MM_OK;
}

/* A state tensor as read (file order): finite, and not negative where the
 * algorithm's state never is (a negative second moment would make Adam's
 * update NaN). */
static mm_status check_state(const char *name, const float *v, size_t n, bool nonneg) {
    for (size_t e = 0; e < n; e++) {
        if (!isfinite(v[e]))
            return mm_error(MM_E_NUMERIC, "optimizer state tensor %s: element %zu is %s", name, e,
                            isnan(v[e]) ? "NaN" : "infinite");
        if (nonneg && v[e] < 0.0f)
            return mm_error(MM_E_FORMAT,
                            "optimizer state tensor %s: element %zu is negative (%g), but it "
                            "holds a mean of squares",
                            name, e, (double)v[e]);
    }
    return MM_OK;
}

static mm_status restore(mm_optimizer **out, mm_model *model, const mm_file *f, const char *meta) {
    json_error_t jerr;
    json_t *root = json_loads(meta, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return mm_error(MM_E_FORMAT, "optimizer state is not a JSON object");
    }
    mm_optimizer *opt = NULL;
    mm_status st = MM_OK;
    uint64_t format = 0, n_params = 0;
    const json_t *kind = json_object_get(root, "kind");
    const json_t *settings = json_object_get(root, "settings");
    const json_t *states = json_object_get(root, "state");
    mm_optim_kind k;

    if ((st = get_count(root, "format", &format)) != MM_OK) goto fail;
    if (format != STATE_FORMAT) {
        st = mm_error(MM_E_VERSION, "optimizer state format %llu is not supported (expected %d)",
                      (unsigned long long)format, STATE_FORMAT);
        goto fail;
    }
    if (!json_is_string(kind) || !json_is_object(settings) || !json_is_array(states)) {
        st = mm_error(MM_E_FORMAT, "optimizer state lacks \"kind\", \"settings\" or \"state\"");
        goto fail;
    }
    if ((st = mm_optim_kind_from_name(json_string_value(kind), &k)) != MM_OK) {
        st = mm_error_prefix(MM_E_FORMAT, "optimizer state");
        goto fail;
    }
    if ((st = mm_optimizer_create(&opt, model, k)) != MM_OK) goto fail;
    if ((st = get_count(root, "step", &opt->step)) != MM_OK ||
        (st = get_count(root, "epoch", &opt->epoch)) != MM_OK ||
        (st = get_count(root, "sched_total", &opt->sched_total)) != MM_OK ||
        (st = get_count(root, "params", &n_params)) != MM_OK)
        goto fail;
    if (n_params != opt->n_slots) {
        st = mm_error(MM_E_SHAPE,
                      "the optimizer state is for %llu trainable tensors, the model has %zu",
                      (unsigned long long)n_params, opt->n_slots);
        goto fail;
    }

    for (size_t i = 0; i < opt->n_slots; i++) opt->slots[i].t = opt->step;
    const json_t *steps = json_object_get(root, "param_steps");
    const json_t *scales = json_object_get(root, "lr_scale");
    if ((steps && (!json_is_array(steps) || json_array_size(steps) != opt->n_slots)) ||
        (scales && (!json_is_array(scales) || json_array_size(scales) != opt->n_slots))) {
        st = mm_error(MM_E_FORMAT,
                      "optimizer state: \"param_steps\" and \"lr_scale\" must be arrays of %zu "
                      "entries",
                      opt->n_slots);
        goto fail;
    }
    for (size_t i = 0; i < opt->n_slots; i++) {
        const json_t *t = steps ? json_array_get(steps, i) : NULL;
        const json_t *sc = scales ? json_array_get(scales, i) : NULL;
        if (t && (!json_is_integer(t) || json_integer_value(t) < 0 ||
                  (uint64_t)json_integer_value(t) > opt->step)) {
            st = mm_error(MM_E_FORMAT, "optimizer state: param_steps[%zu] must be in [0, step]", i);
            goto fail;
        }
        if (sc && (!json_is_number(sc) || !(json_number_value(sc) >= 0.0 &&
                                            json_number_value(sc) <= 1e3))) {
            st = mm_error(MM_E_FORMAT, "optimizer state: lr_scale[%zu] must be in [0, 1000]", i);
            goto fail;
        }
        if (t) opt->slots[i].t = (uint64_t)json_integer_value(t);
        if (sc) opt->slots[i].lr_scale = json_number_value(sc);
    }
    const json_t *gavg = json_object_get(root, "grad_norm_avg");
    if (gavg) {
        uint64_t gcount = 0;
        if (!json_is_number(gavg) || !(json_number_value(gavg) >= 0.0) ||
            !isfinite(json_number_value(gavg)) ||
            (st = get_count(root, "grad_norm_count", &gcount)) != MM_OK) {
            st = mm_error(MM_E_FORMAT, "optimizer state: bad grad_norm_avg / grad_norm_count");
            goto fail;
        }
        opt->gnorm_avg = json_number_value(gavg);
        opt->gnorm_count = gcount;
    }

    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)settings, key, value) {
        mm_opt_param p;
        if (mm_opt_param_from_name(key, &p) != MM_OK) continue; /* from a newer version */
        if (!json_is_number(value)) {
            st = mm_error(MM_E_FORMAT, "optimizer setting %s is not a number", key);
            goto fail;
        }
        if ((st = mm_optimizer_set(opt, p, json_number_value(value))) != MM_OK) {
            st = mm_error_prefix(MM_E_FORMAT, "optimizer state");
            goto fail;
        }
    }

    size_t n_state = json_array_size(states);
    if (n_state != 0) {
        if (n_state != opt->algo->n_state) {
            st = mm_error(MM_E_FORMAT, "optimizer state lists %zu state tensors per parameter, %s "
                                       "has %zu",
                          n_state, opt->algo->name, opt->algo->n_state);
            goto fail;
        }
        for (size_t i = 0; i < n_state; i++) {
            const char *sn = json_string_value(json_array_get(states, i));
            if (!sn || strcmp(sn, opt->algo->state_names[i]) != 0) {
                st = mm_error(MM_E_FORMAT, "optimizer state tensor %zu should be '%s'", i,
                              opt->algo->state_names[i]);
                goto fail;
            }
        }
        if ((st = mm_opt_ensure_state(opt)) != MM_OK) goto fail;
        for (size_t i = 0; i < opt->n_slots; i++) {
            mm_opt_slot *s = &opt->slots[i];
            size_t *pos = NULL;
            float *tmp = NULL;
            if ((st = slot_file_order(opt, s, &pos)) != MM_OK) goto fail;
            if (pos && !(tmp = mm_alloc_floats(s->rows * s->cols))) {
                free(pos);
                st = mm_oom("optimizer state");
                goto fail;
            }
            for (size_t j = 0; j < n_state && st == MM_OK; j++) {
                char *name = state_tensor_name(opt, s, j);
                if (!name) {
                    st = mm_oom("tensor name");
                    break;
                }
                st = mm_file_read_f32(f, name, s->rows, s->cols, pos ? tmp : s->state[j]);
                if (st == MM_E_NOT_FOUND)
                    st = mm_error(MM_E_FORMAT, "optimizer state tensor %s is missing", name);
                if (st == MM_OK)
                    st = check_state(name, pos ? tmp : s->state[j], s->rows * s->cols,
                                     opt->algo->state_nonneg[j]);
                free(name);
                if (st == MM_OK && pos)
                    for (size_t e = 0; e < s->rows * s->cols; e++) s->state[j][e] = tmp[pos[e]];
            }
            free(pos);
            mm_free_floats(tmp);
            if (st != MM_OK) goto fail;
        }
    }
    json_decref(root);
    *out = opt;
    return MM_OK;

fail:
    json_decref(root);
    mm_optimizer_free(opt);
    return st;
}

mm_status mm_optimizer_load(mm_optimizer **out, mm_model *model, const char *path) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!model) return mm_null_arg("model");
    if (!path) return mm_null_arg("path");
    mm_file *f = NULL;
    mm_status st = mm_file_open(&f, path);
    if (st != MM_OK) return st;
    const char *meta = mm_file_meta(f, "optimizer");
    if (!meta)
        st = mm_error(MM_E_NOT_FOUND, "%s holds no optimizer state", path);
    else
        st = restore(out, model, f, meta);
    if (st != MM_OK && meta) mm_error_prefix(st, "loading optimizer state from %s", path);
    mm_file_close(f);
    return st;
}
