/* Import and export of model weights as plain safetensors files
 * (include/mm/mm_safetensors.h, doc/FORMAT.md §9).
 *
 * The container is mmaint's own model-file code (model/mmfile.c): one
 * validating reader (header length, JSON, offsets tiling the data block,
 * dtypes, shapes; the CRC only for mmaint files) and one atomic writer
 * (temporary file, fsync, rename), here in its plain mode. This file adds
 * what is specific to foreign files: where the architecture comes from
 * (a spec string or the "architecture" metadata), which tensor belongs to
 * which layer (the `names` conventions), dtype conversion, and densifying
 * every layer kind on export. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "mm/mm_safetensors.h"
#include "model/mmfile.h"

#define ST_DEFAULT_NAMES "layers.{i}"

/* What to build: the architecture, from a spec or from the metadata. */
typedef struct plan_layer {
    size_t in, out;
    mm_activation act;
} plan_layer;

typedef struct plan {
    size_t input_dim;
    mm_loss loss;
    float leaky_slope;
    uint64_t seed;
    bool have_rng;
    mm_rng rng;
    size_t n;
    plan_layer layers[MM_SPEC_MAX_LAYERS + 1];
} plan;

/* ------------------------------------------------------------------------
 * Layer prefixes: "layers.{i}", "net.{seq}", "fc1,fc2,out"
 * ---------------------------------------------------------------------- */

typedef struct prefixes {
    char **p; /* n strings (owned) */
    size_t n;
} prefixes;

static void prefixes_free(prefixes *x) {
    for (size_t i = 0; x->p && i < x->n; i++) free(x->p[i]);
    free(x->p);
    x->p = NULL;
    x->n = 0;
}

static mm_status prefixes_alloc(prefixes *x, size_t n) {
    x->p = mm_calloc_array(n ? n : 1, sizeof *x->p);
    x->n = n;
    return x->p ? MM_OK : mm_oom("tensor names");
}

/* "{i}" = layer index, "{seq}" = index of the layer's Linear module in a
 * PyTorch nn.Sequential(Linear, act, Linear, act, ..., Linear). */
static mm_status expand_pattern(const char *pattern, const mm_activation *acts, size_t n,
                                prefixes *x) {
    if (strchr(pattern, ','))
        return mm_error(MM_E_INVALID_ARGUMENT,
                        "tensor names \"%s\": a pattern with {i} or {seq} cannot contain ','",
                        pattern);
    mm_status st = prefixes_alloc(x, n);
    if (st != MM_OK) return st;
    size_t seq = 0;
    for (size_t i = 0; i < n; i++) {
        size_t cap = strlen(pattern) * 8 + 32, len = 0; /* each {..} grows by at most 20 */
        char *s = malloc(cap);
        if (!s) return mm_oom("tensor names");
        x->p[i] = s;
        for (const char *c = pattern; *c;) {
            unsigned long long v;
            if (strncmp(c, "{i}", 3) == 0) {
                v = i;
                c += 3;
            } else if (strncmp(c, "{seq}", 5) == 0) {
                v = seq;
                c += 5;
            } else if (*c == '{' || *c == '}') {
                return mm_error(MM_E_INVALID_ARGUMENT,
                                "tensor names \"%s\": unknown placeholder at offset %zu (use {i} "
                                "or {seq})",
                                pattern, (size_t)(c - pattern));
            } else {
                s[len++] = *c++;
                continue;
            }
            len += (size_t)snprintf(s + len, cap - len, "%llu", v);
        }
        s[len] = '\0';
        seq += acts[i] == MM_ACT_IDENTITY ? 1 : 2;
    }
    return MM_OK;
}

static mm_status split_list(const char *list, size_t n, prefixes *x, const char *what) {
    size_t count = 1;
    for (const char *c = list; *c; c++) count += *c == ',';
    if (count != n)
        return mm_error(MM_E_INVALID_ARGUMENT, "%s \"%.200s\" name %zu layer%s, the model has %zu",
                        what, list, count, count == 1 ? "" : "s", n);
    mm_status st = prefixes_alloc(x, n);
    if (st != MM_OK) return st;
    const char *c = list;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(c, ',');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        if (len == 0)
            return mm_error(MM_E_INVALID_ARGUMENT, "%s \"%.200s\": name %zu is empty", what, list,
                            i);
        x->p[i] = malloc(len + 1);
        if (!x->p[i]) return mm_oom("tensor names");
        memcpy(x->p[i], c, len);
        x->p[i][len] = '\0';
        c = end ? end + 1 : c + len;
    }
    return MM_OK;
}

/* Prefixes from a `names` string (pattern or list); distinct. */
static mm_status parse_names(const char *names, const mm_activation *acts, size_t n, prefixes *x,
                             const char *what) {
    mm_status st = strchr(names, '{') || strchr(names, '}') ? expand_pattern(names, acts, n, x)
                                                             : split_list(names, n, x, what);
    for (size_t i = 0; st == MM_OK && i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(x->p[i], x->p[j]) == 0)
                st = mm_error(MM_E_INVALID_ARGUMENT,
                              "%s \"%.200s\": layers %zu and %zu would both be \"%s\"", what,
                              names, j, i, x->p[i]);
    if (st != MM_OK) prefixes_free(x);
    return st;
}

static char *tensor_name(const char *prefix, const char *param) {
    size_t len = strlen(prefix) + strlen(param) + 2;
    char *s = malloc(len);
    if (s) snprintf(s, len, "%s.%s", prefix, param);
    return s;
}

/* ------------------------------------------------------------------------
 * Import
 * ---------------------------------------------------------------------- */

static mm_status plan_from_spec(const char *arch, plan *p) {
    mm_spec sp;
    mm_status st = mm_spec_parse(arch, &sp);
    if (st != MM_OK) return st;
    p->input_dim = sp.widths[0];
    p->loss = sp.loss;
    p->leaky_slope = 0.01f; /* mm_model_create's default */
    p->seed = 0;
    p->n = sp.count - 1;
    for (size_t i = 0; i < p->n; i++)
        p->layers[i] = (plan_layer){sp.widths[i], sp.widths[i + 1],
                                    i + 1 == p->n ? MM_ACT_IDENTITY : sp.act};
    return MM_OK;
}

static mm_status plan_from_file(const mm_file *f, plan *p) {
    mm_file_arch a;
    mm_status st = mm_file_parse_architecture(f, &a);
    if (st != MM_OK) return st;
    if (a.n_layers > MM_SPEC_MAX_LAYERS + 1) {
        st = mm_error(MM_E_UNSUPPORTED, "architecture has %zu layers (at most %d imported)",
                      a.n_layers, MM_SPEC_MAX_LAYERS + 1);
        goto done;
    }
    for (size_t i = 0; i < a.n_layers; i++)
        if (!(a.layers[i].kind->caps & MM_CAP_DENSE_WEIGHTS)) {
            st = mm_error(MM_E_UNSUPPORTED,
                          "architecture: layer %zu is of kind %s; import reads dense weight and "
                          "bias tensors only (load mmaint files with mm_model_load)",
                          i, a.layers[i].kind->kind);
            goto done;
        }
    p->input_dim = a.input_dim;
    p->loss = a.loss;
    p->leaky_slope = a.leaky_slope;
    p->seed = a.seed;
    p->have_rng = a.have_rng;
    p->rng = a.rng;
    p->n = a.n_layers;
    for (size_t i = 0; i < a.n_layers; i++)
        p->layers[i] = (plan_layer){a.layers[i].in, a.layers[i].out, a.layers[i].act};
done:
    mm_file_arch_free(&a);
    return st;
}

/* A "<prefix><number>.weight" tensor, for the automatic convention. */
typedef struct family_entry {
    const char *name; /* the tensor name (borrowed from the file) */
    size_t prefix_len;
    size_t stem_len; /* name without ".weight" */
    unsigned long num;
} family_entry;

static int cmp_family(const void *a, const void *b) {
    const family_entry *x = a, *y = b;
    size_t n = x->prefix_len < y->prefix_len ? x->prefix_len : y->prefix_len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    if (x->prefix_len != y->prefix_len) return x->prefix_len < y->prefix_len ? -1 : 1;
    return x->num < y->num ? -1 : x->num > y->num;
}

/* Exactly one family "<p><number>.weight" of 2-d tensors with n members:
 * its stems in numeric order. */
static mm_status detect_family(const mm_file *f, size_t n, prefixes *x) {
    size_t nt = mm_file_tensor_count(f), ne = 0;
    family_entry *e = mm_malloc_array(nt ? nt : 1, sizeof *e);
    if (!e) return mm_oom("tensor names");
    static const char suffix[] = ".weight";
    const size_t sl = sizeof suffix - 1;
    for (size_t i = 0; i < nt; i++) {
        const char *name = mm_file_tensor_name(f, i);
        size_t len = strlen(name);
        if (len <= sl || strcmp(name + len - sl, suffix) != 0) continue;
        size_t stem = len - sl, d = stem;
        while (d > 0 && name[d - 1] >= '0' && name[d - 1] <= '9') d--;
        if (d == stem || stem - d > 9) continue; /* no number, or absurdly long */
        if (stem - d > 1 && name[d] == '0') continue; /* "01": not a module index */
        size_t ndim = 0;
        if (mm_file_tensor_shape(f, name, NULL, NULL, &ndim) != MM_OK || ndim != 2) continue;
        e[ne++] = (family_entry){name, d, stem, strtoul(name + d, NULL, 10)};
    }
    qsort(e, ne, sizeof *e, cmp_family);
    size_t found = 0, start = 0, nfam = 0;
    char seen[512] = "";
    size_t slen = 0;
    for (size_t i = 0; i < ne;) {
        size_t j = i + 1;
        while (j < ne && e[j].prefix_len == e[i].prefix_len &&
               memcmp(e[j].name, e[i].name, e[i].prefix_len) == 0)
            j++;
        if (slen + 64 < sizeof seen)
            slen += (size_t)snprintf(seen + slen, sizeof seen - slen, "%s\"%.*s<n>.weight\" x%zu",
                                     nfam ? ", " : "", (int)e[i].prefix_len, e[i].name, j - i);
        nfam++;
        if (j - i == n) {
            found++;
            start = i;
        }
        i = j;
    }
    mm_status st = MM_OK;
    if (found != 1) {
        st = mm_error(MM_E_FORMAT,
                      "cannot tell which tensors hold the weights of %zu layer(s): %s (found "
                      "%s); give the tensor names (a pattern such as \"layers.{i}\" or a list "
                      "such as \"fc1,fc2\")",
                      n,
                      found ? "several families of numbered 2-d .weight tensors fit"
                            : "no family \"<prefix><number>.weight\" of 2-d tensors has one per "
                              "layer",
                      nfam ? seen : "none");
    } else {
        st = prefixes_alloc(x, n);
        for (size_t k = 0; st == MM_OK && k < n; k++) {
            const family_entry *fe = &e[start + k];
            x->p[k] = malloc(fe->stem_len + 1);
            if (!x->p[k]) {
                st = mm_oom("tensor names");
                break;
            }
            memcpy(x->p[k], fe->name, fe->stem_len);
            x->p[k][fe->stem_len] = '\0';
        }
        if (st != MM_OK) prefixes_free(x);
    }
    free(e);
    return st;
}

/* Which tensors hold the layers: explicit names, the names the exporter
 * recorded, mmaint's own, or the one numbered family. */
static mm_status resolve_prefixes(const mm_file *f, const plan *p, const char *names,
                                  prefixes *x) {
    mm_activation acts[MM_SPEC_MAX_LAYERS + 1];
    for (size_t i = 0; i < p->n; i++) acts[i] = p->layers[i].act;
    if (names && *names) return parse_names(names, acts, p->n, x, "tensor names");
    const char *recorded = mm_file_meta(f, "layer_names");
    if (recorded) {
        mm_status st = parse_names(recorded, acts, p->n, x, "__metadata__.layer_names");
        return st == MM_E_INVALID_ARGUMENT ? MM_E_FORMAT : st;
    }
    bool own = true;
    for (size_t i = 0; own && i < p->n; i++) {
        char name[64];
        snprintf(name, sizeof name, "layers.%zu.weight", i);
        own = mm_file_has_tensor(f, name);
    }
    if (own) return parse_names(ST_DEFAULT_NAMES, acts, p->n, x, "tensor names");
    return detect_family(f, p->n, x);
}

/* Presence, dtype and shape of every layer tensor (before allocating),
 * then that no other tensor is left over. */
static mm_status check_tensors(const mm_file *f, const plan *p, char *const *wn,
                               char *const *bn, bool allow_extra) {
    for (size_t i = 0; i < p->n; i++) {
        const plan_layer *l = &p->layers[i];
        for (int k = 0; k < 2; k++) {
            const char *name = k ? bn[i] : wn[i];
            mm_status st = mm_file_read_float(f, name, l->out, k ? 1 : l->in, true, NULL);
            if (st == MM_E_NOT_FOUND)
                return mm_error(MM_E_FORMAT, "tensor %s is missing (layer %zu: %zu -> %zu needs "
                                             "%s %s)",
                                name, i, l->in, l->out, k ? "bias" : "weight",
                                k ? "[out]" : "[out, in]");
            if (st == MM_E_SHAPE) st = MM_E_FORMAT; /* the architecture disagrees */
            if (st != MM_OK) return st;
        }
    }
    if (allow_extra) return MM_OK;
    size_t nt = mm_file_tensor_count(f);
    for (size_t t = 0; t < nt; t++) {
        const char *name = mm_file_tensor_name(f, t);
        bool used = false;
        for (size_t i = 0; !used && i < p->n; i++)
            used = strcmp(name, wn[i]) == 0 || strcmp(name, bn[i]) == 0;
        if (!used)
            return mm_error(MM_E_FORMAT,
                            "tensor %s belongs to no layer (%zu tensors, %zu layers; allow extra "
                            "tensors to ignore it)",
                            name, nt, p->n);
    }
    return MM_OK;
}

static mm_status build(const mm_file *f, const plan *p, char *const *wn, char *const *bn,
                       bool round_f64, mm_model **out) {
    mm_model *m = NULL;
    mm_status st = mm_model_create(&m, p->input_dim, p->seed);
    if (st != MM_OK) return st;
    m->loss = p->loss;
    m->leaky_slope = p->leaky_slope;
    if (p->have_rng) m->init_rng = p->rng;
    for (size_t i = 0; i < p->n && st == MM_OK; i++) {
        const plan_layer *pl = &p->layers[i];
        mm_layer *l = NULL;
        st = mm_dense_create(&l, pl->in, pl->out, pl->act, p->leaky_slope, MM_INIT_AUTO, NULL);
        if (st == MM_OK) st = mm_file_read_float(f, wn[i], pl->out, pl->in, round_f64, l->params[0].data);
        if (st == MM_OK) st = mm_file_read_float(f, bn[i], pl->out, 1, round_f64, l->params[1].data);
        if (st == MM_OK) st = mm_model_push_layer(m, l);
        if (st != MM_OK && l) l->vt->destroy(l);
    }
    const char *lineage = mm_file_meta(f, "lineage");
    if (st == MM_OK && lineage) {
        st = mm_lineage_set(m, lineage);
        if (st != MM_OK) st = mm_error_prefix(MM_E_FORMAT, "__metadata__.lineage");
    }
    if (st != MM_OK) {
        mm_model_free(m);
        return st;
    }
    *out = m;
    return MM_OK;
}

static mm_status add_import_event(mm_model *m, const char *path, const char *arch,
                                  const char *names) {
    json_t *d = json_object();
    char *text = NULL;
    if (d) {
        json_object_set_new(d, "format", json_string("safetensors"));
        if (path) json_object_set_new(d, "file", json_string(path));
        if (arch) json_object_set_new(d, "arch", json_string(arch));
        if (names && *names) json_object_set_new(d, "names", json_string(names));
        text = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(d);
    }
    if (!text) return mm_oom("lineage event");
    mm_status st = mm_lineage_append(m, "import", text);
    free(text);
    return st;
}

static mm_status import_file(mm_model **out, const mm_file *f, const char *path,
                             const char *arch, const char *names, unsigned flags) {
    mm_model *m = NULL;
    mm_status st;
    const char *fmt = mm_file_meta(f, "format");
    bool mmaint_file = fmt && strcmp(fmt, "mmaint") == 0;
    if (mmaint_file && !arch && !(names && *names)) {
        st = mm_file_build_model(f, &m);
    } else {
        plan p;
        memset(&p, 0, sizeof p);
        if (arch)
            st = plan_from_spec(arch, &p);
        else if (mm_file_meta(f, "architecture"))
            st = plan_from_file(f, &p);
        else
            st = mm_error(MM_E_INVALID_ARGUMENT,
                          "the file records no architecture (__metadata__.architecture): give "
                          "one as a model spec such as \"784-256-128-10:relu\"");
        if (st != MM_OK) return st;
        prefixes x = {0}, wn = {0}, bn = {0};
        st = resolve_prefixes(f, &p, names, &x);
        if (st == MM_OK) st = prefixes_alloc(&wn, p.n);
        if (st == MM_OK) st = prefixes_alloc(&bn, p.n);
        for (size_t i = 0; st == MM_OK && i < p.n; i++) {
            wn.p[i] = tensor_name(x.p[i], "weight");
            bn.p[i] = tensor_name(x.p[i], "bias");
            if (!wn.p[i] || !bn.p[i]) st = mm_oom("tensor names");
        }
        if (st == MM_OK) st = check_tensors(f, &p, wn.p, bn.p, flags & MM_SAFETENSORS_ALLOW_EXTRA);
        if (st == MM_OK) st = build(f, &p, wn.p, bn.p, flags & MM_SAFETENSORS_ROUND_F64, &m);
        prefixes_free(&x);
        prefixes_free(&wn);
        prefixes_free(&bn);
    }
    if (st == MM_OK) st = add_import_event(m, path, arch, names);
    if (st != MM_OK) {
        mm_model_free(m);
        return st;
    }
    *out = m;
    return MM_OK;
}

static mm_status check_flags(unsigned flags) {
    const unsigned known = MM_SAFETENSORS_ALLOW_EXTRA | MM_SAFETENSORS_ROUND_F64;
    if (flags & ~known)
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown safetensors import flags 0x%x",
                        flags & ~known);
    return MM_OK;
}

mm_status mm_safetensors_import(mm_model **out, const char *path, const char *arch,
                                const char *names, unsigned flags) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!path) return mm_null_arg("path");
    mm_status st = check_flags(flags);
    if (st != MM_OK) return st;
    mm_file *f;
    st = mm_file_open(&f, path);
    if (st != MM_OK) return st;
    st = import_file(out, f, path, arch, names, flags);
    mm_file_close(f);
    /* errors from the file's own readers already name it */
    const char *msg = mm_last_error_message();
    size_t plen = strlen(path);
    if (st != MM_OK && !(strncmp(msg, path, plen) == 0 && msg[plen] == ':'))
        st = mm_error_prefix(st, "%s", path);
    return st;
}

mm_status mm_safetensors_import_buffer(mm_model **out, const void *data, size_t len,
                                       const char *arch, const char *names, unsigned flags) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    mm_status st = check_flags(flags);
    if (st != MM_OK) return st;
    mm_file *f;
    st = mm_file_open_buffer(&f, data, len);
    if (st != MM_OK) return st;
    st = import_file(out, f, NULL, arch, names, flags);
    mm_file_close(f);
    return st;
}

/* ------------------------------------------------------------------------
 * Export
 * ---------------------------------------------------------------------- */

static mm_status check_finite(const float *x, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return mm_error(MM_E_NUMERIC, "tensor %s: element %zu is %s; refusing to export it",
                            name, i, isnan(x[i]) ? "NaN" : "infinite");
    return MM_OK;
}

static mm_status export_model(const mm_model *m, const char *path, const char *names) {
    const size_t n = m->n_layers;
    mm_activation *acts = mm_malloc_array(n ? n : 1, sizeof *acts);
    mm_dense_view *views = mm_calloc_array(n ? n : 1, sizeof *views);
    prefixes x = {0}, wn = {0}, bn = {0};
    mm_file_writer *w = NULL;
    char *arch = NULL, *joined = NULL;
    mm_status st = acts && views ? MM_OK : mm_oom("export");
    for (size_t i = 0; st == MM_OK && i < n; i++) acts[i] = m->layers[i]->act;
    if (st == MM_OK)
        st = parse_names(names && *names ? names : ST_DEFAULT_NAMES, acts, n, &x, "tensor names");
    if (st == MM_OK) st = prefixes_alloc(&wn, n);
    if (st == MM_OK) st = prefixes_alloc(&bn, n);
    size_t jlen = 1;
    for (size_t i = 0; st == MM_OK && i < n; i++) {
        if (strchr(x.p[i], ','))
            st = mm_error(MM_E_INVALID_ARGUMENT, "tensor name prefix \"%s\" contains ','",
                          x.p[i]);
        jlen += strlen(x.p[i]) + 1;
    }
    if (st == MM_OK) st = mm_file_writer_create(&w);
    if (st == MM_OK) mm_file_writer_set_plain(w, true);
    for (size_t i = 0; st == MM_OK && i < n; i++) {
        const mm_layer *l = m->layers[i];
        wn.p[i] = tensor_name(x.p[i], "weight");
        bn.p[i] = tensor_name(x.p[i], "bias");
        if (!wn.p[i] || !bn.p[i]) st = mm_oom("tensor names");
        if (st == MM_OK) st = mm_dense_view_get(l, &views[i]);
        if (st != MM_OK) {
            st = mm_error_prefix(st, "layer %zu", i);
            break;
        }
        st = check_finite(views[i].weight, l->in * l->out, wn.p[i]);
        if (st == MM_OK) st = check_finite(views[i].bias, l->out, bn.p[i]);
        if (st == MM_OK)
            st = mm_file_writer_add_f32(w, wn.p[i], views[i].weight, l->out, l->in, false);
        if (st == MM_OK) st = mm_file_writer_add_f32(w, bn.p[i], views[i].bias, l->out, 1, true);
    }
    if (st == MM_OK) st = mm_file_dense_architecture(m, &arch);
    if (st == MM_OK) {
        joined = malloc(jlen);
        if (!joined) st = mm_oom("layer names");
    }
    if (st == MM_OK) {
        size_t pos = 0;
        joined[0] = '\0';
        for (size_t i = 0; i < n; i++)
            pos += (size_t)snprintf(joined + pos, jlen - pos, "%s%s", i ? "," : "", x.p[i]);
    }
    if (st == MM_OK) st = mm_file_writer_add_meta(w, "architecture", arch);
    if (st == MM_OK && n > 0) st = mm_file_writer_add_meta(w, "layer_names", joined);
    if (st == MM_OK) st = mm_file_writer_add_meta(w, "lineage", mm_model_lineage(m));
    if (st == MM_OK) st = mm_file_writer_add_meta(w, "producer", "mmaint " MM_VERSION_STRING);
    if (st == MM_OK) st = mm_file_writer_commit(w, path);
    mm_file_writer_free(w);
    for (size_t i = 0; views && i < n; i++) mm_dense_view_free(&views[i]);
    free(views);
    free(acts);
    free(arch);
    free(joined);
    prefixes_free(&x);
    prefixes_free(&wn);
    prefixes_free(&bn);
    return st;
}

mm_status mm_safetensors_export(const mm_model *model, const char *path, const char *names) {
    if (!model) return mm_null_arg("model");
    if (!path) return mm_null_arg("path");
    mm_status st = export_model(model, path, names);
    return st == MM_OK ? st : mm_error_prefix(st, "exporting %s", path);
}
