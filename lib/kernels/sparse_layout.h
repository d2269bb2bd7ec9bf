/* The tiled layout of sparse_kernels.h as an object: built once from CSR,
 * immutable afterwards, shared in shape by every sparse layer kind (float
 * "sparse", int8 "sparse_int8"), which keep their values beside it in the
 * layout's storage order. Never installed. */
#ifndef MM_SPARSE_LAYOUT_H
#define MM_SPARSE_LAYOUT_H

#include "common/mm_internal.h"
#include "kernels/sparse_kernels.h"

/* A CSR pattern: row r holds columns idx[off[r] .. off[r+1]), strictly
 * increasing and below cols (checked by whoever made it). */
typedef struct mm_sp_csr {
    size_t rows, cols, nnz;
    const size_t *off;
    const uint32_t *idx;
} mm_sp_csr;

/* The structure arrays and the kernel view over them. m's value pointers
 * (values, qw, qscale) are NULL: an owner copies m and points them at its
 * own arrays. */
typedef struct mm_sp_layout {
    mm_sp_matrix m;
    uint32_t *slice_tiles, *tile_block;
    uint8_t *tile_steps, *tile_perm, *step_count, *lcol;
} mm_sp_layout;

/* Build the layout of a pattern (nnz <= UINT32_MAX) in the float form
 * (block MM_SP_BLOCK, group 1) or the grouped form (MM_SP_BLOCK_I8,
 * MM_SP_GROUP_I8; sparse_kernels.h). MM_E_INVALID_ARGUMENT for another
 * pair, MM_E_OUT_OF_RANGE, MM_E_OUT_OF_MEMORY; *out is NULL on error. */
mm_status mm_sp_layout_build(const mm_sp_csr *csr, unsigned block, unsigned group,
                             mm_sp_layout **out);
mm_status mm_sp_layout_clone(const mm_sp_layout *src, mm_sp_layout **out);
void mm_sp_layout_free(mm_sp_layout *lay); /* NULL: no-op */

/* Bytes of the structure as kept (per stored weight its column byte, per
 * step a count, per tile a block, a step count and two permutations, the
 * slice offsets), without values. */
size_t mm_sp_layout_bytes(const mm_sp_layout *lay);

/* For every stored entry in slot k (storage order) its position in the
 * pattern's CSR order (rows in order, columns increasing): pos has nslots
 * entries (= nnz in the float form; padding slots are left alone). */
mm_status mm_sp_layout_csr_order(const mm_sp_layout *lay, size_t *pos);

/* The pattern back as CSR: off (rows + 1) and idx (nnz), both allocated
 * here (free()). */
mm_status mm_sp_layout_to_csr(const mm_sp_layout *lay, uint32_t **off, uint32_t **idx);

/* Visit the stored entries of an mm_sp_matrix in storage order: BODY sees
 * k (the entry's slot), row and col. Padding slots (grouped form) are
 * skipped. MM_SP_FOR_EACH_G takes the group size as a constant (the
 * kernels' hot loops). */
#define MM_SP_FOR_EACH(mat, BODY) MM_SP_FOR_EACH_G(mat, (mat)->group, BODY)
#define MM_SP_FOR_EACH_G(mat, G, BODY)                                                     \
    do {                                                                                   \
        const size_t e_G = (G);                                                            \
        size_t e_p = 0, e_it = 0, e_t = 0;                                                 \
        for (size_t e_s = 0; e_s < (mat)->nslices; e_s++) {                                \
            for (; e_t < (mat)->slice_tiles[e_s + 1]; e_t++) {                             \
                const size_t e_c0 = (size_t)(mat)->tile_block[e_t] * (mat)->block;         \
                const uint8_t *e_ip = (mat)->tile_iperm + MM_SP_SLICE * e_t;               \
                for (const size_t e_e = e_it + (mat)->tile_steps[e_t]; e_it < e_e; e_it++) { \
                    const size_t e_c = (mat)->step_count[e_it];                            \
                    for (size_t e_j = 0; e_j < e_c * e_G; e_j++) {                         \
                        const size_t k = e_p + e_j;                                        \
                        if (e_G > 1 && (mat)->lcol[k] == MM_SP_LCOL_PAD) continue;         \
                        const size_t row = e_s * MM_SP_SLICE + e_ip[e_j / e_G];            \
                        const size_t col = e_c0 + (mat)->lcol[k];                          \
                        (void)k;                                                           \
                        (void)row;                                                         \
                        (void)col;                                                         \
                        BODY;                                                              \
                    }                                                                      \
                    e_p += e_c * e_G;                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    } while (0)

#endif
