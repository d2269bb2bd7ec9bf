/* The registry of layer kinds that model files may name (doc/FORMAT.md):
 * the architecture's "kind" string selects the loader. */
#include <string.h>

#include "model/model_internal.h"
#include "prune/prune_internal.h" /* mm_sparse_kind */
#include "quant/quant_internal.h" /* mm_int8_kind, mm_f16_kind, mm_bf16_kind, mm_qsparse_kind */

/* Every kind this library can load. Later layer kinds (sparse from
 * pruning, int8 from quantization, ...) append their mm_layer_kind here,
 * next to a vtable with a save hook, and document their entry fields and
 * tensors in doc/FORMAT.md. */
static const mm_layer_kind *const kinds[] = {
    &mm_dense_kind,
    &mm_sparse_kind,
    &mm_int8_kind,
    &mm_f16_kind,
    &mm_bf16_kind,
    &mm_qsparse_kind,
};

const mm_layer_kind *mm_layer_kind_find(const char *kind) {
    if (!kind) return NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i]->kind, kind) == 0) return kinds[i];
    return NULL;
}
