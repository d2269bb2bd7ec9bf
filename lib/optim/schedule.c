/* Learning-rate schedules: the lr of the update that follows `step` updates
 * (step = 0 for the first update). Pure functions of the settings and the
 * step counter, computed in double once per update.
 *
 *   constant     lr
 *   step         lr * gamma^floor(step / step_size)
 *   exponential  lr * gamma^step
 *   cosine       warmup W, horizon T, floor min_lr:
 *                  step <  W      lr * (step + 1) / W   (linear; the first update
 *                                                       uses lr/W, update W-1 uses lr)
 *                  W <= step < T  min_lr + (lr - min_lr) * (1 + cos(pi * (step - W) / (T - W))) / 2
 *                  step >= T      min_lr
 *                T is MM_OPT_TOTAL_STEPS, or when that is 0 the horizon derived
 *                by the last mm_optimizer_fit (steps done before that fit +
 *                epochs * batches per epoch, so the decay ends with the fit). With
 *                neither (online learning only), lr stays at lr after warmup.
 */
#include <math.h>

#include "common/pmath.h"
#include "optim/optim_internal.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

double mm_opt_schedule_lr(const mm_optimizer *opt, uint64_t step) {
    const double lr = opt->set[MM_OPT_LEARNING_RATE];
    switch ((int)opt->set[MM_OPT_SCHEDULE]) {
    case MM_SCHEDULE_STEP: {
        uint64_t size = (uint64_t)opt->set[MM_OPT_STEP_SIZE];
        return lr * mm_ppow(opt->set[MM_OPT_GAMMA], (double)(step / (size ? size : 1)));
    }
    case MM_SCHEDULE_EXPONENTIAL:
        return lr * mm_ppow(opt->set[MM_OPT_GAMMA], (double)step);
    case MM_SCHEDULE_COSINE: {
        const uint64_t warmup = (uint64_t)opt->set[MM_OPT_WARMUP_STEPS];
        uint64_t total = (uint64_t)opt->set[MM_OPT_TOTAL_STEPS];
        if (total == 0) total = opt->sched_total;
        const double min_lr = opt->set[MM_OPT_MIN_LR];
        if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
        if (total == 0) return lr;
        if (step >= total) return min_lr;
        /* here warmup <= step < total */
        double progress = (double)(step - warmup) / (double)(total - warmup);
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + mm_pcos2pi(0.5 * progress)); /* cos(pi p) */
    }
    default:
        return lr;
    }
}
