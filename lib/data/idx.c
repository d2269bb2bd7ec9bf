/* IDX loader (the MNIST format).
 *
 * Layout: two zero bytes, a type byte, a dimension count (1..4), the
 * dimensions as big-endian u32, then the items in row-major order, big-endian.
 * Files are read through zlib's gz* functions, which read gzip-compressed and
 * plain files alike. Nothing in the header is trusted: the buffer grows only
 * as data actually arrives, so a header claiming 2^32 items in a 100-byte
 * file is an error, not a 4 GiB allocation.
 *
 * Images: unsigned bytes (0x08, scaled by 1/255) or big-endian float32 (0x0D,
 * taken as they are, must be finite), with >= 2 dimensions (count, then the
 * feature dimensions, flattened). Labels: a 1-d file of unsigned bytes or
 * int32 (0x0C, must be >= 0). Other IDX types give MM_E_UNSUPPORTED, unknown
 * type codes and every malformed header or body MM_E_FORMAT.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/dataset_internal.h"

enum {
    IDX_U8 = 0x08,
    IDX_I8 = 0x09,
    IDX_I16 = 0x0B,
    IDX_I32 = 0x0C,
    IDX_F32 = 0x0D,
    IDX_F64 = 0x0E
};

#define IDX_MAX_DIMS 4
#define IDX_FIRST_CHUNK ((size_t)1 << 20) /* initial data buffer: 1 MiB */
#define IDX_MAX_READ ((size_t)1 << 30)    /* gzread takes an unsigned, returns an int */

typedef enum idx_role { IDX_IMAGES, IDX_LABELS } idx_role;

typedef struct idx_file {
    unsigned type;
    unsigned ndim;
    uint32_t dims[IDX_MAX_DIMS];
    size_t count; /* dims[0] */
    size_t inner; /* product of dims[1..ndim) (1 for a 1-d file) */
    size_t items; /* count * inner */
    size_t elem;  /* bytes per item */
    unsigned char *data;
} idx_file;

static const char *type_name(unsigned type) {
    switch (type) {
    case IDX_U8: return "unsigned byte";
    case IDX_I8: return "signed byte";
    case IDX_I16: return "int16";
    case IDX_I32: return "int32";
    case IDX_F32: return "float32";
    case IDX_F64: return "float64";
    default: return NULL;
    }
}

static size_t type_size(unsigned type) {
    switch (type) {
    case IDX_U8:
    case IDX_I8: return 1;
    case IDX_I16: return 2;
    case IDX_I32:
    case IDX_F32: return 4;
    case IDX_F64: return 8;
    default: return 0;
    }
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Turn the gz stream's error state into an mm_status. */
static mm_status gz_fail(gzFile g, const char *path) {
    int err = Z_OK;
    const char *msg = gzerror(g, &err);
    if (!msg) msg = "";
    if (err == Z_MEM_ERROR) return mm_oom("zlib state");
    if (err == Z_ERRNO) return mm_error(MM_E_IO, "%s: read error: %s", path, strerror(errno));
    size_t pl = strlen(path); /* zlib's message starts with "<path>: " */
    if (strncmp(msg, path, pl) == 0 && msg[pl] == ':' && msg[pl + 1] == ' ') msg += pl + 2;
    return mm_error(MM_E_FORMAT, "%s: corrupt compressed data (%s)", path, msg);
}

/* Read up to len bytes; *got is what arrived before end of file. */
static mm_status gz_read_upto(gzFile g, const char *path, unsigned char *buf, size_t len,
                              size_t *got) {
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        if (want > IDX_MAX_READ) want = IDX_MAX_READ;
        errno = 0;
        int r = gzread(g, buf + *got, (unsigned)want);
        if (r < 0) return gz_fail(g, path);
        if (r == 0) break;
        *got += (size_t)r;
    }
    return MM_OK;
}

/* After a short read: a truncated gzip stream is reported by zlib as
 * Z_BUF_ERROR; anything else is a real failure. */
static mm_status check_short_read(gzFile g, const char *path) {
    int err = Z_OK;
    gzerror(g, &err);
    if (err != Z_OK && err != Z_BUF_ERROR) return gz_fail(g, path);
    return MM_OK;
}

static mm_status idx_read_header(gzFile g, const char *path, idx_role role, idx_file *f) {
    const char *what = role == IDX_IMAGES ? "images" : "labels";
    unsigned char h[4 + 4 * IDX_MAX_DIMS];
    size_t got;
    mm_status st = gz_read_upto(g, path, h, 4, &got);
    if (st != MM_OK) return st;
    if (got < 4) {
        if ((st = check_short_read(g, path)) != MM_OK) return st;
        if (got == 0) return mm_error(MM_E_FORMAT, "%s: %s file is empty", path, what);
        return mm_error(MM_E_FORMAT, "%s: file of %zu bytes is too short for an IDX header",
                        path, got);
    }
    if (h[0] != 0 || h[1] != 0)
        return mm_error(MM_E_FORMAT,
                        "%s: not an IDX file (magic bytes %02x %02x, expected 00 00)", path,
                        h[0], h[1]);
    f->type = h[2];
    f->ndim = h[3];
    f->elem = type_size(f->type);
    if (f->elem == 0)
        return mm_error(MM_E_FORMAT, "%s: unknown IDX data type 0x%02x", path, f->type);
    if (f->ndim < 1 || f->ndim > IDX_MAX_DIMS)
        return mm_error(MM_E_FORMAT, "%s: IDX header gives %u dimensions, expected 1..%d", path,
                        f->ndim, IDX_MAX_DIMS);
    if (role == IDX_IMAGES) {
        if (f->type != IDX_U8 && f->type != IDX_F32)
            return mm_error(MM_E_UNSUPPORTED,
                            "%s: images of IDX type 0x%02x (%s) are not supported; expected "
                            "0x08 (unsigned byte) or 0x0d (float32)",
                            path, f->type, type_name(f->type));
        if (f->ndim < 2)
            return mm_error(MM_E_FORMAT,
                            "%s: images file has 1 dimension; expected a sample count followed "
                            "by at least one feature dimension",
                            path);
    } else {
        if (f->type != IDX_U8 && f->type != IDX_I32)
            return mm_error(MM_E_UNSUPPORTED,
                            "%s: labels of IDX type 0x%02x (%s) are not supported; expected "
                            "0x08 (unsigned byte) or 0x0c (int32)",
                            path, f->type, type_name(f->type));
        if (f->ndim != 1)
            return mm_error(MM_E_FORMAT, "%s: labels file has %u dimensions, expected 1", path,
                            f->ndim);
    }
    st = gz_read_upto(g, path, h + 4, 4 * (size_t)f->ndim, &got);
    if (st != MM_OK) return st;
    if (got < 4 * (size_t)f->ndim) {
        if ((st = check_short_read(g, path)) != MM_OK) return st;
        return mm_error(MM_E_FORMAT, "%s: file ends inside the IDX header (%zu of %u dimensions)",
                        path, got / 4, f->ndim);
    }
    f->inner = 1;
    for (unsigned i = 0; i < f->ndim; i++) f->dims[i] = be32(h + 4 + 4 * i);
    for (unsigned i = 1; i < f->ndim; i++) {
        if (!mm_mul_ok(f->inner, f->dims[i], &f->inner)) goto overflow;
    }
    f->count = f->dims[0];
    size_t bytes;
    if (!mm_mul_ok(f->count, f->inner, &f->items) || !mm_mul_ok(f->items, f->elem, &bytes) ||
        !mm_mul_ok(f->items, sizeof(float), &bytes))
        goto overflow;
    if (role == IDX_IMAGES && f->inner == 0)
        return mm_error(MM_E_FORMAT, "%s: images have a zero-sized feature dimension", path);
    return MM_OK;
overflow:
    return mm_error(MM_E_FORMAT, "%s: IDX dimensions %lu x %lu x %lu x %lu (first %u) overflow",
                    path, (unsigned long)f->dims[0], (unsigned long)(f->ndim > 1 ? f->dims[1] : 1),
                    (unsigned long)(f->ndim > 2 ? f->dims[2] : 1),
                    (unsigned long)(f->ndim > 3 ? f->dims[3] : 1), f->ndim);
}

/* Read the data after the header: exactly items*elem bytes, then end of file. */
static mm_status idx_read_data(gzFile g, const char *path, idx_file *f) {
    const size_t total = f->items * f->elem; /* overflow checked by the header */
    size_t cap = total < IDX_FIRST_CHUNK ? total : IDX_FIRST_CHUNK;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf) return mm_oom("IDX data");
    size_t have = 0;
    mm_status st = MM_OK;
    while (have < total) {
        if (have == cap) { /* grow only when the data so far filled the buffer */
            size_t ncap = cap > total / 2 ? total : cap * 2;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                st = mm_oom("IDX data");
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got;
        st = gz_read_upto(g, path, buf + have, cap - have, &got);
        if (st != MM_OK) goto fail;
        have += got;
        if (have < cap) break; /* end of file */
    }
    if (have < total) {
        int zerr = Z_OK;
        gzerror(g, &zerr);
        if ((st = check_short_read(g, path)) != MM_OK) goto fail;
        st = mm_error(MM_E_FORMAT, "%s: file ends after %zu of %zu items%s", path,
                      have / f->elem, f->items,
                      zerr == Z_BUF_ERROR ? " (truncated gzip stream)" : "");
        goto fail;
    }
    /* Reading past the end also makes zlib verify the gzip trailer (CRC). */
    unsigned char extra[16];
    size_t more;
    st = gz_read_upto(g, path, extra, sizeof extra, &more);
    if (st != MM_OK) goto fail;
    if ((st = check_short_read(g, path)) != MM_OK) goto fail;
    int err = Z_OK;
    gzerror(g, &err);
    if (err == Z_BUF_ERROR) {
        st = mm_error(MM_E_FORMAT, "%s: gzip stream is truncated after the data", path);
        goto fail;
    }
    if (more > 0) {
        st = mm_error(MM_E_FORMAT, "%s: unexpected data after the %zu items the header declares",
                      path, f->items);
        goto fail;
    }
    f->data = buf;
    return MM_OK;
fail:
    free(buf);
    return st;
}

static mm_status idx_read(const char *path, idx_role role, idx_file *f) {
    memset(f, 0, sizeof *f);
    errno = 0;
    gzFile g = gzopen(path, "rb");
    if (!g) {
        if (errno == 0) return mm_oom("zlib file state");
        return mm_error(MM_E_IO, "cannot open %s: %s", path, strerror(errno));
    }
    gzbuffer(g, 1u << 18);
    mm_status st = idx_read_header(g, path, role, f);
    if (st == MM_OK) st = idx_read_data(g, path, f);
    gzclose_r(g);
    return st;
}

static float be_f32(const unsigned char *p) {
    uint32_t u = be32(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static mm_status convert_images(const char *path, const idx_file *f, float *x) {
    if (f->type == IDX_U8) {
        float lut[256];
        for (int i = 0; i < 256; i++) lut[i] = (float)(i / 255.0);
        for (size_t i = 0; i < f->items; i++) x[i] = lut[f->data[i]];
        return MM_OK;
    }
    for (size_t i = 0; i < f->items; i++) { /* IDX_F32 */
        float v = be_f32(f->data + 4 * i);
        if (!isfinite(v))
            return mm_error(MM_E_NUMERIC, "%s: sample %zu, feature %zu is %s", path,
                            i / f->inner, i % f->inner, isnan(v) ? "NaN" : "infinite");
        x[i] = v;
    }
    return MM_OK;
}

static mm_status convert_labels(const char *path, const idx_file *f, int32_t *labels) {
    if (f->type == IDX_U8) {
        for (size_t i = 0; i < f->items; i++) labels[i] = f->data[i];
        return MM_OK;
    }
    for (size_t i = 0; i < f->items; i++) { /* IDX_I32 */
        uint32_t u = be32(f->data + 4 * i);
        if (u > (uint32_t)INT32_MAX)
            return mm_error(MM_E_FORMAT, "%s: label %zu is negative (%ld)", path, i,
                            (long)((int64_t)u - ((int64_t)1 << 32)));
        labels[i] = (int32_t)u;
    }
    return MM_OK;
}

MM_API mm_status mm_dataset_load_idx(mm_dataset **out, const char *images_path,
                                     const char *labels_path) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!images_path) return mm_null_arg("images_path");

    idx_file im, lb;
    memset(&lb, 0, sizeof lb);
    mm_dataset *ds = NULL;
    mm_status st = idx_read(images_path, IDX_IMAGES, &im);
    if (st != MM_OK) return st;
    if (labels_path) {
        st = idx_read(labels_path, IDX_LABELS, &lb);
        if (st != MM_OK) goto done;
        if (lb.count != im.count) {
            st = mm_error(MM_E_FORMAT, "%s has %zu labels but %s has %zu samples", labels_path,
                          lb.count, images_path, im.count);
            goto done;
        }
    }
    st = mm_ds_alloc(&ds, im.count, im.inner, labels_path != NULL);
    if (st != MM_OK) goto done;
    st = convert_images(images_path, &im, ds->x);
    if (st == MM_OK && labels_path) st = convert_labels(labels_path, &lb, ds->labels);
    if (st != MM_OK) goto done;
    mm_ds_finish_labels(ds);
    *out = ds;
    ds = NULL;
done:
    mm_dataset_free(ds);
    free(im.data);
    free(lb.data);
    return st;
}
