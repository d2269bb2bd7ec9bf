/* SGD with optional momentum and Nesterov momentum: torch.optim.SGD with
 * dampening 0, element by element in float in the same order as PyTorch:
 *
 *   d   = g*s + wd*p          (wd only for parameters with decay; s = clip factor)
 *   buf = momentum*buf + d    (torch's first step sets buf = d; a zeroed buffer
 *                              gives the same value; subnormal buf is flushed
 *                              to 0, see mm_opt_ftz)
 *   d   = nesterov ? d + momentum*buf : buf      (only with momentum > 0)
 *   p   = p + (-lr)*d
 *
 * Without momentum no state is allocated. Nesterov with momentum 0 is refused
 * at step time (MM_E_STATE), since settings may be given in any order. */
#include "optim/optim_internal.h"

enum { SGD_PLAIN = 0, SGD_MOMENTUM = 1, SGD_NESTEROV = 2 };

MM_OPT_INLINE void sgd_body(float *restrict p, const float *restrict g, float *restrict b,
                            size_t n, float nlr, float gs, float wd, float mom, const bool use_wd,
                            const bool use_mom, const bool nesterov) {
#define SGD_ELEM(k)                                  \
    do {                                             \
        float d = g[k] * gs;                         \
        if (use_wd) d = d + wd * p[k];               \
        if (use_mom) {                               \
            float bb = mm_opt_ftz(mom * b[k] + d);   \
            b[k] = bb;                               \
            d = nesterov ? d + mom * bb : bb;        \
        }                                            \
        p[k] = p[k] + nlr * d;                       \
    } while (0)
    size_t i = 0;
    for (; i + MM_VBLOCK <= n; i += MM_VBLOCK)
        for (size_t j = 0; j < MM_VBLOCK; j++) SGD_ELEM(i + j);
    for (; i < n; i++) SGD_ELEM(i);
#undef SGD_ELEM
}

/* One specialised loop per (variant, weight decay) so the element loop has
 * no branches. */
#define SGD_DISPATCH(ctx, p, g, b, n, use_wd)                                                  \
    do {                                                                                       \
        const float nlr_ = (ctx)->neg_lr, gs_ = (ctx)->gscale, wd_ = (ctx)->wd,                \
                    mom_ = (ctx)->c[0];                                                        \
        switch ((ctx)->variant * 2 + ((use_wd) ? 1 : 0)) {                                     \
        case 0: sgd_body(p, g, b, n, nlr_, gs_, wd_, mom_, false, false, false); break;        \
        case 1: sgd_body(p, g, b, n, nlr_, gs_, wd_, mom_, true, false, false); break;         \
        case 2: sgd_body(p, g, b, n, nlr_, gs_, wd_, mom_, false, true, false); break;         \
        case 3: sgd_body(p, g, b, n, nlr_, gs_, wd_, mom_, true, true, false); break;          \
        case 4: sgd_body(p, g, b, n, nlr_, gs_, wd_, mom_, false, true, true); break;          \
        default: sgd_body(p, g, b, n, nlr_, gs_, wd_, mom_, true, true, true); break;          \
        }                                                                                      \
    } while (0)

static void sgd_update_portable(const mm_opt_step_ctx *ctx, float *p, const float *g, float *b,
                                size_t n, bool use_wd) {
    SGD_DISPATCH(ctx, p, g, b, n, use_wd);
}

#if MM_OPT_X86
MM_OPT_AVX2 static void sgd_update_avx2(const mm_opt_step_ctx *ctx, float *p, const float *g,
                                        float *b, size_t n, bool use_wd) {
    SGD_DISPATCH(ctx, p, g, b, n, use_wd);
}
#endif

static void sgd_update(const mm_opt_step_ctx *ctx, float *p, const float *g, float *const *state,
                       size_t n, bool decay) {
    float *b = state ? state[0] : NULL;
    bool use_wd = decay && ctx->wd != 0.0f;
#if MM_OPT_X86
    if (mm_opt_simd_avx2()) {
        sgd_update_avx2(ctx, p, g, b, n, use_wd);
        return;
    }
#endif
    sgd_update_portable(ctx, p, g, b, n, use_wd);
}

static bool sgd_needs_state(const mm_optimizer *opt) { return opt->set[MM_OPT_MOMENTUM] > 0.0; }

static mm_status sgd_validate(const mm_optimizer *opt) {
    if (opt->set[MM_OPT_NESTEROV] != 0.0 && opt->set[MM_OPT_MOMENTUM] == 0.0)
        return mm_error(MM_E_STATE, "nesterov needs momentum > 0 (momentum is 0)");
    return MM_OK;
}

static void sgd_prepare(const mm_optimizer *opt, double lr, uint64_t t, mm_opt_step_ctx *ctx) {
    (void)t;
    ctx->neg_lr = (float)-lr;
    ctx->wd = (float)opt->set[MM_OPT_WEIGHT_DECAY];
    ctx->c[0] = (float)opt->set[MM_OPT_MOMENTUM];
    if (opt->set[MM_OPT_MOMENTUM] == 0.0)
        ctx->variant = SGD_PLAIN;
    else
        ctx->variant = opt->set[MM_OPT_NESTEROV] != 0.0 ? SGD_NESTEROV : SGD_MOMENTUM;
}

static bool sgd_safe(const mm_opt_step_ctx *ctx, double G, double P, const double *S,
                     bool decay, double *P_next, double *S_next) {
    const double lim = MM_OPT_SAFE_LIMIT, lr = fabs((double)ctx->neg_lr),
                 mom = (double)ctx->c[0];
    const double wd = decay ? (double)ctx->wd : 0.0;
    double d = G * (double)ctx->gscale + wd * P;
    S_next[0] = S[0];
    if (!(d < lim)) return false;
    if (ctx->variant != SGD_PLAIN) {
        const double b = mom * S[0] + d;
        if (!(b < lim)) return false;
        S_next[0] = b;
        d = ctx->variant == SGD_NESTEROV ? d + mom * b : b;
        if (!(d < lim)) return false;
    }
    /* p - lr*(g + wd*p) = p*(1 - lr*wd) - lr*g when the step is plain */
    *P_next = ctx->variant == SGD_PLAIN ? fabs(1.0 - lr * wd) * P + lr * G * (double)ctx->gscale
                                        : P + lr * d;
    return P + lr * d < lim;
}

const mm_optim_algo mm_optim_algo_sgd = {
    .kind = MM_OPTIM_SGD,
    .name = "sgd",
    .default_lr = 1e-2,
    .default_weight_decay = 0.0,
    .uses = MM_OPT_BIT(MM_OPT_MOMENTUM) | MM_OPT_BIT(MM_OPT_NESTEROV),
    .n_state = 1,
    .state_names = {"momentum"},
    .needs_state = sgd_needs_state,
    .validate = sgd_validate,
    .prepare = sgd_prepare,
    .update = sgd_update,
    .safe = sgd_safe,
};
