/* Pruning criteria, each a static const table (pruner_internal.h), and the
 * exact selection of the k least important weights or neurons.
 *
 *   magnitude         |w|, each layer to its own target
 *   magnitude_global  |w|, one ranking (one threshold) over every included
 *                     layer: the overall count is exact, per-layer counts
 *                     follow the weights (layers with small weights lose more)
 *   random            uniform 24-bit scores from a PRNG seeded with
 *                     (MM_PRUNE_SEED, layer index): a baseline; the same seed
 *                     gives the same masks everywhere
 *   user              the caller's score per weight
 *   neuron_l1 / _l2   L1 / L2 norm of a hidden neuron's incoming weights (row
 *                     j of W_l; the bias is not included)
 *   neuron_activation mean |activation| of the neuron over the calibration
 *                     data (mm_pruner_calibrate; for relu and sigmoid the
 *                     plain mean, for tanh / leaky relu the magnitude, since a
 *                     large negative output matters as much as a positive one)
 *   neuron_user       the caller's score per neuron
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune/pruner_internal.h"

/* ---- score functions ---------------------------------------------------- */

static const mm_param *weights_of(const mm_model *m, size_t l) {
    return &m->layers[l]->params[0];
}

static void score_magnitude(const mm_pruner *p, const mm_model *m, size_t l, float *s) {
    (void)p;
    const mm_param *w = weights_of(m, l);
    const size_t n = mm_param_count(w);
    for (size_t i = 0; i < n; i++) s[i] = fabsf(w->data[i]);
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void score_random(const mm_pruner *p, const mm_model *m, size_t l, float *s) {
    const size_t n = mm_param_count(weights_of(m, l));
    mm_rng rng;
    mm_rng_seed(&rng, (uint64_t)p->set[MM_PRUNE_SEED] ^ mix64((uint64_t)l + 0x9E3779B97F4A7C15ULL));
    /* 24 random bits: exact in float; ties are broken by index */
    for (size_t i = 0; i < n; i++) s[i] = (float)(mm_rng_next(&rng) >> 40);
}

static void score_user(const mm_pruner *p, const mm_model *m, size_t l, float *s) {
    (void)m;
    const mm_prune_scores *u = mm_pruner_scores_for(p, l);
    memcpy(s, u->scores, u->len * sizeof *s);
}

static void score_neuron_norm(const mm_model *m, size_t l, float *s, bool l2) {
    const mm_param *w = weights_of(m, l);
    const size_t out = w->rows, in = w->cols;
    for (size_t j = 0; j < out; j++) {
        const float *row = w->data + j * in;
        double acc = 0.0;
        if (l2) {
            for (size_t i = 0; i < in; i++) acc += (double)row[i] * (double)row[i];
            acc = sqrt(acc);
        } else {
            for (size_t i = 0; i < in; i++) acc += fabs((double)row[i]);
        }
        s[j] = (float)acc;
    }
}

static void score_neuron_l1(const mm_pruner *p, const mm_model *m, size_t l, float *s) {
    (void)p;
    score_neuron_norm(m, l, s, false);
}

static void score_neuron_l2(const mm_pruner *p, const mm_model *m, size_t l, float *s) {
    (void)p;
    score_neuron_norm(m, l, s, true);
}

static void score_neuron_activation(const mm_pruner *p, const mm_model *m, size_t l, float *s) {
    memcpy(s, p->cal_act[l], m->layers[l]->out * sizeof *s);
}

/* ---- the tables --------------------------------------------------------- */

static const mm_prune_crit crit_magnitude = {
    .id = MM_PRUNE_MAGNITUDE, .name = "magnitude", .score = score_magnitude};
static const mm_prune_crit crit_magnitude_global = {
    .id = MM_PRUNE_MAGNITUDE_GLOBAL, .name = "magnitude_global", .global = true,
    .score = score_magnitude};
static const mm_prune_crit crit_random = {
    .id = MM_PRUNE_RANDOM, .name = "random", .score = score_random};
static const mm_prune_crit crit_user = {
    .id = MM_PRUNE_USER, .name = "user", .needs_scores = true, .score = score_user};
static const mm_prune_crit crit_neuron_l1 = {
    .id = MM_PRUNE_NEURON_L1, .name = "neuron_l1", .structured = true, .score = score_neuron_l1};
static const mm_prune_crit crit_neuron_l2 = {
    .id = MM_PRUNE_NEURON_L2, .name = "neuron_l2", .structured = true, .score = score_neuron_l2};
static const mm_prune_crit crit_neuron_activation = {
    .id = MM_PRUNE_NEURON_ACTIVATION, .name = "neuron_activation", .structured = true,
    .needs_calibration = true, .score = score_neuron_activation};
static const mm_prune_crit crit_neuron_user = {
    .id = MM_PRUNE_NEURON_USER, .name = "neuron_user", .structured = true, .needs_scores = true,
    .score = score_user};

static const mm_prune_crit *const crits[] = {
    &crit_magnitude,  &crit_magnitude_global,  &crit_random,      &crit_neuron_l1,
    &crit_neuron_l2,  &crit_neuron_activation, &crit_user,        &crit_neuron_user};
#define N_CRITS (sizeof crits / sizeof crits[0])

const mm_prune_crit *mm_prune_crit_find(mm_prune_criterion c) {
    for (size_t i = 0; i < N_CRITS; i++)
        if (crits[i]->id == c) return crits[i];
    return NULL;
}

const char *mm_prune_criterion_name(mm_prune_criterion c) {
    const mm_prune_crit *k = mm_prune_crit_find(c);
    return k ? k->name : NULL;
}

mm_status mm_prune_criterion_from_name(const char *name, mm_prune_criterion *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (size_t i = 0; i < N_CRITS; i++) {
        if (strcmp(crits[i]->name, name) == 0) {
            *out = crits[i]->id;
            return MM_OK;
        }
    }
    return mm_error(MM_E_INVALID_ARGUMENT,
                    "unknown pruning criterion '%s' (expected magnitude, magnitude_global, "
                    "random, user, neuron_l1, neuron_l2, neuron_activation or neuron_user)",
                    name);
}

/* ---- exact selection ---------------------------------------------------- */

/* Strict total order: score, then index (keys are unique). */
static inline bool key_less(const mm_prune_key *a, const mm_prune_key *b) {
    return a->score < b->score || (a->score == b->score && a->index < b->index);
}

static int key_cmp(const void *pa, const void *pb) {
    const mm_prune_key *a = pa, *b = pb;
    return key_less(a, b) ? -1 : (key_less(b, a) ? 1 : 0);
}

static inline void key_swap(mm_prune_key *a, mm_prune_key *b) {
    mm_prune_key t = *a;
    *a = *b;
    *b = t;
}

/* Quickselect (median-of-three Lomuto) so that keys[0..k) are the k
 * smallest keys; linear on average. If partitioning goes badly for too long
 * the rest is sorted instead (n log n worst case). */
void mm_prune_select(mm_prune_key *keys, size_t n, size_t k) {
    if (k == 0 || k >= n) return;
    size_t lo = 0, hi = n - 1;
    const size_t nth = k; /* after this, keys[nth] is in place, smaller ones before */
    unsigned budget = 16;
    for (size_t m = n; m > 1; m >>= 1) budget += 2;
    while (hi > lo) {
        if (budget-- == 0) {
            qsort(keys + lo, hi - lo + 1, sizeof *keys, key_cmp);
            return;
        }
        size_t mid = lo + (hi - lo) / 2;
        if (key_less(&keys[mid], &keys[lo])) key_swap(&keys[mid], &keys[lo]);
        if (key_less(&keys[hi], &keys[lo])) key_swap(&keys[hi], &keys[lo]);
        if (key_less(&keys[hi], &keys[mid])) key_swap(&keys[hi], &keys[mid]);
        /* median at mid: use it as the pivot at hi */
        key_swap(&keys[mid], &keys[hi]);
        const mm_prune_key pivot = keys[hi];
        size_t store = lo;
        for (size_t i = lo; i < hi; i++)
            if (key_less(&keys[i], &pivot)) key_swap(&keys[i], &keys[store++]);
        key_swap(&keys[store], &keys[hi]);
        if (store == nth) return;
        if (nth < store)
            hi = store - 1;
        else
            lo = store + 1;
    }
}
