/* Lineage: a JSON array of events recording what was done to a model
 * ({"op": "create", "time": "2024-05-01T12:00:00Z", ...}). Stored in
 * model->lineage as JSON text (never NULL) and written verbatim to model
 * files (doc/FORMAT.md), so a save/load round trip keeps it byte-exact. */
#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model_internal.h"

/* UTC ISO-8601 timestamp with second resolution: "2024-05-01T12:34:56Z". */
static void utc_format(time_t when, char buf[32]) {
    struct tm tm;
    if (when == (time_t)-1 || !gmtime_r(&when, &tm)) {
        snprintf(buf, 32, "1970-01-01T00:00:00Z");
        return;
    }
    if (strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) snprintf(buf, 32, "1970-01-01T00:00:00Z");
}

static void utc_now(char buf[32]) { utc_format(time(NULL), buf); }

/* Dump compactly, keeping key order. Lineage is a human-readable record:
 * 10 significant digits keep metrics readable (0.8793 rather than
 * 0.87933333300000005) and are stable when re-dumped. */
static char *dump_compact(const json_t *j) {
    return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
}

/* ---- runs of online steps ------------------------------------------------
 *
 * mm_optimizer_step calls mm_lineage_note_steps after every successful
 * step; consecutive steps of one optimizer with unchanged settings extend
 * model->run (plain fields). The run is written out as one event
 *   {"op":"online_steps","time":<first step>,"optimizer":"sgd","steps":N,
 *    "samples":S,"first":F,"last":L,"lr":x[,"lr_last":y],"last_time":<last>}
 * (first/last: positions of its first and last sample among all samples
 * the model learned online, counting from 0) only when something reads the
 * lineage (into the cached view) or appends another event (into the
 * lineage text, closing the run). */

void mm_lineage_drop_view(mm_model *model) {
    char *v = atomic_exchange_explicit(&model->lineage_view, NULL, memory_order_relaxed);
    free(v);
}

/* The open run as JSON object text, or NULL (out of memory). */
static char *run_event_text(const mm_online_run *r) {
    char t0[32], t1[32];
    utc_format((time_t)r->t_first, t0);
    utc_format((time_t)r->t_last, t1);
    json_t *ev = json_object();
    if (!ev) return NULL;
    int bad = 0;
    bad |= json_object_set_new(ev, "op", json_string("online_steps"));
    bad |= json_object_set_new(ev, "time", json_string(t0));
    bad |= json_object_set_new(ev, "optimizer", json_string(r->optimizer ? r->optimizer : "?"));
    bad |= json_object_set_new(ev, "steps", json_integer((json_int_t)r->steps));
    bad |= json_object_set_new(ev, "samples", json_integer((json_int_t)r->samples));
    bad |= json_object_set_new(ev, "first", json_integer((json_int_t)r->first));
    bad |= json_object_set_new(ev, "last", json_integer((json_int_t)(r->first + r->samples - 1)));
    bad |= json_object_set_new(ev, "lr", json_real(r->lr));
    if (r->lr_last != r->lr) bad |= json_object_set_new(ev, "lr_last", json_real(r->lr_last));
    bad |= json_object_set_new(ev, "last_time", json_string(t1));
    char *text = bad ? NULL : dump_compact(ev);
    json_decref(ev);
    return text;
}

/* The closed events with the open run's event appended (a new string), or
 * NULL (out of memory). Spliced as text: the closed events stay byte for
 * byte as they are (a loaded lineage is kept verbatim). */
static char *text_with_run(const mm_model *m) {
    char *ev = run_event_text(&m->run);
    if (!ev) return NULL;
    const char *base = m->lineage ? m->lineage : "[]";
    size_t end = strlen(base);
    while (end > 0 && base[end - 1] != ']') end--; /* validated JSON array text */
    size_t k = end > 0 ? end - 1 : 0;                /* the ']' */
    size_t j = k;
    while (j > 0 && strchr(" \t\r\n", base[j - 1])) j--;
    const bool empty = j > 0 && base[j - 1] == '[';
    const size_t elen = strlen(ev);
    char *out = malloc(j + (empty ? 0 : 1) + elen + 2);
    if (out) {
        memcpy(out, base, j);
        size_t o = j;
        if (!empty) out[o++] = ',';
        memcpy(out + o, ev, elen);
        o += elen;
        out[o++] = ']';
        out[o] = '\0';
    }
    free(ev);
    return out;
}

const char *mm_lineage_text(const mm_model *model) {
    if (!model) {
        mm_null_arg("model");
        return NULL;
    }
    if (model->run.source == 0) return model->lineage ? model->lineage : "[]";
    /* Readers share the model: the first one builds the view, the others
     * use it (a loser frees its own copy). Only a mutator frees it. */
    mm_model *m = (mm_model *)(uintptr_t)model;
    char *v = atomic_load_explicit(&m->lineage_view, memory_order_acquire);
    if (v) return v;
    char *mine = text_with_run(model);
    if (!mine) {
        mm_oom("lineage text");
        return NULL;
    }
    char *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&m->lineage_view, &expected, mine,
                                                memory_order_acq_rel, memory_order_acquire))
        return mine;
    free(mine);
    return expected;
}

/* Write the open run into the lineage text (the run is over). */
static mm_status close_run(mm_model *m) {
    if (m->run.source == 0) return MM_OK;
    char *text = text_with_run(m);
    if (!text) return mm_oom("lineage text");
    mm_lineage_drop_view(m);
    free(m->lineage);
    m->lineage = text;
    memset(&m->run, 0, sizeof m->run);
    return MM_OK;
}

mm_status mm_lineage_begin_steps(mm_model *m, uint64_t source, uint64_t settings) {
    if (m->run.source == 0 || (m->run.source == source && m->run.settings == settings))
        return MM_OK;
    return close_run(m);
}

void mm_lineage_note_steps(mm_model *m, uint64_t source, uint64_t settings, const char *optimizer,
                           double lr, size_t n) {
    if (atomic_load_explicit(&m->lineage_view, memory_order_relaxed)) mm_lineage_drop_view(m);
    const int64_t now = (int64_t)time(NULL);
    mm_online_run *r = &m->run;
    if (r->source != source || r->settings != settings) {
        /* a new run: mm_lineage_begin_steps closed the previous one, or an
         * event appended during the step (a pruning schedule) did */
        r->source = source;
        r->settings = settings;
        r->optimizer = optimizer;
        r->steps = r->samples = 0;
        r->first = m->online_pos;
        r->lr = lr;
        r->t_first = now;
    }
    r->steps++;
    r->samples += n;
    r->lr_last = lr;
    r->t_last = now;
    m->online_pos += n;
}

mm_status mm_lineage_append(mm_model *model, const char *op, const char *detail_json) {
    if (!model) return mm_null_arg("model");
    if (!op) return mm_null_arg("op");
    if (!*op) return mm_error(MM_E_INVALID_ARGUMENT, "lineage op must not be empty");

    json_t *detail = NULL;
    if (detail_json) {
        json_error_t jerr;
        detail = json_loads(detail_json, JSON_REJECT_DUPLICATES, &jerr);
        if (!detail)
            return mm_error(MM_E_FORMAT, "lineage detail is not valid JSON: %s (column %d)",
                            jerr.text, jerr.column);
        if (!json_is_object(detail)) {
            json_decref(detail);
            return mm_error(MM_E_FORMAT, "lineage detail must be a JSON object");
        }
    }

    /* any other event ends a run of online steps */
    mm_status cst = close_run(model);
    if (cst != MM_OK) {
        json_decref(detail);
        return cst;
    }
    json_error_t jerr;
    json_t *arr = json_loads(model->lineage ? model->lineage : "[]", 0, &jerr);
    if (!arr || !json_is_array(arr)) {
        /* model->lineage is validated on every write; this is a bug. */
        json_decref(arr);
        json_decref(detail);
        return mm_error(MM_E_INTERNAL, "model lineage is not a JSON array");
    }

    char when[32];
    utc_now(when);
    json_t *ev = json_object();
    json_t *jop = json_string(op);
    mm_status st = MM_OK;
    if (!ev) {
        json_decref(jop);
        st = mm_oom("lineage event");
        goto done;
    }
    if (!jop) { /* json_string refuses invalid UTF-8 */
        st = mm_error(MM_E_INVALID_ARGUMENT, "lineage op is not valid UTF-8");
        goto done;
    }
    if (json_object_set_new(ev, "op", jop) != 0 ||
        json_object_set_new(ev, "time", json_string(when)) != 0) {
        st = mm_oom("lineage event");
        goto done;
    }
    if (detail) {
        const char *key;
        json_t *val;
        json_object_foreach(detail, key, val) {
            if (strcmp(key, "op") == 0 || strcmp(key, "time") == 0) continue; /* ours win */
            if (json_object_set(ev, key, val) != 0) {
                st = mm_oom("lineage event");
                goto done;
            }
        }
    }
    if (json_array_append(arr, ev) != 0) {
        st = mm_oom("lineage event");
        goto done;
    }
    char *text = dump_compact(arr);
    if (!text) {
        st = mm_oom("lineage text");
        goto done;
    }
    mm_lineage_drop_view(model);
    free(model->lineage);
    model->lineage = text;

done:
    json_decref(ev);
    json_decref(arr);
    json_decref(detail);
    return st;
}

mm_status mm_lineage_set(mm_model *model, const char *array_json) {
    if (!model) return mm_null_arg("model");
    if (!array_json) return mm_null_arg("array_json");
    json_error_t jerr;
    json_t *arr = json_loads(array_json, JSON_REJECT_DUPLICATES, &jerr);
    if (!arr)
        return mm_error(MM_E_FORMAT, "lineage is not valid JSON: %s (column %d)", jerr.text,
                        jerr.column);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return mm_error(MM_E_FORMAT, "lineage must be a JSON array");
    }
    size_t i;
    json_t *ev;
    uint64_t pos = 0; /* online positions continue after the last recorded one */
    json_array_foreach(arr, i, ev) {
        if (!json_is_object(ev)) {
            json_decref(arr);
            return mm_error(MM_E_FORMAT, "lineage event %zu is not a JSON object", i);
        }
        const json_t *jop = json_object_get(ev, "op"), *last = json_object_get(ev, "last");
        if (json_is_string(jop) && strcmp(json_string_value(jop), "online_steps") == 0 &&
            json_is_integer(last) && json_integer_value(last) >= 0 &&
            (uint64_t)json_integer_value(last) + 1 > pos)
            pos = (uint64_t)json_integer_value(last) + 1;
    }
    json_decref(arr);
    /* Kept verbatim so that load + save reproduces the text exactly. */
    char *copy = mm_strdup(array_json);
    if (!copy) return mm_oom("lineage text");
    mm_lineage_drop_view(model);
    free(model->lineage);
    model->lineage = copy;
    memset(&model->run, 0, sizeof model->run);
    model->online_pos = pos;
    return MM_OK;
}

const char *mm_model_lineage(const mm_model *model) { return mm_lineage_text(model); }

mm_status mm_model_add_lineage(mm_model *model, const char *op, const char *detail_json) {
    return mm_lineage_append(model, op, detail_json);
}
