/* ONNX export and import of feed-forward models (include/mm/mm_onnx.h,
 * doc/ONNX.md). The protobuf codec is generated at build time by protoc-c
 * from the system's onnx.proto (lib/migrate/meson.build). */
#include "common/mm_internal.h"
#include "mm/mm_onnx.h"

#ifdef MM_HAVE_ONNX
#include "onnx.pb-c.h"
#endif

/* First landing: the API and the build without ONNX; the codec follows. */
static mm_status onnx_unavailable(void) {
    return mm_error(MM_E_UNSUPPORTED,
                    "this libmmaint was built without ONNX support (meson option -Donnx, "
                    "needs protobuf-c, protoc-c and onnx.proto from libonnx-dev)");
}

int mm_onnx_available(void) { return 0; }

mm_status mm_onnx_export(const mm_model *model, const char *path) {
    (void)model;
    (void)path;
    return onnx_unavailable();
}

mm_status mm_onnx_import(mm_model **out, const char *path) {
    if (out) *out = NULL;
    (void)path;
    return onnx_unavailable();
}

mm_status mm_onnx_import_buffer(mm_model **out, const void *data, size_t len) {
    if (out) *out = NULL;
    (void)data;
    (void)len;
    return onnx_unavailable();
}
