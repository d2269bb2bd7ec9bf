/* mm_drift: the generic part of the drift detectors: creation by kind,
 * parameter setting by name with range checks, input validation, counters.
 * Each detector is a vtable in its own file (adwin.c, page_hinkley.c,
 * ddm.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "maintain/drift_internal.h"

static const mm_drift_vtable *const vtables[] = {
    &mm_drift_adwin_vt, &mm_drift_page_hinkley_vt, &mm_drift_ddm_vt, &mm_drift_eddm_vt};
#define N_VT (sizeof vtables / sizeof vtables[0])

static const mm_drift_vtable *find_vt(mm_drift_kind k) {
    for (size_t i = 0; i < N_VT; i++)
        if (vtables[i]->kind == k) return vtables[i];
    return NULL;
}

const char *mm_drift_kind_name(mm_drift_kind k) {
    const mm_drift_vtable *vt = find_vt(k);
    return vt ? vt->name : "unknown";
}

mm_status mm_drift_kind_from_name(const char *name, mm_drift_kind *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (size_t i = 0; i < N_VT; i++)
        if (strcmp(name, vtables[i]->name) == 0) {
            *out = vtables[i]->kind;
            return MM_OK;
        }
    if (strcmp(name, "ph") == 0 || strcmp(name, "page-hinkley") == 0) {
        *out = MM_DRIFT_PAGE_HINKLEY;
        return MM_OK;
    }
    return mm_error(MM_E_INVALID_ARGUMENT,
                    "unknown drift detector \"%s\" (adwin, page_hinkley, ddm, eddm)", name);
}

mm_status mm_drift_create(mm_drift **out, mm_drift_kind kind) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    const mm_drift_vtable *vt = find_vt(kind);
    if (!vt) return mm_error(MM_E_INVALID_ARGUMENT, "unknown drift detector kind %d", (int)kind);
    mm_drift *d = calloc(1, vt->size);
    if (!d) return mm_oom("drift detector");
    d->vt = vt;
    vt->set_defaults(d);
    vt->reset(d);
    *out = d;
    return MM_OK;
}

void mm_drift_free(mm_drift *d) {
    if (!d) return;
    if (d->vt->destroy) d->vt->destroy(d);
    free(d);
}

static const mm_drift_param *find_param(const mm_drift *d, const char *param) {
    for (const mm_drift_param *p = d->vt->params; p->name; p++)
        if (strcmp(p->name, param) == 0) return p;
    return NULL;
}

static mm_status unknown_param(const mm_drift *d, const char *param) {
    char names[256] = "";
    size_t used = 0;
    for (const mm_drift_param *p = d->vt->params; p->name; p++) {
        size_t len = strlen(p->name);
        if (used + len + 3 >= sizeof names) break;
        if (used) {
            memcpy(names + used, ", ", 2);
            used += 2;
        }
        memcpy(names + used, p->name, len + 1);
        used += len;
    }
    return mm_error(MM_E_INVALID_ARGUMENT, "%s has no parameter \"%s\" (it has: %s)", d->vt->name,
                    param, names);
}

mm_status mm_drift_set(mm_drift *d, const char *param, double value) {
    if (!d) return mm_null_arg("drift detector");
    if (!param) return mm_null_arg("param");
    const mm_drift_param *p = find_param(d, param);
    if (!p) return unknown_param(d, param);
    bool ok = isfinite(value) && (p->lo_open ? value > p->lo : value >= p->lo) &&
              (p->hi_open ? value < p->hi : value <= p->hi);
    if (ok && p->integer && value != floor(value)) ok = false;
    if (!ok)
        return mm_error(MM_E_OUT_OF_RANGE, "%s parameter \"%s\" must be %s%s, got %g",
                        d->vt->name, param, p->integer ? "a whole number in " : "in ",
                        p->range_text, value);
    if (d->vt->can_set) {
        mm_status st = d->vt->can_set(d, param);
        if (st != MM_OK) return st;
    }
    double *slot = (double *)((char *)d + p->offset);
    double old = *slot;
    *slot = value;
    if (d->vt->check) {
        mm_status st = d->vt->check(d, param);
        if (st != MM_OK) {
            *slot = old;
            return st;
        }
    }
    return MM_OK;
}

mm_status mm_drift_get(const mm_drift *d, const char *param, double *value) {
    if (!d) return mm_null_arg("drift detector");
    if (!param) return mm_null_arg("param");
    if (!value) return mm_null_arg("value");
    const mm_drift_param *p = find_param(d, param);
    if (!p) return unknown_param(d, param);
    *value = *(const double *)((const char *)d + p->offset);
    return MM_OK;
}

mm_status mm_drift_update(mm_drift *d, double value, mm_drift_state *state) {
    if (!d) return mm_null_arg("drift detector");
    if (!isfinite(value))
        return mm_error(MM_E_INVALID_ARGUMENT, "%s: sample value must be finite, got %g",
                        d->vt->name, value);
    if (d->vt->binary && value != 0.0 && value != 1.0)
        return mm_error(MM_E_INVALID_ARGUMENT,
                        "%s takes 0/1 error indicators (1 = wrong prediction), got %g",
                        d->vt->name, value);
    mm_drift_state s = MM_DRIFT_STABLE;
    mm_status st = d->vt->update(d, value, &s);
    if (st != MM_OK) return st;
    if (s == MM_DRIFT_DRIFT) d->drifts++;
    if (state) *state = s;
    return MM_OK;
}

mm_status mm_drift_reset(mm_drift *d) {
    if (!d) return mm_null_arg("drift detector");
    d->vt->reset(d);
    return MM_OK;
}

mm_drift_kind mm_drift_get_kind(const mm_drift *d) { return d ? d->vt->kind : (mm_drift_kind)0; }
uint64_t mm_drift_samples(const mm_drift *d) { return d ? d->vt->samples(d) : 0; }
double mm_drift_estimate(const mm_drift *d) { return d ? d->vt->estimate(d) : 0.0; }
uint64_t mm_drift_count(const mm_drift *d) { return d ? d->drifts : 0; }
