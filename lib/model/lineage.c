/* Lineage: a JSON array of events recording what was done to a model
 * ({"op": "create", "time": "2024-05-01T12:00:00Z", ...}). Stored in
 * model->lineage as JSON text (never NULL) and written verbatim to model
 * files (doc/FORMAT.md), so a save/load round trip keeps it byte-exact. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model_internal.h"

/* UTC ISO-8601 timestamp with second resolution: "2024-05-01T12:34:56Z". */
static void utc_now(char buf[32]) {
    time_t now = time(NULL);
    struct tm tm;
    if (now == (time_t)-1 || !gmtime_r(&now, &tm)) {
        snprintf(buf, 32, "1970-01-01T00:00:00Z");
        return;
    }
    if (strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) snprintf(buf, 32, "1970-01-01T00:00:00Z");
}

/* Dump compactly, keeping key order. Lineage is a human-readable record:
 * 10 significant digits keep metrics readable (0.8793 rather than
 * 0.87933333300000005) and are stable when re-dumped. */
static char *dump_compact(const json_t *j) {
    return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
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
    json_array_foreach(arr, i, ev) {
        if (!json_is_object(ev)) {
            json_decref(arr);
            return mm_error(MM_E_FORMAT, "lineage event %zu is not a JSON object", i);
        }
    }
    json_decref(arr);
    /* Kept verbatim so that load + save reproduces the text exactly. */
    char *copy = mm_strdup(array_json);
    if (!copy) return mm_oom("lineage text");
    free(model->lineage);
    model->lineage = copy;
    return MM_OK;
}

const char *mm_model_lineage(const mm_model *model) {
    if (!model) {
        mm_null_arg("model");
        return NULL;
    }
    return model->lineage ? model->lineage : "[]";
}

mm_status mm_model_add_lineage(mm_model *model, const char *op, const char *detail_json) {
    return mm_lineage_append(model, op, detail_json);
}
