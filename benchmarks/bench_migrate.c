/* Migration benchmark (issue 5): how fast and how lean model files load.
 *
 * Builds one MLP (default 784-2048-2048-2048-10, 10.0M parameters, 40 MB
 * of float32), writes it as an mmaint model file (.mmf), a plain
 * safetensors file and an ONNX file (when the library has ONNX), then
 * times, interleaved over --reps repetitions (median):
 *   - memcpy of the safetensors file's bytes into a warm buffer, and into
 *     a freshly allocated one (page faults included, as a loader has);
 *   - read() of the file into a fresh buffer (what any loader must do);
 *   - mm_model_load (.mmf: CRC-32 verified), mm_safetensors_import and
 *     mm_onnx_import of the files (in the page cache: warm).
 * Speeds are file bytes / time (GB/s = 1e9 B/s); the loads' CPU time
 * (user + system, CLOCK_PROCESS_CPUTIME_ID) is shown too, as it suffers
 * less than wall time from other processes on a shared machine. Peak memory: each format
 * is loaded once more in a fresh process (this program re-executed with
 * --child), whose peak RSS (VmHWM) after the load minus before it is
 * reported, also as a multiple of the file size.
 *
 *   bench_migrate [--spec SPEC] [--reps N] [--dir DIR] [--json]
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mm/mm.h>

#include "bench_common.h"

enum { F_MMF, F_ST, F_ONNX, NF };
static const char *const fmt_names[NF] = {"mmf", "safetensors", "onnx"};
static const char *const fmt_ext[NF] = {".mmf", ".safetensors", ".onnx"};

static void die(const char *what, mm_status st) {
    fprintf(stderr, "bench_migrate: %s: %s: %s\n", what, mm_status_name(st),
            mm_last_error_message());
    exit(1);
}

static mm_status load(int f, const char *path, mm_model **m) {
    switch (f) {
    case F_MMF: return mm_model_load(m, path);
    case F_ST: return mm_safetensors_import(m, path, NULL, NULL, 0);
    default: return mm_onnx_import(m, path);
    }
}

/* Peak and current RSS in kB from /proc/self/status. */
static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    long kb = -1;
    size_t kl = strlen(key);
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, key, kl) == 0) {
                kb = strtol(line + kl, NULL, 10);
                break;
            }
        fclose(f);
    }
    return kb;
}

static int child(int f, const char *path) {
    long before = status_kb("VmHWM:");
    mm_model *m = NULL;
    mm_status st = load(f, path, &m);
    if (st != MM_OK) die("child load", st);
    long after = status_kb("VmHWM:");
    printf("%ld %ld\n", before, after);
    mm_model_free(m);
    return 0;
}

/* Peak RSS growth (kB) of a fresh process loading the file. */
static long rss_of_load(const char *self, int f, const char *path) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        char fs[8];
        snprintf(fs, sizeof fs, "%d", f);
        execl(self, self, "--child", fs, path, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[128] = "";
    ssize_t n = read(fd[0], buf, sizeof buf - 1);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    long before = 0, after = 0;
    if (n <= 0 || sscanf(buf, "%ld %ld", &before, &after) != 2) return -1;
    return after - before;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static double time_read(const char *path, size_t len) {
    double t0 = bench_now();
    int fd = open(path, O_RDONLY);
    unsigned char *buf = malloc(len);
    size_t got = 0;
    while (fd >= 0 && buf && got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    double t = bench_now() - t0;
    if (fd >= 0) close(fd);
    volatile unsigned char sink = buf && len ? buf[len / 2] : 0;
    (void)sink;
    free(buf);
    return t;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--child") == 0) return child(atoi(argv[2]), argv[3]);
    const char *spec = "784-2048-2048-2048-10:relu", *dir = "/tmp";
    int reps = 7;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--spec") == 0 && i + 1 < argc) spec = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else {
            fprintf(stderr, "usage: bench_migrate [--spec SPEC] [--reps N] [--dir DIR] [--json]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) return 1;
    self[sl] = '\0';

    mm_model *m = NULL;
    mm_status st = mm_model_create_from_spec(&m, spec, 1);
    if (st != MM_OK) die("create", st);
    int have[NF] = {1, 1, mm_onnx_available()};
    char path[NF][4096];
    long long size[NF];
    for (int f = 0; f < NF; f++) {
        snprintf(path[f], sizeof path[f], "%s/bench_migrate_%ld%s", dir, (long)getpid(),
                 fmt_ext[f]);
        if (!have[f]) continue;
        st = f == F_MMF ? mm_model_save(m, path[f])
             : f == F_ST ? mm_safetensors_export(m, path[f], NULL)
                         : mm_onnx_export(m, path[f]);
        if (st != MM_OK) die("save", st);
        size[f] = file_size(path[f]);
    }
    size_t nbytes = (size_t)size[F_ST];
    size_t params = mm_model_num_params(m);

    unsigned char *src = malloc(nbytes), *warm = malloc(nbytes);
    memset(src, 1, nbytes);
    memset(warm, 2, nbytes);
    double *c_base[3]; /* CPU time of memcpy warm, memcpy fresh, read() */
    for (int k = 0; k < 3; k++) c_base[k] = calloc((size_t)reps, sizeof(double));
    double *t_warm = calloc((size_t)reps, sizeof(double)), *t_cold = calloc((size_t)reps, sizeof(double)),
           *t_read = calloc((size_t)reps, sizeof(double)), *t_load[NF], *c_load[NF];
    for (int f = 0; f < NF; f++) {
        t_load[f] = calloc((size_t)reps, sizeof(double));
        c_load[f] = calloc((size_t)reps, sizeof(double));
    }
    for (int r = 0; r < reps; r++) {
        double c0 = cpu_now(), t0 = bench_now();
        memcpy(warm, src, nbytes);
        t_warm[r] = bench_now() - t0;
        c_base[0][r] = cpu_now() - c0;
        c0 = cpu_now();
        t0 = bench_now();
        unsigned char *fresh = malloc(nbytes);
        memcpy(fresh, src, nbytes);
        t_cold[r] = bench_now() - t0;
        c_base[1][r] = cpu_now() - c0;
        volatile unsigned char sink = fresh[nbytes / 3];
        (void)sink;
        free(fresh);
        c0 = cpu_now();
        t_read[r] = time_read(path[F_ST], nbytes);
        c_base[2][r] = cpu_now() - c0;
        for (int f = 0; f < NF; f++) {
            if (!have[f]) continue;
            mm_model *x = NULL;
            c0 = cpu_now();
            t0 = bench_now();
            st = load(f, path[f], &x);
            t_load[f][r] = bench_now() - t0;
            c_load[f][r] = cpu_now() - c0;
            if (st != MM_OK) die("load", st);
            mm_model_free(x);
        }
    }
    long rss[NF] = {-1, -1, -1};
    for (int f = 0; f < NF; f++)
        if (have[f]) rss[f] = rss_of_load(self, f, path[f]);

    double mw = median(t_warm, reps), mc = median(t_cold, reps), mr = median(t_read, reps);
    double cw = median(c_base[0], reps), cc = median(c_base[1], reps), cr = median(c_base[2], reps);
    double ml[NF] = {0}, mcpu[NF] = {0};
    for (int f = 0; f < NF; f++)
        if (have[f]) {
            ml[f] = median(t_load[f], reps);
            mcpu[f] = median(c_load[f], reps);
        }
    if (json) {
        printf("{\"bench\":\"migrate\",\"spec\":\"%s\",\"params\":%zu,\"reps\":%d,\"bytes\":%zu,"
               "\"memcpy_warm_s\":%.6f,\"memcpy_fresh_s\":%.6f,\"read_s\":%.6f,"
               "\"memcpy_warm_cpu_s\":%.6f,\"memcpy_fresh_cpu_s\":%.6f,\"read_cpu_s\":%.6f",
               spec, params, reps, nbytes, mw, mc, mr, cw, cc, cr);
        for (int f = 0; f < NF; f++)
            if (have[f])
                printf(",\"%s\":{\"bytes\":%lld,\"load_s\":%.6f,\"cpu_s\":%.6f,\"gbps\":%.3f,"
                       "\"peak_rss_kb\":%ld}",
                       fmt_names[f], size[f], ml[f], mcpu[f], (double)size[f] / ml[f] / 1e9, rss[f]);
        printf("}\n");
    } else {
        printf("model %s: %zu parameters; median of %d interleaved runs (files in the page cache)\n\n",
               spec, params, reps);
        printf("%-34s %12s %10s %8s %8s %14s\n", "", "bytes", "ms", "GB/s", "CPU ms", "peak RSS MB");
        printf("%-34s %12zu %10.2f %8.2f %8.2f\n", "memcpy, warm destination", nbytes, 1e3 * mw,
               (double)nbytes / mw / 1e9, 1e3 * cw);
        printf("%-34s %12zu %10.2f %8.2f %8.2f\n", "memcpy, fresh malloc destination", nbytes,
               1e3 * mc, (double)nbytes / mc / 1e9, 1e3 * cc);
        printf("%-34s %12zu %10.2f %8.2f %8.2f\n", "read() of the safetensors file", nbytes,
               1e3 * mr, (double)nbytes / mr / 1e9, 1e3 * cr);
        static const char *const label[NF] = {"mm_model_load (.mmf, CRC checked)",
                                              "mm_safetensors_import",
                                              "mm_onnx_import"};
        for (int f = 0; f < NF; f++) {
            if (!have[f]) {
                printf("%-34s (this build has no ONNX)\n", label[f]);
                continue;
            }
            printf("%-34s %12lld %10.2f %8.2f %8.2f %8.1f (%.2fx file)\n", label[f], size[f],
                   1e3 * ml[f], (double)size[f] / ml[f] / 1e9, 1e3 * mcpu[f], rss[f] / 1024.0,
                   rss[f] * 1024.0 / (double)size[f]);
        }
    }
    for (int f = 0; f < NF; f++) {
        if (have[f]) unlink(path[f]);
        free(t_load[f]);
        free(c_load[f]);
    }
    for (int k = 0; k < 3; k++) free(c_base[k]);
    free(t_warm);
    free(t_cold);
    free(t_read);
    free(src);
    free(warm);
    mm_model_free(m);
    return 0;
}
