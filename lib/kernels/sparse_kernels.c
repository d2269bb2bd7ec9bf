/* Kernels of the sparse layer kind over the tiled layout of
 * sparse_kernels.h (lib/prune/sparse.c explains the layout and the
 * measurements behind it).
 *
 *   forward, batch 1     AVX-512: per step one masked load of 16 values, 16
 *                        column bytes widened to indices, one vpermt2ps into
 *                        the 32-float window of x (two registers loaded per
 *                        tile) and a masked FMA into the tile's lanes; at the
 *                        end of a tile one vpermps puts the lanes back in row
 *                        order. AVX2: the same with 8-lane halves and four
 *                        vpermps + blends for the 32-float window. Portable:
 *                        the same loops in scalar C.
 *   forward, batch n     AVX-512: the batch-1 loop for 4 samples at once (the
 *                        index and value loads shared). AVX2 and portable:
 *                        blocks of 16 samples transposed into [cols x 16]
 *                        buffers, one 16-wide axpy per stored weight.
 *   backward_x           blocks of 16 samples, transposed, one 16-wide axpy
 *                        per stored weight into the transposed dx block (batch
 *                        1: scalar scatter-add).
 *   grad_values          AVX-512: vectorised over the 16 lanes of a step
 *                        (batch n: 4 samples per pass, summed in registers);
 *                        AVX2 and portable: per stored weight a dot product
 *                        over the samples of transposed chunks of dz and x.
 *
 * Masked lanes never take part in arithmetic (masked FMA / zeroed table
 * lookups), so an infinite x value reaches exactly the rows that store a
 * weight in its column, as in the portable loops. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/mm_internal.h"
#include "kernels/sparse_layout.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(MM_SPARSE_PORTABLE_ONLY)
#  define SK_X86 1
#  include <immintrin.h>
#  define SK_AVX2 __attribute__((target("avx2,fma")))
#  define SK_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,bmi2")))
#else
#  define SK_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define SK_INLINE static inline __attribute__((always_inline))
#else
#  define SK_INLINE static inline
#endif

#define SL MM_SP_SLICE
#define BL MM_SP_BLOCK
/* Samples per block of the transposed batched loops. */
#define SB 16
/* Samples per chunk of the transposed value gradient (multiple of 16). */
#define GCH 64

/* ---- helpers shared by every copy -------------------------------------- */

/* dst[j*S + s] = src[s*ld + j] for s < m, j < len; lanes m..S-1 zeroed. */
SK_INLINE void pack_t(const float *restrict src, size_t ld, size_t m, size_t len,
                      float *restrict dst, const size_t S) {
    for (size_t j0 = 0; j0 < len; j0 += 16) {
        const size_t j1 = len - j0 < 16 ? len : j0 + 16;
        for (size_t s = 0; s < m; s++) {
            const float *row = src + s * ld;
            for (size_t j = j0; j < j1; j++) dst[j * S + s] = row[j];
        }
        for (size_t j = j0; j < j1; j++)
            for (size_t s = m; s < S; s++) dst[j * S + s] = 0.0f;
    }
}

/* dst[s*ld + j] = src[j*S + s] for s < m, j < len. */
SK_INLINE void unpack_t(const float *restrict src, size_t m, size_t len, float *restrict dst,
                        size_t ld, const size_t S) {
    for (size_t j0 = 0; j0 < len; j0 += 16) {
        const size_t j1 = len - j0 < 16 ? len : j0 + 16;
        for (size_t s = 0; s < m; s++) {
            float *row = dst + s * ld;
            for (size_t j = j0; j < j1; j++) row[j] = src[j * S + s];
        }
    }
}

/* a * b floats, NULL on overflow or failure. */
static float *scratch(size_t a, size_t b) {
    size_t count;
    if (!mm_mul_ok(a, b, &count)) return NULL;
    return mm_alloc_floats(count);
}

SK_INLINE float finish(float old, float alpha, float g, const bool accumulate) {
    return accumulate ? old + alpha * g : alpha * g;
}

/* Walk every stored entry of a float-form matrix in storage order: the
 * body sees k (position), row and col. */
#define SP_FOR_ENTRIES(w, BODY) MM_SP_FOR_EACH_G(w, 1, BODY)

/* ---- portable bodies (also compiled for AVX2) ------------------------- */

/* Q8 (a constant at every call): the int8 kinds' words and row scales
 * instead of float values. */
SK_INLINE void fwd1_body(const mm_sp_matrix *w, const float *bias, const float *restrict x,
                         float *restrict y, const bool Q8) {
    const uint8_t *sc = w->step_count, *lc = w->lcol;
    const float *v = w->values;
    const int16_t *qw = w->qw;
    size_t p = 0, it = 0, t = 0;
    for (size_t s = 0; s < w->nslices; s++) {
        float acc[SL] = {0};
        for (; t < w->slice_tiles[s + 1]; t++) {
            const float *xb = x + (size_t)w->tile_block[t] * BL;
            float ta[SL] = {0};
            for (const size_t e = it + w->tile_steps[t]; it < e; it++) {
                const size_t c = sc[it];
                if (Q8)
                    for (size_t j = 0; j < c; j++)
                        ta[j] += (float)mm_sp_qword_weight(qw[p + j]) * xb[lc[p + j]];
                else
                    for (size_t j = 0; j < c; j++) ta[j] += v[p + j] * xb[lc[p + j]];
                p += c;
            }
            const uint8_t *fp = w->tile_fperm + SL * t;
            for (size_t r = 0; r < SL; r++) acc[r] += ta[fp[r]];
        }
        const size_t r0 = s * SL, nr = w->rows - r0 < SL ? w->rows - r0 : SL;
        if (Q8)
            for (size_t r = 0; r < nr; r++) acc[r] *= w->qscale[r0 + r];
        for (size_t r = 0; r < nr; r++) y[r0 + r] = bias ? acc[r] + bias[r0 + r] : acc[r];
    }
}

/* y[0..16) += a * x[0..16). GCC's vector extension (lowered to whatever
 * the target has, scalar at worst): written as a plain loop the compiler
 * fully unrolls it in place and then leaves it scalar. */
#if defined(__GNUC__) || defined(__clang__)
typedef float sk_v4 __attribute__((vector_size(16)));
SK_INLINE void axpy16_c(float *restrict y, float a, const float *restrict x) {
    for (int q = 0; q < 4; q++) {
        sk_v4 xv, yv;
        memcpy(&xv, x + 4 * q, sizeof xv);
        memcpy(&yv, y + 4 * q, sizeof yv);
        yv += a * xv;
        memcpy(y + 4 * q, &yv, sizeof yv);
    }
}
#else
SK_INLINE void axpy16_c(float *restrict y, float a, const float *restrict x) {
    for (size_t l = 0; l < 16; l++) y[l] += a * x[l];
}
#endif

/* Batched forward over transposed blocks of SB samples; buf holds
 * (rows + cols) * SB floats. Q8 as in fwd1_body: the bias is added after
 * the row scale. */
#define FWDN_BODY(AXPY, Q8)                                                                \
    do {                                                                                   \
        const size_t rows = w->rows, cols = w->cols;                                       \
        float *xt = buf, *yt = buf + cols * SB;                                            \
        for (size_t s0 = 0; s0 < n; s0 += SB) {                                            \
            const size_t m = n - s0 < SB ? n - s0 : SB;                                    \
            pack_t(x + s0 * cols, cols, m, cols, xt, SB);                                  \
            for (size_t r = 0; r < rows; r++)                                              \
                for (size_t l = 0; l < SB; l++)                                            \
                    yt[r * SB + l] = bias && !(Q8) ? bias[r] : 0.0f;                       \
            if (Q8) {                                                                      \
                const int16_t *qw = w->qw;                                                 \
                SP_FOR_ENTRIES(w, AXPY(yt + row * SB, (float)mm_sp_qword_weight(qw[k]),    \
                                       xt + col * SB));                                    \
                for (size_t r = 0; r < rows; r++)                                          \
                    for (size_t l = 0; l < SB; l++)                                        \
                        yt[r * SB + l] = bias ? yt[r * SB + l] * w->qscale[r] + bias[r]    \
                                              : yt[r * SB + l] * w->qscale[r];             \
            } else {                                                                       \
                const float *v = w->values;                                                \
                SP_FOR_ENTRIES(w, AXPY(yt + row * SB, v[k], xt + col * SB));               \
            }                                                                              \
            unpack_t(yt, m, rows, y + s0 * rows, rows, SB);                                \
        }                                                                                  \
    } while (0)

SK_INLINE void bwd1_body(const mm_sp_matrix *w, const float *restrict dz, float *restrict dx) {
    const uint8_t *sc = w->step_count, *lc = w->lcol;
    const float *v = w->values;
    memset(dx, 0, w->cols * sizeof *dx);
    size_t p = 0, it = 0, t = 0;
    for (size_t s = 0; s < w->nslices; s++) {
        const float *dzs = dz + s * SL;
        for (; t < w->slice_tiles[s + 1]; t++) {
            float *xb = dx + (size_t)w->tile_block[t] * BL;
            const uint8_t *ip = w->tile_iperm + SL * t;
            float dzt[SL];
            /* lanes past the slice's last row have no entries */
            for (size_t j = 0; j < SL; j++) dzt[j] = ip[j] < w->rows - s * SL ? dzs[ip[j]] : 0.0f;
            for (const size_t e = it + w->tile_steps[t]; it < e; it++) {
                const size_t c = sc[it];
                for (size_t j = 0; j < c; j++) xb[lc[p + j]] += v[p + j] * dzt[j];
                p += c;
            }
        }
    }
}

/* Batched dx over transposed blocks; buf holds (rows + cols) * SB floats. */
#define BWDN_BODY(AXPY)                                                                    \
    do {                                                                                   \
        const size_t rows = w->rows, cols = w->cols;                                       \
        float *dzt = buf, *dxt = buf + rows * SB;                                          \
        for (size_t s0 = 0; s0 < n; s0 += SB) {                                            \
            const size_t m = n - s0 < SB ? n - s0 : SB;                                    \
            pack_t(dz + s0 * rows, rows, m, rows, dzt, SB);                                \
            memset(dxt, 0, cols * SB * sizeof *dxt);                                       \
            const float *v = w->values;                                                    \
            SP_FOR_ENTRIES(w, AXPY(dxt + col * SB, v[k], dzt + row * SB));                 \
            unpack_t(dxt, m, cols, dx + s0 * cols, cols, SB);                              \
        }                                                                                  \
    } while (0)

SK_INLINE void grad1_body(const mm_sp_matrix *w, const float *restrict dz,
                          const float *restrict x, float alpha, float *dst,
                          const bool accumulate) {
    SP_FOR_ENTRIES(w, dst[k] = finish(dst[k], alpha, dz[row] * x[col], accumulate));
}

/* Dot product of two arrays of len (a multiple of 16) in 16 lanes. */
SK_INLINE float dot_c(const float *restrict a, const float *restrict b, size_t len) {
    float acc[16] = {0};
    for (size_t i = 0; i < len; i += 16)
        for (size_t l = 0; l < 16; l++) acc[l] += a[i + l] * b[i + l];
    for (size_t l = 0; l < 8; l++) acc[l] += acc[l + 8];
    for (size_t l = 0; l < 4; l++) acc[l] += acc[l + 4];
    return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

/* Batched value gradient over transposed chunks of GCH samples; buf holds
 * (rows + cols) * GCH floats, plus nnz when n > GCH. */
#define GRADN_BODY(DOT)                                                                    \
    do {                                                                                   \
        const size_t rows = w->rows, cols = w->cols;                                       \
        float *dzt = buf, *xt = buf + rows * GCH;                                          \
        float *tmp = n > GCH ? buf + (rows + cols) * GCH : NULL;                           \
        for (size_t s0 = 0; s0 < n; s0 += GCH) {                                           \
            const size_t m = n - s0 < GCH ? n - s0 : GCH;                                  \
            pack_t(dz + s0 * rows, rows, m, rows, dzt, GCH);                               \
            pack_t(x + s0 * cols, cols, m, cols, xt, GCH);                                 \
            SP_FOR_ENTRIES(w, {                                                            \
                float g = DOT(dzt + row * GCH, xt + col * GCH, GCH);                       \
                if (!tmp) dst[k] = finish(dst[k], alpha, g, accumulate);                   \
                else tmp[k] = s0 == 0 ? g : tmp[k] + g;                                    \
            });                                                                            \
        }                                                                                  \
        if (tmp)                                                                           \
            for (size_t k = 0; k < w->nnz; k++)                                            \
                dst[k] = finish(dst[k], alpha, tmp[k], accumulate);                        \
    } while (0)

static float *grad_scratch(const mm_sp_matrix *w, size_t n) {
    size_t base;
    if (!mm_mul_ok(w->rows + w->cols, GCH, &base)) return NULL;
    const size_t extra = n > GCH ? w->nnz : 0;
    if (base > SIZE_MAX - extra) return NULL;
    return mm_alloc_floats(base + extra);
}

/* The grouped form's integer dot products for one sample (see dot_u8s8 in
 * sparse_kernels.h): exact, so every ISA gives the same sums. */
SK_INLINE void dot1_body(const mm_sp_matrix *w, const int8_t *restrict q8,
                         const uint8_t *restrict xq, int32_t *restrict acc) {
    const uint8_t *sc = w->step_count, *lc = w->lcol;
    const size_t G = MM_SP_GROUP_I8;
    size_t p = 0, it = 0, t = 0;
    for (size_t s = 0; s < w->nslices; s++) {
        int32_t a[SL] = {0};
        for (; t < w->slice_tiles[s + 1]; t++) {
            const uint8_t *xb = xq + (size_t)w->tile_block[t] * MM_SP_BLOCK_I8;
            int32_t ta[SL] = {0};
            for (const size_t e = it + w->tile_steps[t]; it < e; it++) {
                const size_t c = sc[it];
                for (size_t j = 0; j < c; j++)
                    for (size_t g = 0; g < G; g++) /* padding: weight 0 at column 63 */
                        ta[j] += (int32_t)xb[lc[p + G * j + g] & (MM_SP_BLOCK_I8 - 1)] *
                                 (int32_t)q8[p + G * j + g];
                p += G * c;
            }
            const uint8_t *fp = w->tile_fperm + SL * t;
            for (size_t r = 0; r < SL; r++) a[r] += ta[fp[r]];
        }
        const size_t r0 = s * SL, nr = w->rows - r0 < SL ? w->rows - r0 : SL;
        for (size_t r = 0; r < nr; r++) acc[r0 + r] = a[r];
    }
}

static void dot_u8s8_portable(const mm_sp_matrix *w, const int8_t *q8, const uint8_t *xq,
                              size_t xq_stride, size_t n, int32_t *acc) {
    for (size_t s = 0; s < n; s++) dot1_body(w, q8, xq + s * xq_stride, acc + s * w->rows);
}

/* ---- portable kernel set ---------------------------------------------- */

static void fwdn_portable(const mm_sp_matrix *w, const float *bias, const float *x, float *y,
                          size_t n, float *buf, const bool Q8) {
    FWDN_BODY(axpy16_c, Q8);
}

SK_INLINE void forward_portable_any(const mm_sp_matrix *w, const float *bias, const float *x,
                                    float *y, size_t n, const bool Q8) {
    float *buf = n > 1 ? scratch(w->rows + w->cols, SB) : NULL;
    if (buf) {
        fwdn_portable(w, bias, x, y, n, buf, Q8);
        mm_free_floats(buf);
        return;
    }
    for (size_t s = 0; s < n; s++) fwd1_body(w, bias, x + s * w->cols, y + s * w->rows, Q8);
}

static void forward_portable(const mm_sp_matrix *w, const float *bias, const float *x, float *y,
                             size_t n) {
    forward_portable_any(w, bias, x, y, n, false);
}

static void forward_q8_portable(const mm_sp_matrix *w, const float *bias, const float *x,
                                float *y, size_t n) {
    forward_portable_any(w, bias, x, y, n, true);
}

static void bwdn_portable(const mm_sp_matrix *w, const float *dz, float *dx, size_t n,
                          float *buf) {
    BWDN_BODY(axpy16_c);
}

static void backward_x_portable(const mm_sp_matrix *w, const float *dz, float *dx, size_t n) {
    float *buf = n > 1 ? scratch(w->rows + w->cols, SB) : NULL;
    if (buf) {
        bwdn_portable(w, dz, dx, n, buf);
        mm_free_floats(buf);
        return;
    }
    for (size_t s = 0; s < n; s++) bwd1_body(w, dz + s * w->rows, dx + s * w->cols);
}

static void gradn_portable(const mm_sp_matrix *w, const float *dz, const float *x, size_t n,
                           float alpha, bool accumulate, float *dst, float *buf) {
    GRADN_BODY(dot_c);
}

static void grad_values_portable(const mm_sp_matrix *w, const float *dz, const float *x,
                                 size_t n, float alpha, bool accumulate, float *dst) {
    float *buf = n > 1 ? grad_scratch(w, n) : NULL;
    if (buf) {
        gradn_portable(w, dz, x, n, alpha, accumulate, dst, buf);
        mm_free_floats(buf);
        return;
    }
    for (size_t s = 0; s < n; s++)
        grad1_body(w, dz + s * w->rows, x + s * w->cols, alpha, dst, accumulate || s > 0);
}

static const mm_sparse_kernels kernels_portable = {
    .name = "portable",
    .max_density = 0.04,
    .forward = forward_portable,
    .backward_x = backward_x_portable,
    .grad_values = grad_values_portable,
    .forward_q8 = forward_q8_portable,
    .dot_u8s8 = dot_u8s8_portable,
};

#if SK_X86

/* ---- AVX2 + FMA -------------------------------------------------------- */

SK_AVX2 SK_INLINE void axpy16_a2(float *restrict y, float a, const float *restrict x) {
    const __m256 av = _mm256_set1_ps(a);
    _mm256_storeu_ps(y, _mm256_fmadd_ps(av, _mm256_loadu_ps(x), _mm256_loadu_ps(y)));
    _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + 8), _mm256_loadu_ps(y + 8)));
}

SK_AVX2 SK_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SK_AVX2 SK_INLINE float dot_a2(const float *restrict a, const float *restrict b, size_t len) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (size_t i = 0; i < len; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

/* Lane mask (all ones where lane + base < count) for 8 lanes. */
SK_AVX2 SK_INLINE __m256i lanes_below_a2(size_t count, int base) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int c = count > (size_t)(base + 8) ? 8 : (int)count - base;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), iota);
}

/* x[ix] for 8 lanes from the 32-float window t[0..3]: four vpermps, and
 * bits 3 and 4 of the index (moved to the sign bit) select among them. */
SK_AVX2 SK_INLINE __m256 lookup32_a2(const __m256 t[4], __m256i ix) {
    const __m256 s3 = _mm256_castsi256_ps(_mm256_slli_epi32(ix, 28));
    const __m256 s4 = _mm256_castsi256_ps(_mm256_slli_epi32(ix, 27));
    const __m256 ab = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t[0], ix),
                                       _mm256_permutevar8x32_ps(t[1], ix), s3);
    const __m256 cd = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t[2], ix),
                                       _mm256_permutevar8x32_ps(t[3], ix), s3);
    return _mm256_blendv_ps(ab, cd, s4);
}

/* out[r] = in[idx[r]] for 16 lanes held as two halves. */
SK_AVX2 SK_INLINE void permute16_a2(const __m256 in[2], const uint8_t *idx, __m256 out[2]) {
    for (int h = 0; h < 2; h++) {
        const __m256i ix = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(idx + 8 * h)));
        const __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(ix, 28));
        out[h] = _mm256_blendv_ps(_mm256_permutevar8x32_ps(in[0], ix),
                                  _mm256_permutevar8x32_ps(in[1], ix), sel);
    }
}

SK_AVX2 SK_INLINE void fwd1_a2(const mm_sp_matrix *w, const float *bias, const float *x,
                               float *y, const bool Q8) {
    const uint8_t *sc = w->step_count, *lc = w->lcol;
    const float *v = w->values;
    const int16_t *qw = w->qw;
    const size_t cols = w->cols;
    size_t p = 0, it = 0, t = 0;
    for (size_t s = 0; s < w->nslices; s++) {
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        for (; t < w->slice_tiles[s + 1]; t++) {
            const size_t c0 = (size_t)w->tile_block[t] * BL;
            __m256 tab[4];
            for (int q = 0; q < 4; q++)
                tab[q] = _mm256_maskload_ps(x + c0 + 8 * q, lanes_below_a2(cols - c0, 8 * q));
            __m256 ta[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
            for (const size_t e = it + w->tile_steps[t]; it < e; it++) {
                const size_t c = sc[it];
                for (int h = 0; h < 2; h++) {
                    const __m256i m = lanes_below_a2(c, 8 * h);
                    const __m256 mf = _mm256_castsi256_ps(m);
                    if (Q8) {
                        /* the word is the index (low 3 bits to vpermps, bits 3
                         * and 4 to the blends) and, shifted, the weight */
                        const __m256i wi = _mm256_cvtepi16_epi32(
                            _mm_loadu_si128((const __m128i *)(const void *)(qw + p + 8 * h)));
                        const __m256 xv = _mm256_and_ps(lookup32_a2(tab, wi), mf);
                        const __m256 wv = _mm256_cvtepi32_ps(_mm256_srai_epi32(wi, 8));
                        ta[h] = _mm256_fmadd_ps(wv, xv, ta[h]);
                        continue;
                    }
                    const __m256i ix = _mm256_cvtepu8_epi32(
                        _mm_loadl_epi64((const __m128i *)(const void *)(lc + p + 8 * h)));
                    /* both factors zeroed past c (plain loads: values are padded) */
                    const __m256 xv = _mm256_and_ps(lookup32_a2(tab, ix), mf);
                    const __m256 wv = _mm256_and_ps(_mm256_loadu_ps(v + p + 8 * h), mf);
                    ta[h] = _mm256_fmadd_ps(wv, xv, ta[h]);
                }
                p += c;
            }
            __m256 rowv[2];
            permute16_a2(ta, w->tile_fperm + SL * t, rowv);
            acc[0] = _mm256_add_ps(acc[0], rowv[0]);
            acc[1] = _mm256_add_ps(acc[1], rowv[1]);
        }
        const size_t r0 = s * SL, nr = w->rows - r0;
        for (int h = 0; h < 2; h++) {
            const __m256i m = lanes_below_a2(nr, 8 * h);
            __m256 out = acc[h];
            if (Q8) out = _mm256_mul_ps(out, _mm256_maskload_ps(w->qscale + r0 + 8 * h, m));
            if (bias) out = _mm256_add_ps(out, _mm256_maskload_ps(bias + r0 + 8 * h, m));
            _mm256_maskstore_ps(y + r0 + 8 * h, m, out);
        }
    }
}

SK_AVX2 static void fwdn_a2(const mm_sp_matrix *w, const float *bias, const float *x, float *y,
                            size_t n, float *buf) {
    FWDN_BODY(axpy16_a2, false);
}

SK_AVX2 static void fwdn_q8_a2(const mm_sp_matrix *w, const float *bias, const float *x,
                               float *y, size_t n, float *buf) {
    FWDN_BODY(axpy16_a2, true);
}

SK_AVX2 static void fwd1_f32_a2(const mm_sp_matrix *w, const float *b, const float *x, float *y) {
    fwd1_a2(w, b, x, y, false);
}

SK_AVX2 static void fwd1_q8_a2(const mm_sp_matrix *w, const float *b, const float *x, float *y) {
    fwd1_a2(w, b, x, y, true);
}

static void forward_avx2(const mm_sp_matrix *w, const float *bias, const float *x, float *y,
                         size_t n) {
    float *buf = n > 1 ? scratch(w->rows + w->cols, SB) : NULL;
    if (buf) {
        fwdn_a2(w, bias, x, y, n, buf);
        mm_free_floats(buf);
        return;
    }
    for (size_t s = 0; s < n; s++) fwd1_f32_a2(w, bias, x + s * w->cols, y + s * w->rows);
}

static void forward_q8_avx2(const mm_sp_matrix *w, const float *bias, const float *x, float *y,
                            size_t n) {
    float *buf = n > 1 ? scratch(w->rows + w->cols, SB) : NULL;
    if (buf) {
        fwdn_q8_a2(w, bias, x, y, n, buf);
        mm_free_floats(buf);
        return;
    }
    for (size_t s = 0; s < n; s++) fwd1_q8_a2(w, bias, x + s * w->cols, y + s * w->rows);
}

SK_AVX2 static void bwd1_a2(const mm_sp_matrix *w, const float *dz, float *dx) {
    bwd1_body(w, dz, dx);
}

SK_AVX2 static void bwdn_a2(const mm_sp_matrix *w, const float *dz, float *dx, size_t n,
                            float *buf) {
    BWDN_BODY(axpy16_a2);
}

static void backward_x_avx2(const mm_sp_matrix *w, const float *dz, float *dx, size_t n) {
    float *buf = n > 1 ? scratch(w->rows + w->cols, SB) : NULL;
    if (buf) {
        bwdn_a2(w, dz, dx, n, buf);
        mm_free_floats(buf);
        return;
    }
    for (size_t s = 0; s < n; s++) bwd1_a2(w, dz + s * w->rows, dx + s * w->cols);
}

SK_AVX2 static void grad1_a2(const mm_sp_matrix *w, const float *dz, const float *x, float alpha,
                             float *dst, bool accumulate) {
    if (accumulate) grad1_body(w, dz, x, alpha, dst, true);
    else grad1_body(w, dz, x, alpha, dst, false);
}

/* Batch-1 value gradient times alpha, vectorised over the lanes of a step
 * and STORED to out[] (never read back: see grad1_a5). Whole 8-lane
 * stores: lanes past c land on the next step's entries, which that step
 * rewrites, or in the MM_SP_PAD floats after nnz (vmaskmovps stores are
 * microcoded and slow on AMD). */
SK_AVX2 static void grad1_store_a2(const mm_sp_matrix *w, const float *dz, const float *x,
                                   float alpha, float *out) {
    const uint8_t *sc = w->step_count, *lc = w->lcol;
    const size_t cols = w->cols;
    const __m256 al = _mm256_set1_ps(alpha);
    size_t p = 0, it = 0, t = 0;
    for (size_t s = 0; s < w->nslices; s++) {
        const size_t r0 = s * SL, nr = w->rows - r0;
        const __m256 dzs[2] = {_mm256_maskload_ps(dz + r0, lanes_below_a2(nr, 0)),
                               _mm256_maskload_ps(dz + r0 + 8, lanes_below_a2(nr, 8))};
        for (; t < w->slice_tiles[s + 1]; t++) {
            const size_t c0 = (size_t)w->tile_block[t] * BL;
            __m256 tab[4], dzt[2];
            for (int q = 0; q < 4; q++)
                tab[q] = _mm256_maskload_ps(x + c0 + 8 * q, lanes_below_a2(cols - c0, 8 * q));
            permute16_a2(dzs, w->tile_iperm + SL * t, dzt);
            for (const size_t e = it + w->tile_steps[t]; it < e; it++) {
                const size_t c = sc[it];
                for (int h = 0; h < 2; h++) {
                    const __m256i ix = _mm256_cvtepu8_epi32(
                        _mm_loadl_epi64((const __m128i *)(const void *)(lc + p + 8 * h)));
                    const __m256 g = _mm256_mul_ps(dzt[h], lookup32_a2(tab, ix));
                    _mm256_storeu_ps(out + p + 8 * h, _mm256_mul_ps(al, g));
                }
                p += c;
            }
        }
    }
}

/* dst[k] = dst[k] + a[k]. */
SK_AVX2 static void add_into_a2(float *dst, const float *a, size_t nnz) {
    size_t k = 0;
    for (; k + 8 <= nnz; k += 8)
        _mm256_storeu_ps(dst + k, _mm256_add_ps(_mm256_loadu_ps(dst + k), _mm256_loadu_ps(a + k)));
    for (; k < nnz; k++) dst[k] = dst[k] + a[k];
}

SK_AVX2 static void gradn_a2(const mm_sp_matrix *w, const float *dz, const float *x, size_t n,
                             float alpha, bool accumulate, float *dst, float *buf) {
    GRADN_BODY(dot_a2);
}

static void grad_values_avx2(const mm_sp_matrix *w, const float *dz, const float *x, size_t n,
                             float alpha, bool accumulate, float *dst) {
    if (n == 1) {
        if (!accumulate) {
            grad1_store_a2(w, dz, x, alpha, dst);
            return;
        }
        float *g = mm_alloc_floats(w->nnz + MM_SP_PAD);
        if (g) {
            grad1_store_a2(w, dz, x, alpha, g);
            add_into_a2(dst, g, w->nnz);
            mm_free_floats(g);
            return;
        }
    }
    float *buf = n > 1 ? grad_scratch(w, n) : NULL;
    if (buf) {
        gradn_a2(w, dz, x, n, alpha, accumulate, dst, buf);
        mm_free_floats(buf);
        return;
    }
    for (size_t s = 0; s < n; s++)
        grad1_a2(w, dz + s * w->rows, x + s * w->cols, alpha, dst, accumulate || s > 0);
}

static const mm_sparse_kernels kernels_avx2 = {
    .name = "avx2",
    .max_density = 0.07,
    .forward = forward_avx2,
    .backward_x = backward_x_avx2,
    .grad_values = grad_values_avx2,
    .forward_q8 = forward_q8_avx2,
    .dot_u8s8 = dot_u8s8_portable,
};

/* ---- AVX-512 ----------------------------------------------------------- */

SK_AVX512 SK_INLINE void axpy16_a5(float *restrict y, float a, const float *restrict x) {
    _mm512_storeu_ps(y, _mm512_fmadd_ps(_mm512_set1_ps(a), _mm512_loadu_ps(x), _mm512_loadu_ps(y)));
}

/* First `count` lanes (count may exceed 16). */
SK_AVX512 SK_INLINE __mmask16 mask_below(size_t count) {
    return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)_bzhi_u32(0xFFFFu, (unsigned)count);
}

/* The 32-float window of x at column c0 (zeros past cols). */
SK_AVX512 SK_INLINE void window_a5(const float *x, size_t cols, size_t c0, __m512 *lo,
                                   __m512 *hi) {
    const size_t rem = cols - c0;
    if (rem >= BL) {
        *lo = _mm512_loadu_ps(x + c0);
        *hi = _mm512_loadu_ps(x + c0 + 16);
    } else {
        *lo = _mm512_maskz_loadu_ps(mask_below(rem), x + c0);
        *hi = _mm512_maskz_loadu_ps(rem > 16 ? mask_below(rem - 16) : 0, x + c0 + 16);
    }
}

/* 16 bytes widened to dword lanes. */
SK_AVX512 SK_INLINE __m512i bytes16_a5(const uint8_t *p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* Forward for NS (1..4) samples at once: x rows at x + q*cols, y rows at
 * y + q*rows. Two accumulator sets alternate between steps to hide the
 * FMA latency. */
SK_AVX512 SK_INLINE void fwd_a5(const mm_sp_matrix *w, const float *bias, const float *x,
                                float *y, const int NS, const bool Q8) {
    const uint8_t *sc = w->step_count, *lc = w->lcol;
    const float *v = w->values;
    const int16_t *qw = w->qw;
    const size_t rows = w->rows, cols = w->cols;
    size_t p = 0, it = 0, t = 0;
    for (size_t s = 0; s < w->nslices; s++) {
        __m512 acc[4];
        for (int q = 0; q < NS; q++) acc[q] = _mm512_setzero_ps();
        for (; t < w->slice_tiles[s + 1]; t++) {
            const size_t c0 = (size_t)w->tile_block[t] * BL;
            __m512 lo[4], hi[4], ta[2][4];
            for (int q = 0; q < NS; q++) {
                window_a5(x + q * cols, cols, c0, &lo[q], &hi[q]);
                ta[0][q] = ta[1][q] = _mm512_setzero_ps();
            }
            const size_t e = it + w->tile_steps[t];
#define SK_FWD_STEP(A)                                                                     \
    do {                                                                                   \
        const unsigned c = sc[it];                                                         \
        const __mmask16 m = (__mmask16)_bzhi_u32(0xFFFFu, c);                              \
        __m512i ix;                                                                        \
        __m512 wv; /* lanes >= c: masked below */                                          \
        if (Q8) { /* the word is the index (low 5 bits) and, shifted, the weight */        \
            ix = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(qw + p))); \
            wv = _mm512_cvtepi32_ps(_mm512_srai_epi32(ix, 8));                             \
        } else {                                                                           \
            ix = bytes16_a5(lc + p);                                                       \
            wv = _mm512_loadu_ps(v + p);                                                   \
        }                                                                                  \
        for (int q = 0; q < NS; q++)                                                       \
            ta[A][q] = _mm512_mask3_fmadd_ps(wv, _mm512_permutex2var_ps(lo[q], ix, hi[q]), \
                                             ta[A][q], m);                                 \
        p += c;                                                                            \
        it++;                                                                              \
    } while (0)
            while (it + 2 <= e) {
                SK_FWD_STEP(0);
                SK_FWD_STEP(1);
            }
            if (it < e) SK_FWD_STEP(0);
#undef SK_FWD_STEP
            const __m512i fp = bytes16_a5(w->tile_fperm + SL * t);
            for (int q = 0; q < NS; q++)
                acc[q] = _mm512_add_ps(acc[q],
                                       _mm512_permutexvar_ps(fp, _mm512_add_ps(ta[0][q], ta[1][q])));
        }
        const size_t r0 = s * SL;
        const __mmask16 m = mask_below(rows - r0);
        const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + r0) : _mm512_setzero_ps();
        if (Q8) {
            const __m512 sv = _mm512_maskz_loadu_ps(m, w->qscale + r0);
            for (int q = 0; q < NS; q++) acc[q] = _mm512_mul_ps(acc[q], sv);
        }
        for (int q = 0; q < NS; q++)
            _mm512_mask_storeu_ps(y + q * rows + r0, m, bias ? _mm512_add_ps(acc[q], b) : acc[q]);
    }
}

#define SK_FWD_A5(NAME, NS, Q8)                                                            \
    SK_AVX512 static void NAME(const mm_sp_matrix *w, const float *b, const float *x, float *y) { \
        fwd_a5(w, b, x, y, NS, Q8);                                                        \
    }
SK_FWD_A5(fwd_a5_1, 1, false)
SK_FWD_A5(fwd_a5_2, 2, false)
SK_FWD_A5(fwd_a5_3, 3, false)
SK_FWD_A5(fwd_a5_4, 4, false)
SK_FWD_A5(fwd_q8_a5_1, 1, true)
SK_FWD_A5(fwd_q8_a5_2, 2, true)
SK_FWD_A5(fwd_q8_a5_3, 3, true)
SK_FWD_A5(fwd_q8_a5_4, 4, true)
#undef SK_FWD_A5

typedef void (*sk_fwd_fn)(const mm_sp_matrix *, const float *, const float *, float *);

/* Groups of 4 samples, then the rest: fn[q] runs q + 1 samples. */
static void forward_groups(const sk_fwd_fn fn[4], const mm_sp_matrix *w, const float *bias,
                           const float *x, float *y, size_t n) {
    size_t s = 0;
    for (; s + 4 <= n; s += 4) fn[3](w, bias, x + s * w->cols, y + s * w->rows);
    if (s < n) fn[n - s - 1](w, bias, x + s * w->cols, y + s * w->rows);
}

static void forward_avx512(const mm_sp_matrix *w, const float *bias, const float *x, float *y,
                           size_t n) {
    static const sk_fwd_fn fn[4] = {fwd_a5_1, fwd_a5_2, fwd_a5_3, fwd_a5_4};
    forward_groups(fn, w, bias, x, y, n);
}

static void forward_q8_avx512(const mm_sp_matrix *w, const float *bias, const float *x,
                              float *y, size_t n) {
    static const sk_fwd_fn fn[4] = {fwd_q8_a5_1, fwd_q8_a5_2, fwd_q8_a5_3, fwd_q8_a5_4};
    forward_groups(fn, w, bias, x, y, n);
}

SK_AVX512 static void bwd1_a5(const mm_sp_matrix *w, const float *dz, float *dx) {
    bwd1_body(w, dz, dx);
}

SK_AVX512 static void bwdn_a5(const mm_sp_matrix *w, const float *dz, float *dx, size_t n,
                              float *buf) {
    BWDN_BODY(axpy16_a5);
}

static void backward_x_avx512(const mm_sp_matrix *w, const float *dz, float *dx, size_t n) {
    float *buf = n > 1 ? scratch(w->rows + w->cols, SB) : NULL;
    if (buf) {
        bwdn_a5(w, dz, dx, n, buf);
        mm_free_floats(buf);
        return;
    }
    for (size_t s = 0; s < n; s++) bwd1_a5(w, dz + s * w->rows, dx + s * w->cols);
}

/* Batch-1 value gradient g = dz[row] * x[col], vectorised over the lanes
 * of a step, times alpha, STORED to out[] (never read: a masked load that
 * overlaps the previous step's masked store would wait for it, ~20 cycles
 * a step on Zen 4). */
SK_AVX512 static void grad1_a5(const mm_sp_matrix *w, const float *dz, const float *x,
                               float alpha, float *out) {
    const uint8_t *sc = w->step_count, *lc = w->lcol;
    const size_t rows = w->rows, cols = w->cols;
    const __m512 al = _mm512_set1_ps(alpha);
    size_t p = 0, it = 0, t = 0;
    for (size_t s = 0; s < w->nslices; s++) {
        const size_t r0 = s * SL;
        const __m512 dzs = _mm512_maskz_loadu_ps(mask_below(rows - r0), dz + r0);
        for (; t < w->slice_tiles[s + 1]; t++) {
            __m512 lo, hi;
            window_a5(x, cols, (size_t)w->tile_block[t] * BL, &lo, &hi);
            const __m512 dzt = _mm512_permutexvar_ps(bytes16_a5(w->tile_iperm + SL * t), dzs);
            for (const size_t e = it + w->tile_steps[t]; it < e; it++) {
                const unsigned c = sc[it];
                const __mmask16 m = (__mmask16)_bzhi_u32(0xFFFFu, c);
                const __m512 g = _mm512_mul_ps(dzt, _mm512_permutex2var_ps(lo, bytes16_a5(lc + p), hi));
                _mm512_mask_storeu_ps(out + p, m, _mm512_mul_ps(al, g));
                p += c;
            }
        }
    }
}

/* dst[k] = dst[k] + a[k] over aligned 16-float blocks. */
SK_AVX512 static void add_into_a5(float *dst, const float *a, size_t nnz) {
    for (size_t k = 0; k < nnz; k += 16) {
        const __mmask16 m = mask_below(nnz - k);
        _mm512_mask_storeu_ps(dst + k, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + k),
                                                        _mm512_maskz_loadu_ps(m, a + k)));
    }
}

SK_AVX512 SK_INLINE float dot_a5(const float *restrict a, const float *restrict b, size_t len) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), a1);
    }
    if (i < len) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

SK_AVX512 static void gradn_a5(const mm_sp_matrix *w, const float *dz, const float *x, size_t n,
                               float alpha, bool accumulate, float *dst, float *buf) {
    GRADN_BODY(dot_a5);
}

SK_AVX512 static void grad1_portable_a5(const mm_sp_matrix *w, const float *dz, const float *x,
                                        float alpha, float *dst, bool accumulate) {
    if (accumulate) grad1_body(w, dz, x, alpha, dst, true);
    else grad1_body(w, dz, x, alpha, dst, false);
}

static void grad_values_avx512(const mm_sp_matrix *w, const float *dz, const float *x, size_t n,
                               float alpha, bool accumulate, float *dst) {
    if (n == 1) {
        if (!accumulate) {
            grad1_a5(w, dz, x, alpha, dst);
            return;
        }
        float *g = mm_alloc_floats(w->nnz + MM_SP_PAD);
        if (g) {
            grad1_a5(w, dz, x, alpha, g);
            add_into_a5(dst, g, w->nnz);
            mm_free_floats(g);
            return;
        }
    }
    float *buf = n > 1 ? grad_scratch(w, n) : NULL;
    if (buf) {
        gradn_a5(w, dz, x, n, alpha, accumulate, dst, buf);
        mm_free_floats(buf);
        return;
    }
    for (size_t s = 0; s < n; s++)
        grad1_portable_a5(w, dz + s * w->rows, x + s * w->cols, alpha, dst, accumulate || s > 0);
}

/* The grouped integer dot products with VNNI and VBMI: per step one
 * vpermb gathers the 4 activation bytes of each of 16 lanes from the
 * tile's 64-byte window, one vpdpbusd adds 64 products. */
#define SK_VNNI                                                                            \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,bmi2")))

/* NS (1..4) samples at once, rows of xq every `stride` bytes, acc rows
 * every w->rows: the index and weight loads are shared. */
SK_VNNI SK_INLINE void dot_vnni(const mm_sp_matrix *w, const int8_t *q8, const uint8_t *xq,
                                size_t stride, int32_t *acc, const int NS) {
    const uint8_t *sc = w->step_count, *lc = w->lcol;
    size_t p = 0, it = 0, t = 0;
    for (size_t s = 0; s < w->nslices; s++) {
        __m512i a[4];
        for (int q = 0; q < NS; q++) a[q] = _mm512_setzero_si512();
        for (; t < w->slice_tiles[s + 1]; t++) {
            const size_t c0 = (size_t)w->tile_block[t] * MM_SP_BLOCK_I8;
            __m512i xw[4], ta[2][4];
            for (int q = 0; q < NS; q++) {
                xw[q] = _mm512_loadu_si512((const void *)(xq + q * stride + c0));
                ta[0][q] = ta[1][q] = _mm512_setzero_si512();
            }
            const size_t e = it + w->tile_steps[t];
#define SK_DOT_STEP(A)                                                                     \
    do {                                                                                   \
        const __mmask16 m = (__mmask16)_bzhi_u32(0xFFFFu, sc[it]);                         \
        const __m512i ix = _mm512_loadu_si512((const void *)(lc + p));                     \
        const __m512i wv = _mm512_loadu_si512((const void *)(q8 + p));                     \
        for (int q = 0; q < NS; q++)                                                       \
            ta[A][q] = _mm512_mask_dpbusd_epi32(ta[A][q], m, _mm512_permutexvar_epi8(ix, xw[q]), wv); \
        p += MM_SP_GROUP_I8 * sc[it];                                                      \
        it++;                                                                              \
    } while (0)
            while (it + 2 <= e) {
                SK_DOT_STEP(0);
                SK_DOT_STEP(1);
            }
            if (it < e) SK_DOT_STEP(0);
#undef SK_DOT_STEP
            const __m512i fp = bytes16_a5(w->tile_fperm + SL * t);
            for (int q = 0; q < NS; q++)
                a[q] = _mm512_add_epi32(
                    a[q], _mm512_permutexvar_epi32(fp, _mm512_add_epi32(ta[0][q], ta[1][q])));
        }
        const size_t r0 = s * SL;
        for (int q = 0; q < NS; q++)
            _mm512_mask_storeu_epi32(acc + q * w->rows + r0, mask_below(w->rows - r0), a[q]);
    }
}

#define SK_DOT_VNNI(NAME, NS)                                                              \
    SK_VNNI static void NAME(const mm_sp_matrix *w, const int8_t *q8, const uint8_t *xq,   \
                             size_t stride, int32_t *acc) {                                \
        dot_vnni(w, q8, xq, stride, acc, NS);                                              \
    }
SK_DOT_VNNI(dot_vnni_1, 1)
SK_DOT_VNNI(dot_vnni_2, 2)
SK_DOT_VNNI(dot_vnni_3, 3)
SK_DOT_VNNI(dot_vnni_4, 4)
#undef SK_DOT_VNNI

static bool cpu_vnni_vbmi(void) {
    static atomic_int have = -1;
    int v = atomic_load_explicit(&have, memory_order_relaxed);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
        atomic_store_explicit(&have, v, memory_order_relaxed);
    }
    return v != 0;
}

static void dot_u8s8_avx512(const mm_sp_matrix *w, const int8_t *q8, const uint8_t *xq,
                            size_t xq_stride, size_t n, int32_t *acc) {
    if (!cpu_vnni_vbmi()) {
        dot_u8s8_portable(w, q8, xq, xq_stride, n, acc);
        return;
    }
    typedef void (*dot_fn)(const mm_sp_matrix *, const int8_t *, const uint8_t *, size_t,
                           int32_t *);
    static const dot_fn fn[4] = {dot_vnni_1, dot_vnni_2, dot_vnni_3, dot_vnni_4};
    size_t s = 0;
    for (; s + 4 <= n; s += 4) fn[3](w, q8, xq + s * xq_stride, xq_stride, acc + s * w->rows);
    if (s < n) fn[n - s - 1](w, q8, xq + s * xq_stride, xq_stride, acc + s * w->rows);
}

static const mm_sparse_kernels kernels_avx512 = {
    .name = "avx512",
    .max_density = 0.15,
    .forward = forward_avx512,
    .backward_x = backward_x_avx512,
    .grad_values = grad_values_avx512,
    .forward_q8 = forward_q8_avx512,
    .dot_u8s8 = dot_u8s8_avx512,
};

#endif /* SK_X86 */

/* ---- selection --------------------------------------------------------- */

static int cpu_level(void) {
#if SK_X86
    static atomic_int level = -1;
    int v = atomic_load_explicit(&level, memory_order_relaxed);
    if (v < 0) {
        __builtin_cpu_init();
        v = MM_SPARSE_ISA_PORTABLE;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            v = MM_SPARSE_ISA_AVX2;
        if (v == MM_SPARSE_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("bmi2"))
            v = MM_SPARSE_ISA_AVX512;
        atomic_store_explicit(&level, v, memory_order_relaxed);
    }
    return v;
#else
    return MM_SPARSE_ISA_PORTABLE;
#endif
}

const mm_sparse_kernels *mm_sparse_kernels_for(mm_sparse_isa isa) {
    if ((int)isa < 0 || (int)isa > cpu_level()) return NULL;
    switch (isa) {
    case MM_SPARSE_ISA_PORTABLE: return &kernels_portable;
#if SK_X86
    case MM_SPARSE_ISA_AVX2: return &kernels_avx2;
    case MM_SPARSE_ISA_AVX512: return &kernels_avx512;
#else
    default: break;
#endif
    }
    return NULL;
}

static _Atomic(const mm_sparse_kernels *) g_override;
static _Atomic(const mm_sparse_kernels *) g_auto;

const mm_sparse_kernels *mm_sparse_kernels_get(void) {
    const mm_sparse_kernels *k = atomic_load_explicit(&g_override, memory_order_acquire);
    if (k) return k;
    k = atomic_load_explicit(&g_auto, memory_order_acquire);
    if (k) return k;
    int level = cpu_level();
    const char *env = getenv("MM_SPARSE_SIMD");
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "portable") == 0))
        level = MM_SPARSE_ISA_PORTABLE;
    else if (env && strcmp(env, "avx2") == 0 && level > MM_SPARSE_ISA_AVX2)
        level = MM_SPARSE_ISA_AVX2;
    k = mm_sparse_kernels_for((mm_sparse_isa)level);
    atomic_store_explicit(&g_auto, k, memory_order_release);
    return k;
}

void mm_sparse_kernels_override(const mm_sparse_kernels *k) {
    atomic_store_explicit(&g_override, k, memory_order_release);
}
