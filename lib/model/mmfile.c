/* The model file container (doc/FORMAT.md): a valid safetensors file whose
 * __metadata__ carries mmaint's format tag, architecture, lineage and a
 * CRC-32 over a canonical digest of metadata and tensors.
 *
 * Reading never trusts the file: the whole file is read into memory, then
 * every length, offset, dtype, shape and metadata field is checked before any
 * of it is used, and allocations are bounded by the file's size.
 * Writing is atomic: temporary file in the same directory, fsync, rename,
 * fsync of the directory. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

#include "common/half.h"
#include "model/mmfile.h"

#define MMF_MAX_HEADER 100000000u /* the safetensors reference limit */
#define MMF_MAX_DIMS MM_FILE_MAX_DIMS
#define MMF_MAX_LAYER_DIM ((size_t)1 << 24)
#define MMF_FORMAT "mmaint"
#define MMF_VERSION "1"
#define MMF_CHUNK 16384 /* elements (<= 4 bytes) converted per write / checksum chunk */
/* A JSON parser allocates ~100 bytes per value: bound the values so that a
 * header of many tiny entries cannot cost gigabytes (~1 KiB per tensor
 * entry). Real headers have a few values per tensor, thousands of tensors. */
#define MMF_MAX_JSON_VALUES ((size_t)1 << 20)

/* ------------------------------------------------------------------------
 * Little-endian conversion (explicit bytes: correct on any host order)
 * ---------------------------------------------------------------------- */

static uint64_t rd_u64le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void wr_u64le(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* n elements of elsize (1, 2 or 4) bytes from host order to little-endian
 * bytes. Elements go through uint16_t / uint32_t (memcpy: any alignment,
 * and F32 / F16 / BF16 bit patterns alike), so any host order works. */
static void host_to_le(unsigned char *dst, const void *src, size_t n, unsigned elsize) {
    const unsigned char *s = src;
    if (elsize == 1) {
        memcpy(dst, s, n);
    } else if (elsize == 2) {
        for (size_t i = 0; i < n; i++) {
            uint16_t u;
            memcpy(&u, s + 2 * i, 2);
            dst[2 * i] = (unsigned char)u;
            dst[2 * i + 1] = (unsigned char)(u >> 8);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, s + 4 * i, 4);
            dst[4 * i] = (unsigned char)u;
            dst[4 * i + 1] = (unsigned char)(u >> 8);
            dst[4 * i + 2] = (unsigned char)(u >> 16);
            dst[4 * i + 3] = (unsigned char)(u >> 24);
        }
    }
}

/* The inverse of host_to_le. */
static void le_to_host(void *dst, const unsigned char *src, size_t n, unsigned elsize) {
    unsigned char *d = dst;
    if (elsize == 1) {
        memcpy(d, src, n);
    } else if (elsize == 2) {
        for (size_t i = 0; i < n; i++) {
            uint16_t u = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            memcpy(d + 2 * i, &u, 2);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            const unsigned char *p = src + 4 * i;
            uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                         ((uint32_t)p[3] << 24);
            memcpy(d + 4 * i, &u, 4);
        }
    }
}

/* ------------------------------------------------------------------------
 * Checksum: CRC-32 (zlib) over a canonical digest stream (doc/FORMAT.md):
 *   for each metadata key except "checksum", in byte order of keys:
 *       'M' key NUL value NUL
 *   for each tensor, in byte order of names:
 *       'T' name NUL dtype NUL dims-in-decimal-joined-by-',' NUL raw-bytes
 * Independent of JSON formatting, key order and data layout, so any correct
 * safetensors rewriter that keeps names, metadata and bytes keeps it valid.
 * ---------------------------------------------------------------------- */

static uLong crc_bytes(uLong crc, const void *p, size_t n) {
    const Bytef *b = p;
    while (n > 0) {
        uInt step = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, b, step);
        b += step;
        n -= step;
    }
    return crc;
}

static uLong crc_cstr(uLong crc, const char *s) { return crc_bytes(crc, s, strlen(s) + 1); }

static uLong crc_meta_record(uLong crc, const char *key, const char *value) {
    crc = crc_bytes(crc, "M", 1);
    crc = crc_cstr(crc, key);
    return crc_cstr(crc, value);
}

static uLong crc_tensor_head(uLong crc, const char *name, const char *dtype,
                             const uint64_t *shape, size_t ndim) {
    crc = crc_bytes(crc, "T", 1);
    crc = crc_cstr(crc, name);
    crc = crc_cstr(crc, dtype);
    char num[32];
    for (size_t i = 0; i < ndim; i++) {
        int len = snprintf(num, sizeof num, "%s%llu", i ? "," : "", (unsigned long long)shape[i]);
        crc = crc_bytes(crc, num, (size_t)len);
    }
    return crc_bytes(crc, "", 1);
}

static void format_checksum(char out[16], uLong crc) {
    snprintf(out, 16, "crc32:%08lx", (unsigned long)(crc & 0xffffffffUL));
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "[2, 3]" from up to MMF_MAX_DIMS dims. */
static const char *shape_text(char *buf, size_t cap, const uint64_t *shape, size_t ndim) {
    size_t pos = 0;
    pos += (size_t)snprintf(buf, cap, "[");
    for (size_t i = 0; i < ndim && pos < cap; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%llu", i ? ", " : "",
                                (unsigned long long)shape[i]);
    if (pos < cap) snprintf(buf + pos, cap - pos, "]");
    return buf;
}

/* ------------------------------------------------------------------------
 * dtypes of the safetensors specification with whole-byte elements. The
 * container accepts all of them (so foreign files open and their extra
 * tensors can be ignored); mm_file_read_f32 accepts only F32.
 * ---------------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned size;
} dtype_table[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8},
};

static unsigned dtype_size(const char *name) {
    for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++)
        if (strcmp(name, dtype_table[i].name) == 0) return dtype_table[i].size;
    return 0;
}

/* The subset mmaint reads and writes (mm_dtype), indexed by the enum. */
static const struct {
    const char *name;
    unsigned size;
} mm_dtypes[] = {
    [MM_DTYPE_F32] = {"F32", 4}, [MM_DTYPE_F16] = {"F16", 2}, [MM_DTYPE_BF16] = {"BF16", 2},
    [MM_DTYPE_I8] = {"I8", 1},   [MM_DTYPE_U8] = {"U8", 1},   [MM_DTYPE_I16] = {"I16", 2},
    [MM_DTYPE_U16] = {"U16", 2}, [MM_DTYPE_I32] = {"I32", 4}, [MM_DTYPE_U32] = {"U32", 4},
};
#define N_MM_DTYPES (sizeof mm_dtypes / sizeof mm_dtypes[0])

static bool dtype_valid(mm_dtype d) { return (unsigned)d < N_MM_DTYPES; }

const char *mm_dtype_name(mm_dtype dtype) {
    return dtype_valid(dtype) ? mm_dtypes[dtype].name : NULL;
}

size_t mm_dtype_size(mm_dtype dtype) { return dtype_valid(dtype) ? mm_dtypes[dtype].size : 0; }

/* The mm_dtype of a safetensors dtype name, or -1. */
static int dtype_from_name(const char *name) {
    for (size_t i = 0; i < N_MM_DTYPES; i++)
        if (strcmp(name, mm_dtypes[i].name) == 0) return (int)i;
    return -1;
}

/* ------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------- */

typedef struct tensor_info {
    const char *name;  /* key in f->header (borrowed) */
    const char *dtype; /* borrowed from f->header */
    int mdtype;        /* its mm_dtype, or -1 (other safetensors dtypes) */
    unsigned elsize;
    size_t ndim;
    uint64_t shape[MMF_MAX_DIMS];
    size_t begin, end; /* byte range in the data block */
} tensor_info;

struct mm_file {
    unsigned char *buf; /* the whole file, or its first 8 + N bytes when fd >= 0 (owned) */
    size_t len;         /* of the whole file */
    const unsigned char *data; /* data block inside buf, or NULL when fd >= 0 */
    size_t data_len;
    int fd; /* >= 0: data read from this file when used (plain safetensors files) */
    json_t *header;
    json_t *meta; /* __metadata__ inside header, or NULL */
    tensor_info *t;
    size_t nt;
    size_t *by_name; /* indices into t sorted by name */
    char *path;      /* for error messages, or NULL */
};

/* The file mm_file_build_model is building from on this thread: the layer
 * kinds' loaders call the public reading functions, whose errors must not
 * get the path prefix twice. */
static _Thread_local const mm_file *tls_building;

/* Prefix the current error message with the file's path (if any). */
static mm_status file_fail(const mm_file *f, mm_status st) {
    if (f && f->path && f != tls_building) return mm_error_prefix(st, "%s", f->path);
    return st;
}

static int json_get_index(const json_t *j, long long *out) {
    if (!json_is_integer(j)) return -1;
    long long v = (long long)json_integer_value(j);
    if (v < 0) return -1;
    *out = v;
    return 0;
}

static mm_status parse_tensor(mm_file *f, const char *name, json_t *val, tensor_info *t) {
    if (name[0] == '\0') return mm_error(MM_E_FORMAT, "a tensor has an empty name");
    if (!json_is_object(val))
        return mm_error(MM_E_FORMAT, "tensor %s: header entry must be a JSON object", name);
    json_t *dt = json_object_get(val, "dtype");
    json_t *sh = json_object_get(val, "shape");
    json_t *off = json_object_get(val, "data_offsets");
    if (!dt) return mm_error(MM_E_FORMAT, "tensor %s: missing \"dtype\"", name);
    if (!sh) return mm_error(MM_E_FORMAT, "tensor %s: missing \"shape\"", name);
    if (!off) return mm_error(MM_E_FORMAT, "tensor %s: missing \"data_offsets\"", name);
    if (json_object_size(val) != 3) {
        const char *k;
        json_t *v;
        json_object_foreach(val, k, v) {
            if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
                return mm_error(MM_E_FORMAT, "tensor %s: unknown field \"%s\"", name, k);
        }
    }

    t->name = name;
    if (!json_is_string(dt))
        return mm_error(MM_E_FORMAT, "tensor %s: \"dtype\" must be a string", name);
    t->dtype = json_string_value(dt);
    t->elsize = dtype_size(t->dtype);
    t->mdtype = dtype_from_name(t->dtype);
    if (t->elsize == 0)
        return mm_error(MM_E_UNSUPPORTED, "tensor %s: unsupported dtype \"%s\"", name, t->dtype);

    if (!json_is_array(sh))
        return mm_error(MM_E_FORMAT, "tensor %s: \"shape\" must be an array", name);
    t->ndim = json_array_size(sh);
    if (t->ndim > MMF_MAX_DIMS)
        return mm_error(MM_E_UNSUPPORTED, "tensor %s: %zu dimensions (at most %d supported)",
                        name, t->ndim, MMF_MAX_DIMS);
    uint64_t count = 1;
    bool overflow = false;
    for (size_t i = 0; i < t->ndim; i++) {
        long long d;
        if (json_get_index(json_array_get(sh, i), &d) != 0)
            return mm_error(MM_E_FORMAT, "tensor %s: shape[%zu] must be a non-negative integer",
                            name, i);
        t->shape[i] = (uint64_t)d;
        if (!overflow && t->shape[i] != 0 && count > UINT64_MAX / t->shape[i]) overflow = true;
        if (!overflow) count *= t->shape[i];
    }
    char sbuf[256];
    if (overflow || count > UINT64_MAX / t->elsize)
        return mm_error(MM_E_FORMAT, "tensor %s: shape %s is too large (size overflows)", name,
                        shape_text(sbuf, sizeof sbuf, t->shape, t->ndim));
    uint64_t nbytes = count * t->elsize;

    long long b, e;
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        json_get_index(json_array_get(off, 0), &b) != 0 ||
        json_get_index(json_array_get(off, 1), &e) != 0)
        return mm_error(MM_E_FORMAT,
                        "tensor %s: \"data_offsets\" must be two non-negative integers", name);
    if (b > e)
        return mm_error(MM_E_FORMAT, "tensor %s: data_offsets [%lld, %lld] are reversed", name, b,
                        e);
    if ((unsigned long long)e > f->data_len)
        return mm_error(MM_E_FORMAT, "tensor %s: data_offsets [%lld, %lld] past end of data (%zu bytes)",
                        name, b, e, f->data_len);
    if ((uint64_t)(e - b) != nbytes)
        return mm_error(MM_E_FORMAT,
                        "tensor %s: data_offsets [%lld, %lld] hold %lld bytes but %s %s needs %llu",
                        name, b, e, e - b, t->dtype, shape_text(sbuf, sizeof sbuf, t->shape, t->ndim),
                        (unsigned long long)nbytes);
    t->begin = (size_t)b;
    t->end = (size_t)e;
    return MM_OK;
}

/* qsort has no context argument in C11: the comparators find the file
 * through this thread-local pointer, set just before each sort, so files
 * may be opened from many threads at once. */
static _Thread_local const mm_file *tls_sort_file;

static int cmp_by_offset(const void *a, const void *b) {
    const tensor_info *ta = &tls_sort_file->t[*(const size_t *)a];
    const tensor_info *tb = &tls_sort_file->t[*(const size_t *)b];
    if (ta->begin != tb->begin) return ta->begin < tb->begin ? -1 : 1;
    if (ta->end != tb->end) return ta->end < tb->end ? -1 : 1;
    return 0;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(tls_sort_file->t[*(const size_t *)a].name,
                  tls_sort_file->t[*(const size_t *)b].name);
}

/* Tensors must tile the data block exactly: sorted by offset, each starts
 * where the previous ended, the first at 0, the last at the end. */
static mm_status check_layout(mm_file *f) {
    size_t *idx = mm_malloc_array(f->nt ? f->nt : 1, sizeof *idx);
    if (!idx) return mm_oom("tensor index");
    for (size_t i = 0; i < f->nt; i++) idx[i] = i;
    tls_sort_file = f;
    qsort(idx, f->nt, sizeof *idx, cmp_by_offset);
    size_t pos = 0;
    const tensor_info *last = NULL;
    mm_status st = MM_OK;
    for (size_t k = 0; k < f->nt; k++) {
        const tensor_info *t = &f->t[idx[k]];
        if (t->begin < pos) {
            st = mm_error(MM_E_FORMAT,
                          "tensors %s (data_offsets [%zu, %zu]) and %s (data_offsets [%zu, %zu]) overlap",
                          last->name, last->begin, last->end, t->name, t->begin, t->end);
            break;
        }
        if (t->begin > pos) {
            st = mm_error(MM_E_FORMAT,
                          "bytes [%zu, %zu) of the data block belong to no tensor (before tensor %s)",
                          pos, t->begin, t->name);
            break;
        }
        if (t->end > t->begin) last = t;
        pos = t->end;
    }
    if (st == MM_OK && pos != f->data_len)
        st = mm_error(MM_E_FORMAT,
                      "bytes [%zu, %zu) at the end of the data block belong to no tensor", pos,
                      f->data_len);
    free(idx);
    return st;
}

static const tensor_info *find_tensor(const mm_file *f, const char *name) {
    size_t lo = 0, hi = f->nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->t[f->by_name[mid]].name);
        if (c == 0) return &f->t[f->by_name[mid]];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static mm_status verify_checksum(const mm_file *f, const char *stored) {
    /* "crc32:" followed by exactly 8 hex digits */
    bool ok = strlen(stored) == 14 && strncmp(stored, "crc32:", 6) == 0;
    unsigned long want = 0;
    for (size_t i = 6; ok && i < 14; i++) {
        char c = stored[i];
        unsigned v = (c >= '0' && c <= '9')   ? (unsigned)(c - '0')
                     : (c >= 'a' && c <= 'f') ? (unsigned)(c - 'a' + 10)
                     : (c >= 'A' && c <= 'F') ? (unsigned)(c - 'A' + 10)
                                              : 16u;
        if (v == 16u) ok = false;
        want = (want << 4) | v;
    }
    if (!ok)
        return mm_error(MM_E_FORMAT,
                        "__metadata__.checksum \"%.40s\" is malformed (expected crc32:<8 hex digits>)",
                        stored);

    uLong crc = crc32(0L, Z_NULL, 0);
    size_t nkeys = f->meta ? json_object_size(f->meta) : 0;
    const char **keys = mm_malloc_array(nkeys ? nkeys : 1, sizeof *keys);
    if (!keys) return mm_oom("metadata keys");
    size_t nk = 0;
    if (f->meta) {
        const char *k;
        json_t *v;
        json_object_foreach(f->meta, k, v) {
            if (strcmp(k, "checksum") != 0) keys[nk++] = k;
        }
    }
    qsort(keys, nk, sizeof *keys, cmp_str_ptr);
    for (size_t i = 0; i < nk; i++)
        crc = crc_meta_record(crc, keys[i], json_string_value(json_object_get(f->meta, keys[i])));
    free(keys);
    for (size_t i = 0; i < f->nt; i++) {
        const tensor_info *t = &f->t[f->by_name[i]];
        crc = crc_tensor_head(crc, t->name, t->dtype, t->shape, t->ndim);
        crc = crc_bytes(crc, f->data + t->begin, t->end - t->begin);
    }
    if ((crc & 0xffffffffUL) != want) {
        char got[16];
        format_checksum(got, crc);
        return mm_error(MM_E_CHECKSUM,
                        "checksum mismatch: the file records %s but its contents give %s "
                        "(the file is corrupt)",
                        stored, got);
    }
    return MM_OK;
}

/* Upper bound on the number of JSON values in text[0..n): one more than the
 * commas, braces and brackets outside strings. */
static size_t json_value_bound(const char *text, size_t n) {
    size_t count = 1;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == ',' || c == '{' || c == '[') {
            count++;
        }
    }
    return count;
}

/* Exactly len bytes at offset off of fd (EINTR retried; a short read is
 * MM_E_IO: the file shrank since it was opened). */
static mm_status pread_full(int fd, uint64_t off, void *dst, size_t len) {
    unsigned char *d = dst;
    size_t got = 0;
    while (got < len) {
        size_t want = len - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : len - got;
        ssize_t r = pread(fd, d + got, want, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return mm_error(MM_E_IO, "read error at byte %llu: %s",
                            (unsigned long long)(off + got), strerror(errno));
        }
        if (r == 0)
            return mm_error(MM_E_IO, "file shrank while reading (no byte %llu)",
                            (unsigned long long)(off + got));
        got += (size_t)r;
    }
    return MM_OK;
}

/* Bytes [off, off + len) of the data block into dst. */
static mm_status read_range(const mm_file *f, size_t off, size_t len, void *dst) {
    if (len == 0) return MM_OK;
    if (f->fd < 0) {
        memcpy(dst, f->data + off, len);
        return MM_OK;
    }
    return pread_full(f->fd, (uint64_t)(f->len - f->data_len) + off, dst, len);
}

/* A file opened with only its header in memory gets its data block too
 * (needed to verify the checksum). */
static mm_status read_all_data(mm_file *f) {
    if (f->fd < 0) return MM_OK;
    size_t head = f->len - f->data_len;
    unsigned char *nb = realloc(f->buf, f->len ? f->len : 1);
    if (!nb) return mm_error(MM_E_OUT_OF_MEMORY, "out of memory reading %zu bytes", f->len);
    f->buf = nb;
    mm_status st = pread_full(f->fd, head, nb + head, f->data_len);
    if (st != MM_OK) return st;
    f->data = nb + head;
    close(f->fd);
    f->fd = -1;
    return MM_OK;
}

static mm_status parse_container(mm_file *f) {
    if (f->len < 8)
        return mm_error(MM_E_FORMAT, "file is %zu bytes, too short for the 8-byte header length",
                        f->len);
    uint64_t n = rd_u64le(f->buf);
    /* A safetensors file starts with the header's length and then its '{'.
     * A file that has neither (text, ONNX, anything else) is not a damaged
     * model file, and a message about an absurd header length would only
     * confuse: say what it is not. A '{' after a bad length is a damaged
     * file, reported in detail below. */
    if (f->len == 8 || f->buf[8] != '{')
        return mm_error(MM_E_FORMAT, "not an mmaint model file (no safetensors header)");
    if (n > MMF_MAX_HEADER)
        return mm_error(MM_E_FORMAT, "header length %llu exceeds the limit of %u bytes",
                        (unsigned long long)n, MMF_MAX_HEADER);
    if (n > f->len - 8)
        return mm_error(MM_E_FORMAT,
                        "header length %llu runs past the end of the file (%zu bytes follow the "
                        "length field)",
                        (unsigned long long)n, f->len - 8);
    if (n < 2)
        return mm_error(MM_E_FORMAT, "header length %llu is too small for a JSON object",
                        (unsigned long long)n);
    const char *h = (const char *)f->buf + 8;
    if (h[0] != '{') return mm_error(MM_E_FORMAT, "header does not begin with '{'");
    const char *nul = memchr(h, '\0', (size_t)n);
    if (nul)
        return mm_error(MM_E_FORMAT, "header contains a NUL byte at header offset %zu",
                        (size_t)(nul - h));
    if (json_value_bound(h, (size_t)n) > MMF_MAX_JSON_VALUES)
        return mm_error(MM_E_FORMAT, "header has more than %zu JSON values", MMF_MAX_JSON_VALUES);
    json_error_t jerr;
    f->header = json_loadb(h, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!f->header)
        return mm_error(MM_E_FORMAT, "header is not valid JSON: %s (header byte %d)", jerr.text,
                        jerr.position);
    if (!json_is_object(f->header))
        return mm_error(MM_E_FORMAT, "header is not a JSON object");
    f->data = f->fd >= 0 ? NULL : f->buf + 8 + n;
    f->data_len = f->len - 8 - (size_t)n;

    size_t count = json_object_size(f->header);
    f->t = mm_calloc_array(count ? count : 1, sizeof *f->t);
    f->by_name = mm_malloc_array(count ? count : 1, sizeof *f->by_name);
    if (!f->t || !f->by_name) return mm_oom("tensor table");
    const char *key;
    json_t *val;
    json_object_foreach(f->header, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val))
                return mm_error(MM_E_FORMAT, "__metadata__ must be a JSON object");
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv))
                    return mm_error(MM_E_FORMAT, "__metadata__.%s must be a string", mk);
            }
            f->meta = val;
            continue;
        }
        mm_status st = parse_tensor(f, key, val, &f->t[f->nt]);
        if (st != MM_OK) return st;
        f->nt++;
    }
    mm_status st = check_layout(f);
    if (st != MM_OK) return st;
    for (size_t i = 0; i < f->nt; i++) f->by_name[i] = i;
    tls_sort_file = f;
    qsort(f->by_name, f->nt, sizeof *f->by_name, cmp_by_name);

    /* mmaint files: known version and a matching checksum. Other
     * safetensors files (no "format": "mmaint") open as plain containers. */
    const char *fmt = mm_file_meta(f, "format");
    if (fmt && strcmp(fmt, MMF_FORMAT) == 0) {
        const char *ver = mm_file_meta(f, "format_version");
        if (!ver) return mm_error(MM_E_FORMAT, "__metadata__.format_version is missing");
        if (strcmp(ver, MMF_VERSION) != 0)
            return mm_error(MM_E_VERSION,
                            "format_version \"%.40s\" is not supported (this library reads "
                            "version " MMF_VERSION ")",
                            ver);
        const char *ck = mm_file_meta(f, "checksum");
        if (!ck) return mm_error(MM_E_FORMAT, "__metadata__.checksum is missing");
        st = read_all_data(f); /* the checksum covers every byte */
        if (st != MM_OK) return st;
        st = verify_checksum(f, ck);
        if (st != MM_OK) return st;
    }
    return MM_OK;
}

/* Takes buf and fd (closed on error). With fd >= 0, buf holds the file's
 * first bytes (its 8 + N header bytes when N is plausible) and len is the
 * whole file's length. */
static mm_status file_new(mm_file **out, unsigned char *buf, size_t len, const char *path,
                          int fd) {
    mm_file *f = calloc(1, sizeof *f);
    if (!f) {
        free(buf);
        if (fd >= 0) close(fd);
        return mm_oom("model file");
    }
    f->buf = buf;
    f->len = len;
    f->fd = fd;
    if (path) {
        f->path = mm_strdup(path);
        if (!f->path) {
            mm_file_close(f);
            return mm_oom("path");
        }
    }
    mm_status st = parse_container(f);
    if (st != MM_OK) {
        st = file_fail(f, st);
        mm_file_close(f);
        return st;
    }
    *out = f;
    return MM_OK;
}

/* Open a regular file for reading: *fd and its length, or an MM_E_IO
 * naming the path. */
static mm_status open_regular(const char *path, int *fd_out, size_t *len_out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mm_error(MM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mm_error(MM_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mm_error(MM_E_IO, "%s: not a regular file", path);
    }
    if (st.st_size < 0 || (uintmax_t)st.st_size >= (uintmax_t)SIZE_MAX) {
        close(fd);
        return mm_error(MM_E_IO, "%s: file too large", path);
    }
    *fd_out = fd;
    *len_out = (size_t)st.st_size;
    return MM_OK;
}

mm_status mm_file_read_all(const char *path, unsigned char **out, size_t *out_len) {
    int fd;
    size_t len;
    mm_status ost = open_regular(path, &fd, &len);
    if (ost != MM_OK) return ost;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return mm_error(MM_E_OUT_OF_MEMORY, "%s: out of memory reading %zu bytes", path, len);
    }
    size_t got = 0;
    while (got < len) {
        size_t want = len - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : len - got;
        ssize_t r = read(fd, buf + got, want);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return mm_error(MM_E_IO, "%s: read error: %s", path, strerror(e));
        }
        if (r == 0) {
            free(buf);
            close(fd);
            return mm_error(MM_E_IO, "%s: file shrank while reading (%zu of %zu bytes)", path,
                            got, len);
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *out_len = len;
    return MM_OK;
}

/* Only the header is read here; mmaint files then read their data block
 * whole (for the checksum), other files read each tensor when it is used,
 * straight into its destination (one copy, no file-sized buffer). */
mm_status mm_file_open(mm_file **out, const char *path) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!path) return mm_null_arg("path");
    int fd;
    size_t len;
    mm_status ost = open_regular(path, &fd, &len);
    if (ost != MM_OK) return ost;
    /* the length field and the header's first byte (parse_container looks
     * at it), then the whole header if the length is plausible */
    size_t want = len < 9 ? len : 9;
    unsigned char lenbuf[9];
    mm_status st = pread_full(fd, 0, lenbuf, want);
    if (st == MM_OK && want == 9) {
        uint64_t n = rd_u64le(lenbuf);
        if (n <= MMF_MAX_HEADER && n <= len - 8 && 8 + (size_t)n > want) want = 8 + (size_t)n;
    }
    unsigned char *buf = st == MM_OK ? malloc(want ? want : 1) : NULL;
    if (st == MM_OK && !buf) st = mm_oom("file header");
    if (st == MM_OK) st = pread_full(fd, 0, buf, want);
    if (st != MM_OK) {
        free(buf);
        close(fd);
        return mm_error_prefix(st, "%s", path);
    }
    return file_new(out, buf, len, path, fd);
}

mm_status mm_file_open_buffer(mm_file **out, const void *data, size_t len) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!data && len > 0) return mm_null_arg("data");
    /* Copied: the caller's buffer is only borrowed for this call. */
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) return mm_error(MM_E_OUT_OF_MEMORY, "out of memory copying %zu bytes", len);
    if (len) memcpy(buf, data, len);
    return file_new(out, buf, len, NULL, -1);
}

void mm_file_close(mm_file *f) {
    if (!f) return;
    json_decref(f->header);
    free(f->t);
    free(f->by_name);
    free(f->buf);
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f);
}

const char *mm_file_meta(const mm_file *f, const char *key) {
    if (!f || !key || !f->meta) return NULL;
    return json_string_value(json_object_get(f->meta, key));
}

bool mm_file_has_tensor(const mm_file *f, const char *name) {
    return f && name && find_tensor(f, name) != NULL;
}

/* An F32 tensor of shape rows x cols (cols == 1 also accepts a 1-d
 * [rows]): MM_E_UNSUPPORTED for another dtype, MM_E_SHAPE otherwise. */
static mm_status check_f32_shape(const tensor_info *t, const char *name, size_t rows,
                                 size_t cols) {
    if (strcmp(t->dtype, "F32") != 0)
        return mm_error(MM_E_UNSUPPORTED, "tensor %s: dtype %s is not supported (only F32)", name,
                        t->dtype);
    bool ok = (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols) ||
              (t->ndim == 1 && cols == 1 && t->shape[0] == rows);
    if (!ok) {
        char sbuf[256];
        if (cols == 1)
            return mm_error(MM_E_SHAPE, "tensor %s: shape %s, expected [%zu] or [%zu, 1]", name,
                            shape_text(sbuf, sizeof sbuf, t->shape, t->ndim), rows, rows);
        return mm_error(MM_E_SHAPE, "tensor %s: shape %s, expected [%zu, %zu]", name,
                        shape_text(sbuf, sizeof sbuf, t->shape, t->ndim), rows, cols);
    }
    return MM_OK;
}

static mm_status read_f32(const mm_file *f, const char *name, size_t rows, size_t cols,
                          float *dst) {
    const tensor_info *t = find_tensor(f, name);
    if (!t) return mm_error(MM_E_NOT_FOUND, "tensor %s not found", name);
    mm_status st = check_f32_shape(t, name, rows, cols);
    if (st != MM_OK) return st;
    size_t n = (t->end - t->begin) / 4;
    st = read_range(f, t->begin, n * 4, dst);
    if (st == MM_OK && !host_is_little_endian()) le_to_host(dst, (const unsigned char *)dst, n, 4);
    return st;
}

mm_status mm_file_read_f32(const mm_file *f, const char *name, size_t rows, size_t cols,
                           float *dst) {
    if (!f) return mm_null_arg("f");
    if (!name) return mm_null_arg("name");
    if (!dst) return mm_null_arg("dst");
    mm_status st = read_f32(f, name, rows, cols, dst);
    return st == MM_OK ? st : file_fail(f, st);
}

/* A tensor whose dtype is an mm_dtype. */
static mm_status find_typed_tensor(const mm_file *f, const char *name, const tensor_info **out) {
    const tensor_info *t = find_tensor(f, name);
    if (!t) return mm_error(MM_E_NOT_FOUND, "tensor %s not found", name);
    if (t->mdtype < 0)
        return mm_error(MM_E_UNSUPPORTED,
                        "tensor %s: dtype %s is not supported (mmaint reads F32 F16 BF16 I8 U8 "
                        "I16 U16 I32 U32)",
                        name, t->dtype);
    *out = t;
    return MM_OK;
}

mm_status mm_file_tensor_info(const mm_file *f, const char *name, mm_dtype *dtype,
                              uint64_t shape[MMF_MAX_DIMS], size_t *ndim) {
    if (!f) return mm_null_arg("f");
    if (!name) return mm_null_arg("name");
    const tensor_info *t = NULL;
    mm_status st = find_typed_tensor(f, name, &t);
    if (st != MM_OK) return file_fail(f, st);
    if (dtype) *dtype = (mm_dtype)t->mdtype;
    if (shape && t->ndim) memcpy(shape, t->shape, t->ndim * sizeof *shape);
    if (ndim) *ndim = t->ndim;
    return MM_OK;
}

static mm_status read_tensor(const mm_file *f, const char *name, mm_dtype dtype,
                             const uint64_t *shape, size_t ndim, void *dst) {
    if (!dtype_valid(dtype))
        return mm_error(MM_E_INVALID_ARGUMENT, "tensor %s: unknown dtype %d requested", name,
                        (int)dtype);
    if (ndim > MMF_MAX_DIMS)
        return mm_error(MM_E_INVALID_ARGUMENT, "tensor %s: %zu dimensions requested (at most %d)",
                        name, ndim, MMF_MAX_DIMS);
    if (ndim > 0 && !shape) return mm_null_arg("shape");
    const tensor_info *t = NULL;
    mm_status st = find_typed_tensor(f, name, &t);
    if (st != MM_OK) return st;
    if (t->mdtype != (int)dtype)
        return mm_error(MM_E_FORMAT, "tensor %s: dtype %s, expected %s", name, t->dtype,
                        mm_dtypes[dtype].name);
    bool same = t->ndim == ndim;
    for (size_t i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char have[256], want[256];
        return mm_error(MM_E_FORMAT, "tensor %s: shape %s, expected %s", name,
                        shape_text(have, sizeof have, t->shape, t->ndim),
                        shape_text(want, sizeof want, shape, ndim));
    }
    size_t bytes = t->end - t->begin;
    if (bytes == 0) return MM_OK;
    if (!dst) return mm_null_arg("dst");
    st = read_range(f, t->begin, bytes, dst);
    if (st == MM_OK && t->elsize > 1 && !host_is_little_endian())
        le_to_host(dst, (const unsigned char *)dst, bytes / t->elsize, t->elsize);
    return st;
}

mm_status mm_file_read_tensor(const mm_file *f, const char *name, mm_dtype dtype,
                              const uint64_t *shape, size_t ndim, void *dst) {
    if (!f) return mm_null_arg("f");
    if (!name) return mm_null_arg("name");
    mm_status st = read_tensor(f, name, dtype, shape, ndim, dst);
    return st == MM_OK ? st : file_fail(f, st);
}

/* ---- tensors of any dtype ---- */

size_t mm_file_tensor_count(const mm_file *f) { return f ? f->nt : 0; }

const char *mm_file_tensor_name(const mm_file *f, size_t i) {
    return f && i < f->nt ? f->t[f->by_name[i]].name : NULL;
}

mm_status mm_file_tensor_shape(const mm_file *f, const char *name, const char **dtype,
                               uint64_t shape[MMF_MAX_DIMS], size_t *ndim) {
    if (!f) return mm_null_arg("f");
    if (!name) return mm_null_arg("name");
    const tensor_info *t = find_tensor(f, name);
    if (!t) return file_fail(f, mm_error(MM_E_NOT_FOUND, "tensor %s not found", name));
    if (dtype) *dtype = t->dtype;
    if (shape && t->ndim) memcpy(shape, t->shape, t->ndim * sizeof *shape);
    if (ndim) *ndim = t->ndim;
    return MM_OK;
}

static uint16_t rd_u16le(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* Index of the first NaN or infinity in x[0..n), or n. The scan is
 * branch-free (vectorises); the position is searched only on failure. */
static size_t first_non_finite(const float *x, size_t n) {
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    if (!bad) return n;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

static mm_status read_float(const mm_file *f, const char *name, size_t rows, size_t cols,
                            bool round_f64, float *dst) {
    const tensor_info *t = find_tensor(f, name);
    if (!t) return mm_error(MM_E_NOT_FOUND, "tensor %s not found", name);
    const bool f32 = strcmp(t->dtype, "F32") == 0, f16 = strcmp(t->dtype, "F16") == 0,
               bf16 = strcmp(t->dtype, "BF16") == 0, f64 = strcmp(t->dtype, "F64") == 0;
    if (!f32 && !f16 && !bf16 && !f64)
        return mm_error(MM_E_UNSUPPORTED,
                        "tensor %s: dtype %s is not supported (F32, F16, BF16 or F64)", name,
                        t->dtype);
    bool ok = (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols) ||
              (t->ndim == 1 && cols == 1 && t->shape[0] == rows);
    if (!ok) {
        char sbuf[256];
        if (cols == 1)
            return mm_error(MM_E_SHAPE, "tensor %s: shape %s, expected [%zu] or [%zu, 1]", name,
                            shape_text(sbuf, sizeof sbuf, t->shape, t->ndim), rows, rows);
        return mm_error(MM_E_SHAPE, "tensor %s: shape %s, expected [%zu, %zu]", name,
                        shape_text(sbuf, sizeof sbuf, t->shape, t->ndim), rows, cols);
    }
    if (!dst) return MM_OK;
    const size_t n = rows * cols; /* fits: the tensor is in the file */
    if (f32) {
        mm_status st = read_range(f, t->begin, n * 4, dst);
        if (st != MM_OK) return st;
        if (!host_is_little_endian()) le_to_host(dst, (const unsigned char *)dst, n, 4);
    } else {
        unsigned char chunk[8192];
        const size_t es = t->elsize, per = sizeof chunk / es;
        for (size_t i0 = 0; i0 < n; i0 += per) {
            const size_t k = n - i0 < per ? n - i0 : per;
            mm_status st = read_range(f, t->begin + i0 * es, k * es, chunk);
            if (st != MM_OK) return st;
            for (size_t j = 0; j < k; j++) {
                const unsigned char *p = chunk + j * es;
                const size_t i = i0 + j;
                if (f16) {
                    dst[i] = mm_f16_to_f32(rd_u16le(p));
                } else if (bf16) {
                    dst[i] = mm_bf16_to_f32(rd_u16le(p));
                } else {
                    uint64_t u = rd_u64le(p);
                    double d;
                    memcpy(&d, &u, sizeof d);
                    if (!isfinite(d))
                        return mm_error(MM_E_NUMERIC, "tensor %s: element %zu is %s", name, i,
                                        isnan(d) ? "NaN" : "infinite");
                    float x = (float)d;
                    if (isinf(x))
                        return mm_error(MM_E_OUT_OF_RANGE,
                                        "tensor %s: element %zu (%.17g) is beyond the float range",
                                        name, i, d);
                    if (!round_f64 && (double)x != d)
                        return mm_error(MM_E_OUT_OF_RANGE,
                                        "tensor %s: F64 element %zu (%.17g) is not exactly a "
                                        "float (allow rounding to convert it)",
                                        name, i, d);
                    dst[i] = x;
                }
            }
        }
    }
    size_t bad = first_non_finite(dst, n);
    if (bad < n)
        return mm_error(MM_E_NUMERIC, "tensor %s: element %zu is %s", name, bad,
                        isnan(dst[bad]) ? "NaN" : "infinite");
    return MM_OK;
}

mm_status mm_file_read_float(const mm_file *f, const char *name, size_t rows, size_t cols,
                             bool round_f64, float *dst) {
    if (!f) return mm_null_arg("f");
    if (!name) return mm_null_arg("name");
    mm_status st = read_float(f, name, rows, cols, round_f64, dst);
    return st == MM_OK ? st : file_fail(f, st);
}

/* ---- layer parameters ---- */

#define MMF_NAME_CAP 128

static mm_status param_tensor_name(char name[MMF_NAME_CAP], size_t index, const char *pname) {
    int n = snprintf(name, MMF_NAME_CAP, "layers.%zu.%s", index, pname);
    if (n < 0 || n >= MMF_NAME_CAP)
        return mm_error(MM_E_INTERNAL, "layer %zu: parameter name \"%.40s\" too long", index,
                        pname);
    return MM_OK;
}

static mm_status check_params_shape(const mm_file *f, size_t index, const char *kind,
                                    const mm_param_shape *params, size_t n) {
    for (size_t j = 0; j < n; j++) {
        const mm_param_shape *ps = &params[j];
        char name[MMF_NAME_CAP];
        mm_status st = param_tensor_name(name, index, ps->name);
        if (st != MM_OK) return st;
        const tensor_info *t = find_tensor(f, name);
        if (!t) {
            if (ps->cols == 1)
                return mm_error(MM_E_FORMAT,
                                "tensor %s is missing (layer %zu is %s, needs F32 [%zu])", name,
                                index, kind, ps->rows);
            return mm_error(MM_E_FORMAT,
                            "tensor %s is missing (layer %zu is %s, needs F32 [%zu, %zu])", name,
                            index, kind, ps->rows, ps->cols);
        }
        st = check_f32_shape(t, name, ps->rows, ps->cols);
        if (st == MM_E_SHAPE) st = MM_E_FORMAT; /* the architecture disagrees with the tensor */
        if (st != MM_OK) return st;
    }
    return MM_OK;
}

mm_status mm_file_check_params_shape(const mm_file *f, size_t index, const char *kind,
                                     const mm_param_shape *params, size_t n) {
    if (!f) return mm_null_arg("f");
    if (!kind) return mm_null_arg("kind");
    if (n > 0 && !params) return mm_null_arg("params");
    mm_status st = check_params_shape(f, index, kind, params, n);
    return st == MM_OK ? st : file_fail(f, st);
}

static mm_status load_params(const mm_file *f, size_t index, mm_layer *l) {
    for (size_t j = 0; j < l->n_params; j++) {
        mm_param *p = &l->params[j];
        char name[MMF_NAME_CAP];
        mm_status st = param_tensor_name(name, index, p->name);
        if (st != MM_OK) return st;
        st = read_f32(f, name, p->rows, p->cols, p->data);
        if (st == MM_E_NOT_FOUND)
            return mm_error(MM_E_FORMAT, "tensor %s is missing (layer %zu is %s %zu -> %zu)", name,
                            index, l->vt->kind, l->in, l->out);
        if (st == MM_E_SHAPE) st = MM_E_FORMAT; /* the architecture disagrees with the tensor */
        if (st != MM_OK) return st;
        size_t n = mm_param_count(p);
        for (size_t k = 0; k < n; k++)
            if (!isfinite(p->data[k]))
                return mm_error(MM_E_NUMERIC, "tensor %s: element %zu is %s", name, k,
                                isnan(p->data[k]) ? "NaN" : "infinite");
    }
    return MM_OK;
}

mm_status mm_file_load_params(const mm_file *f, size_t index, mm_layer *layer) {
    if (!f) return mm_null_arg("f");
    if (!layer) return mm_null_arg("layer");
    mm_status st = load_params(f, index, layer);
    return st == MM_OK ? st : file_fail(f, st);
}

/* ---- architecture ---- */

static mm_status arch_dim(const json_t *obj, const char *key, const char *where, size_t *out) {
    const json_t *v = json_object_get(obj, key);
    if (!v) return mm_error(MM_E_FORMAT, "architecture: %s: missing \"%s\"", where, key);
    if (!json_is_integer(v))
        return mm_error(MM_E_FORMAT, "architecture: %s: \"%s\" must be an integer", where, key);
    long long x = (long long)json_integer_value(v);
    if (x < 1 || (unsigned long long)x > MMF_MAX_LAYER_DIM)
        return mm_error(MM_E_FORMAT, "architecture: %s: \"%s\" is %lld, outside [1, %zu]", where,
                        key, x, MMF_MAX_LAYER_DIM);
    *out = (size_t)x;
    return MM_OK;
}

static mm_status arch_string(const json_t *obj, const char *key, const char *where,
                             const char **out) {
    const json_t *v = json_object_get(obj, key);
    if (!v) return mm_error(MM_E_FORMAT, "architecture: %s: missing \"%s\"", where, key);
    if (!json_is_string(v))
        return mm_error(MM_E_FORMAT, "architecture: %s: \"%s\" must be a string", where, key);
    *out = json_string_value(v);
    return MM_OK;
}

static bool parse_u64_dec(const char *s, uint64_t *out) {
    if (!*s || strlen(s) > 20) return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool parse_u64_hex16(const char *s, uint64_t *out) {
    if (strlen(s) != 16) return false;
    uint64_t v = 0;
    for (; *s; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = (unsigned)(*s - '0');
        else if (*s >= 'a' && *s <= 'f')
            d = (unsigned)(*s - 'a' + 10);
        else
            return false;
        v = (v << 4) | d;
    }
    *out = v;
    return true;
}

void mm_file_arch_free(mm_file_arch *a) {
    if (!a) return;
    free(a->layers);
    json_decref(a->root);
    memset(a, 0, sizeof *a);
}

/* The generic checks of every layer entry (kind known, dims, chaining,
 * activation), before any layer is built. What a kind needs beyond these
 * (its tensors, its own fields) its loader checks, before allocating. */
static mm_status parse_architecture(const mm_file *f, mm_file_arch *a) {
    const char *text = mm_file_meta(f, "architecture");
    if (!text) return mm_error(MM_E_FORMAT, "__metadata__.architecture is missing");
    if (json_value_bound(text, strlen(text)) > MMF_MAX_JSON_VALUES)
        return mm_error(MM_E_FORMAT, "architecture has more than %zu JSON values",
                        MMF_MAX_JSON_VALUES);
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return mm_error(MM_E_FORMAT, "architecture is not valid JSON: %s (column %d)", jerr.text,
                        jerr.column);
    a->root = root;
    const char *s = NULL;
    mm_status st;
    if (!json_is_object(root)) return mm_error(MM_E_FORMAT, "architecture must be a JSON object");
    if ((st = arch_dim(root, "input_dim", "model", &a->input_dim)) != MM_OK) return st;
    if ((st = arch_string(root, "loss", "model", &s)) != MM_OK) return st;
    if (mm_loss_from_name(s, &a->loss) != MM_OK)
        return mm_error(MM_E_FORMAT, "architecture: unknown loss \"%.60s\"", s);
    const json_t *slope = json_object_get(root, "leaky_slope");
    if (!slope || !json_is_number(slope))
        return mm_error(MM_E_FORMAT, "architecture: \"leaky_slope\" must be a number");
    double sv = json_number_value(slope);
    a->leaky_slope = (float)sv;
    if (!(sv >= 0.0 && sv < 1.0) || !(a->leaky_slope < 1.0f))
        return mm_error(MM_E_FORMAT, "architecture: leaky_slope %g outside [0, 1)", sv);
    if ((st = arch_string(root, "seed", "model", &s)) != MM_OK) return st;
    if (!parse_u64_dec(s, &a->seed))
        return mm_error(MM_E_FORMAT,
                        "architecture: seed \"%.40s\" is not a decimal 64-bit integer", s);
    const json_t *rng = json_object_get(root, "init_rng");
    if (rng) {
        bool ok = json_is_array(rng) && json_array_size(rng) == 4;
        uint64_t any = 0;
        for (size_t i = 0; ok && i < 4; i++) {
            const json_t *w = json_array_get(rng, i);
            ok = json_is_string(w) && parse_u64_hex16(json_string_value(w), &a->rng.s[i]);
            if (ok) any |= a->rng.s[i];
        }
        if (!ok || any == 0)
            return mm_error(MM_E_FORMAT,
                            "architecture: \"init_rng\" must be 4 strings of 16 lowercase hex "
                            "digits, not all zero");
        a->have_rng = true;
    }
    const json_t *layers = json_object_get(root, "layers");
    if (!layers || !json_is_array(layers))
        return mm_error(MM_E_FORMAT, "architecture: \"layers\" must be an array");
    a->n_layers = json_array_size(layers);
    a->layers = mm_calloc_array(a->n_layers ? a->n_layers : 1, sizeof *a->layers);
    if (!a->layers) return mm_oom("architecture");
    size_t prev = a->input_dim;
    for (size_t i = 0; i < a->n_layers; i++) {
        const json_t *l = json_array_get(layers, i);
        char where[48];
        snprintf(where, sizeof where, "layer %zu", i);
        if (!json_is_object(l))
            return mm_error(MM_E_FORMAT, "architecture: %s must be an object", where);
        mm_file_arch_layer *al = &a->layers[i];
        al->entry = l;
        if ((st = arch_string(l, "kind", where, &s)) != MM_OK) return st;
        al->kind = mm_layer_kind_find(s);
        if (!al->kind)
            return mm_error(MM_E_UNSUPPORTED,
                            "architecture: %s: layer kind \"%.40s\" not supported", where, s);
        if ((st = arch_dim(l, "in", where, &al->in)) != MM_OK) return st;
        if ((st = arch_dim(l, "out", where, &al->out)) != MM_OK) return st;
        if ((st = arch_string(l, "activation", where, &s)) != MM_OK) return st;
        if (mm_activation_from_name(s, &al->act) != MM_OK)
            return mm_error(MM_E_FORMAT, "architecture: %s: unknown activation \"%.40s\"", where,
                            s);
        const json_t *tr = json_object_get(l, "trainable");
        if (tr && !json_is_boolean(tr))
            return mm_error(MM_E_FORMAT, "architecture: %s: \"trainable\" must be true or false",
                            where);
        al->frozen = tr && json_is_false(tr);
        if (al->in != prev)
            return mm_error(MM_E_FORMAT, "architecture: %s takes %zu inputs but %s gives %zu",
                            where, al->in, i == 0 ? "input_dim" : "the previous layer", prev);
        prev = al->out;
    }
    return MM_OK;
}

static mm_status build_model(const mm_file *f, mm_model **out) {
    const char *fmt = mm_file_meta(f, "format");
    if (!fmt || strcmp(fmt, MMF_FORMAT) != 0)
        return mm_error(MM_E_FORMAT,
                        "not an mmaint model file (__metadata__.format is %s%.40s%s, expected "
                        "\"" MMF_FORMAT "\")",
                        fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
    mm_file_arch a;
    memset(&a, 0, sizeof a);
    mm_model *m = NULL;
    mm_status st = parse_architecture(f, &a);
    if (st != MM_OK) goto fail;
    st = mm_model_create(&m, a.input_dim, a.seed);
    if (st != MM_OK) goto fail;
    m->loss = a.loss;
    m->leaky_slope = a.leaky_slope;
    if (a.have_rng) m->init_rng = a.rng;
    for (size_t i = 0; i < a.n_layers; i++) {
        const mm_file_arch_layer *al = &a.layers[i];
        mm_layer *l = NULL;
        /* the loader checks its tensors against the file before allocating */
        st = al->kind->load(f, i, al->entry, al->in, al->out, al->act, a.leaky_slope, &l);
        if (st == MM_OK &&
            (!l || l->in != al->in || l->out != al->out || l->act != al->act ||
             l->vt != al->kind))
            st = mm_error(MM_E_INTERNAL, "layer %zu: the %s loader built a different layer", i,
                          al->kind->kind);
        if (st == MM_OK) {
            l->frozen = al->frozen;
            st = mm_model_push_layer(m, l);
        }
        if (st != MM_OK) {
            if (l) l->vt->destroy(l);
            goto fail;
        }
    }
    const char *lineage = mm_file_meta(f, "lineage");
    if (lineage && json_value_bound(lineage, strlen(lineage)) > MMF_MAX_JSON_VALUES) {
        st = mm_error(MM_E_FORMAT, "lineage has more than %zu JSON values", MMF_MAX_JSON_VALUES);
        goto fail;
    }
    st = mm_lineage_set(m, lineage ? lineage : "[]");
    if (st != MM_OK) goto fail;
    mm_file_arch_free(&a);
    *out = m;
    return MM_OK;
fail:
    mm_file_arch_free(&a);
    mm_model_free(m);
    return st;
}

mm_status mm_file_parse_architecture(const mm_file *f, mm_file_arch *a) {
    if (!a) return mm_null_arg("a");
    memset(a, 0, sizeof *a);
    if (!f) return mm_null_arg("f");
    mm_status st = parse_architecture(f, a);
    if (st == MM_OK) return MM_OK;
    mm_file_arch_free(a);
    return file_fail(f, st);
}

mm_status mm_file_build_model(const mm_file *f, mm_model **out) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!f) return mm_null_arg("f");
    const mm_file *outer = tls_building;
    tls_building = f; /* loaders' errors get the path prefix once, below */
    mm_status st = build_model(f, out);
    tls_building = outer;
    return st == MM_OK ? st : file_fail(f, st);
}

/* ------------------------------------------------------------------------
 * Tensors shared by layer kinds
 * ---------------------------------------------------------------------- */

mm_status mm_file_check_vector(const mm_file *f, const char *name, mm_dtype want, mm_dtype alt,
                           uint64_t len_or_max, bool exact, mm_dtype *dtype, uint64_t *len) {
    uint64_t shape[MM_FILE_MAX_DIMS];
    size_t ndim = 0;
    mm_dtype dt = MM_DTYPE_F32;
    mm_status st = mm_file_tensor_info(f, name, &dt, shape, &ndim);
    if (st == MM_E_NOT_FOUND) return mm_error(MM_E_FORMAT, "tensor %s is missing", name);
    if (st != MM_OK) return mm_error_prefix(MM_E_FORMAT, "tensor %s", name);
    if (dt != want && dt != alt)
        return mm_error(MM_E_FORMAT, "tensor %s has dtype %s, expected %s", name,
                        mm_dtype_name(dt), mm_dtype_name(want));
    if (ndim != 1)
        return mm_error(MM_E_FORMAT, "tensor %s has %zu dimensions, expected 1", name, ndim);
    if (exact ? shape[0] != len_or_max : shape[0] > len_or_max)
        return mm_error(MM_E_FORMAT, "tensor %s has %llu elements, expected %s%llu", name,
                        (unsigned long long)shape[0], exact ? "" : "at most ",
                        (unsigned long long)len_or_max);
    if (dtype) *dtype = dt;
    if (len) *len = shape[0];
    return MM_OK;
}

void mm_file_csr_free(mm_file_csr *c) {
    free(c->offsets);
    free(c->indices);
    mm_free_floats(c->values);
    c->offsets = c->indices = NULL;
    c->values = NULL;
}

mm_status mm_file_read_csr(const mm_file *f, size_t index, size_t in, size_t out,
                           mm_file_csr *c) {
    char nv[96], ni[96], no[96];
    snprintf(nv, sizeof nv, "layers.%zu.weight_values", index);
    snprintf(ni, sizeof ni, "layers.%zu.weight_indices", index);
    snprintf(no, sizeof no, "layers.%zu.weight_offsets", index);
    size_t count;
    const uint64_t max_nnz =
        mm_mul_ok(in, out, &count) && count < UINT32_MAX ? count : UINT32_MAX;
    uint64_t nnz64 = 0, nidx = 0;
    mm_dtype idx_dtype = MM_DTYPE_U32;
    mm_status st = mm_file_check_vector(f, nv, MM_DTYPE_F32, MM_DTYPE_F32, max_nnz, false, NULL, &nnz64);
    if (st == MM_OK)
        st = mm_file_check_vector(f, ni, MM_DTYPE_U16, MM_DTYPE_U32, max_nnz, false, &idx_dtype, &nidx);
    if (st == MM_OK)
        st = mm_file_check_vector(f, no, MM_DTYPE_U32, MM_DTYPE_U32, (uint64_t)out + 1, true, NULL, NULL);
    if (st != MM_OK) return st;
    if (nidx != nnz64)
        return mm_error(MM_E_FORMAT, "tensor %s has %llu elements but %s has %llu", ni,
                        (unsigned long long)nidx, nv, (unsigned long long)nnz64);
    const size_t nnz = (size_t)nnz64;
    c->nnz = nnz;
    c->offsets = mm_malloc_array(out + 1, sizeof *c->offsets);
    c->indices = mm_malloc_array(nnz ? nnz : 1, sizeof *c->indices);
    c->values = mm_alloc_floats(nnz ? nnz : 1);
    uint16_t *idx16 = idx_dtype == MM_DTYPE_U16 ? mm_malloc_array(nnz ? nnz : 1, 2) : NULL;
    if (!c->offsets || !c->indices || !c->values || (idx_dtype == MM_DTYPE_U16 && !idx16)) {
        free(idx16);
        return mm_oom("CSR weights");
    }
    const uint64_t shape_nnz[1] = {nnz}, shape_off[1] = {(uint64_t)out + 1};
    st = mm_file_read_tensor(f, no, MM_DTYPE_U32, shape_off, 1, c->offsets);
    if (st == MM_OK)
        st = mm_file_read_tensor(f, ni, idx_dtype, shape_nnz, 1,
                                 idx16 ? (void *)idx16 : (void *)c->indices);
    if (st == MM_OK) st = mm_file_read_tensor(f, nv, MM_DTYPE_F32, shape_nnz, 1, c->values);
    if (st == MM_OK && idx16)
        for (size_t k = 0; k < nnz; k++) c->indices[k] = idx16[k];
    free(idx16);
    if (st != MM_OK) return st;
    const uint32_t *off = c->offsets, *idx = c->indices;
    if (off[0] != 0 || off[out] != nnz)
        return mm_error(MM_E_FORMAT,
                        "tensor %s must start at 0 and end at %zu (the number of stored "
                        "weights), not %u .. %u",
                        no, nnz, (unsigned)off[0], (unsigned)off[out]);
    for (size_t r = 1; r <= out; r++)
        if (off[r] < off[r - 1])
            return mm_error(MM_E_FORMAT, "tensor %s decreases at row %zu (%u after %u)", no, r,
                            (unsigned)off[r], (unsigned)off[r - 1]);
    for (size_t r = 0; r < out; r++) {
        if ((size_t)(off[r + 1] - off[r]) > in)
            return mm_error(MM_E_FORMAT,
                            "tensor %s: row %zu holds %zu weights but the layer has %zu inputs",
                            no, r, (size_t)(off[r + 1] - off[r]), in);
        for (size_t k = off[r]; k < off[r + 1]; k++) {
            if (idx[k] >= in)
                return mm_error(MM_E_FORMAT,
                                "tensor %s: element %zu (row %zu) is %u, not below the %zu "
                                "inputs",
                                ni, k, r, (unsigned)idx[k], in);
            if (k > off[r] && idx[k] <= idx[k - 1])
                return mm_error(MM_E_FORMAT,
                                "tensor %s: the columns of row %zu do not increase (%u after %u "
                                "at element %zu)",
                                ni, r, (unsigned)idx[k], (unsigned)idx[k - 1], k);
        }
    }
    for (size_t k = 0; k < nnz; k++)
        if (!isfinite(c->values[k]))
            return mm_error(MM_E_NUMERIC, "tensor %s: element %zu is %s", nv, k,
                            isnan(c->values[k]) ? "NaN" : "infinite");
    return MM_OK;
}


/* ------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------- */

typedef struct wtensor {
    char *name;
    mm_dtype dtype;
    const void *data; /* host order, borrowed until commit */
    uint64_t shape[MMF_MAX_DIMS];
    size_t ndim;
    size_t count; /* elements; count * elsize fits in size_t */
    unsigned elsize;
} wtensor;

typedef struct wmeta {
    char *key, *value;
} wmeta;

struct mm_file_writer {
    wtensor *t;
    size_t nt, cap_t;
    wmeta *m;
    size_t nm, cap_m;
    bool plain; /* no format tag, version or checksum */
};

void mm_file_writer_set_plain(mm_file_writer *w, bool plain) {
    if (w) w->plain = plain;
}

mm_status mm_file_writer_create(mm_file_writer **out) {
    if (!out) return mm_null_arg("out");
    *out = calloc(1, sizeof **out);
    return *out ? MM_OK : mm_oom("file writer");
}

void mm_file_writer_free(mm_file_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->nt; i++) free(w->t[i].name);
    for (size_t i = 0; i < w->nm; i++) {
        free(w->m[i].key);
        free(w->m[i].value);
    }
    free(w->t);
    free(w->m);
    free(w);
}

static bool valid_utf8(const char *s) {
    json_t *j = json_string(s); /* jansson validates UTF-8 */
    json_decref(j);
    return j != NULL;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elsize) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap * 2 : 8;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, nc * elsize);
    if (!q) return false;
    *p = q;
    *cap = nc;
    return true;
}

mm_status mm_file_writer_add_tensor(mm_file_writer *w, const char *name, mm_dtype dtype,
                                    const void *data, const uint64_t *shape, size_t ndim) {
    if (!w) return mm_null_arg("w");
    if (!name) return mm_null_arg("name");
    if (!*name || strcmp(name, "__metadata__") == 0 || !valid_utf8(name))
        return mm_error(MM_E_INVALID_ARGUMENT, "invalid tensor name \"%s\"", name);
    if (!dtype_valid(dtype))
        return mm_error(MM_E_INVALID_ARGUMENT, "tensor %s: unknown dtype %d", name, (int)dtype);
    if (ndim > MMF_MAX_DIMS)
        return mm_error(MM_E_INVALID_ARGUMENT, "tensor %s: %zu dimensions (at most %d)", name,
                        ndim, MMF_MAX_DIMS);
    if (ndim > 0 && !shape) return mm_null_arg("shape");
    unsigned elsize = mm_dtypes[dtype].size;
    size_t count = 1, bytes;
    bool fits = true;
    for (size_t i = 0; i < ndim; i++) {
        /* each dimension must be a JSON integer readers accept, even where
         * another dimension is 0 */
        if (shape[i] > (uint64_t)INT64_MAX || shape[i] > (uint64_t)SIZE_MAX) fits = false;
        else if (fits && !mm_mul_ok(count, (size_t)shape[i], &count)) fits = false;
    }
    if (!fits || !mm_mul_ok(count, elsize, &bytes)) {
        char sbuf[256];
        return mm_error(MM_E_OUT_OF_RANGE, "tensor %s: %s %s is too large", name,
                        mm_dtypes[dtype].name, shape_text(sbuf, sizeof sbuf, shape, ndim));
    }
    if (count > 0 && !data) return mm_null_arg("data");
    for (size_t i = 0; i < w->nt; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return mm_error(MM_E_INVALID_ARGUMENT, "tensor %s added twice", name);
    if (!grow((void **)&w->t, &w->cap_t, w->nt + 1, sizeof *w->t)) return mm_oom("tensor list");
    wtensor *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    t->name = mm_strdup(name);
    if (!t->name) return mm_oom("tensor name");
    t->dtype = dtype;
    t->data = data;
    for (size_t i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->ndim = ndim;
    t->count = count;
    t->elsize = elsize;
    w->nt++;
    return MM_OK;
}

mm_status mm_file_writer_add_f32(mm_file_writer *w, const char *name, const float *data,
                                 size_t rows, size_t cols, bool vector) {
    if (!w) return mm_null_arg("w");
    if (!name) return mm_null_arg("name");
    if (vector && cols != 1)
        return mm_error(MM_E_INVALID_ARGUMENT, "tensor %s: a vector needs cols == 1, got %zu",
                        name, cols);
    const uint64_t shape[2] = {rows, cols};
    return mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, data, shape, vector ? 1 : 2);
}

mm_status mm_file_save_params(const mm_layer *layer, size_t index, mm_file_writer *w) {
    if (!layer) return mm_null_arg("layer");
    if (!w) return mm_null_arg("w");
    for (size_t j = 0; j < layer->n_params; j++) {
        const mm_param *p = &layer->params[j];
        size_t n = mm_param_count(p);
        for (size_t k = 0; k < n; k++)
            if (!isfinite(p->data[k]))
                return mm_error(MM_E_NUMERIC,
                                "layer %zu %s element %zu is %s; refusing to save a model "
                                "that could not be loaded",
                                index, p->name, k, isnan(p->data[k]) ? "NaN" : "infinite");
    }
    for (size_t j = 0; j < layer->n_params; j++) {
        const mm_param *p = &layer->params[j];
        char name[MMF_NAME_CAP];
        mm_status st = param_tensor_name(name, index, p->name);
        if (st != MM_OK) return st;
        bool vector = p->cols == 1 && strcmp(p->name, "weight") != 0;
        st = mm_file_writer_add_f32(w, name, p->data, p->rows, p->cols, vector);
        if (st != MM_OK) return st;
    }
    return MM_OK;
}

static bool reserved_meta(const char *key) {
    return strcmp(key, "format") == 0 || strcmp(key, "format_version") == 0 ||
           strcmp(key, "checksum") == 0;
}

mm_status mm_file_writer_add_meta(mm_file_writer *w, const char *key, const char *value) {
    if (!w) return mm_null_arg("w");
    if (!key) return mm_null_arg("key");
    if (!value) return mm_null_arg("value");
    if (!*key || !valid_utf8(key))
        return mm_error(MM_E_INVALID_ARGUMENT, "invalid metadata key \"%s\"", key);
    if (reserved_meta(key))
        return mm_error(MM_E_INVALID_ARGUMENT,
                        "metadata key \"%s\" is reserved (written by the library)", key);
    if (!valid_utf8(value))
        return mm_error(MM_E_INVALID_ARGUMENT, "metadata %s: value is not valid UTF-8", key);
    for (size_t i = 0; i < w->nm; i++)
        if (strcmp(w->m[i].key, key) == 0)
            return mm_error(MM_E_INVALID_ARGUMENT, "metadata key \"%s\" added twice", key);
    if (!grow((void **)&w->m, &w->cap_m, w->nm + 1, sizeof *w->m)) return mm_oom("metadata list");
    wmeta *m = &w->m[w->nm];
    m->key = mm_strdup(key);
    m->value = mm_strdup(value);
    if (!m->key || !m->value) {
        free(m->key);
        free(m->value);
        return mm_oom("metadata");
    }
    w->nm++;
    return MM_OK;
}

static char *dump_compact(const json_t *j) {
    return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
}

/* The architecture text; each layer's save hook adds its fields to the
 * layer's entry and its tensors to w. Without w, every layer is described
 * as kind "dense" and nothing is added. */
static mm_status architecture_json(const mm_model *model, mm_file_writer *w, char **out) {
    json_t *root = json_object();
    json_t *layers = json_array();
    json_t *rng = json_array();
    mm_status st = MM_OK;
    *out = NULL;
    if (!root || !layers || !rng) goto oom;
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)model->seed);
    const char *loss = mm_loss_name(model->loss);
    for (int i = 0; i < 4; i++) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)model->init_rng.s[i]);
        if (json_array_append_new(rng, json_string(hex)) != 0) goto oom;
    }
    if (json_object_set_new(root, "input_dim", json_integer((json_int_t)model->input_dim)) ||
        json_object_set_new(root, "loss", json_string(loss ? loss : "?")) ||
        json_object_set_new(root, "leaky_slope", json_real((double)model->leaky_slope)) ||
        json_object_set_new(root, "seed", json_string(seed)) ||
        json_object_set(root, "init_rng", rng))
        goto oom;
    for (size_t i = 0; i < model->n_layers; i++) {
        const mm_layer *l = model->layers[i];
        if (w && !l->vt->save) {
            st = mm_error(MM_E_UNSUPPORTED, "layer %zu: %s layers cannot be saved", i,
                          l->vt->kind);
            goto done;
        }
        const char *act = mm_activation_name(l->act);
        json_t *o = json_object();
        if (!o) goto oom;
        if (json_object_set_new(o, "kind", json_string(w ? l->vt->kind : "dense")) ||
            json_object_set_new(o, "in", json_integer((json_int_t)l->in)) ||
            json_object_set_new(o, "out", json_integer((json_int_t)l->out)) ||
            json_object_set_new(o, "activation", json_string(act ? act : "?")) ||
            (l->frozen && json_object_set_new(o, "trainable", json_false()))) {
            json_decref(o);
            goto oom;
        }
        if (json_array_append_new(layers, o)) goto oom; /* frees o when it fails */
        if (w) {
            st = l->vt->save(l, i, o, w);
            if (st != MM_OK) goto done;
        }
    }
    if (json_object_set(root, "layers", layers) != 0) goto oom;
    *out = dump_compact(root);
    if (!*out) goto oom;
    goto done;
oom:
    st = mm_oom("architecture text");
done:
    json_decref(rng);
    json_decref(layers);
    json_decref(root);
    return st;
}

mm_status mm_file_dense_architecture(const mm_model *model, char **out) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!model) return mm_null_arg("model");
    for (size_t i = 0; i < model->n_layers; i++)
        if (!mm_activation_name(model->layers[i]->act))
            return mm_error(MM_E_INTERNAL, "layer %zu has an unknown activation", i);
    return architecture_json(model, NULL, out);
}

mm_status mm_file_writer_add_model(mm_file_writer *w, const mm_model *model) {
    if (!w) return mm_null_arg("w");
    if (!model) return mm_null_arg("model");
    /* A file the loader would refuse must not be written (the save hooks
     * check their own data: mm_file_save_params refuses NaN and infinity). */
    for (size_t i = 0; i < model->n_layers; i++)
        if (!mm_activation_name(model->layers[i]->act))
            return mm_error(MM_E_INTERNAL, "layer %zu has an unknown activation", i);
    const char *lineage = mm_lineage_text(model); /* with an open run of online steps */
    if (!lineage) return MM_E_OUT_OF_MEMORY;
    if (json_value_bound(lineage, strlen(lineage)) > MMF_MAX_JSON_VALUES)
        return mm_error(MM_E_OUT_OF_RANGE,
                        "lineage has more than %zu JSON values; readers would refuse the file",
                        MMF_MAX_JSON_VALUES);
    char *arch = NULL;
    mm_status st = architecture_json(model, w, &arch);
    if (st != MM_OK) return st;
    st = mm_file_writer_add_meta(w, "architecture", arch);
    free(arch);
    if (st != MM_OK) return st;
    return mm_file_writer_add_meta(w, "lineage", lineage);
}

static int cmp_wtensor_ptr(const void *a, const void *b) {
    return strcmp((*(const wtensor *const *)a)->name, (*(const wtensor *const *)b)->name);
}

static int cmp_wmeta_ptr(const void *a, const void *b) {
    return strcmp((*(const wmeta *const *)a)->key, (*(const wmeta *const *)b)->key);
}

/* CRC of a tensor's data as the little-endian bytes written to the file,
 * converted in chunks of MMF_CHUNK elements (chunk holds 4 * MMF_CHUNK). */
static uLong crc_tensor_data(uLong crc, const wtensor *t, unsigned char *chunk) {
    const unsigned char *x = t->data;
    size_t n = t->count;
    while (n > 0) {
        size_t step = n > MMF_CHUNK ? MMF_CHUNK : n;
        host_to_le(chunk, x, step, t->elsize);
        crc = crc_bytes(crc, chunk, step * t->elsize);
        x += step * t->elsize;
        n -= step;
    }
    return crc;
}

static mm_status writer_checksum(const mm_file_writer *w, const wmeta *fixed, size_t nfixed,
                                 unsigned char *chunk, char out[16]) {
    size_t nm = w->nm + nfixed;
    const wmeta **ms = mm_malloc_array(nm ? nm : 1, sizeof *ms);
    const wtensor **ts = mm_malloc_array(w->nt ? w->nt : 1, sizeof *ts);
    if (!ms || !ts) {
        free(ms);
        free(ts);
        return mm_oom("checksum index");
    }
    for (size_t i = 0; i < nfixed; i++) ms[i] = &fixed[i];
    for (size_t i = 0; i < w->nm; i++) ms[nfixed + i] = &w->m[i];
    for (size_t i = 0; i < w->nt; i++) ts[i] = &w->t[i];
    qsort(ms, nm, sizeof *ms, cmp_wmeta_ptr);
    qsort(ts, w->nt, sizeof *ts, cmp_wtensor_ptr);
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t i = 0; i < nm; i++) crc = crc_meta_record(crc, ms[i]->key, ms[i]->value);
    for (size_t i = 0; i < w->nt; i++) {
        crc = crc_tensor_head(crc, ts[i]->name, mm_dtypes[ts[i]->dtype].name, ts[i]->shape,
                              ts[i]->ndim);
        crc = crc_tensor_data(crc, ts[i], chunk);
    }
    format_checksum(out, crc);
    free(ms);
    free(ts);
    return MM_OK;
}

/* Header JSON text padded with spaces so that 8 + N is a multiple of 8. */
static mm_status writer_header(const mm_file_writer *w, const wmeta *fixed, size_t nfixed,
                               const char *checksum, char **out, size_t *out_len) {
    json_t *root = json_object();
    json_t *meta = json_object();
    char *text = NULL;
    mm_status st = MM_OK;
    if (!root || !meta) goto oom;
    for (size_t i = 0; i < nfixed; i++)
        if (json_object_set_new(meta, fixed[i].key, json_string(fixed[i].value))) goto oom;
    for (size_t i = 0; i < w->nm; i++)
        if (json_object_set_new(meta, w->m[i].key, json_string(w->m[i].value))) goto oom;
    if (checksum && json_object_set_new(meta, "checksum", json_string(checksum))) goto oom;
    if (json_object_size(meta) > 0 && json_object_set(root, "__metadata__", meta)) goto oom;
    uint64_t off = 0;
    for (size_t i = 0; i < w->nt; i++) {
        const wtensor *t = &w->t[i];
        uint64_t bytes = (uint64_t)t->count * t->elsize; /* fits: checked when added */
        if (off + bytes < off || off + bytes > (uint64_t)INT64_MAX) {
            st = mm_error(MM_E_OUT_OF_RANGE, "tensor data exceeds 2^63 bytes");
            goto done;
        }
        json_t *e = json_object();
        json_t *shape = json_array();
        json_t *offs = json_array();
        bool bad = !e || !shape || !offs;
        for (size_t d = 0; !bad && d < t->ndim; d++)
            bad = json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0;
        bad = bad || json_array_append_new(offs, json_integer((json_int_t)off)) != 0 ||
              json_array_append_new(offs, json_integer((json_int_t)(off + bytes))) != 0;
        bad = bad || json_object_set_new(e, "dtype", json_string(mm_dtypes[t->dtype].name)) != 0;
        bad = bad || json_object_set(e, "shape", shape) != 0;
        bad = bad || json_object_set(e, "data_offsets", offs) != 0;
        bad = bad || json_object_set(root, t->name, e) != 0;
        json_decref(e);
        json_decref(shape);
        json_decref(offs);
        if (bad) goto oom;
        off += bytes;
    }
    text = dump_compact(root);
    if (!text) goto oom;
    size_t len = strlen(text);
    size_t padded = (len + 7) & ~(size_t)7;
    if (json_value_bound(text, len) > MMF_MAX_JSON_VALUES) {
        st = mm_error(MM_E_OUT_OF_RANGE,
                      "file header would have more than %zu JSON values (too many tensors)",
                      MMF_MAX_JSON_VALUES);
        goto done;
    }
    if (padded > MMF_MAX_HEADER) {
        st = mm_error(MM_E_OUT_OF_RANGE,
                      "file header would be %zu bytes, over the %u-byte limit readers accept "
                      "(is the lineage or metadata too long?)",
                      padded, MMF_MAX_HEADER);
        goto done;
    }
    char *p = realloc(text, padded + 1);
    if (!p) goto oom;
    text = p;
    memset(text + len, ' ', padded - len);
    text[padded] = '\0';
    *out = text;
    *out_len = padded;
    text = NULL;
    goto done;
oom:
    st = mm_oom("file header");
done:
    free(text);
    json_decref(meta);
    json_decref(root);
    return st;
}

static atomic_uint tmp_counter;

/* fsync the directory holding `path`, so the rename itself is durable. */
static int fsync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = mm_strdup(".");
    else if (slash == path)
        dir = mm_strdup("/");
    else {
        dir = malloc((size_t)(slash - path) + 1);
        if (dir) {
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = '\0';
        }
    }
    if (!dir) return ENOMEM;
    int err = 0;
    int fd = open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    if (fd < 0)
        err = errno;
    else {
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) err = errno;
        close(fd);
    }
    free(dir);
    return err;
}

mm_status mm_file_write_all(FILE *fp, const void *p, size_t n, const char *tmp) {
    errno = 0;
    if (n && fwrite(p, 1, n, fp) != n)
        return mm_error(MM_E_IO, "cannot write %s: %s", tmp, strerror(errno ? errno : EIO));
    return MM_OK;
}

mm_status mm_file_write_atomic(const char *path, mm_file_fill_fn fill, void *ctx) {
    if (!path) return mm_null_arg("path");
    if (!fill) return mm_null_arg("fill");
    if (!*path) return mm_error(MM_E_INVALID_ARGUMENT, "empty path");
    mm_status st = MM_OK;
    char *tmp = NULL;
    FILE *fp = NULL;
    bool created = false;

    struct stat target;
    bool target_exists = stat(path, &target) == 0;
    if (target_exists && S_ISDIR(target.st_mode))
        return mm_error(MM_E_IO, "%s is a directory", path);
    size_t tlen = strlen(path) + 64;
    tmp = malloc(tlen);
    if (!tmp) return mm_oom("temporary path");
    snprintf(tmp, tlen, "%s.tmp.%ld.%u", path, (long)getpid(),
             atomic_fetch_add(&tmp_counter, 1u));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        st = mm_error(MM_E_IO, "cannot create temporary file %s: %s", tmp, strerror(errno));
        goto done;
    }
    created = true;
    if (target_exists && S_ISREG(target.st_mode))
        (void)fchmod(fd, target.st_mode & 07777); /* keep the mode of the file we replace */
    fp = fdopen(fd, "wb");
    if (!fp) {
        st = mm_error(MM_E_IO, "cannot open %s: %s", tmp, strerror(errno));
        close(fd);
        goto done;
    }
    if ((st = fill(fp, tmp, ctx)) != MM_OK) goto done;
    if (fflush(fp) != 0) {
        st = mm_error(MM_E_IO, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (fsync(fileno(fp)) != 0) {
        st = mm_error(MM_E_IO, "cannot fsync %s: %s", tmp, strerror(errno));
        goto done;
    }
    int rc = fclose(fp);
    fp = NULL;
    if (rc != 0) {
        st = mm_error(MM_E_IO, "cannot close %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        st = mm_error(MM_E_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    created = false;
    int err = fsync_parent_dir(path);
    if (err != 0)
        st = mm_error(MM_E_IO, "%s written, but syncing its directory failed: %s", path,
                      strerror(err));
done:
    if (fp) fclose(fp);
    if (created) unlink(tmp);
    free(tmp);
    return st;
}

/* The content of a model file, for mm_file_write_atomic. */
typedef struct commit_ctx {
    const mm_file_writer *w;
    const char *header;
    size_t hlen;
    unsigned char *chunk;
} commit_ctx;

static mm_status commit_fill(FILE *fp, const char *tmp, void *ctx) {
    const commit_ctx *c = ctx;
    unsigned char lenbuf[8];
    wr_u64le(lenbuf, (uint64_t)c->hlen);
    mm_status st;
    if ((st = mm_file_write_all(fp, lenbuf, 8, tmp)) != MM_OK) return st;
    if ((st = mm_file_write_all(fp, c->header, c->hlen, tmp)) != MM_OK) return st;
    for (size_t i = 0; i < c->w->nt; i++) {
        const wtensor *t = &c->w->t[i];
        const unsigned char *x = t->data;
        size_t n = t->count;
        while (n > 0) {
            size_t step = n > MMF_CHUNK ? MMF_CHUNK : n;
            host_to_le(c->chunk, x, step, t->elsize);
            if ((st = mm_file_write_all(fp, c->chunk, step * t->elsize, tmp)) != MM_OK)
                return st;
            x += step * t->elsize;
            n -= step;
        }
    }
    return MM_OK;
}

mm_status mm_file_writer_commit(mm_file_writer *w, const char *path) {
    if (!w) return mm_null_arg("w");
    if (!path) return mm_null_arg("path");
    if (!*path) return mm_error(MM_E_INVALID_ARGUMENT, "empty path");

    const wmeta fixed[2] = {{(char *)"format", (char *)MMF_FORMAT},
                            {(char *)"format_version", (char *)MMF_VERSION}};
    unsigned char *chunk = malloc(4 * MMF_CHUNK);
    if (!chunk) return mm_oom("write buffer");
    char checksum[16];
    char *header = NULL;
    size_t hlen = 0;
    const size_t nfixed = w->plain ? 0 : 2;
    mm_status st = w->plain ? MM_OK : writer_checksum(w, fixed, nfixed, chunk, checksum);
    if (st == MM_OK) st = writer_header(w, fixed, nfixed, w->plain ? NULL : checksum, &header, &hlen);
    if (st == MM_OK) {
        commit_ctx c = {w, header, hlen, chunk};
        st = mm_file_write_atomic(path, commit_fill, &c);
    }
    free(header);
    free(chunk);
    return st;
}

/* ------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------- */

mm_status mm_model_save(const mm_model *model, const char *path) {
    if (!model) return mm_null_arg("model");
    if (!path) return mm_null_arg("path");
    mm_file_writer *w;
    mm_status st = mm_file_writer_create(&w);
    if (st != MM_OK) return st;
    st = mm_file_writer_add_model(w, model);
    if (st == MM_OK) st = mm_file_writer_commit(w, path);
    mm_file_writer_free(w);
    if (st != MM_OK) return mm_error_prefix(st, "saving %s", path);
    return MM_OK;
}

mm_status mm_model_load(mm_model **out, const char *path) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!path) return mm_null_arg("path");
    mm_file *f;
    mm_status st = mm_file_open(&f, path);
    if (st != MM_OK) return st;
    st = mm_file_build_model(f, out);
    mm_file_close(f);
    return st;
}

mm_status mm_model_load_buffer(mm_model **out, const void *data, size_t len) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    mm_file *f;
    mm_status st = mm_file_open_buffer(&f, data, len);
    if (st != MM_OK) return st;
    st = mm_file_build_model(f, out);
    mm_file_close(f);
    return st;
}
