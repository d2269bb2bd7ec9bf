/* Internals of mm_quantizer shared by quantizer.c (settings, schemes,
 * calibration, apply, accuracy-aware fallback, report), observers.c (the
 * calibration statistics and the observer tables) and qat.c (the "qat"
 * layer kind). Never installed. The quantized layer kinds themselves
 * (int8, fp16, bf16) are behind quant_internal.h.
 *
 * Decisions worth knowing:
 *  - Calibration collects one set of statistics per layer input, the same
 *    for every observer: exact min/max, the moving average of per-batch
 *    min/max, and a histogram. The observer (MM_QUANT_OBSERVER,
 *    MM_QUANT_PERCENTILE) only decides how a range is read from them, at
 *    apply time, so it can be changed after calibrating (one calibration
 *    pass serves every observer). MM_QUANT_BINS and MM_QUANT_AVERAGING
 *    shape the statistics themselves: changing them discards a calibration.
 *  - A calibration batch is at most MM_QCAL_CHUNK samples of one
 *    mm_quantizer_calibrate call (the moving average advances once per
 *    batch).
 *  - Histograms always include 0 and grow: the first batch fixes the range
 *    [min(0, min), max(0, max)]; a later batch outside it widens it (to the
 *    new extreme plus 25 % of it, on the side that grew) and the old counts are
 *    re-binned, each old bin spread over the new bins it overlaps in
 *    proportion (values assumed uniform within a bin), as PyTorch's
 *    HistogramObserver does.
 *  - Every range an observer returns lies within the exact [min, max].
 */
#ifndef MM_QUANTIZER_INTERNAL_H
#define MM_QUANTIZER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "quant/quant_internal.h"

#define MM_QUANT_PARAM_FIRST 1
#define MM_QUANT_PARAM_LAST 10 /* MM_QUANT_DROP_RELATIVE */
#define MM_QUANT_PARAM_COUNT (MM_QUANT_PARAM_LAST + 1)
#define MM_QUANT_BIT(p) (1u << (unsigned)(p))

/* Samples per calibration batch. */
#define MM_QCAL_CHUNK 256

/* ---- calibration statistics and observers (observers.c) ------------------ */

typedef struct mm_qhist {
    size_t bins;
    double lo, hi; /* range covered; lo <= 0 <= hi */
    double *count; /* bins values */
    double total;
} mm_qhist;

typedef struct mm_qstats {
    uint64_t values;          /* values observed */
    uint64_t batches;         /* batches observed */
    double min, max;          /* exact */
    double ema_min, ema_max;  /* moving average of per-batch min / max */
    mm_qhist hist;
} mm_qstats;

/* Zeroed statistics with a histogram of `bins` bins. */
mm_status mm_qstats_init(mm_qstats *s, size_t bins);
void mm_qstats_free(mm_qstats *s);
mm_status mm_qstats_copy(mm_qstats *dst, const mm_qstats *src);
/* Observe one batch of `count` finite values (the caller checked). */
void mm_qstats_observe(mm_qstats *s, const float *x, size_t count, double averaging);

/* Options of the range computation. */
typedef struct mm_qobs_opts {
    double percentile; /* MM_QUANT_PERCENTILE */
    bool symmetric;    /* the range is used for symmetric quantization */
} mm_qobs_opts;

/* One observer: a static const table. */
typedef struct mm_qobserver {
    mm_quant_observer id;
    const char *name;
    bool histogram; /* reads the histogram */
    /* The range [lo, hi] (within [min, max]) for statistics with at least
     * one value. */
    void (*range)(const mm_qstats *s, const mm_qobs_opts *o, double *lo, double *hi);
} mm_qobserver;

const mm_qobserver *mm_qobserver_find(mm_quant_observer id);

/* Expected squared error of quantizing the histogram's values with
 * (scale, zero_point) onto uint8 (values uniform within each bin).
 * Exposed for tests of internals. */
double mm_qhist_quant_error(const mm_qhist *h, double scale, int32_t zero_point);

/* ---- schemes (quantizer.c) -------------------------------------------------- */

typedef struct mm_qscheme {
    mm_quant_scheme id;
    const char *name;
    bool needs_calibration; /* static: activation ranges */
    bool int8;              /* int8 weights (else 16-bit storage) */
    bool act_quant;         /* QAT fake-quantizes activations (static, dynamic) */
    uint32_t uses;          /* MM_QUANT_BIT()s of the settings it reads */
    /* Fill cfg for layer l of the model from the quantizer's settings
     * (and calibration: the caller checked it matches the model). */
    void (*configure)(const mm_quantizer *q, size_t l, mm_qlayer_config *cfg);
} mm_qscheme;

typedef struct mm_qlayer_flag {
    size_t index;
    bool enabled;
} mm_qlayer_flag;

struct mm_quantizer {
    const mm_qscheme *scheme;
    double set[MM_QUANT_PARAM_COUNT];
    mm_qlayer_flag *flags; /* mm_quantizer_set_layer */
    size_t n_flags;
    /* calibration: the model shape it was taken on, statistics of each
     * layer's input (stats[l] for l < cal_n_layers) */
    bool calibrated;
    size_t cal_input_dim, cal_n_layers;
    size_t *cal_outs;
    mm_qstats *stats;
    char *report; /* JSON of the last apply, "" before */
};

/* The observed input range of layer l for the current observer settings. */
void mm_quantizer_layer_range(const mm_quantizer *q, size_t l, float *lo, float *hi);

/* ---- quantization-aware training (qat.c) ------------------------------------ */

typedef struct mm_qat_config {
    mm_quant_scheme scheme;
    bool per_channel, weight_symmetric, act_symmetric;
    double averaging;     /* EMA constant of the input range (static) */
    bool have_range;      /* initial input range (from calibration) */
    float in_lo, in_hi;
} mm_qat_config;

/* A "qat" layer from a dense one (only read): same parameters (copied,
 * masks too), forward with fake-quantized weights (and inputs). */
mm_status mm_qat_from_dense(const mm_layer *dense, const mm_qat_config *cfg, mm_layer **out);
bool mm_layer_is_qat(const mm_layer *layer);
/* A dense layer with the qat layer's float master weights. */
mm_status mm_qat_to_dense(const mm_layer *qat, mm_layer **out);
/* The input range observed during training, if any. */
bool mm_qat_input_range(const mm_layer *qat, float *lo, float *hi);

/* Fake quantization helpers (qat.c), also used by tests of internals. */
/* w (rows x cols) -> wq with the quantizer's int8 weight convention. */
void mm_qat_fake_weights(const float *w, size_t rows, size_t cols, bool per_channel,
                         bool symmetric, float *wq);
/* Round to the nearest fp16 / bf16 value (ties to even), as float. */
float mm_qat_round_fp16(float x);
float mm_qat_round_bf16(float x);

#endif
