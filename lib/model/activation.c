/* Activations, applied in place; derivatives are written in terms of the
 * activation's output y so backward needs no saved pre-activations. */
#include <math.h>
#include <string.h>

#include "common/pmath.h"
#include "model/model_internal.h"

static const char *const act_names[] = {"identity", "relu", "leaky_relu", "tanh", "sigmoid"};

const char *mm_activation_name(mm_activation act) {
    if ((unsigned)act >= sizeof act_names / sizeof act_names[0]) return NULL;
    return act_names[act];
}

mm_status mm_activation_from_name(const char *name, mm_activation *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (unsigned i = 0; i < sizeof act_names / sizeof act_names[0]; i++) {
        if (strcmp(name, act_names[i]) == 0) {
            *out = (mm_activation)i;
            return MM_OK;
        }
    }
    if (strcmp(name, "linear") == 0 || strcmp(name, "none") == 0) {
        *out = MM_ACT_IDENTITY;
        return MM_OK;
    }
    if (strcmp(name, "leaky") == 0 || strcmp(name, "leakyrelu") == 0) {
        *out = MM_ACT_LEAKY_RELU;
        return MM_OK;
    }
    return mm_error(MM_E_INVALID_ARGUMENT,
                    "unknown activation '%s' (expected identity, relu, leaky_relu, tanh or sigmoid)",
                    name);
}

void mm_activation_forward(mm_activation act, float slope, float *y, size_t count) {
    switch (act) {
    case MM_ACT_IDENTITY:
        break;
    case MM_ACT_RELU:
        for (size_t i = 0; i < count; i++) y[i] = y[i] < 0.0f ? 0.0f : y[i]; /* NaN stays */
        break;
    case MM_ACT_LEAKY_RELU:
        for (size_t i = 0; i < count; i++) y[i] = y[i] > 0.0f ? y[i] : slope * y[i];
        break;
    case MM_ACT_TANH:
        for (size_t i = 0; i < count; i++) y[i] = mm_ptanhf(y[i]);
        break;
    case MM_ACT_SIGMOID:
        for (size_t i = 0; i < count; i++) y[i] = 1.0f / (1.0f + mm_pexpf(-y[i]));
        break;
    }
}

/* restrict (y and dy never overlap) lets the compiler vectorise the loops. */
void mm_activation_backward(mm_activation act, float slope, const float *restrict y,
                            float *restrict dy, size_t count) {
    switch (act) {
    case MM_ACT_IDENTITY:
        break;
    case MM_ACT_RELU:
        /* a select, which vectorises to compare + and */
        for (size_t i = 0; i < count; i++) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case MM_ACT_LEAKY_RELU:
        /* slope >= 0, so y > 0 exactly when the pre-activation was > 0. */
        for (size_t i = 0; i < count; i++) dy[i] *= y[i] > 0.0f ? 1.0f : slope;
        break;
    case MM_ACT_TANH:
        for (size_t i = 0; i < count; i++) dy[i] *= 1.0f - y[i] * y[i];
        break;
    case MM_ACT_SIGMOID:
        for (size_t i = 0; i < count; i++) dy[i] *= y[i] * (1.0f - y[i]);
        break;
    }
}
