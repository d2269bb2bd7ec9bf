/* mmaint — concept-drift detectors.
 *
 * A drift detector watches a stream of per-sample numbers produced by a
 * deployed model (a loss, or a 0/1 "was this prediction wrong") and says when
 * the stream's distribution has changed, so the host can retrain, roll back or
 * alert. Each detector is an mm_drift handle with its own vtable; the kind is
 * chosen at creation:
 *
 *   MM_DRIFT_ADWIN         ADWIN2 (Bifet & Gavaldà 2007): an adaptive window
 *                          kept as an exponential histogram of buckets
 *                          (O(log W) memory); drift when two sub-windows have
 *                          means differing by more than the Hoeffding-style
 *                          bound eps_cut(delta). Input: any bounded value
 *                          (losses should be scaled to [0, 1] for the bound to
 *                          hold as stated).
 *   MM_DRIFT_PAGE_HINKLEY  Page-Hinkley test (Page 1954, as in Gama et al.
 *                          2013): cumulative deviation from the running mean
 *                          minus a tolerance delta, drift when it rises more
 *                          than lambda above its minimum. Detects increases of
 *                          the mean (a loss going up). Input: any real value.
 *   MM_DRIFT_DDM           Drift Detection Method (Gama et al. 2004) on a 0/1
 *                          error stream: after more than min_samples
 *                          samples, warning when p+s > p_min +
 *                          warning_level*s_min, drift at drift_level.
 *   MM_DRIFT_EDDM          Early DDM (Baena-García et al. 2006): on the
 *                          distance between consecutive errors; warning when
 *                          (p'+2s')/(p'max+2s'max) < warning_level, drift below
 *                          drift_level.
 *
 * Parameters (mm_drift_set names; defaults are those of the papers / of the
 * usual reference implementations):
 *   ADWIN:         "delta" (0.002, in (0,1)), "clock" (32: check every clock
 *                  samples, >= 1), "max_buckets" (5: M, buckets per row, >= 2),
 *                  "min_window" (5: least sub-window length, >= 1)
 *   Page-Hinkley:  "lambda" (50, > 0, the detection threshold), "delta"
 *                  (0.005, >= 0, the tolerated magnitude of change), "alpha"
 *                  (1 - 0.0001, in (0,1]: forgetting factor of the
 *                  cumulative sum, 1 = no forgetting), "min_samples" (30, >= 1)
 *   DDM:           "warning_level" (2.0), "drift_level" (3.0) (> 0 and
 *                  warning_level <= drift_level), "min_samples" (30, >= 1)
 *   EDDM:          "warning_level" (0.95), "drift_level" (0.90) (in (0,1) and
 *                  drift_level <= warning_level), "min_samples" (30, >= 0:
 *                  samples before the reference maximum is tracked),
 *                  "min_errors" (30, >= 1: errors before a decision)
 * The conditions are those of MOA and River: on the example streams of
 * River's documentation each detector fires at the same sample indices as
 * River's (benchmarks/compare_drift_river.py). EDDM with the paper's levels
 * raises many false alarms on stationary streams (River's own example lowers
 * them to 0.8/0.75); see benchmarks/RESULTS.md.
 * An unknown name for the kind, or an out-of-range value, gives
 * MM_E_INVALID_ARGUMENT / MM_E_OUT_OF_RANGE with a message naming it. Setting
 * a parameter does not reset the detector's statistics.
 *
 * Reset after a drift: when mm_drift_update reports MM_DRIFT_DRIFT the
 * detector has already reset itself so that the next update starts a new
 * reference period:
 *   Page-Hinkley, DDM, EDDM: a full reset (as mm_drift_reset): every
 *     statistic is cleared and mm_drift_samples() is 0 after the call; the
 *     sample that triggered the drift is not carried over.
 *   ADWIN: the window drops its older part (the buckets before the cut, as in
 *     the paper); the newer part, which includes the triggering sample, is
 *     kept, so mm_drift_samples() returns the length of the remaining window
 *     and mm_drift_estimate() its mean. This is what ADWIN does by design.
 * MM_DRIFT_WARNING is reported by DDM and EDDM only (ADWIN and Page-Hinkley
 * report STABLE or DRIFT).
 *
 * Thread safety: a handle is not thread-safe; use one per thread or
 * serialise calls. Distinct handles are independent. Detectors are fully
 * deterministic (no randomness).
 */
#ifndef MM_DRIFT_H
#define MM_DRIFT_H

#include <stdint.h>

#include "mm_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mm_drift mm_drift;

typedef enum mm_drift_kind {
    MM_DRIFT_ADWIN = 1,
    MM_DRIFT_PAGE_HINKLEY = 2,
    MM_DRIFT_DDM = 3,
    MM_DRIFT_EDDM = 4
} mm_drift_kind;

typedef enum mm_drift_state {
    MM_DRIFT_STABLE = 0,
    MM_DRIFT_WARNING = 1,
    MM_DRIFT_DRIFT = 2
} mm_drift_state;

/* A new detector of `kind` with the default parameters. The caller owns
 * *out and frees it with mm_drift_free. MM_E_INVALID_ARGUMENT for an unknown
 * kind or NULL out. */
MM_API mm_status mm_drift_create(mm_drift **out, mm_drift_kind kind);

/* Free a detector. NULL is a no-op. */
MM_API void mm_drift_free(mm_drift *d);

/* Set parameter `param` (names above) to `value`. */
MM_API mm_status mm_drift_set(mm_drift *d, const char *param, double value);

/* Read parameter `param` into *value (same names as mm_drift_set). */
MM_API mm_status mm_drift_get(const mm_drift *d, const char *param, double *value);

/* Feed one sample. value: a per-sample loss (ADWIN, Page-Hinkley; finite) or
 * a 0/1 error indicator (DDM, EDDM: exactly 0 or 1, else
 * MM_E_INVALID_ARGUMENT). NaN and infinities are refused
 * (MM_E_INVALID_ARGUMENT) and leave the detector unchanged. *state (may be
 * NULL) receives the detector's verdict after this sample. On DRIFT the
 * detector has reset itself as described above. */
MM_API mm_status mm_drift_update(mm_drift *d, double value, mm_drift_state *state);

/* Forget everything seen (parameters are kept). */
MM_API mm_status mm_drift_reset(mm_drift *d);

/* The kind of a detector (0 for NULL). */
MM_API mm_drift_kind mm_drift_get_kind(const mm_drift *d);

/* Static name of a kind: "adwin", "page_hinkley", "ddm", "eddm"; "unknown"
 * otherwise. */
MM_API const char *mm_drift_kind_name(mm_drift_kind k);

/* Kind from its name (as mm_drift_kind_name; also "ph" and "page-hinkley").
 * MM_E_INVALID_ARGUMENT naming it if unknown. */
MM_API mm_status mm_drift_kind_from_name(const char *name, mm_drift_kind *out);

/* Samples seen since the last reset or drift (ADWIN: the window length).
 * 0 for NULL. */
MM_API uint64_t mm_drift_samples(const mm_drift *d);

/* The current mean estimate: ADWIN the window mean, Page-Hinkley the running
 * mean, DDM the error rate p, EDDM the mean distance between errors. 0 when
 * no sample has been seen, or for NULL. */
MM_API double mm_drift_estimate(const mm_drift *d);

/* Total number of drifts reported since creation (not cleared by reset). */
MM_API uint64_t mm_drift_count(const mm_drift *d);

#ifdef __cplusplus
}
#endif
#endif /* MM_DRIFT_H */
