/* Calibration statistics and the observers that read activation ranges
 * from them (quantizer_internal.h explains why every observer shares one
 * set of statistics). Each observer is a static const table:
 *
 *   minmax         the exact [min, max] seen.
 *   moving_minmax  the exponential moving average of each batch's min and
 *                  max with constant c = MM_QUANT_AVERAGING:
 *                  m <- m + c (m_batch - m), the first batch taken as is
 *                  (PyTorch's MovingAverageMinMaxObserver).
 *   percentile     symmetric: the p-th percentile of |x|; asymmetric: the
 *                  range holding the central p % of the values, (100-p)/2 %
 *                  cut from each tail. Quantiles interpolate linearly
 *                  within a histogram bin. p = 100 is [min, max] exactly.
 *   mse            the range whose uint8 quantization (with the kernels'
 *                  mm_int8_choose_params) has the least expected squared
 *                  error, rounding and clipping together, over the
 *                  histogram's values (uniform within each bin, the error
 *                  integrated exactly per bin). Candidates: fractions of the
 *                  extreme values, linear (k/512) and geometric (2^-j/8,
 *                  down to 2^-20), searched by coordinate descent over the
 *                  low and high ends when asymmetric.
 *   entropy        TensorRT's calibration: the clipping window of the
 *                  histogram whose quantized version (the window merged
 *                  into `levels` groups, each group's mass spread over its
 *                  non-empty bins) is closest in KL divergence to the
 *                  clipped distribution (values outside the window folded
 *                  into its edge bins), both smoothed with eps = 1e-4 as
 *                  MXNet's implementation does. Symmetric: on the histogram
 *                  of |x| with 128 levels (as TensorRT's int8); asymmetric
 *                  uint8: on the signed histogram with 256 levels, the low
 *                  and high edges searched by coordinate descent. A window
 *                  is at least `levels` bins wide (narrower windows would
 *                  quantize more finely than the histogram resolves). The
 *                  bin holding 0 takes its neighbours' count first (see
 *                  entropy_hist: relu's zeros), and ties go to the wider
 *                  window, as in NVIDIA's pytorch-quantization.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/pmath.h"
#include "quant/quantizer_internal.h"

/* ---- statistics ------------------------------------------------------------- */

mm_status mm_qstats_init(mm_qstats *s, size_t bins) {
    memset(s, 0, sizeof *s);
    s->hist.bins = bins;
    s->hist.count = mm_calloc_array(bins, sizeof *s->hist.count);
    if (!s->hist.count) return mm_oom("calibration histogram");
    return MM_OK;
}

void mm_qstats_free(mm_qstats *s) {
    if (!s) return;
    free(s->hist.count);
    s->hist.count = NULL;
}

mm_status mm_qstats_copy(mm_qstats *dst, const mm_qstats *src) {
    *dst = *src;
    dst->hist.count = mm_malloc_array(src->hist.bins, sizeof *dst->hist.count);
    if (!dst->hist.count) return mm_oom("calibration histogram");
    memcpy(dst->hist.count, src->hist.count, src->hist.bins * sizeof *dst->hist.count);
    return MM_OK;
}

static double bin_width(const mm_qhist *h) { return (h->hi - h->lo) / (double)h->bins; }

static double edge(const mm_qhist *h, size_t i) {
    return i >= h->bins ? h->hi : h->lo + (h->hi - h->lo) * (double)i / (double)h->bins;
}

static size_t bin_of(const mm_qhist *h, double x) {
    if (!(h->hi > h->lo)) return 0;
    double f = (x - h->lo) / (h->hi - h->lo) * (double)h->bins;
    if (!(f > 0.0)) return 0;
    size_t i = (size_t)f;
    return i >= h->bins ? h->bins - 1 : i;
}

/* Spread `mass` uniformly over [u, v] into the bins of h (point mass when
 * u == v). */
static void spread(mm_qhist *h, double u, double v, double mass) {
    if (mass == 0.0) return;
    if (!(v > u) || !(h->hi > h->lo)) {
        h->count[bin_of(h, u)] += mass;
        return;
    }
    size_t i0 = bin_of(h, u), i1 = bin_of(h, v);
    if (i0 == i1) {
        h->count[i0] += mass;
        return;
    }
    const double density = mass / (v - u);
    double placed = 0.0;
    for (size_t i = i0; i <= i1; i++) {
        double a = i == i0 ? u : edge(h, i);
        double b = i == i1 ? v : edge(h, i + 1);
        double part = i == i1 ? mass - placed : (b > a ? (b - a) * density : 0.0);
        if (part < 0.0) part = 0.0;
        h->count[i] += part;
        placed += part;
    }
}

/* Widen h to [lo, hi] (a superset of its range), re-binning its counts. */
static void regrid(mm_qhist *h, double lo, double hi, double *scratch) {
    const size_t B = h->bins;
    memcpy(scratch, h->count, B * sizeof *scratch);
    const mm_qhist old = {B, h->lo, h->hi, scratch, h->total};
    memset(h->count, 0, B * sizeof *h->count);
    h->lo = lo;
    h->hi = hi;
    for (size_t i = 0; i < B; i++) {
        if (scratch[i] == 0.0) continue;
        if (!(old.hi > old.lo))
            spread(h, old.lo, old.lo, scratch[i]);
        else
            spread(h, edge(&old, i), edge(&old, i + 1), scratch[i]);
    }
}

void mm_qstats_observe(mm_qstats *s, const float *x, size_t count, double averaging) {
    if (count == 0) return;
    double bmin = x[0], bmax = x[0];
    for (size_t i = 1; i < count; i++) {
        double v = x[i];
        bmin = v < bmin ? v : bmin;
        bmax = v > bmax ? v : bmax;
    }
    mm_qhist *h = &s->hist;
    if (s->values == 0) {
        s->min = bmin;
        s->max = bmax;
        s->ema_min = bmin;
        s->ema_max = bmax;
        h->lo = bmin < 0.0 ? bmin : 0.0;
        h->hi = bmax > 0.0 ? bmax : 0.0;
    } else {
        s->min = bmin < s->min ? bmin : s->min;
        s->max = bmax > s->max ? bmax : s->max;
        s->ema_min += averaging * (bmin - s->ema_min);
        s->ema_max += averaging * (bmax - s->ema_max);
        if (bmin < h->lo || bmax > h->hi) {
            double lo = bmin < h->lo ? bmin : h->lo;
            double hi = bmax > h->hi ? bmax : h->hi;
            if (bmin < h->lo) lo *= 1.25; /* headroom: 25 % of that side's extent */
            if (bmax > h->hi) hi *= 1.25;
            /* The histogram may have held a single point (all zeros) so
             * far; regrid handles that. Scratch: reuse a stack buffer for
             * small histograms. */
            double stack[2048];
            double *scratch = h->bins <= 2048 ? stack : malloc(h->bins * sizeof *scratch);
            if (scratch) {
                regrid(h, lo, hi, scratch);
                if (scratch != stack) free(scratch);
            } else {
                /* Out of memory: keep the grid, clamp new values into the
                 * edge bins (the exact min/max are still tracked). */
            }
        }
    }
    s->values += count;
    s->batches++;
    const double lo = h->lo, span = h->hi - h->lo;
    const double f = span > 0.0 ? (double)h->bins / span : 0.0;
    const size_t last = h->bins - 1;
    for (size_t i = 0; i < count; i++) {
        double t = ((double)x[i] - lo) * f;
        size_t b = t > 0.0 ? (size_t)t : 0;
        h->count[b > last ? last : b] += 1.0;
    }
    h->total += (double)count;
}

/* ---- histogram queries ----------------------------------------------------- */

/* The value below which a fraction q of the histogram's mass lies. */
static double quantile(const mm_qhist *h, double q) {
    const double target = q * h->total;
    double cum = 0.0;
    for (size_t i = 0; i < h->bins; i++) {
        const double c = h->count[i];
        if (c > 0.0 && cum + c >= target) {
            double frac = (target - cum) / c;
            frac = frac < 0.0 ? 0.0 : frac > 1.0 ? 1.0 : frac;
            return edge(h, i) + frac * bin_width(h);
        }
        cum += c;
    }
    return h->hi;
}

/* The histogram of |x| over [0, max(-lo, hi)] with the same bin count.
 * The caller frees out->count. */
static mm_status fold_abs(const mm_qhist *h, mm_qhist *out) {
    out->bins = h->bins;
    out->lo = 0.0;
    out->hi = -h->lo > h->hi ? -h->lo : h->hi;
    out->total = h->total;
    out->count = mm_calloc_array(h->bins, sizeof *out->count);
    if (!out->count) return mm_oom("calibration histogram");
    for (size_t i = 0; i < h->bins; i++) {
        const double c = h->count[i];
        if (c == 0.0) continue;
        if (!(h->hi > h->lo)) {
            spread(out, 0.0, 0.0, c);
            continue;
        }
        double a = edge(h, i), b = edge(h, i + 1);
        if (a >= 0.0) {
            spread(out, a, b, c);
        } else if (b <= 0.0) {
            spread(out, -b, -a, c);
        } else {
            double neg = c * (-a) / (b - a);
            spread(out, 0.0, -a, neg);
            spread(out, 0.0, b, c - neg);
        }
    }
    return MM_OK;
}

/* ∫_u^v (x - g)^2 dx */
static double sq_integral(double u, double v, double g) {
    double a = u - g, b = v - g;
    return (b * b * b - a * a * a) / 3.0;
}

/* ∫_u^v (x - Q(x))^2 dx for u <= v inside [qmin, qmax] (grid step s from
 * qmin). */
static double grid_integral(double u, double v, double qmin, double s) {
    double k0 = floor((u - qmin) / s + 0.5), k1 = floor((v - qmin) / s + 0.5);
    if (k0 == k1) return sq_integral(u, v, qmin + k0 * s);
    double total = sq_integral(u, qmin + (k0 + 0.5) * s, qmin + k0 * s);
    total += sq_integral(qmin + (k1 - 0.5) * s, v, qmin + k1 * s);
    if (k1 - k0 > 1.0) total += (k1 - k0 - 1.0) * s * s * s / 12.0;
    return total;
}

double mm_qhist_quant_error(const mm_qhist *h, double scale, int32_t zero_point) {
    const double qmin = -(double)zero_point * scale, qmax = (255.0 - zero_point) * scale;
    double err = 0.0;
    for (size_t i = 0; i < h->bins; i++) {
        const double c = h->count[i];
        if (c == 0.0) continue;
        double a = edge(h, i), b = edge(h, i + 1);
        if (!(b > a)) { /* a point mass */
            double q = a < qmin ? qmin : a > qmax ? qmax : qmin + nearbyint((a - qmin) / scale) * scale;
            err += c * (a - q) * (a - q);
            continue;
        }
        double e = 0.0;
        if (a < qmin) e += sq_integral(a, b < qmin ? b : qmin, qmin);
        if (b > qmax) e += sq_integral(a > qmax ? a : qmax, b, qmax);
        double u = a > qmin ? a : qmin, v = b < qmax ? b : qmax;
        if (v > u) e += grid_integral(u, v, qmin, scale);
        err += c * e / (b - a);
    }
    return err;
}

/* Error of quantizing with the parameters the kernels would choose for
 * [lo, hi]. */
static double range_error(const mm_qhist *h, double lo, double hi, bool symmetric) {
    float scale;
    int32_t zp;
    if (mm_int8_choose_params((float)lo, (float)hi, symmetric, &scale, &zp) != MM_OK)
        return INFINITY;
    return mm_qhist_quant_error(h, scale, zp);
}

/* ---- observers --------------------------------------------------------------- */

static void clamp_range(const mm_qstats *s, double *lo, double *hi) {
    if (!(*lo >= s->min)) *lo = s->min;
    if (!(*hi <= s->max)) *hi = s->max;
    if (*lo > *hi) *lo = *hi;
}

static void obs_minmax(const mm_qstats *s, const mm_qobs_opts *o, double *lo, double *hi) {
    (void)o;
    *lo = s->min;
    *hi = s->max;
}

static void obs_moving(const mm_qstats *s, const mm_qobs_opts *o, double *lo, double *hi) {
    (void)o;
    *lo = s->ema_min;
    *hi = s->ema_max;
    clamp_range(s, lo, hi);
}

static void obs_percentile(const mm_qstats *s, const mm_qobs_opts *o, double *lo, double *hi) {
    const double p = o->percentile / 100.0;
    *lo = s->min;
    *hi = s->max;
    if (p >= 1.0 || !(s->hist.hi > s->hist.lo)) return;
    if (o->symmetric) {
        mm_qhist a;
        if (fold_abs(&s->hist, &a) != MM_OK) return; /* out of memory: min/max */
        double t = quantile(&a, p);
        free(a.count);
        *lo = -t;
        *hi = t;
    } else {
        *lo = quantile(&s->hist, (1.0 - p) / 2.0);
        *hi = quantile(&s->hist, 1.0 - (1.0 - p) / 2.0);
    }
    clamp_range(s, lo, hi);
}

/* Candidate fractions of an extreme value: k/512 and 2^(-j/8). */
#define MSE_LINEAR 512
#define MSE_GEOMETRIC 160
#define MSE_CANDIDATES (MSE_LINEAR + MSE_GEOMETRIC)

static double mse_fraction(size_t k) {
    if (k < MSE_LINEAR) return (double)(k + 1) / MSE_LINEAR;
    /* 2^(-j/8) = 2^-(j/8) * 2^-(j%8 / 8): exact scaling of a correctly
     * rounded constant, the same on every platform (libm's exp2 is not
     * exactly specified) */
    static const double eighth[8] = {1.0, 0x1.d5818dcfba487p-1, 0x1.ae89f995ad3adp-1,
                                     0x1.8ace5422aa0dbp-1, 0x1.6a09e667f3bcdp-1,
                                     0x1.4bfdad5362a27p-1, 0x1.306fe0a31b715p-1,
                                     0x1.172b83c7d517bp-1};
    const size_t j = k - MSE_LINEAR + 1;
    return ldexp(eighth[j % 8], -(int)(j / 8));
}

static void obs_mse(const mm_qstats *s, const mm_qobs_opts *o, double *lo, double *hi) {
    const mm_qhist *h = &s->hist;
    *lo = s->min;
    *hi = s->max;
    if (!(h->hi > h->lo)) return;
    if (o->symmetric) {
        const double A = -s->min > s->max ? -s->min : s->max;
        double best_t = A, best = range_error(h, -A, A, true);
        for (size_t k = 0; k < MSE_CANDIDATES; k++) {
            const double t = A * mse_fraction(k);
            const double e = range_error(h, -t, t, true);
            if (e < best) {
                best = e;
                best_t = t;
            }
        }
        *lo = -best_t;
        *hi = best_t;
    } else {
        const double mn = s->min < 0.0 ? s->min : 0.0, mx = s->max > 0.0 ? s->max : 0.0;
        double a = mn, b = mx, best = range_error(h, a, b, false);
        for (int round = 0; round < 6; round++) {
            bool moved = false;
            if (mx > 0.0)
                for (size_t k = 0; k < MSE_CANDIDATES; k++) {
                    const double c = mx * mse_fraction(k);
                    const double e = range_error(h, a, c, false);
                    if (e < best) {
                        best = e;
                        b = c;
                        moved = true;
                    }
                }
            if (mn < 0.0)
                for (size_t k = 0; k < MSE_CANDIDATES; k++) {
                    const double c = mn * mse_fraction(k);
                    const double e = range_error(h, c, b, false);
                    if (e < best) {
                        best = e;
                        a = c;
                        moved = true;
                    }
                }
            if (!moved) break;
        }
        *lo = a;
        *hi = b;
    }
    clamp_range(s, lo, hi);
}

/* KL divergence between the histogram clipped to bins [s, e) and its
 * quantization into `levels` groups (TensorRT); INFINITY if undefined. */
static double window_kl(const mm_qhist *h, size_t s, size_t e, size_t levels, double *p,
                        double *q) {
    const size_t w = e - s;
    const double *c = h->count;
    double below = 0.0, above = 0.0;
    for (size_t i = 0; i < s; i++) below += c[i];
    for (size_t i = e; i < h->bins; i++) above += c[i];
    for (size_t i = 0; i < w; i++) p[i] = c[s + i];
    p[0] += below;
    p[w - 1] += above;
    for (size_t j = 0; j < levels; j++) {
        const size_t g0 = j * w / levels, g1 = (j + 1) * w / levels;
        double mass = 0.0;
        size_t nz = 0;
        for (size_t i = g0; i < g1; i++) {
            mass += c[s + i];
            nz += p[i] != 0.0;
        }
        for (size_t i = g0; i < g1; i++) q[i] = (p[i] != 0.0 && nz) ? mass / (double)nz : 0.0;
    }
    /* smoothing (MXNet's _smooth_distribution, eps = 1e-4 on counts) */
    const double eps = 1e-4;
    double *dist[2] = {p, q};
    double sum[2] = {0.0, 0.0};
    for (int d = 0; d < 2; d++) {
        size_t zeros = 0;
        for (size_t i = 0; i < w; i++) zeros += dist[d][i] == 0.0;
        if (zeros == w) return INFINITY;
        const double eps1 = eps * (double)zeros / (double)(w - zeros);
        for (size_t i = 0; i < w; i++) {
            dist[d][i] = dist[d][i] == 0.0 ? eps : dist[d][i] - eps1;
            if (!(dist[d][i] > 0.0)) dist[d][i] = eps; /* fractional counts */
            sum[d] += dist[d][i];
        }
    }
    double kl = 0.0;
    for (size_t i = 0; i < w; i++) {
        const double pi = p[i] / sum[0], qi = q[i] / sum[1];
        kl += pi * mm_plog(pi / qi);
    }
    return kl;
}

static size_t search_stride(size_t bins) { return bins > 1024 ? bins / 1024 : 1; }

/* The histogram searched by the entropy observer: |x| (symmetric) or x,
 * with the count of the bin holding 0 replaced by its neighbours' (as
 * NVIDIA's pytorch-quantization does: bins[0] = bins[1]). Relu outputs put
 * a large share of all values at exactly 0; left in, that spike dominates
 * the divergence and drives the window to the narrowest allowed. */
static mm_status entropy_hist(const mm_qstats *s, bool symmetric, mm_qhist *out) {
    mm_status st = MM_OK;
    if (symmetric) {
        st = fold_abs(&s->hist, out);
    } else {
        *out = s->hist;
        out->count = mm_malloc_array(s->hist.bins, sizeof *out->count);
        if (!out->count) return mm_oom("calibration histogram");
        memcpy(out->count, s->hist.count, s->hist.bins * sizeof *out->count);
    }
    if (st != MM_OK || out->bins < 2) return st;
    const size_t z = bin_of(out, 0.0), B = out->bins;
    double c;
    if (z == 0)
        c = out->count[1];
    else if (z + 1 == B)
        c = out->count[z - 1];
    else
        c = 0.5 * (out->count[z - 1] + out->count[z + 1]);
    out->total += c - out->count[z];
    out->count[z] = c;
    return MM_OK;
}

static void obs_entropy(const mm_qstats *s, const mm_qobs_opts *o, double *lo, double *hi) {
    *lo = s->min;
    *hi = s->max;
    if (!(s->hist.hi > s->hist.lo)) return;
    mm_qhist work = {0, 0, 0, NULL, 0};
    if (entropy_hist(s, o->symmetric, &work) != MM_OK) {
        free(work.count);
        return; /* out of memory: min/max */
    }
    const mm_qhist *h = &work;
    const size_t B = h->bins;
    double *p = mm_malloc_array(B, sizeof *p), *q = mm_malloc_array(B, sizeof *q);
    if (!p || !q) goto out;
    size_t levels = o->symmetric ? 128 : 256;
    if (levels > B) levels = B;
    const size_t stride = search_stride(B);
    /* ties go to the wider window (pytorch-quantization's last argmin) */
    if (o->symmetric) {
        size_t best_e = B;
        double best = INFINITY;
        for (size_t e = levels;; e += stride) {
            if (e > B) e = B;
            double kl = window_kl(h, 0, e, levels, p, q);
            if (kl <= best) {
                best = kl;
                best_e = e;
            }
            if (e == B) break;
        }
        const double t = edge(h, best_e);
        *lo = -t;
        *hi = t;
    } else {
        /* window edges must keep 0 inside: s <= z0, e >= z1 */
        const size_t z0 = bin_of(h, 0.0), z1 = z0 + 1;
        size_t bs = 0, be = B;
        double best = window_kl(h, bs, be, levels, p, q);
        for (int round = 0; round < 6; round++) {
            bool moved = false;
            for (size_t e = bs + levels > z1 ? bs + levels : z1; e <= B; e += stride) {
                if (e == be) continue;
                double kl = window_kl(h, bs, e, levels, p, q);
                if (kl < best) {
                    best = kl;
                    be = e;
                    moved = true;
                }
            }
            for (size_t st = 0; st <= z0 && st + levels <= be; st += stride) {
                if (st == bs) continue;
                double kl = window_kl(h, st, be, levels, p, q);
                if (kl < best) {
                    best = kl;
                    bs = st;
                    moved = true;
                }
            }
            if (!moved) break;
        }
        *lo = edge(h, bs);
        *hi = edge(h, be);
    }
    clamp_range(s, lo, hi);
out:
    free(p);
    free(q);
    free(work.count);
}

static const mm_qobserver observers[] = {
    {MM_OBSERVER_MINMAX, "minmax", false, obs_minmax},
    {MM_OBSERVER_MOVING_MINMAX, "moving_minmax", false, obs_moving},
    {MM_OBSERVER_PERCENTILE, "percentile", true, obs_percentile},
    {MM_OBSERVER_MSE, "mse", true, obs_mse},
    {MM_OBSERVER_ENTROPY, "entropy", true, obs_entropy},
};

const mm_qobserver *mm_qobserver_find(mm_quant_observer id) {
    for (size_t i = 0; i < sizeof observers / sizeof observers[0]; i++)
        if (observers[i].id == id) return &observers[i];
    return NULL;
}
