/* Losses over a batch of raw outputs (logits). Gradients are divided by n so
 * they are those of the mean loss, as PyTorch's default reduction. */
#include <math.h>
#include <string.h>

#include "common/pmath.h"
#include "model/model_internal.h"

static const char *const loss_names[] = {"softmax_xent", "mse"};

const char *mm_loss_name(mm_loss loss) {
    if ((unsigned)loss >= sizeof loss_names / sizeof loss_names[0]) return NULL;
    return loss_names[loss];
}

mm_status mm_loss_from_name(const char *name, mm_loss *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (unsigned i = 0; i < sizeof loss_names / sizeof loss_names[0]; i++) {
        if (strcmp(name, loss_names[i]) == 0) {
            *out = (mm_loss)i;
            return MM_OK;
        }
    }
    if (strcmp(name, "xent") == 0 || strcmp(name, "cross_entropy") == 0) {
        *out = MM_LOSS_SOFTMAX_XENT;
        return MM_OK;
    }
    return mm_error(MM_E_INVALID_ARGUMENT, "unknown loss '%s' (expected softmax_xent or mse)",
                    name);
}

static size_t argmax(const float *v, size_t c) {
    size_t best = 0;
    for (size_t j = 1; j < c; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

double mm_loss_compute(mm_loss loss, const float *logits, const int32_t *labels,
                       const float *targets, size_t n, size_t c, float *grad, size_t *correct) {
    double total = 0.0;
    size_t hits = 0;
    const float inv_n = 1.0f / (float)n;
    for (size_t i = 0; i < n; i++) {
        const float *z = logits + i * c;
        float *g = grad ? grad + i * c : NULL;
        if (labels && (size_t)labels[i] == argmax(z, c)) hits++;
        if (loss == MM_LOSS_SOFTMAX_XENT) {
            /* log-sum-exp with the max subtracted: stable for large logits. */
            float zmax = z[0];
            for (size_t j = 1; j < c; j++) zmax = z[j] > zmax ? z[j] : zmax;
            double sum = 0.0;
            for (size_t j = 0; j < c; j++) sum += mm_pexp((double)(z[j] - zmax));
            double lse = mm_plog(sum) + zmax;
            size_t y = (size_t)labels[i];
            total += lse - z[y];
            if (g) {
                for (size_t j = 0; j < c; j++)
                    g[j] = (float)mm_pexp((double)z[j] - lse) * inv_n;
                g[y] -= inv_n;
            }
        } else {
            /* Mean over all n*c elements, as torch.nn.MSELoss. */
            const float scale = 2.0f / (float)(n * c);
            for (size_t j = 0; j < c; j++) {
                float t = targets ? targets[i * c + j] : ((size_t)labels[i] == j ? 1.0f : 0.0f);
                float d = z[j] - t;
                total += (double)d * d / (double)c;
                if (g) g[j] = scale * d;
            }
        }
    }
    if (correct) *correct = hits;
    return total / (double)n;
}
