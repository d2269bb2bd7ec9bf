/* mmaint — status codes, errors, versions, kernel backend selection.
 *
 * Every fallible call in mmaint returns an mm_status: MM_OK (0) on success, a
 * distinct negative code otherwise. When a call fails it also records a detail
 * message for the calling thread, readable with mm_last_error_message() until
 * the next failing call on the same thread. Library code never prints, aborts
 * or exits.
 */
#ifndef MM_COMMON_H
#define MM_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "mm_version.h"

#if defined(_WIN32)
#  define MM_API __declspec(dllexport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define MM_API __attribute__((visibility("default")))
#else
#  define MM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The one list of status codes. X(name, value, default message).
 * Values are never renumbered; new codes are appended. */
#define MM_STATUS_LIST(X)                                                      \
    X(MM_OK, 0, "success")                                                     \
    X(MM_E_INVALID_ARGUMENT, -1, "invalid argument")                           \
    X(MM_E_OUT_OF_MEMORY, -2, "out of memory")                                 \
    X(MM_E_SHAPE, -3, "shape mismatch")                                        \
    X(MM_E_OUT_OF_RANGE, -4, "value out of range")                             \
    X(MM_E_IO, -5, "input/output error")                                       \
    X(MM_E_FORMAT, -6, "malformed or corrupt file")                            \
    X(MM_E_UNSUPPORTED, -7, "unsupported operation")                           \
    X(MM_E_STATE, -8, "object in the wrong state for this call")              \
    X(MM_E_NUMERIC, -9, "numeric trouble (NaN or infinity)")                   \
    X(MM_E_CANCELLED, -10, "cancelled by callback")                           \
    X(MM_E_CHECKSUM, -11, "checksum mismatch")                                 \
    X(MM_E_VERSION, -12, "unsupported file or format version")                 \
    X(MM_E_NOT_FOUND, -13, "not found")                                        \
    X(MM_E_INTERNAL, -14, "internal error")

typedef enum mm_status {
#define MM_STATUS_ENUM_(name, value, msg) name = value,
    MM_STATUS_LIST(MM_STATUS_ENUM_)
#undef MM_STATUS_ENUM_
} mm_status;

/* Short static description of a status code ("shape mismatch"). Never NULL;
 * unknown codes give "unknown status". Thread-safe. */
MM_API const char *mm_status_string(mm_status status);

/* Symbolic name of a status code ("MM_E_SHAPE"), or "MM_E_UNKNOWN". */
MM_API const char *mm_status_name(mm_status status);

/* Detail message of the last failing call on this thread ("layer 2 expects
 * 256 inputs, got 255"), or "" if none. The string is owned by the library and
 * valid until the next mmaint call on this thread. Thread-safe (thread-local). */
MM_API const char *mm_last_error_message(void);

/* Status of the last failing call on this thread (MM_OK if none). */
MM_API mm_status mm_last_error(void);

/* Forget the last error of this thread. */
MM_API void mm_clear_error(void);

/* Run-time library version: MM_VERSION_NUMBER and MM_VERSION_STRING of the
 * library actually loaded (compare with the macros to detect a mismatch). */
MM_API unsigned mm_version_number(void);
MM_API const char *mm_version_string(void);

/* ---- kernel backends ----------------------------------------------------
 * All arithmetic goes through a table of kernels. MM_BACKEND_BLIS uses BLIS
 * (when the library was built with it); MM_BACKEND_REFERENCE is portable C
 * used to check BLIS results. The initial backend is BLIS if available,
 * overridden by the environment variable MM_BACKEND=blis|reference read at
 * the first call that needs kernels. Switching is process-wide; do it while no
 * other thread runs mmaint computations. */
typedef enum mm_backend {
    MM_BACKEND_REFERENCE = 1,
    MM_BACKEND_BLIS = 2
} mm_backend;

/* Select the kernel backend. MM_E_UNSUPPORTED if the library was built
 * without that backend. */
MM_API mm_status mm_backend_select(mm_backend backend);

/* The backend in use now. */
MM_API mm_backend mm_backend_current(void);

/* Name of the backend in use now ("blis", "reference"). */
MM_API const char *mm_backend_name(void);

/* Number of threads the BLIS backend may use (>= 1; default 1). Process-wide. */
MM_API mm_status mm_set_num_threads(int n);

#ifdef __cplusplus
}
#endif
#endif /* MM_COMMON_H */
