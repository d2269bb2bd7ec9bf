/* Names of the values of enum-valued settings (an optimizer's schedule
 * "cosine", a quantizer's observer "entropy", ...): the one lookup behind
 * every module's public mm_<object>_value_from_name / mm_<object>_value_name,
 * so that bindings, the CLI and UIs take names without name tables of their
 * own, and an unknown name gets the same message (listing the valid names)
 * everywhere. Header-only; never installed. */
#ifndef MM_VALUE_NAMES_H
#define MM_VALUE_NAMES_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/mm_internal.h"

/* The static name of value v (in a setting's range lo..hi) of an
 * enum-valued setting, or NULL when v has no name. */
typedef const char *(*mm_value_name_fn)(int v);

/* Name of `value` of a setting whose values lo..hi are named by name_of
 * (NULL: the setting takes plain numbers): NULL unless value is integral,
 * in range and named. Pure, thread-safe. */
static inline const char *mm_value_name_lookup(mm_value_name_fn name_of, int lo, int hi,
                                               double value) {
    if (!name_of || !(value >= lo && value <= hi) || value != floor(value)) return NULL;
    return name_of((int)value);
}

/* The number `name` stands for among the values lo..hi named by name_of,
 * into *out. `what` names the setting in messages ("optimizer setting
 * schedule"). MM_E_UNSUPPORTED when name_of is NULL (the setting takes
 * numbers), MM_E_INVALID_ARGUMENT listing the valid names when `name` is
 * none of them, or for NULL pointers. */
static inline mm_status mm_value_from_name_lookup(const char *what, mm_value_name_fn name_of,
                                                  int lo, int hi, const char *name,
                                                  double *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("value");
    if (!name_of)
        return mm_error(MM_E_UNSUPPORTED, "%s takes a number, not a name ('%s')", what, name);
    for (int v = lo; v <= hi; v++) {
        const char *n = name_of(v);
        if (n && strcmp(n, name) == 0) {
            *out = (double)v;
            return MM_OK;
        }
    }
    char list[256] = "";
    size_t len = 0;
    for (int v = lo; v <= hi; v++) {
        const char *n = name_of(v);
        if (!n) continue;
        int k = snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", n);
        if (k < 0 || (size_t)k >= sizeof list - len) break;
        len += (size_t)k;
    }
    return mm_error(MM_E_INVALID_ARGUMENT, "unknown value '%s' for %s (valid: %s)", name, what,
                    list);
}

#endif
