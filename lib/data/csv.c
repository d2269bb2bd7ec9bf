/* CSV loader: numbers separated by commas, one sample per line.
 *
 * Accepted: an optional header line (a first line that does not parse as
 * numbers), spaces or tabs around cells, CRLF or LF line ends, a UTF-8 byte
 * order mark, blank lines at the end, gzip-compressed files (read through
 * zlib). Rejected with a message naming the line (and column, both counted
 * from 1 as in an editor): ragged rows, empty or non-numeric cells, blank lines
 * between data lines, labels that are not non-negative integers (MM_E_FORMAT);
 * NaN, infinite or overflowing values (MM_E_NUMERIC). Numbers are parsed in the
 * "C" locale whatever the host program's locale is.
 */
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/dataset_internal.h"

#define CSV_CELL_SHOW 40 /* characters of a bad cell quoted in messages */

/* Read the whole file (plain or gzip) into a NUL-terminated buffer. */
static mm_status read_all(const char *path, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    errno = 0;
    gzFile g = gzopen(path, "rb");
    if (!g) {
        if (errno == 0) return mm_oom("zlib file state");
        return mm_error(MM_E_IO, "cannot open %s: %s", path, strerror(errno));
    }
    gzbuffer(g, 1u << 17);
    size_t cap = 1u << 16, have = 0;
    char *buf = malloc(cap);
    mm_status st = MM_OK;
    if (!buf) {
        st = mm_oom("CSV text");
        goto done;
    }
    for (;;) {
        if (cap - have < 2) { /* keep room for the terminating NUL */
            if (cap > SIZE_MAX / 2) {
                st = mm_oom("CSV text");
                goto done;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                st = mm_oom("CSV text");
                goto done;
            }
            buf = nb;
            cap *= 2;
        }
        size_t want = cap - have - 1;
        if (want > (size_t)1 << 30) want = (size_t)1 << 30;
        errno = 0;
        int r = gzread(g, buf + have, (unsigned)want);
        if (r < 0) {
            int err = Z_OK;
            const char *msg = gzerror(g, &err);
            if (err == Z_ERRNO)
                st = mm_error(MM_E_IO, "%s: read error: %s", path, strerror(errno));
            else if (err == Z_MEM_ERROR)
                st = mm_oom("zlib state");
            else {
                size_t pl = strlen(path); /* zlib's message starts with "<path>: " */
                if (!msg) msg = "";
                if (strncmp(msg, path, pl) == 0 && msg[pl] == ':' && msg[pl + 1] == ' ')
                    msg += pl + 2;
                st = mm_error(MM_E_FORMAT, "%s: corrupt compressed data (%s)", path, msg);
            }
            goto done;
        }
        if (r == 0) break;
        have += (size_t)r;
    }
    {
        int err = Z_OK;
        gzerror(g, &err);
        if (err == Z_BUF_ERROR) {
            st = mm_error(MM_E_FORMAT, "%s: gzip stream is truncated", path);
            goto done;
        }
    }
    buf[have] = '\0';
    *out = buf;
    *len = have;
    buf = NULL;
done:
    free(buf);
    gzclose_r(g);
    return st;
}

static bool is_space(char c) { return c == ' ' || c == '\t'; }

/* Split a NUL-terminated line at commas in place, trimming spaces and tabs
 * around each cell. Returns the number of cells, or 0 on allocation failure. */
static size_t split_cells(char *line, char ***cells, size_t *cap) {
    size_t n = 0;
    char *p = line;
    for (;;) {
        if (n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 64;
            char **nc = mm_malloc_array(ncap, sizeof *nc);
            if (!nc) return 0;
            if (n) memcpy(nc, *cells, n * sizeof *nc);
            free(*cells);
            *cells = nc;
            *cap = ncap;
        }
        while (is_space(*p)) p++;
        char *start = p;
        while (*p && *p != ',') p++;
        char *end = p;
        bool last = *p == '\0';
        while (end > start && is_space(end[-1])) end--;
        *end = '\0';
        (*cells)[n++] = start;
        if (last) break;
        p++;
    }
    return n;
}

typedef enum { NUM_OK, NUM_NOT_A_NUMBER, NUM_NOT_FINITE } num_result;

static num_result parse_float(const char *s, float *v) {
    if (*s == '\0') return NUM_NOT_A_NUMBER;
    char *end;
    errno = 0;
    float f = strtof(s, &end);
    if (end == s || *end != '\0') return NUM_NOT_A_NUMBER;
    if (!isfinite(f)) return NUM_NOT_FINITE; /* nan, inf, or overflow (ERANGE) */
    *v = f;                                  /* underflow to a subnormal or 0 is fine */
    return NUM_OK;
}

/* A non-negative integer label ("3", also "3.0" as some tools write). */
static bool parse_label(const char *s, int32_t *out) {
    if (*s == '\0') return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end != s && *end == '\0') {
        if (errno == ERANGE || v < 0 || v > INT32_MAX) return false;
        *out = (int32_t)v;
        return true;
    }
    double d = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(d) || d < 0 || d > INT32_MAX || d != floor(d))
        return false;
    *out = (int32_t)d;
    return true;
}

/* Append to a growing array of `size`-byte elements. */
static bool grow(void **arr, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return true;
    size_t ncap = *cap ? *cap : 1024;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) return false;
        ncap *= 2;
    }
    size_t bytes;
    if (!mm_mul_ok(ncap, size, &bytes)) return false;
    void *na = realloc(*arr, bytes);
    if (!na) return false;
    *arr = na;
    *cap = ncap;
    return true;
}

typedef struct csv_state {
    const char *path;
    int label_arg;
    size_t ncols;  /* 0 until the first non-blank line */
    long label;    /* resolved 0-based label column, -1 for none */
    size_t rows;
    float *x;
    size_t x_cap;
    int32_t *y;
    size_t y_cap;
    char **cells;
    size_t cells_cap;
} csv_state;

/* Fix the column count and resolve the label column. */
static mm_status set_columns(csv_state *s, size_t ncols) {
    s->ncols = ncols;
    s->label = -1;
    if (s->label_arg != MM_CSV_NO_LABELS) {
        long long lc = s->label_arg;
        /* MM_CSV_LABEL_LAST (-2) is the last column, -3 the one before it */
        if (lc <= MM_CSV_LABEL_LAST) lc += (long long)ncols + 1;
        if (lc < 0 || lc >= (long long)ncols)
            return mm_error(MM_E_OUT_OF_RANGE, "%s: label column %d is outside the %zu columns",
                            s->path, s->label_arg, ncols);
        s->label = (long)lc;
    }
    if (ncols - (s->label >= 0) == 0)
        return mm_error(MM_E_FORMAT, "%s: no feature columns besides the label", s->path);
    return MM_OK;
}

static mm_status parse_row(csv_state *s, size_t line_no, size_t ncells) {
    const size_t dim = s->ncols - (s->label >= 0);
    if (ncells != s->ncols)
        return mm_error(MM_E_FORMAT, "%s: line %zu has %zu column%s, expected %zu",
                        s->path, line_no, ncells, ncells == 1 ? "" : "s", s->ncols);
    size_t need;
    if (!mm_mul_ok(s->rows + 1, dim, &need) ||
        !grow((void **)&s->x, &s->x_cap, need, sizeof(float)))
        return mm_oom("CSV features");
    if (s->label >= 0 && !grow((void **)&s->y, &s->y_cap, s->rows + 1, sizeof(int32_t)))
        return mm_oom("CSV labels");
    float *row = s->x + s->rows * dim;
    size_t k = 0;
    for (size_t c = 0; c < ncells; c++) {
        const char *cell = s->cells[c];
        if ((long)c == s->label) {
            if (!parse_label(cell, &s->y[s->rows]))
                return mm_error(MM_E_FORMAT,
                                "%s: line %zu, column %zu: label '%.*s' is not a non-negative "
                                "integer",
                                s->path, line_no, c + 1, CSV_CELL_SHOW, cell);
            continue;
        }
        switch (parse_float(cell, &row[k++])) {
        case NUM_OK: break;
        case NUM_NOT_A_NUMBER:
            if (*cell == '\0')
                return mm_error(MM_E_FORMAT, "%s: line %zu, column %zu is empty", s->path,
                                line_no, c + 1);
            return mm_error(MM_E_FORMAT, "%s: line %zu, column %zu: '%.*s' is not a number",
                            s->path, line_no, c + 1, CSV_CELL_SHOW, cell);
        case NUM_NOT_FINITE:
            return mm_error(MM_E_NUMERIC,
                            "%s: line %zu, column %zu: '%.*s' is not a finite float", s->path,
                            line_no, c + 1, CSV_CELL_SHOW, cell);
        }
    }
    s->rows++;
    return MM_OK;
}

static bool all_numbers(char **cells, size_t n) {
    for (size_t c = 0; c < n; c++) {
        const char *p = cells[c];
        char *end;
        if (*p == '\0') return false;
        (void)strtof(p, &end);
        if (end == p || *end != '\0') return false;
    }
    return true;
}

static mm_status parse_text(csv_state *s, char *text, size_t len) {
    char *nul = memchr(text, '\0', len);
    size_t line_no = 1;
    if (nul) {
        for (char *p = text; p < nul; p++) line_no += *p == '\n';
        return mm_error(MM_E_FORMAT, "%s: line %zu contains a NUL byte (not a text file?)",
                        s->path, line_no);
    }
    char *p = text;
    if ((unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
        p += 3; /* UTF-8 byte order mark */
    size_t first_blank = 0; /* line number of a blank line, if one was seen */
    bool first = true;
    for (; *p; line_no++) {
        char *line = p;
        char *nl = strchr(p, '\n');
        if (nl) {
            *nl = '\0';
            p = nl + 1;
        } else {
            p += strlen(p);
        }
        size_t ll = strlen(line);
        if (ll > 0 && line[ll - 1] == '\r') line[--ll] = '\0';
        const char *q = line;
        while (is_space(*q)) q++;
        if (*q == '\0') {
            if (!first_blank) first_blank = line_no;
            continue;
        }
        if (first_blank)
            return mm_error(MM_E_FORMAT,
                            "%s: line %zu is blank (blank lines are allowed only at the end)",
                            s->path, first_blank);
        size_t ncells = split_cells(line, &s->cells, &s->cells_cap);
        if (ncells == 0) return mm_oom("CSV cells");
        if (first) {
            first = false;
            mm_status st = set_columns(s, ncells);
            if (st != MM_OK) return st;
            if (!all_numbers(s->cells, ncells)) continue; /* header */
        }
        mm_status st = parse_row(s, line_no, ncells);
        if (st != MM_OK) return st;
    }
    if (s->rows == 0)
        return mm_error(MM_E_FORMAT, "%s: no data rows%s", s->path,
                        first ? " (the file is empty)" : " after the header");
    return MM_OK;
}

MM_API mm_status mm_dataset_load_csv(mm_dataset **out, const char *path, int label_column) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!path) return mm_null_arg("path");
    char *text;
    size_t len;
    mm_status st = read_all(path, &text, &len);
    if (st != MM_OK) return st;

    csv_state s;
    memset(&s, 0, sizeof s);
    s.path = path;
    s.label_arg = label_column;
    s.label = -1;

    /* Parse numbers in the "C" locale (decimal point '.') for this thread only. */
    locale_t c_loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t old_loc = c_loc ? uselocale(c_loc) : (locale_t)0;
    st = parse_text(&s, text, len);
    if (c_loc) {
        uselocale(old_loc);
        freelocale(c_loc);
    }

    mm_dataset *ds = NULL;
    if (st == MM_OK) st = mm_ds_alloc(&ds, s.rows, s.ncols - (s.label >= 0), s.label >= 0);
    if (st == MM_OK) {
        memcpy(ds->x, s.x, s.rows * ds->dim * sizeof(float));
        if (ds->labels) memcpy(ds->labels, s.y, s.rows * sizeof(int32_t));
        mm_ds_finish_labels(ds);
        *out = ds;
    }
    free(s.x);
    free(s.y);
    free(s.cells);
    free(text);
    return st;
}
