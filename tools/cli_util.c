/* mmaint CLI — messages, strict number parsing, timing, progress bar, JSON
 * helpers and lineage printing. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void cli_init(cli *c, const char *cmd) {
    memset(c, 0, sizeof *c);
    c->cmd = cmd;
    snprintf(c->prog, sizeof c->prog, "mmaint %s", cmd);
    c->tty = isatty(fileno(stderr)) != 0;
    c->out = stdout;
}

/* ---- messages ---------------------------------------------------------- */

static void vmessage(const cli *c, const char *fmt, va_list ap) {
    fflush(stdout);
    fprintf(stderr, "%s: ", c->prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_usage_error(const cli *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(c, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'mmaint %s --help' for more information.\n", c->cmd);
    return CLI_EXIT_USAGE;
}

int cli_runtime_error(const cli *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(c, fmt, ap);
    va_end(ap);
    return CLI_EXIT_RUNTIME;
}

const char *cli_lib_message(mm_status st) {
    const char *msg = mm_last_error_message();
    if (msg && *msg && mm_last_error() == st) return msg;
    return mm_status_string(st);
}

static void lib_message(const cli *c, mm_status st, const char *fmt, va_list ap) {
    char ctx[1200];
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    const char *msg = cli_lib_message(st);
    /* "loading x.csv: x.csv: line 3 ..." -> "loading x.csv: line 3 ...". */
    const char *last = strrchr(ctx, ' ');
    last = last ? last + 1 : ctx;
    size_t n = strlen(last);
    if (n && strncmp(msg, last, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    fflush(stdout);
    fprintf(stderr, "%s: %s: %s\n", c->prog, ctx, msg);
}

int cli_lib_error(const cli *c, mm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lib_message(c, st, fmt, ap);
    va_end(ap);
    return CLI_EXIT_RUNTIME;
}

int cli_lib_usage_error(const cli *c, mm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lib_message(c, st, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'mmaint %s --help' for more information.\n", c->cmd);
    return CLI_EXIT_USAGE;
}

void cli_say(const cli *c, const char *fmt, ...) {
    if (c->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(c->out, fmt, ap);
    va_end(ap);
    fflush(c->out);
}

/* ---- numbers ----------------------------------------------------------- */

static bool blank(const char *s) {
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return false;
    return true;
}

int cli_parse_double(const cli *c, const char *flag, const char *text, double *out) {
    if (!text || !*text || isspace((unsigned char)*text))
        return cli_usage_error(c, "%s: '%s' is not a number", flag, text ? text : "");
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || !blank(end))
        return cli_usage_error(c, "%s: '%s' is not a number", flag, text);
    if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL))
        return cli_usage_error(c, "%s: '%s' is out of range", flag, text);
    if (!isfinite(v)) return cli_usage_error(c, "%s: '%s' is not a finite number", flag, text);
    *out = v;
    return 0;
}

int cli_parse_size(const cli *c, const char *flag, const char *text, size_t *out) {
    if (!text || !*text || isspace((unsigned char)*text))
        return cli_usage_error(c, "%s: '%s' is not a number", flag, text ? text : "");
    if (text[0] == '-')
        return cli_usage_error(c, "%s: '%s' must not be negative", flag, text);
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || !blank(end)) {
        /* "1e3" or "2.0": accept integral values written as floating point. */
        double d;
        char *dend = NULL;
        d = strtod(text, &dend);
        if (dend != text && blank(dend) && isfinite(d) && d >= 0 && d == floor(d) &&
            d <= 9007199254740992.0) {
            *out = (size_t)d;
            return 0;
        }
        if (dend != text && blank(dend))
            return cli_usage_error(c, "%s: '%s' is not a whole number", flag, text);
        return cli_usage_error(c, "%s: '%s' is not a number", flag, text);
    }
    if (errno == ERANGE || v > SIZE_MAX)
        return cli_usage_error(c, "%s: '%s' is out of range", flag, text);
    *out = (size_t)v;
    return 0;
}

int cli_parse_long(const cli *c, const char *flag, const char *text, long *out) {
    if (!text || !*text || isspace((unsigned char)*text))
        return cli_usage_error(c, "%s: '%s' is not a number", flag, text ? text : "");
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || !blank(end))
        return cli_usage_error(c, "%s: '%s' is not a whole number", flag, text);
    if (errno == ERANGE) return cli_usage_error(c, "%s: '%s' is out of range", flag, text);
    *out = v;
    return 0;
}

int cli_parse_bool(const cli *c, const char *flag, const char *text, bool *out) {
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    if (!text) {
        *out = true;
        return 0;
    }
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return cli_usage_error(c, "%s: '%s' is not a yes/no value (use 1 or 0)", flag, text);
}

/* ---- utilities --------------------------------------------------------- */

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_format_duration(double seconds, char *buf, size_t cap) {
    if (!isfinite(seconds) || seconds < 0) {
        snprintf(buf, cap, "--:--");
        return;
    }
    unsigned long s = (unsigned long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, cap, "%lu:%02lu:%02lu", s / 3600, (s / 60) % 60, s % 60);
    else
        snprintf(buf, cap, "%lu:%02lu", s / 60, s % 60);
}

void cli_format_bytes(uint64_t bytes, char *buf, size_t cap) {
    if (bytes < 1024) {
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
        return;
    }
    static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes / 1024.0;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", v, units[u]);
}

long long cli_file_size(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    return (long long)sb.st_size;
}

bool cli_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

json_t *cli_json_num(double v) {
    if (!isfinite(v)) return json_null();
    return json_real(v);
}

void cli_json_print(json_t *value) {
    fflush(stderr);
    json_dumpf(value, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(value);
}

static volatile sig_atomic_t g_interrupted = 0;

static void on_sigint(int sig) {
    (void)sig;
    if (g_interrupted) {
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
        return;
    }
    g_interrupted = 1;
}

void cli_install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

bool cli_interrupted(void) { return g_interrupted != 0; }

/* ---- progress bar ------------------------------------------------------ */

void cli_progress_init(cli_progress *p, const cli *c) {
    memset(p, 0, sizeof *p);
    p->c = c;
    p->last_draw = -1.0;
}

int cli_terminal_width(int fd) {
    struct winsize ws;
    if (isatty(fd) && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *env = getenv("COLUMNS");
    if (env && *env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (end != env && *end == '\0' && v > 0 && v < 100000) return (int)v;
    }
    return 80;
}

void cli_progress_draw(cli_progress *p, const char *label, double fraction, double elapsed,
                       double rate, const char *extra, bool force) {
    if (!p->c->tty || p->c->quiet) return;
    double now = cli_now();
    if (!force && p->last_draw >= 0 && now - p->last_draw < 0.1) return;
    p->last_draw = now;
    if (!(fraction >= 0)) fraction = 0;
    if (fraction > 1) fraction = 1;
    /* The line fits the terminal, less its last column (writing there
     * wraps on some terminals): the width is queried at every draw, so a
     * resized window is followed. The bar takes what the text leaves, 10 to
     * 40 columns; on a narrow terminal the extra text goes first, then the
     * numbers get shorter, then the line is cut. */
    enum { BAR_MIN = 10, BAR_MAX = 40 };
    int avail = cli_terminal_width(fileno(stderr)) - 1;
    if (avail < 1) avail = 1;
    if (avail > 250) avail = 250;
    char eta[32] = "--:--";
    if (fraction > 0 && elapsed > 0) cli_format_duration(elapsed * (1 - fraction) / fraction, eta, sizeof eta);
    if (!label) label = "";
    if (!extra) extra = "";
    const int ll = (int)strlen(label), le = *extra ? 2 + (int)strlen(extra) : 0;
    /* the numbers in full, shorter, or only the percentage, whichever
     * leaves room for the label and a BAR_MIN bar */
    char stats[96];
    int ls = 0;
    for (int form = 0; form < 3; form++) {
        if (form == 0)
            ls = snprintf(stats, sizeof stats, " %3.0f%%  ETA %s  %.0f samples/s", fraction * 100.0,
                          eta, rate);
        else if (form == 1)
            ls = snprintf(stats, sizeof stats, " %3.0f%% ETA %s %.0f/s", fraction * 100.0, eta, rate);
        else
            ls = snprintf(stats, sizeof stats, " %3.0f%%", fraction * 100.0);
        if (ls < 0) return;
        if (ll + 3 + ls + BAR_MIN <= avail) break;
    }
    if (ls >= (int)sizeof stats) ls = (int)sizeof stats - 1;
    int fixed = ll + 3 + ls; /* "label [" + "]" + stats */
    if (fixed + le + BAR_MIN > avail) extra = ""; /* no room for the extra text */
    else fixed += le;
    int bw = avail - fixed;
    if (bw > BAR_MAX) bw = BAR_MAX;
    if (bw < BAR_MIN) bw = BAR_MIN;
    char bar[BAR_MAX + 1];
    int fill = (int)(fraction * bw + 0.5);
    for (int i = 0; i < bw; i++) bar[i] = i < fill ? '#' : '.';
    bar[bw] = '\0';
    char line[512];
    int len = snprintf(line, sizeof line, "%s [%s]%s%s%s", label, bar, stats, *extra ? "  " : "",
                       extra);
    if (len < 0) return;
    if (len >= (int)sizeof line) len = (int)sizeof line - 1;
    if (len > avail) len = avail; /* never wraps */
    /* Pad with spaces to erase a longer previous line. */
    int pad = p->last_width > len ? p->last_width - len : 0;
    if (len + pad > avail) pad = avail - len;
    fprintf(stderr, "\r%.*s%*s", len, line, pad, "");
    fflush(stderr);
    p->last_width = len;
    p->drawn = true;
}

void cli_progress_clear(cli_progress *p) {
    if (!p->drawn) return;
    fprintf(stderr, "\r%*s\r", p->last_width, "");
    fflush(stderr);
    p->drawn = false;
    p->last_width = 0;
}

/* ---- lineage ----------------------------------------------------------- */

/* Print `text` wrapped at 80 columns, continuation lines indented by `indent`,
 * the first line starting at column `col`. */
void cli_print_wrapped(FILE *f, const char *text, int col, int indent) {
    const int width = 80;
    const char *p = text;
    while (*p) {
        int room = width - col;
        size_t len = strlen(p);
        if ((int)len <= room) {
            fprintf(f, "%s\n", p);
            return;
        }
        int cut = room;
        while (cut > 0 && p[cut] != ' ') cut--;
        if (cut == 0) { /* one long word */
            cut = room;
            while (p[cut] && p[cut] != ' ') cut++;
        }
        fprintf(f, "%.*s\n%*s", cut, p, indent, "");
        p += cut;
        while (*p == ' ') p++;
        col = indent;
    }
}



static void append_value(char *buf, size_t cap, size_t *len, const json_t *v) {
    char *s = NULL;
    const char *text;
    if (json_is_string(v)) {
        text = json_string_value(v);
    } else {
        s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
        text = s ? s : "?";
    }
    if (*len < cap) {
        int w = snprintf(buf + *len, cap - *len, "%s", text);
        if (w > 0) *len += (size_t)w;
    }
    free(s);
}

void cli_print_lineage(FILE *f, const char *lineage_json, const char *indent) {
    json_error_t jerr;
    json_t *arr = json_loads(lineage_json ? lineage_json : "[]", 0, &jerr);
    if (!arr || !json_is_array(arr)) {
        fprintf(f, "%s(unreadable lineage: %s)\n", indent, lineage_json ? lineage_json : "");
        json_decref(arr);
        return;
    }
    if (json_array_size(arr) == 0) fprintf(f, "%s(no events)\n", indent);
    int ind = (int)strlen(indent);
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev) {
        const char *op = json_string_value(json_object_get(ev, "op"));
        const char *when = json_string_value(json_object_get(ev, "time"));
        fprintf(f, "%s%2zu. %s  %s\n", indent, i + 1, op ? op : "?", when ? when : "");
        /* The details as "key: value, key: value", wrapped. */
        char line[4096];
        size_t len = 0;
        line[0] = '\0';
        const char *key;
        json_t *val;
        json_object_foreach(ev, key, val) {
            if (strcmp(key, "op") == 0 || strcmp(key, "time") == 0) continue;
            if (len < sizeof line) {
                int w = snprintf(line + len, sizeof line - len, "%s%s: ", len ? ", " : "", key);
                if (w > 0) len += (size_t)w;
            }
            append_value(line, sizeof line, &len, val);
        }
        if (len) {
            fprintf(f, "%*s", ind + 4, "");
            cli_print_wrapped(f, line, ind + 4, ind + 4);
        }
    }
    json_decref(arr);
}
