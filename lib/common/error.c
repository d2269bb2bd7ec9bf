#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/mm_internal.h"

#define MM_ERRMSG_CAP 1024

static _Thread_local char tls_message[MM_ERRMSG_CAP];
static _Thread_local mm_status tls_status = MM_OK;

const char *mm_status_string(mm_status status) {
    switch (status) {
#define MM_STATUS_CASE_(name, value, msg) \
    case name:                            \
        return msg;
        MM_STATUS_LIST(MM_STATUS_CASE_)
#undef MM_STATUS_CASE_
    }
    return "unknown status";
}

const char *mm_status_name(mm_status status) {
    switch (status) {
#define MM_STATUS_CASE_(name, value, msg) \
    case name:                            \
        return #name;
        MM_STATUS_LIST(MM_STATUS_CASE_)
#undef MM_STATUS_CASE_
    }
    return "MM_E_UNKNOWN";
}

const char *mm_last_error_message(void) { return tls_message; }
mm_status mm_last_error(void) { return tls_status; }

void mm_clear_error(void) {
    tls_message[0] = '\0';
    tls_status = MM_OK;
}

mm_status mm_error(mm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_message, sizeof tls_message, fmt, ap);
    va_end(ap);
    tls_status = status;
    return status;
}

mm_status mm_error_prefix(mm_status status, const char *fmt, ...) {
    char prefix[MM_ERRMSG_CAP];
    char old[MM_ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tls_message, sizeof old);
    /* prefix + ": " + old message, truncated to the buffer */
    size_t used = strlen(prefix);
    if (used > sizeof tls_message - 1) used = sizeof tls_message - 1;
    memcpy(tls_message, prefix, used);
    const char sep[] = ": ";
    for (size_t i = 0; sep[i] && used < sizeof tls_message - 1; i++) tls_message[used++] = sep[i];
    size_t rest = strlen(old);
    if (rest > sizeof tls_message - 1 - used) rest = sizeof tls_message - 1 - used;
    memcpy(tls_message + used, old, rest);
    tls_message[used + rest] = '\0';
    tls_status = status;
    return status;
}

mm_status mm_null_arg(const char *what) {
    return mm_error(MM_E_INVALID_ARGUMENT, "%s must not be NULL", what);
}

mm_status mm_oom(const char *what) {
    return mm_error(MM_E_OUT_OF_MEMORY, "out of memory allocating %s", what);
}
