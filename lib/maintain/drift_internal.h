/* Internals of mm_drift: the detector vtable and the shared header of every
 * detector's state. Never installed. */
#ifndef MM_DRIFT_INTERNAL_H
#define MM_DRIFT_INTERNAL_H

#include <stdbool.h>

#include "common/mm_internal.h"
#include "mm/mm_drift.h"

/* One tunable parameter of a detector: its name, the offset of its double
 * in the detector's struct, its range and whether the ends are allowed. */
typedef struct mm_drift_param {
    const char *name;
    size_t offset;
    double lo, hi;
    bool lo_open, hi_open;
    bool integer; /* must be a whole number */
    const char *range_text; /* for messages: "(0, 1)" */
} mm_drift_param;

typedef struct mm_drift_vtable {
    mm_drift_kind kind;
    const char *name;
    size_t size;             /* bytes of the detector struct (starts with mm_drift) */
    bool binary;             /* input must be 0 or 1 */
    const mm_drift_param *params; /* terminated by name == NULL */
    void (*set_defaults)(mm_drift *d);
    /* Optional: check the whole parameter set after one changed (cross
     * constraints such as warning <= drift; MM_E_* naming it). */
    mm_status (*check)(const mm_drift *d, const char *changed);
    /* Optional: refuse a change in the current state (MM_E_STATE). */
    mm_status (*can_set)(const mm_drift *d, const char *param);
    /* Feed one validated value; returns the verdict. On DRIFT the detector
     * resets itself (see mm_drift.h). May fail only for out of memory. */
    mm_status (*update)(mm_drift *d, double value, mm_drift_state *state);
    void (*reset)(mm_drift *d);     /* clear statistics, keep parameters */
    void (*destroy)(mm_drift *d);   /* free owned memory (not d); may be NULL */
    uint64_t (*samples)(const mm_drift *d);
    double (*estimate)(const mm_drift *d);
} mm_drift_vtable;

struct mm_drift {
    const mm_drift_vtable *vt;
    uint64_t drifts; /* total reported, never reset */
};

/* Buckets an ADWIN detector holds now (tests check O(log W) memory);
 * 0 for other kinds. */
size_t mm_drift_adwin_buckets(const mm_drift *d);

extern const mm_drift_vtable mm_drift_adwin_vt;
extern const mm_drift_vtable mm_drift_page_hinkley_vt;
extern const mm_drift_vtable mm_drift_ddm_vt;
extern const mm_drift_vtable mm_drift_eddm_vt;

#endif
