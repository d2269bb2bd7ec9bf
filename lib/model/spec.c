/* Model specs such as "784-256-128-10:relu" or "4-8-3:tanh,xavier,mse":
 * widths joined by '-', then optional comma-separated options after ':'
 * (a hidden activation, an initialisation "he"/"xavier", a loss name). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

static mm_status parse_options(const char *opts, mm_activation *act, mm_init *init,
                               mm_loss *loss) {
    char buf[256];
    if (strlen(opts) >= sizeof buf)
        return mm_error(MM_E_INVALID_ARGUMENT, "model spec options too long");
    strcpy(buf, opts);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "he") == 0)
            *init = MM_INIT_HE;
        else if (strcmp(tok, "xavier") == 0)
            *init = MM_INIT_XAVIER;
        else if (mm_loss_from_name(tok, loss) == MM_OK)
            continue;
        else if (mm_activation_from_name(tok, act) != MM_OK)
            return mm_error(MM_E_INVALID_ARGUMENT,
                            "model spec option '%s' is not an activation, initialisation (he, "
                            "xavier) or loss (softmax_xent, mse)",
                            tok);
    }
    mm_clear_error();
    return MM_OK;
}

mm_status mm_spec_parse(const char *spec, mm_spec *out) {
    if (!out) return mm_null_arg("out");
    if (!spec) return mm_null_arg("spec");
    size_t *widths = out->widths;
    size_t count = 0;
    const char *p = spec;
    for (;;) {
        if (!isdigit((unsigned char)*p))
            return mm_error(MM_E_INVALID_ARGUMENT,
                            "model spec '%s': expected a layer width at offset %zu (format "
                            "like 784-256-10:relu)",
                            spec, (size_t)(p - spec));
        errno = 0;
        char *end;
        unsigned long long w = strtoull(p, &end, 10);
        if (errno || w == 0 || w > ((size_t)1 << 24))
            return mm_error(MM_E_INVALID_ARGUMENT, "model spec '%s': width at offset %zu must be "
                                                   "in [1, 16777216]",
                            spec, (size_t)(p - spec));
        if (count > MM_SPEC_MAX_LAYERS)
            return mm_error(MM_E_INVALID_ARGUMENT, "model spec '%s': more than %d layers", spec,
                            MM_SPEC_MAX_LAYERS);
        widths[count++] = (size_t)w;
        p = end;
        if (*p == '-') {
            p++;
            continue;
        }
        break;
    }
    if (*p != '\0' && *p != ':')
        return mm_error(MM_E_INVALID_ARGUMENT, "model spec '%s': unexpected '%c' at offset %zu",
                        spec, *p, (size_t)(p - spec));
    if (count < 2)
        return mm_error(MM_E_INVALID_ARGUMENT,
                        "model spec '%s' needs an input width and at least one layer", spec);
    out->count = count;
    out->act = MM_ACT_RELU;
    out->init = MM_INIT_AUTO;
    out->loss = MM_LOSS_SOFTMAX_XENT;
    if (*p == ':') return parse_options(p + 1, &out->act, &out->init, &out->loss);
    return MM_OK;
}

mm_status mm_model_create_from_spec(mm_model **out, const char *spec, uint64_t seed) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    mm_spec sp;
    mm_status st = mm_spec_parse(spec, &sp);
    if (st != MM_OK) return st;
    mm_model *m = NULL;
    st = mm_model_create(&m, sp.widths[0], seed);
    for (size_t i = 1; st == MM_OK && i < sp.count; i++)
        st = mm_model_add_dense_init(m, sp.widths[i], i + 1 == sp.count ? MM_ACT_IDENTITY : sp.act,
                                     sp.init);
    if (st == MM_OK) st = mm_model_set_loss(m, sp.loss);
    if (st != MM_OK) {
        mm_model_free(m);
        return st;
    }
    *out = m;
    return MM_OK;
}
