/* Building the tiled layout of sparse_kernels.h from a CSR pattern
 * (sparse_layout.h; lib/prune/sparse.c explains the layout's design and
 * measurements). */
#include <stdlib.h>
#include <string.h>

#include "kernels/sparse_layout.h"

void mm_sp_layout_free(mm_sp_layout *lay) {
    if (!lay) return;
    free(lay->slice_tiles);
    free(lay->tile_block);
    free(lay->tile_steps);
    free(lay->tile_perm);
    free(lay->step_count);
    free(lay->lcol);
    free(lay);
}

/* Point the kernel view at the arrays. */
static void layout_bind(mm_sp_layout *lay) {
    lay->m.slice_tiles = lay->slice_tiles;
    lay->m.tile_block = lay->tile_block;
    lay->m.tile_steps = lay->tile_steps;
    lay->m.tile_fperm = lay->tile_perm;
    lay->m.tile_iperm = lay->tile_perm + (size_t)MM_SP_SLICE * lay->m.ntiles;
    lay->m.step_count = lay->step_count;
    lay->m.lcol = lay->lcol;
}

/* Allocate the arrays for the counts in lay->m. */
static mm_status layout_alloc(mm_sp_layout *lay) {
    const mm_sp_matrix *m = &lay->m;
    const size_t nt = m->ntiles ? m->ntiles : 1;
    lay->slice_tiles = mm_malloc_array(m->nslices + 1, sizeof *lay->slice_tiles);
    lay->tile_block = mm_malloc_array(nt, sizeof *lay->tile_block);
    lay->tile_steps = malloc(nt);
    lay->tile_perm = mm_malloc_array(nt, 2 * MM_SP_SLICE);
    lay->step_count = malloc(m->nsteps ? m->nsteps : 1);
    lay->lcol = calloc(m->nslots + MM_SP_PAD, 1);
    if (!lay->slice_tiles || !lay->tile_block || !lay->tile_steps || !lay->tile_perm ||
        !lay->step_count || !lay->lcol)
        return mm_oom("sparse layer structure");
    return MM_OK;
}

/* Rank the 16 rows of a slice in a tile: more entries first, ties by
 * row. iperm[j] = row of lane j. */
static void rank_rows(const size_t cnt[MM_SP_SLICE], uint8_t iperm[MM_SP_SLICE]) {
    for (int j = 0; j < MM_SP_SLICE; j++) {
        int r = j, i = j;
        while (i > 0 && cnt[iperm[i - 1]] < cnt[r]) {
            iperm[i] = iperm[i - 1];
            i--;
        }
        iperm[i] = (uint8_t)r;
    }
}

/* Two passes over the CSR entries, slice by slice, visiting only blocks
 * that hold entries: the first counts tiles, steps and slots, the second
 * (fill) writes the layout. */
static mm_status layout_pass(mm_sp_layout *lay, const mm_sp_csr *v, bool fill) {
    const size_t rows = v->rows, nslices = (rows + MM_SP_SLICE - 1) / MM_SP_SLICE;
    const size_t B = lay->m.block, G = lay->m.group;
    size_t ntiles = 0, nsteps = 0, p = 0;
    for (size_t sl = 0; sl < nslices; sl++) {
        const size_t r0 = sl * MM_SP_SLICE;
        const size_t nr = rows - r0 < MM_SP_SLICE ? rows - r0 : MM_SP_SLICE;
        size_t ptr[MM_SP_SLICE], end[MM_SP_SLICE];
        for (size_t r = 0; r < MM_SP_SLICE; r++) ptr[r] = end[r] = 0;
        for (size_t r = 0; r < nr; r++) {
            ptr[r] = v->off[r0 + r];
            end[r] = v->off[r0 + r + 1];
        }
        if (fill) lay->slice_tiles[sl] = (uint32_t)ntiles;
        for (;;) {
            /* the next block holding an entry of any row of the slice */
            size_t blk = SIZE_MAX;
            for (size_t r = 0; r < nr; r++)
                if (ptr[r] < end[r] && v->idx[ptr[r]] / B < blk) blk = v->idx[ptr[r]] / B;
            if (blk == SIZE_MAX) break;
            size_t cnt[MM_SP_SLICE] = {0}, most = 0;
            for (size_t r = 0; r < nr; r++) {
                while (ptr[r] + cnt[r] < end[r] && v->idx[ptr[r] + cnt[r]] / B == blk) cnt[r]++;
                if (cnt[r] > most) most = cnt[r];
            }
            const size_t K = (most + G - 1) / G; /* steps of G entries per lane */
            if (fill) {
                uint8_t *fp = lay->tile_perm + MM_SP_SLICE * ntiles;
                uint8_t *rank =
                    lay->tile_perm + (size_t)MM_SP_SLICE * lay->m.ntiles + MM_SP_SLICE * ntiles;
                rank_rows(cnt, rank);
                for (int j = 0; j < MM_SP_SLICE; j++) fp[rank[j]] = (uint8_t)j;
                lay->tile_block[ntiles] = (uint32_t)blk;
                lay->tile_steps[ntiles] = (uint8_t)K;
                for (size_t i = 0; i < K; i++) {
                    size_t c = 0;
                    while (c < MM_SP_SLICE && cnt[rank[c]] > G * i) {
                        for (size_t g = G * i; g < G * i + G; g++)
                            lay->lcol[p++] = g < cnt[rank[c]]
                                                 ? (uint8_t)(v->idx[ptr[rank[c]] + g] - blk * B)
                                                 : MM_SP_LCOL_PAD;
                        c++;
                    }
                    lay->step_count[nsteps + i] = (uint8_t)c;
                }
            } else {
                for (size_t i = 0; i < K; i++)
                    for (size_t r = 0; r < nr; r++) p += cnt[r] > G * i ? G : 0;
            }
            for (size_t r = 0; r < nr; r++) ptr[r] += cnt[r];
            ntiles++;
            nsteps += K;
            if (ntiles > UINT32_MAX)
                return mm_error(MM_E_OUT_OF_RANGE, "sparse layer %zu x %zu has too many tiles",
                                rows, v->cols);
        }
    }
    if (fill) {
        lay->slice_tiles[nslices] = (uint32_t)ntiles;
    } else {
        lay->m.nslices = nslices;
        lay->m.ntiles = ntiles;
        lay->m.nsteps = nsteps;
        lay->m.nslots = p;
    }
    return MM_OK;
}

mm_status mm_sp_layout_build(const mm_sp_csr *csr, unsigned block, unsigned group,
                             mm_sp_layout **out) {
    *out = NULL;
    if (!((block == MM_SP_BLOCK && group == 1) ||
          (block == MM_SP_BLOCK_I8 && group == MM_SP_GROUP_I8)))
        return mm_error(MM_E_INVALID_ARGUMENT, "no sparse layout with blocks of %u and groups of %u",
                        block, group);
    if (csr->nnz > UINT32_MAX)
        return mm_error(MM_E_OUT_OF_RANGE, "sparse layer with %zu stored weights (at most %u)",
                        csr->nnz, UINT32_MAX);
    mm_sp_layout *lay = calloc(1, sizeof *lay);
    if (!lay) return mm_oom("sparse layer structure");
    lay->m.rows = csr->rows;
    lay->m.cols = csr->cols;
    lay->m.nnz = csr->nnz;
    lay->m.block = block;
    lay->m.group = group;
    mm_status st = layout_pass(lay, csr, false);
    if (st == MM_OK) st = layout_alloc(lay);
    if (st == MM_OK) st = layout_pass(lay, csr, true);
    if (st != MM_OK) {
        mm_sp_layout_free(lay);
        return st;
    }
    layout_bind(lay);
    *out = lay;
    return MM_OK;
}

mm_status mm_sp_layout_clone(const mm_sp_layout *src, mm_sp_layout **out) {
    *out = NULL;
    mm_sp_layout *lay = calloc(1, sizeof *lay);
    if (!lay) return mm_oom("sparse layer structure");
    const mm_sp_matrix *m = &src->m;
    lay->m = *m;
    mm_status st = layout_alloc(lay);
    if (st != MM_OK) {
        mm_sp_layout_free(lay);
        return st;
    }
    memcpy(lay->slice_tiles, src->slice_tiles, (m->nslices + 1) * sizeof *lay->slice_tiles);
    memcpy(lay->tile_block, src->tile_block, m->ntiles * sizeof *lay->tile_block);
    memcpy(lay->tile_steps, src->tile_steps, m->ntiles);
    memcpy(lay->tile_perm, src->tile_perm, m->ntiles * 2 * MM_SP_SLICE);
    memcpy(lay->step_count, src->step_count, m->nsteps);
    memcpy(lay->lcol, src->lcol, m->nslots);
    layout_bind(lay);
    *out = lay;
    return MM_OK;
}

size_t mm_sp_layout_bytes(const mm_sp_layout *lay) {
    const mm_sp_matrix *m = &lay->m;
    return m->nslots + m->nsteps + m->ntiles * (sizeof(uint32_t) + 1 + 2 * MM_SP_SLICE) +
           (m->nslices + 1) * sizeof(uint32_t);
}

mm_status mm_sp_layout_csr_order(const mm_sp_layout *lay, size_t *pos) {
    const mm_sp_matrix *m = &lay->m;
    size_t *cursor = calloc(m->rows + 1, sizeof *cursor);
    if (!cursor) return mm_oom("sparse layer order");
    MM_SP_FOR_EACH(m, cursor[row + 1]++);
    for (size_t r = 0; r < m->rows; r++) cursor[r + 1] += cursor[r];
    MM_SP_FOR_EACH(m, pos[k] = cursor[row]++);
    free(cursor);
    return MM_OK;
}

mm_status mm_sp_layout_to_csr(const mm_sp_layout *lay, uint32_t **off_out, uint32_t **idx_out) {
    const mm_sp_matrix *m = &lay->m;
    *off_out = NULL;
    *idx_out = NULL;
    uint32_t *off = calloc(m->rows + 1, sizeof *off);
    uint32_t *idx = mm_malloc_array(m->nnz ? m->nnz : 1, sizeof *idx);
    size_t *pos = mm_malloc_array(m->nslots ? m->nslots : 1, sizeof *pos);
    if (!off || !idx || !pos) {
        free(off);
        free(idx);
        free(pos);
        return mm_oom("sparse layer CSR form");
    }
    mm_status st = mm_sp_layout_csr_order(lay, pos);
    if (st == MM_OK) {
        MM_SP_FOR_EACH(m, {
            off[row + 1]++;
            idx[pos[k]] = (uint32_t)col;
        });
        for (size_t r = 0; r < m->rows; r++) off[r + 1] += off[r];
    }
    free(pos);
    if (st != MM_OK) {
        free(off);
        free(idx);
        return st;
    }
    *off_out = off;
    *idx_out = idx;
    return MM_OK;
}
