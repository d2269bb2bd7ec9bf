/* Helpers shared by the harnesses (fuzz.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "fuzz.h"

static struct {
    int fd;
    char path[64];
} slots[2] = {{-1, ""}, {-1, ""}};

static void remove_temp_files(void) {
    for (int i = 0; i < 2; i++)
        if (slots[i].fd >= 0 && strncmp(slots[i].path, "/proc/", 6) != 0) unlink(slots[i].path);
}

static char work_dir[80];

/* Files the harnesses write in work_dir: the model saved by fuzz_mmfile
 * (and the temporary files of the atomic writer, renamed or removed by it). */
static void remove_work_dir(void) {
    static const char *const names[] = {"model.mmf", "state.mmf"};
    char p[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", work_dir, names[i]);
        unlink(p);
    }
    rmdir(work_dir);
}

const char *fuzz_dir(void) {
    if (work_dir[0]) return work_dir;
    const char *tmp = getenv("TMPDIR");
    const char *bases[] = {"/dev/shm", tmp && *tmp ? tmp : "/tmp"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(work_dir, sizeof work_dir, "%.50s/mmaint-fuzz-XXXXXX", bases[i]);
        if (mkdtemp(work_dir)) {
            atexit(remove_work_dir);
            return work_dir;
        }
    }
    fprintf(stderr, "fuzz_dir: cannot create a directory: %s\n", strerror(errno));
    work_dir[0] = '\0';
    return NULL;
}

static int open_slot(int slot) {
#ifdef MFD_CLOEXEC
    int fd = memfd_create("mmaint-fuzz", MFD_CLOEXEC);
    if (fd >= 0) {
        snprintf(slots[slot].path, sizeof slots[slot].path, "/proc/self/fd/%d", fd);
        if (access(slots[slot].path, R_OK) == 0) return fd;
        close(fd); /* no /proc: fall back to a temporary file */
    }
#endif
    const char *dir = getenv("TMPDIR");
    snprintf(slots[slot].path, sizeof slots[slot].path, "%.40s/mmaint-fuzz-XXXXXX",
             dir && *dir ? dir : "/tmp");
    int tfd = mkstemp(slots[slot].path);
    if (tfd >= 0) {
        static int registered;
        if (!registered) registered = atexit(remove_temp_files) == 0;
    }
    return tfd;
}

const char *fuzz_file(int slot, const void *data, size_t size) {
    if (slot < 0 || slot > 1) return NULL;
    if (slots[slot].fd < 0) {
        slots[slot].fd = open_slot(slot);
        if (slots[slot].fd < 0) {
            fprintf(stderr, "fuzz_file: cannot create a file: %s\n", strerror(errno));
            return NULL;
        }
    }
    int fd = slots[slot].fd;
    if (ftruncate(fd, 0) != 0) {
        fprintf(stderr, "fuzz_file: ftruncate: %s\n", strerror(errno));
        return NULL;
    }
    const unsigned char *p = data;
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, p + done, size - done, (off_t)done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            fprintf(stderr, "fuzz_file: write: %s\n", strerror(errno));
            return NULL;
        }
        done += (size_t)w;
    }
    return slots[slot].path;
}

unsigned char *fuzz_gzip(const void *data, size_t size, size_t *out_size) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    uLong cap = deflateBound(&z, (uLong)size);
    unsigned char *out = malloc(cap ? cap : 1);
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)size;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    *out_size = z.total_out;
    deflateEnd(&z);
    if (r != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t k) {
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (memcmp(hay + i, needle, k) == 0) return hay + i;
    return NULL;
}

static bool is_hex8(const char *p) {
    for (int i = 0; i < 8; i++)
        if (!strchr("0123456789abcdefABCDEF", p[i]) || p[i] == '\0') return false;
    return true;
}

int fuzz_patch_checksum(unsigned char *buf, size_t size) {
    /* "... the file records crc32:XXXXXXXX but its contents give crc32:YYYYYYYY ..." */
    const char *msg = mm_last_error_message();
    const char *rec = strstr(msg, "records crc32:");
    const char *got = strstr(msg, "contents give crc32:");
    if (!rec || !got) return 0;
    rec += strlen("records ");
    got += strlen("contents give crc32:");
    if (strlen(rec) < 14 || strlen(got) < 8 || !is_hex8(rec + 6) || !is_hex8(got)) return 0;
    char *at = (char *)find_bytes((const char *)buf, size, rec, 14);
    if (!at) return 0; /* written with escapes: leave it */
    memcpy(at + 6, got, 8);
    return 1;
}

static void breach(const char *what, const char *how, mm_status st) {
    fprintf(stderr, "%s %s (status %d %s, message \"%s\")\n", what, how, (int)st,
            mm_status_name(st), mm_last_error_message());
    abort();
}

void fuzz_check_call(const char *what, mm_status st) {
    if (st == MM_OK) return;
    if (st == MM_E_INTERNAL) breach(what, "returned MM_E_INTERNAL (an internal inconsistency)", st);
    if (strcmp(mm_status_name(st), "MM_E_UNKNOWN") == 0) breach(what, "returned an unknown status", st);
    if (mm_last_error_message()[0] == '\0') breach(what, "failed without an error message", st);
}

void fuzz_check_new(const char *what, mm_status st, const void *out) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("MM_FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "%s: %s%s%s\n", what, mm_status_name(st), st ? ": " : "",
                st ? mm_last_error_message() : "");
    fuzz_check_call(what, st);
    if (st == MM_OK && !out) breach(what, "returned MM_OK without an object", st);
    if (st != MM_OK && out) breach(what, "failed but left an object", st);
}

/* The two samples every model is run on: zeros, and small values of
 * every sign. NULL if the model is too wide. */
static float *fuzz_inputs(size_t in) {
    if (in == 0 || in > FUZZ_MAX_ELEMS / 2) return NULL;
    float *x = malloc(2 * in * sizeof *x);
    if (!x) return NULL;
    for (size_t j = 0; j < in; j++) {
        x[j] = 0.0f;
        x[in + j] = (float)((int)(j % 7) - 3) * 0.75f;
    }
    return x;
}

#define CALL(what, expr)                 \
    do {                                 \
        mm_clear_error();                \
        fuzz_check_call((what), (expr)); \
    } while (0)

float *fuzz_forward(const mm_model *m, size_t *n_out) {
    *n_out = 0;
    size_t in = mm_model_input_dim(m), out = mm_model_output_dim(m);
    if (out == 0 || out > FUZZ_MAX_ELEMS / 2) return NULL;
    float *x = fuzz_inputs(in), *y = malloc(2 * out * sizeof *y);
    int32_t labels[2];
    if (!x || !y) {
        free(x);
        free(y);
        return NULL;
    }
    mm_clear_error();
    mm_status st = mm_model_forward(m, x, 2, y);
    fuzz_check_call("mm_model_forward", st);
    CALL("mm_model_predict", mm_model_predict(m, x, 2, labels));
    free(x);
    if (st != MM_OK) {
        free(y);
        return NULL;
    }
    *n_out = 2 * out;
    return y;
}

void fuzz_use_model(mm_model *m) {
    char text[512];
    size_t needed = 0;
    CALL("mm_model_describe", mm_model_describe(m, text, sizeof text, &needed));
    (void)mm_model_lineage(m);
    (void)mm_model_num_params(m);
    (void)mm_model_param_bytes(m);
    (void)mm_model_num_nonzero(m);

    size_t nl = mm_model_num_layers(m);
    for (size_t i = 0; i < nl; i++) {
        const char *kind;
        size_t in = 0, out = 0;
        mm_activation act;
        CALL("mm_model_layer_info", mm_model_layer_info(m, i, &kind, &in, &out, &act));
        (void)mm_model_layer_trainable(m, i);
        double sparsity;
        (void)mm_model_layer_sparsity(m, i, &sparsity);
        size_t wn;
        if (!(in && out && in <= FUZZ_MAX_ELEMS / out)) continue;
        wn = in * out;
        float *w = malloc(wn * sizeof *w), *b = malloc(out * sizeof *b);
        if (w && b) (void)mm_model_get_weights(m, i, w, wn, b, out);
        free(w);
        free(b);
    }

    size_t ny;
    free(fuzz_forward(m, &ny));

    mm_model *c = NULL;
    mm_clear_error();
    mm_status st = mm_model_clone(m, &c);
    fuzz_check_new("mm_model_clone", st, c);
    mm_model_free(c);
}
