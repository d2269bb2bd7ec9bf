/* Kernels of the sparse layer kind (lib/prune/sparse.c, which explains the
 * layout and the measurements behind it): portable C plus AVX2 and AVX-512
 * copies chosen at run time from the CPU's features. Never installed. */
#ifndef MM_SPARSE_KERNELS_H
#define MM_SPARSE_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Rows per slice and columns per block of the tiled layout (the float
 * form; the int8-activation form: blocks of 64 columns, groups of 4). */
#define MM_SP_SLICE 16
#define MM_SP_BLOCK 32
#define MM_SP_BLOCK_I8 64
#define MM_SP_GROUP_I8 4
/* values and lcol are readable this many elements past the last slot
 * (zeroed), so that a step's 64-byte loads never leave the allocation. */
#define MM_SP_PAD 64
/* lcol of a padding slot (groups of 4: a lane with fewer entries). */
#define MM_SP_LCOL_PAD 0xFF

/* A rows x cols sparse matrix W in the tiled layout ("sliced ELL with
 * register tables"):
 *   - rows are grouped into slices of 16, columns into blocks of 32; a tile
 *     is the part of one slice in one block that holds at least one entry.
 *     Tiles are stored slice after slice, blocks increasing.
 *   - in a tile the slice's rows are ranked by their number of entries in
 *     the tile (more first, ties by row): tile lane j is slice row iperm[j]
 *     and slice row r is tile lane fperm[r] (16 bytes per tile).
 *   - a tile is K steps; step i holds the i-th entry (columns increasing)
 *     of every lane with more than i entries, which are lanes 0 .. c_i - 1
 *     (1 <= c_i <= 16, non-increasing in i). Entries are stored step after
 *     step with no padding: values[k] and lcol[k] = column - 32 * block.
 * So a step is one vector: 16 consecutive values, the columns as indices
 * into a 32-float window of x held in two registers, and a prefix mask; no
 * gathers.
 *
 * Grouped form (group 4, blocks of 64: the int8-activation kernels): step
 * i holds entries 4i .. 4i+3 of every lane with more than 4i entries, the
 * lane's 4 slots together (one 32-bit lane of vpdpbusd: 4 weights, 4 byte
 * indices into a 64-byte window of uint8 activations for vpermb); a lane
 * with fewer left fills its group with padding slots (lcol
 * MM_SP_LCOL_PAD, weight 0). Slots are stored step after step: step i
 * takes 4 c_i slots. nslots counts them (nnz the entries, nslots >= nnz). */
typedef struct mm_sp_matrix {
    size_t rows, cols, nnz;
    unsigned block, group; /* 32 and 1, or 64 and 4 */
    size_t nslots;
    size_t nslices, ntiles, nsteps;
    const uint32_t *slice_tiles; /* nslices + 1: slice s owns tiles [st[s], st[s+1]) */
    const uint32_t *tile_block;  /* ntiles */
    const uint8_t *tile_steps;   /* ntiles: K (1..32) */
    const uint8_t *tile_fperm;   /* 16 per tile */
    const uint8_t *tile_iperm;   /* 16 per tile */
    const uint8_t *step_count;   /* nsteps: c_i */
    const uint8_t *lcol;         /* nslots + MM_SP_PAD */
    const float *values;         /* nnz + MM_SP_PAD (float kinds) */
    /* int8 kinds: entry k as one 16-bit word (q << 8) | lcol[k], q the
     * int8 weight (nnz + MM_SP_PAD words), and the weight of row r is
     * qscale[r] * q. One word per entry: widening it gives both the table
     * index (vpermt2ps reads only the low 5 bits) and, shifted right by 8
     * with sign, the weight, so a step costs the float kind's two shuffles
     * (sparse_kernels.c). */
    const int16_t *qw;
    const float *qscale; /* rows */
} mm_sp_matrix;

/* The packed word of an int8 weight q in [-127, 127] at local column lc
 * (< 32), and back (portable: no shifts of negative values). */
static inline int16_t mm_sp_qword(int q, unsigned lc) { return (int16_t)(q * 256 + (int)lc); }
static inline int mm_sp_qword_weight(int16_t w) { return (w - (w & 0xFF)) / 256; }

/* The grouped form's int8 weights: q8[k] for slot k (nslots + MM_SP_PAD
 * bytes, padding slots 0). Passed beside the matrix. */

/* One kernel set. Every function handles any n >= 1. Batched calls may
 * allocate a scratch buffer for the call (never shared state: concurrent
 * calls are safe); if that fails they take a slower path that needs none,
 * so they cannot fail. */
typedef struct mm_sparse_kernels {
    const char *name; /* "portable", "avx2", "avx512" */
    /* The largest fraction of stored weights at which this set still beats
     * dense BLIS layers (mm_sparse_worthwhile; measurements in sparse.c). */
    double max_density;
    /* y[n x rows] = x[n x cols] W^T (+ bias[rows] on every row when bias
     * is not NULL). */
    void (*forward)(const mm_sp_matrix *w, const float *bias, const float *x, float *y, size_t n);
    /* dx[n x cols] = dz[n x rows] W (dx is overwritten). */
    void (*backward_x)(const mm_sp_matrix *w, const float *dz, float *dx, size_t n);
    /* For every stored entry k (row r, column c):
     *   g = sum over samples s of dz[s, r] * x[s, c]
     *   dst[k] = accumulate ? dst[k] + alpha * g : alpha * g
     * (a multiply, then an add: never fused, so the fused SGD update equals
     * "gradient, then p + (-lr) g" bit for bit). dst (nnz + MM_SP_PAD
     * floats) may be the matrix's own values array. */
    void (*grad_values)(const mm_sp_matrix *w, const float *dz, const float *x, size_t n,
                        float alpha, bool accumulate, float *dst);
    /* The int8 kinds' forward from w->qw and w->qscale:
     * y[s, r] = qscale[r] * sum_k q_k x[s, col_k] (+ bias[r]). */
    void (*forward_q8)(const mm_sp_matrix *w, const float *bias, const float *x, float *y,
                       size_t n);
    /* Grouped form (group 4, blocks of 64), integer: acc[s, r] = sum over
     * the slots k of row r of xq[s, col_k] * q8[k], exact in int32 (rows
     * of xq every xq_stride bytes, each readable MM_SP_BLOCK_I8 bytes past
     * cols: the window loads). */
    void (*dot_u8s8)(const mm_sp_matrix *w, const int8_t *q8, const uint8_t *xq,
                     size_t xq_stride, size_t n, int32_t *acc);
} mm_sparse_kernels;

typedef enum mm_sparse_isa {
    MM_SPARSE_ISA_PORTABLE = 0,
    MM_SPARSE_ISA_AVX2 = 1,  /* AVX2 + FMA */
    MM_SPARSE_ISA_AVX512 = 2 /* AVX-512 F/BW/VL + BMI2 */
} mm_sparse_isa;

/* The kernel set in use: the best the CPU supports, capped by the
 * environment variable MM_SPARSE_SIMD ("0" or "portable": portable C;
 * "avx2": at most AVX2; anything else: no cap). Decided once per process,
 * unless overridden. Never NULL. Thread-safe. */
const mm_sparse_kernels *mm_sparse_kernels_get(void);

/* The kernel set for an ISA, or NULL if this build or this CPU lacks it
 * (independent of MM_SPARSE_SIMD). */
const mm_sparse_kernels *mm_sparse_kernels_for(mm_sparse_isa isa);

/* For tests and benchmarks: make mm_sparse_kernels_get() return k from now
 * on (NULL restores the automatic choice). Not while other threads run
 * sparse layers. */
void mm_sparse_kernels_override(const mm_sparse_kernels *k);

#endif
