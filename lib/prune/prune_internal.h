/* Internals shared by the pruner (pruner.c, criteria.c, shrink.c) and the
 * sparse layer kind (sparse.c). Never installed. */
#ifndef MM_PRUNE_INTERNAL_H
#define MM_PRUNE_INTERNAL_H

#include "model/model_internal.h"
#include "mm/mm_pruner.h"

/* ---- sparse layer kind (sparse.c) ------------------------------------ */

/* Build a sparse layer holding the non-zero (unmasked) weights of a dense
 * layer: same in/out/activation/bias, same outputs. The dense layer is only
 * read. The sparse layer is trainable (its stored values are a parameter)
 * and saves/loads through the layer-kind hooks. */
mm_status mm_sparse_from_dense(const mm_layer *dense, mm_layer **out);

/* Is the sparse kernel expected to beat dense for this layer shape and
 * number of stored weights at batch size 1 and 256? The policy behind
 * MM_PRUNE_FORMAT_AUTO; documented with the measurements it rests on. */
bool mm_sparse_worthwhile(size_t in, size_t out, size_t nnz);

/* Dense position (row * in + column) of every stored weight, in the order
 * of the layer's "weight_values" parameter (pos has nnz entries). For the
 * pruner, which carries optimizer state from the dense weights it
 * converts. MM_E_INVALID_ARGUMENT if the layer is not of the sparse kind. */
mm_status mm_sparse_positions(const mm_layer *layer, size_t *pos);


/* Stored-weight steps of the tiled layout (sparse_kernels.h): the work of
 * a batch-1 forward pass. For tests and benchmarks. */
size_t mm_sparse_steps(const mm_layer *layer);

/* Finalize's neuron order: which rows of a dense layer should share the
 * 16-row slices of the tiled layout so that its tiles need fewer steps
 * (rows with like entry counts together). The pattern considered is rows
 * rows[0..nrows) (NULL: 0..nrows-1) by columns cols[0..ncols) (NULL: 0..
 * ncols-1) of the layer's mask (without one, its non-zeros). *order gets
 * nrows indices into that row list, or NULL when the order given is as good
 * (or the layer is too small or too large to bother). Deterministic. */
mm_status mm_sparse_group_rows(const mm_layer *dense, const size_t *rows, size_t nrows,
                               const size_t *cols, size_t ncols, size_t **order);

extern const mm_layer_vtable mm_sparse_kind;

#endif
