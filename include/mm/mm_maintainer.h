/* mmaint — mm_maintainer: guarded maintenance of a deployed model on a stream.
 *
 * A maintainer keeps one deployed model healthy while labelled samples keep
 * arriving. It owns two models made from the caller's deployed model:
 *
 *   - the *deployed* version (the last good checkpoint: what serves), and
 *   - a *working* copy that online updates go to.
 *
 * mm_maintainer_feed runs, for every sample of the stream, in order:
 *
 *   1. progressive validation (predict-then-learn): the deployed version
 *      (what serves) predicts the sample before anything learns it;
 *      correctness and loss enter rolling windows of the last MM_MAINT_WINDOW
 *      samples, and the 0/1 error enters the drift detector (if any);
 *   2. holdout: every MM_MAINT_HOLDOUT_EVERY-th sample (0 = none) is not
 *      learned but held out. It counts in its own window's guard and joins
 *      the holdout ring (capacity MM_MAINT_HOLDOUT_SIZE, oldest overwritten;
 *      mm_maintainer_set_holdout fills it with trusted samples too) only when
 *      that window is accepted: held-out samples of a quarantined window are
 *      dropped with it, so a poisoned stretch never fills the holdout (held-
 *      out samples of a window that learned nothing wait for the next
 *      window's fate);
 *   3. learning: the working copy takes an optimizer step on the sample
 *      (MM_MAINT_BATCH samples per step) mixed with replay samples drawn from
 *      a reservoir (uniform reservoir sampling over the accepted stream,
 *      MM_MAINT_REPLAY_SIZE samples, MM_MAINT_REPLAY_MIX replay samples per
 *      new sample), with an optional L2-SP penalty anchoring the weights to
 *      the deployed version (MM_MAINT_L2SP, see MM_OPT_L2SP);
 *   4. the guard, every MM_MAINT_WINDOW learned samples: the working copy and
 *      the deployed version are evaluated on the holdout (the ring plus the
 *      window's held-out samples). If the working
 *      copy's accuracy is lower by more than MM_MAINT_GUARD_THRESHOLD (unless
 *      it is significantly better on the window's own held-out samples, at
 *      least 100 of them: one-sided paired sign test at 0.1%, which a lasting
 *      change of the labels' meaning passes and scrambled labels do not), or
 *      a loss of the window was not finite, the working copy is rolled back to
 *      the deployed version bit-exactly, and the window's samples are
 *      quarantined: reported (stream ranges), not added to the replay
 *      reservoir nor used by challengers. Otherwise the working copy becomes
 *      the new deployed version: a checkpoint (memory ring of
 *      MM_MAINT_RING models, and a model file in the checkpoint directory if
 *      one is set), a new version number, published to the attached server.
 *      A non-finite loss (NaN features, an update the optimizer refuses)
 *      rolls back at once, ending the window.
 *   5. champion/challenger: MM_MAINT_CHALLENGER_DELAY samples after the
 *      drift detector reports a drift (the current window is guarded first),
 *      two challengers are trained in batch (MM_MAINT_CHALLENGER_EPOCHS
 *      epochs of Adam at MM_MAINT_CHALLENGER_LR, batch 64) on the most recent
 *      MM_MAINT_RECENT_SIZE non-quarantined samples plus the replay
 *      reservoir:
 *        - a fine-tuned copy of the deployed version;
 *        - a re-aligned one: the version deployed at the drift signal with
 *          its first layer folded with the per-feature affine map
 *          x -> s x + c that gives the inputs seen since the signal the mean
 *          and spread of those seen before it (this undoes gain/offset drift
 *          of the inputs exactly); training samples (recent and replay)
 *          taken before the signal are mapped back (x -> (x - c) / s) for
 *          its training. Not tried with fewer than 100 samples on either
 *          side, a frozen or inference-only (int8 without master weights)
 *          first layer (a sparse one folds through its dense form, pruned
 *          weights staying 0), or inputs that did not move.
 *      A challenger qualifies if, on the holdout samples taken since the
 *      signal (at least 100), it is right where the deployed version is
 *      wrong significantly more often than the reverse (one-sided paired
 *      sign test at 1%, normal approximation with continuity correction,
 *      and at least 5 samples more), or if its accuracy on the whole
 *      holdout is higher; the better qualifying one (by that margin) is
 *      promoted (becomes the deployed version and the working copy). Otherwise the champion stays and new
 *      challengers try again after another CHALLENGER_DELAY samples, up to
 *      3 rounds per signal. The promote lineage event records which kind
 *      won ("realigned") and the sign-test counts.
 *
 * Lineage: every checkpoint adds a "checkpoint" event to the model (version,
 * parent, stream position, holdout accuracy, file), every rollback a
 * "rollback" event (the window, the reason, the restored version), every
 * promotion a "promote" event. Checkpoint files are written atomically
 * (mm_model_save), named ckpt-<version>.mmf, and only the newest
 * MM_MAINT_RING of them are kept on disk.
 *
 * Pruned and quantized models: the working copy keeps the deployed model's
 * layer kinds. Masked (pruned) weights stay exactly 0 through every update;
 * int8 layers update their float masters and re-quantize after every step, so
 * every published version is pruned/quantized like the original.
 *
 * Ownership: the maintainer copies everything it is given (the model, the
 * holdout) except an attached server, which it borrows. Models it returns
 * are borrowed and valid until the next call that mutates the maintainer.
 *
 * Errors: every fallible call returns an mm_status with a detail message
 * (mm_last_error_message). A rollback is not an error: it is reported in the
 * feed report.
 *
 * Thread safety: a maintainer is used by one thread at a time. Readers on
 * other threads serve from the attached mm_server (published versions are
 * immutable reference-counted snapshots), never from the maintainer's models.
 */
#ifndef MM_MAINTAINER_H
#define MM_MAINTAINER_H

#include "mm_common.h"
#include "mm_model.h"
#include "mm_optimizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mm_maintainer mm_maintainer;
struct mm_server;

/* Settings (mm_maintainer_set). Values never renumber; new ones are
 * appended. Integer settings must hold integral values. */
typedef enum mm_maint_param {
    MM_MAINT_WINDOW = 1,            /* [1, 1e9] learned samples per guard window and
                                       samples in the rolling windows; default 1000 */
    MM_MAINT_GUARD_THRESHOLD = 2,   /* [0, 1] tolerated holdout-accuracy drop of the
                                       working copy vs the deployed version; default 0.01 */
    MM_MAINT_RING = 3,              /* [1, 1000] checkpoints kept (memory and disk); default 4 */
    MM_MAINT_BATCH = 4,             /* [1, 4096] new samples per optimizer step; default 1 */
    MM_MAINT_REPLAY_SIZE = 5,       /* [0, 1e8] reservoir capacity, 0 = no replay; default 2000 */
    MM_MAINT_REPLAY_MIX = 6,        /* [0, 16] replay samples per new sample; default 0.5 */
    MM_MAINT_L2SP = 7,              /* [0, 1e6] L2-SP strength (MM_OPT_L2SP); default 0 */
    MM_MAINT_DETECTOR = 8,          /* 0 = none, or an mm_drift_kind (mm_drift.h); default
                                       ADWIN (shortest delay, fewest false alarms in
                                       bench_drift) */
    MM_MAINT_HOLDOUT_SIZE = 9,      /* [1, 1e8] holdout ring capacity; default 1000 */
    MM_MAINT_HOLDOUT_EVERY = 10,    /* [0, 1e9] every k-th stream sample goes to the
                                       holdout instead of being learned, 0 = never; default 5
                                       (with size 1000: the holdout follows the last 5000
                                       accepted samples; held-out samples of quarantined
                                       windows are dropped, so poison only enters it
                                       through a window the guard accepted) */
    MM_MAINT_RECENT_SIZE = 11,      /* [1, 1e8] recent samples kept for challengers; default 3000 */
    MM_MAINT_CHALLENGER_EPOCHS = 12,/* [0, 1000] challenger training epochs, 0 = no
                                       champion/challenger; default 2 */
    MM_MAINT_SEED = 13,             /* [0, 2^53] seed of the reservoir and challenger
                                       shuffling; default 0 */
    MM_MAINT_CHALLENGER_LR = 14,    /* (0, 1] learning rate of challengers (Adam, batch
                                       64); default 1e-4 (fine-tuning a trained model:
                                       1e-3 undoes part of it) */
    MM_MAINT_CHALLENGER_DELAY = 15  /* [0, 1e9] stream samples between a drift signal and
                                       the challenger's training, so that the recent
                                       window holds the new data; default 1000 */
} mm_maint_param;

/* Name of a setting ("window") or NULL; and the reverse lookup
 * (MM_E_INVALID_ARGUMENT naming the text). */
MM_API const char *mm_maint_param_name(mm_maint_param param);
MM_API mm_status mm_maint_param_from_name(const char *name, mm_maint_param *out);

/* Names of the values of enum-valued settings, as mm_opt_value_from_name /
 * mm_opt_value_name (same errors; thread-safe): MM_MAINT_DETECTOR takes
 * "none" (0) or a drift detector's name ("adwin", "page_hinkley", "ddm",
 * "eddm", and the aliases mm_drift_kind_from_name accepts); the other
 * settings take plain numbers (MM_E_UNSUPPORTED). Optimizer settings given
 * to mm_maintainer_set_optimizer take mm_opt_value_from_name's names; the
 * drift detector's parameters (mm_maintainer_set_detector, mm_drift_set)
 * are all plain numbers. */
MM_API mm_status mm_maint_value_from_name(mm_maint_param param, const char *name, double *value);
MM_API const char *mm_maint_value_name(mm_maint_param param, double value);

/* Events of one feed call (mm_maint_report.events bits). */
#define MM_MAINT_EV_CHECKPOINT 1u /* a window was accepted: new deployed version */
#define MM_MAINT_EV_ROLLBACK 2u   /* a window was rolled back and quarantined */
#define MM_MAINT_EV_DRIFT 4u      /* the detector reported a drift */
#define MM_MAINT_EV_PROMOTE 8u    /* a challenger was promoted */
#define MM_MAINT_EV_REJECT 16u    /* a challenger was trained and not promoted */

/* Why a window was quarantined. */
typedef enum mm_maint_reason {
    MM_MAINT_REASON_METRIC = 1,  /* holdout accuracy fell by more than the threshold */
    MM_MAINT_REASON_NUMERIC = 2  /* a loss was not finite / the optimizer refused an update */
} mm_maint_reason;

/* A quarantined window: stream positions [start, end) (0-based over every
 * sample ever fed), why, and the holdout accuracies compared (NaN for
 * numeric trouble). */
typedef struct mm_maint_range {
    uint64_t start, end;
    mm_maint_reason reason;
    double accuracy, good_accuracy;
} mm_maint_range;

/* What one feed call did and where the maintainer stands. `struct_size` is
 * sizeof the struct the library filled (fields are only ever appended).
 * Counters are totals since creation unless said otherwise. */
typedef struct mm_maint_report {
    uint32_t struct_size;
    uint32_t events;            /* MM_MAINT_EV_* bits of this call */
    uint64_t samples;           /* stream samples fed so far */
    uint64_t version;           /* deployed version (1 = the model given at create) */
    double rolling_accuracy;    /* progressive accuracy over the last WINDOW samples
                                   (NaN before the first) */
    double rolling_loss;        /* progressive mean loss over the same samples */
    double holdout_accuracy;    /* deployed version's accuracy at the last guard (NaN
                                   before the first guard or without a holdout) */
    int drift_state;            /* mm_drift_state after the last sample (0 without detector) */
    uint64_t drifts;            /* drifts reported by the detector */
    uint64_t rollbacks;
    uint64_t promotions;
    uint64_t challengers;       /* challengers trained */
    uint64_t learned;           /* samples learned and accepted */
    uint64_t quarantined;       /* samples in quarantined windows */
    size_t new_ranges;          /* quarantined ranges added by this call: the last
                                   new_ranges of mm_maintainer_quarantined */
    uint64_t correct;           /* samples whose progressive prediction was right (so
                                   the accuracy of any stretch is a difference) */
} mm_maint_report;

/* Create a maintainer for a deployed model (copied: the caller keeps
 * `deployed`), updated with an optimizer of `kind` (default settings; change
 * them with mm_maintainer_set_optimizer). The model needs a layer and the
 * softmax cross-entropy loss (accuracy is the guarded metric). Settings take
 * their defaults; without a holdout (set one, or HOLDOUT_EVERY > 0 fills it
 * from the stream) the guard accepts windows on numeric grounds only.
 * The caller owns *out (mm_maintainer_free). */
MM_API mm_status mm_maintainer_create(mm_maintainer **out, const mm_model *deployed,
                                      mm_optim_kind kind);

/* NULL is a no-op. Does not free an attached server. */
MM_API void mm_maintainer_free(mm_maintainer *mt);

/* Change / read a setting. MM_E_OUT_OF_RANGE naming the setting and range,
 * MM_E_INVALID_ARGUMENT for an unknown setting or a non-integral value of
 * an integer setting. Sizes (window, ring, batch, replay size, detector,
 * recent size, seed) can only change before the first feed, holdout_size
 * before the first mm_maintainer_set_holdout or feed (MM_E_STATE
 * afterwards); the rest take effect at the next sample. */
MM_API mm_status mm_maintainer_set(mm_maintainer *mt, mm_maint_param param, double value);
MM_API mm_status mm_maintainer_get(const mm_maintainer *mt, mm_maint_param param,
                                   double *value);

/* Set an optimizer setting used for online updates and challengers (as
 * mm_optimizer_set; same errors). */
MM_API mm_status mm_maintainer_set_optimizer(mm_maintainer *mt, mm_opt_param param,
                                             double value);

/* Set a parameter of the drift detector by name (as mm_drift_set; the
 * detector is the one MM_MAINT_DETECTOR names; MM_E_STATE without one). */
MM_API mm_status mm_maintainer_set_detector(mm_maintainer *mt, const char *name, double value);

/* Replace the holdout ring's contents by copies of n samples (x: n*input_dim
 * floats, labels in [0, output_dim)); n <= HOLDOUT_SIZE (MM_E_OUT_OF_RANGE
 * otherwise). Stream samples (HOLDOUT_EVERY) are added after these,
 * overwriting the oldest, as their windows are accepted; those of the
 * current window stay pending (they count in the reported holdout accuracy
 * and join the ring if the window is accepted). */
MM_API mm_status mm_maintainer_set_holdout(mm_maintainer *mt, const float *x,
                                           const int32_t *labels, size_t n);

/* Write a checkpoint file per accepted version into `dir` (must exist and be
 * writable: checked by writing the current deployed version as version 1's
 * file now), or NULL for memory-only checkpoints. */
MM_API mm_status mm_maintainer_set_checkpoint_dir(mm_maintainer *mt, const char *dir);

/* Attach a server (borrowed: it must outlive the maintainer or be detached
 * with NULL first). The current deployed version is published at once, and
 * every later accepted or promoted version after it. */
MM_API mm_status mm_maintainer_attach_server(mm_maintainer *mt, struct mm_server *server);

/* Predict-then-learn over n samples (x: n*input_dim floats, labels n ints in
 * [0, output_dim)); see the top of this file. Arguments are checked before
 * anything changes (MM_E_INVALID_ARGUMENT / MM_E_OUT_OF_RANGE naming the
 * sample). Non-finite features are not an argument error: they are numeric
 * trouble and roll back. `report` (may be NULL) is filled even when an error
 * occurs mid-stream (MM_E_OUT_OF_MEMORY, MM_E_IO writing a checkpoint): then
 * samples says how far the call got. */
MM_API mm_status mm_maintainer_feed(mm_maintainer *mt, const float *x, const int32_t *labels,
                                    size_t n, mm_maint_report *report);

/* End the current window now (the guard runs on the samples learned since
 * the last guard, if any): call at the end of a stream so that its tail is
 * either deployed or quarantined. */
MM_API mm_status mm_maintainer_flush(mm_maintainer *mt, mm_maint_report *report);

/* The current report without feeding. */
MM_API mm_status mm_maintainer_status(const mm_maintainer *mt, mm_maint_report *report);

/* The deployed version (the last good checkpoint) and the working copy.
 * Borrowed: valid until the next feed/flush/free. */
MM_API const mm_model *mm_maintainer_model(const mm_maintainer *mt);
MM_API const mm_model *mm_maintainer_working_model(const mm_maintainer *mt);

/* Checkpoints in the memory ring, oldest first: `index` 0 ..
 * mm_maintainer_num_checkpoints()-1; the last is the deployed version.
 * *version receives its version number (may be NULL). Borrowed. */
MM_API size_t mm_maintainer_num_checkpoints(const mm_maintainer *mt);
MM_API mm_status mm_maintainer_checkpoint(const mm_maintainer *mt, size_t index,
                                          const mm_model **model, uint64_t *version);

/* Quarantined windows, oldest first. */
MM_API size_t mm_maintainer_num_quarantined(const mm_maintainer *mt);
MM_API mm_status mm_maintainer_quarantined(const mm_maintainer *mt, size_t index,
                                           mm_maint_range *range);

/* ---- replay reservoir, usable on its own -------------------------------
 *
 * Uniform reservoir sampling (Vitter's algorithm R) over a stream of
 * labelled samples: after `seen` offers, each offered sample is held with
 * probability capacity/seen. Deterministic for a seed. One thread at a time. */
typedef struct mm_reservoir mm_reservoir;

/* capacity >= 1 samples of `dim` floats each. Caller owns *out. */
MM_API mm_status mm_reservoir_create(mm_reservoir **out, size_t capacity, size_t dim,
                                     uint64_t seed);
MM_API void mm_reservoir_free(mm_reservoir *r);
/* Offer one sample (copied if kept). *slot (may be NULL) receives the slot
 * it went to, or SIZE_MAX if it was not kept. */
MM_API mm_status mm_reservoir_offer(mm_reservoir *r, const float *x, int32_t label,
                                    size_t *slot);
/* Samples held (<= capacity) and offers so far. */
MM_API size_t mm_reservoir_size(const mm_reservoir *r);
MM_API uint64_t mm_reservoir_seen(const mm_reservoir *r);
/* Borrowed view of held sample `index` (< size). */
MM_API mm_status mm_reservoir_get(const mm_reservoir *r, size_t index, const float **x,
                                  int32_t *label);
/* Copy `k` samples drawn uniformly with replacement into x (k*dim) and
 * labels (k). MM_E_STATE when empty. */
MM_API mm_status mm_reservoir_draw(mm_reservoir *r, size_t k, float *x, int32_t *labels);

#ifdef __cplusplus
}
#endif
#endif /* MM_MAINTAINER_H */
