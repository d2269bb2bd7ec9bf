/* The registry of layer kinds that model files may name (doc/FORMAT.md):
 * the architecture's "kind" string selects the kind's table, whose load
 * hook reads the layer. It sits above the modules: each module defines its
 * kinds (model/: dense; prune/: sparse; quant/: int8, fp16, bf16,
 * sparse_int8) and this list names them, so no module includes another's
 * internals to find them. A new kind is one table in its module and one row
 * here, with its fields and tensors documented in doc/FORMAT.md. */
#include <string.h>

#include "model/model_internal.h"
#include "prune/prune_internal.h" /* mm_sparse_kind */
#include "quant/quant_internal.h" /* mm_int8_kind, mm_f16_kind, mm_bf16_kind, mm_qsparse_kind */

static const mm_layer_vtable *const kinds[] = {
    &mm_dense_kind, &mm_sparse_kind, &mm_int8_kind, &mm_f16_kind, &mm_bf16_kind, &mm_qsparse_kind,
};

const mm_layer_vtable *mm_layer_kind_find(const char *kind) {
    if (!kind) return NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i]->kind, kind) == 0) return kinds[i];
    return NULL;
}
