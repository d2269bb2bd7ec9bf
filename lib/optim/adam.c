/* Adam (torch.optim.Adam: weight decay added to the gradient as L2) and
 * AdamW (torch.optim.AdamW: decoupled decay p *= 1 - lr*wd before the
 * update), element by element in float:
 *
 *   g  = g*s (+ wd*p for Adam, decay parameters only; s = clip factor)
 *   p  = p * (1 - lr*wd)                     (AdamW, decay parameters only)
 *   m  = m*beta1 + (1-beta1)*g               (subnormal m, v flushed to 0:
 *   v  = v*beta2 + (1-beta2)*g*g              see mm_opt_ftz)
 *   p  = p + (-step_size*c2)*m / (sqrt(v) + eps*c2),   c2 = sqrt(1 - beta2^t)
 *
 * with step_size = lr / (1 - beta1^t), t the 1-based update count, and the
 * per-step scalars computed in double. PyTorch writes the last line as
 * p - step_size * m / (sqrt(v)/c2 + eps); multiplying numerator and
 * denominator by c2 is the same value (eps is still added after the square
 * root of the bias-corrected v) with one division per element instead of
 * two, which matters because the loop is bound by divider throughput.
 * Results agree with PyTorch to a few ulp (tests/data/optim_golden.txt). */
#include <float.h>
#include <math.h>

#include "common/pmath.h"
#include "optim/optim_internal.h"

#if MM_OPT_X86
#include <immintrin.h>
#endif

/* ctx->c: beta1, 1-beta1, beta2, 1-beta2, eps*c2, unused, AdamW decay factor
 * (1 - lr*wd), AdamW decay on; ctx->neg_lr = -step_size*c2; ctx->wd = L2
 * coefficient (Adam). */
#define ADAM_ELEM(k)                                        \
    do {                                                    \
        float gi = g[k] * gs;                               \
        float pk = p[k];                                    \
        if (l2) gi = gi + wd * pk;                          \
        if (decoupled) pk = pk * dfac;                      \
        float mk = mm_opt_ftz(m[k] * b1 + omb1 * gi);       \
        float vk = mm_opt_ftz(v[k] * b2 + omb2 * gi * gi);  \
        m[k] = mk;                                          \
        v[k] = vk;                                          \
        float den = sqrtf(vk) + epsc;                       \
        p[k] = pk + nss * mk / den;                         \
    } while (0)

#define ADAM_LOCALS(ctx)                                                                       \
    const float gs = (ctx)->gscale, wd = (ctx)->wd, nss = (ctx)->neg_lr, b1 = (ctx)->c[0],     \
                omb1 = (ctx)->c[1], b2 = (ctx)->c[2], omb2 = (ctx)->c[3], epsc = (ctx)->c[4],   \
                dfac = (ctx)->c[6]

MM_OPT_INLINE void adam_body(const mm_opt_step_ctx *ctx, float *restrict p,
                             const float *restrict g, float *restrict m, float *restrict v,
                             size_t n, const bool l2, const bool decoupled) {
    ADAM_LOCALS(ctx);
    /* sqrtf may set errno, which keeps compilers from vectorising this loop;
     * the AVX2 copy below uses intrinsics instead. */
    for (size_t i = 0; i < n; i++) ADAM_ELEM(i);
}

static void adam_portable(const mm_opt_step_ctx *ctx, float *p, const float *g, float *m,
                          float *v, size_t n, bool l2, bool decoupled) {
    if (l2)
        adam_body(ctx, p, g, m, v, n, true, false);
    else if (decoupled)
        adam_body(ctx, p, g, m, v, n, false, true);
    else
        adam_body(ctx, p, g, m, v, n, false, false);
}

#if MM_OPT_X86
/* The same operations in the same order, eight lanes at a time (vsqrtps and
 * vdivps are correctly rounded like sqrtf and '/'), so results are
 * bit-identical to the portable loop. */
MM_OPT_INLINE __attribute__((target("avx2"))) void adam_avx2_body(
    const mm_opt_step_ctx *ctx, float *restrict p, const float *restrict g, float *restrict m,
    float *restrict v, size_t n, const bool l2, const bool decoupled) {
    ADAM_LOCALS(ctx);
    const __m256 vgs = _mm256_set1_ps(gs), vwd = _mm256_set1_ps(wd), vnss = _mm256_set1_ps(nss),
                 vb1 = _mm256_set1_ps(b1), vomb1 = _mm256_set1_ps(omb1),
                 vb2 = _mm256_set1_ps(b2), vomb2 = _mm256_set1_ps(omb2),
                 vepsc = _mm256_set1_ps(epsc), vtiny = _mm256_set1_ps(FLT_MIN),
                 vsign = _mm256_set1_ps(-0.0f),
                 vdfac = _mm256_set1_ps(dfac);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), vgs);
        __m256 pk = _mm256_loadu_ps(p + i);
        if (l2) gi = _mm256_add_ps(gi, _mm256_mul_ps(vwd, pk));
        if (decoupled) pk = _mm256_mul_ps(pk, vdfac);
        __m256 mk = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), vb1),
                                  _mm256_mul_ps(vomb1, gi));
        __m256 vk = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), vb2),
                                  _mm256_mul_ps(_mm256_mul_ps(vomb2, gi), gi));
        /* flush subnormals: x = |x| < FLT_MIN ? 0 : x */
        mk = _mm256_andnot_ps(_mm256_cmp_ps(_mm256_andnot_ps(vsign, mk), vtiny, _CMP_LT_OQ), mk);
        vk = _mm256_andnot_ps(_mm256_cmp_ps(_mm256_andnot_ps(vsign, vk), vtiny, _CMP_LT_OQ), vk);
        _mm256_storeu_ps(m + i, mk);
        _mm256_storeu_ps(v + i, vk);
        __m256 den = _mm256_add_ps(_mm256_sqrt_ps(vk), vepsc);
        _mm256_storeu_ps(p + i, _mm256_add_ps(pk, _mm256_div_ps(_mm256_mul_ps(vnss, mk), den)));
    }
    for (; i < n; i++) ADAM_ELEM(i);
}

__attribute__((target("avx2"))) static void adam_avx2(const mm_opt_step_ctx *ctx, float *p,
                                                      const float *g, float *m, float *v,
                                                      size_t n, bool l2, bool decoupled) {
    if (l2)
        adam_avx2_body(ctx, p, g, m, v, n, true, false);
    else if (decoupled)
        adam_avx2_body(ctx, p, g, m, v, n, false, true);
    else
        adam_avx2_body(ctx, p, g, m, v, n, false, false);
}
#endif

static void adam_update_common(const mm_opt_step_ctx *ctx, float *p, const float *g,
                               float *const *state, size_t n, bool l2, bool decoupled) {
#if MM_OPT_X86
    if (mm_opt_simd_avx2()) {
        adam_avx2(ctx, p, g, state[0], state[1], n, l2, decoupled);
        return;
    }
#endif
    adam_portable(ctx, p, g, state[0], state[1], n, l2, decoupled);
}

static void adam_update(const mm_opt_step_ctx *ctx, float *p, const float *g,
                        float *const *state, size_t n, bool decay) {
    adam_update_common(ctx, p, g, state, n, decay && ctx->wd != 0.0f, false);
}

static void adamw_update(const mm_opt_step_ctx *ctx, float *p, const float *g,
                         float *const *state, size_t n, bool decay) {
    adam_update_common(ctx, p, g, state, n, false, decay && ctx->c[7] != 0.0f);
}

static void adam_prepare_common(const mm_optimizer *opt, double lr, uint64_t t,
                                mm_opt_step_ctx *ctx) {
    const double b1 = opt->set[MM_OPT_BETA1], b2 = opt->set[MM_OPT_BETA2];
    const double bc1 = 1.0 - mm_ppow(b1, (double)t);
    const double bc2 = 1.0 - mm_ppow(b2, (double)t);
    const double c2 = sqrt(bc2);
    ctx->neg_lr = (float)(-(lr / bc1) * c2);
    ctx->c[0] = (float)b1;
    ctx->c[1] = (float)(1.0 - b1);
    ctx->c[2] = (float)b2;
    ctx->c[3] = (float)(1.0 - b2);
    ctx->c[4] = (float)(opt->set[MM_OPT_EPSILON] * c2);
    ctx->c[5] = 0.0f;
    ctx->c[6] = 1.0f;
    ctx->c[7] = 0.0f;
}

static void adam_prepare(const mm_optimizer *opt, double lr, uint64_t t, mm_opt_step_ctx *ctx) {
    adam_prepare_common(opt, lr, t, ctx);
    ctx->wd = (float)opt->set[MM_OPT_WEIGHT_DECAY];
}

static void adamw_prepare(const mm_optimizer *opt, double lr, uint64_t t, mm_opt_step_ctx *ctx) {
    adam_prepare_common(opt, lr, t, ctx);
    const double wd = opt->set[MM_OPT_WEIGHT_DECAY];
    ctx->wd = 0.0f;
    ctx->c[6] = (float)(1.0 - lr * wd);
    ctx->c[7] = wd != 0.0 ? 1.0f : 0.0f; /* decoupled decay on */
}

/* Bounds of every value the element loop computes (see ADAM_ELEM). */
static bool adam_safe(const mm_opt_step_ctx *ctx, double G, double P, const double *S,
                      bool decay, double *P_next, double *S_next) {
    const double lim = MM_OPT_SAFE_LIMIT;
    const bool l2 = decay && ctx->wd != 0.0f, decoupled = decay && ctx->c[7] != 0.0f;
    const double gi = G * (double)ctx->gscale + (l2 ? (double)ctx->wd * P : 0.0);
    const double p1 = decoupled ? P * fabs((double)ctx->c[6]) : P;
    const double m = (double)ctx->c[0] * S[0] + (double)ctx->c[1] * gi;
    const double v = (double)ctx->c[2] * S[1] + (double)ctx->c[3] * gi * gi;
    const double num = fabs((double)ctx->neg_lr) * m;
    const double epsc = (double)ctx->c[4];
    if (!(gi < lim && p1 < lim && m < lim && v < lim && num < lim && epsc > 0.0)) return false;
    *P_next = p1 + num / epsc;
    S_next[0] = m;
    S_next[1] = v;
    return *P_next < lim;
}

#define ADAM_USES                                                                              \
    (MM_OPT_BIT(MM_OPT_BETA1) | MM_OPT_BIT(MM_OPT_BETA2) | MM_OPT_BIT(MM_OPT_EPSILON))

const mm_optim_algo mm_optim_algo_adam = {
    .kind = MM_OPTIM_ADAM,
    .name = "adam",
    .default_lr = 1e-3,
    .default_weight_decay = 0.0,
    .uses = ADAM_USES,
    .n_state = 2,
    .state_names = {"m", "v"},
    .state_nonneg = {false, true},
    .prepare = adam_prepare,
    .update = adam_update,
    .safe = adam_safe,
};

const mm_optim_algo mm_optim_algo_adamw = {
    .kind = MM_OPTIM_ADAMW,
    .name = "adamw",
    .default_lr = 1e-3,
    .default_weight_decay = 1e-2,
    .uses = ADAM_USES,
    .n_state = 2,
    .state_names = {"m", "v"},
    .state_nonneg = {false, true},
    .prepare = adamw_prepare,
    .update = adamw_update,
    .safe = adam_safe,
};
