/* Scaled-dot attention at inference, for the CPU: attnkit_step_attention, a decoding
 * step's few queries per sequence and head against the keys and values cached so far;
 * attnkit_packed_attention (at the end), an encoder's self-attention over packed rows.
 *
 * For sequences b in [b0, b1), kv heads h < nh, query rows r < nr:
 *
 *     out[b][h][r] = sum_{j < n_b} softmax_j(scale * q[b][h][r] . k[b][h][j]) v[b][h][j]
 *
 * with n_b = min(max(lens[b], 0), nk) (every key when lens is NULL); a sequence with
 * n_b = 0 gets a zero row. The rows r of one (b, h) share its keys: the queries of the
 * heads of one group (grouped-query attention) and the beams of one source. With rows
 * (a table of rows_sb-strided rows, one per sequence) key j of sequence b is read from
 * row rows[b][j] of k and v instead of row b: a beam search's cache whose beams took
 * their history from other rows without copying it. Keys and
 * values beyond n_b are never read, so they may hold anything (even NaN), and any
 * stride is taken (a cache may be a view of a larger buffer); the last dimension of
 * each tensor is contiguous. Single-threaded: the caller shares out ranges of b.
 *
 * PyTorch's SDPA does the same arithmetic with a loop over (b, h) blocks whose fixed
 * cost dominates at one query; here a (b, h) is a few hundred instructions and the call
 * is bound by reading the cache (BENCHMARKS.md, "Decoding", the compiled step).
 *
 * exp is cpu_common.h's exp_nonpositive: its argument is a score minus the row's maximum,
 * so at most 0, clamped at -87 (below it the weight is negligible beside the maximum's 1).
 * A NaN or infinite score makes its row NaN, as in the reference. */
#include <stdint.h>

#include "cpu_common.h"

/* s[j] = exp(s[j] - m) for j < n. Built without reassociation (the rest of the file may
 * reassociate its sums): it would undo the two-part reduction of exp's argument. */
#if defined(__clang__)
static void exp_shifted(float *restrict s, int64_t n, float m) {
#pragma clang fp reassociate(off)
#else
__attribute__((optimize("no-associative-math")))
static void exp_shifted(float *restrict s, int64_t n, float m) {
#endif
    for (int64_t j = 0; j < n; j++) s[j] = exp_nonpositive(s[j] - m);
}

/* 16 floats, any alignment: GCC/clang vector extensions (one AVX-512 register, two AVX2
 * ones, four of SSE or NEON), so the compiler keeps accumulators in registers. */
typedef float v16 __attribute__((vector_size(64), aligned(4)));
#define ROWS 4 /* query rows computed together: they share each load of the keys */

/* The scores of ROWS query rows (pointers q[r], d features) against np keys stored
 * transposed (kt: d rows of np floats, np a multiple of 16), times scale, into s[r][np]. */
static void scores4(const float *const q[ROWS], const float *kt, int64_t d, int64_t np,
                    float scale, float *s) {
    for (int64_t jb = 0; jb < np; jb += 16) {
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t e = 0; e < d; e++) {
            const v16 kv = *(const v16 *)(kt + e * np + jb);
            a0 += q[0][e] * kv;
            a1 += q[1][e] * kv;
            a2 += q[2][e] * kv;
            a3 += q[3][e] * kv;
        }
        *(v16 *)(s + jb) = a0 * scale;
        *(v16 *)(s + np + jb) = a1 * scale;
        *(v16 *)(s + 2 * np + jb) = a2 * scale;
        *(v16 *)(s + 3 * np + jb) = a3 * scale;
    }
}

typedef int32_t i16 __attribute__((vector_size(64), aligned(4)));
static const i16 IOTA = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* Lanes of a where mask is set (all ones), of b elsewhere. */
static inline v16 select16(i16 mask, v16 a, v16 b) {
    return (v16)(((i16)a & mask) | ((i16)b & ~mask));
}

/* Row s[0..np) of scores, of which the first nk count: into weights that sum to 1 over
 * them and 0 after. Returns 0, or 1 where a score is NaN or the maximum is infinite (the
 * row is then NaN, as the reference's softmax makes it); a score of -inf among finite
 * ones gets a weight of at most exp(-87) / the sum (the clamp of exp_nonpositive). */
static int weights(float *s, int64_t nk, int64_t np) {
    const v16 ninf = (v16){0} - __builtin_inff();
    v16 mv = ninf;
    i16 nan = {0};
    for (int64_t jb = 0; jb < np; jb += 16) {
        const v16 x = *(const v16 *)(s + jb);
        const i16 in = (IOTA + (int32_t)jb) < (int32_t)nk;
        nan |= in & (x != x);
        mv = select16(select16(in, x, ninf) > mv, x, mv);
    }
    float m = -__builtin_inff();
    int bad = 0;
    for (int t = 0; t < 16; t++) {
        bad |= nan[t] != 0;
        m = mv[t] > m ? mv[t] : m;
    }
    if (bad || m == __builtin_inff() || m == -__builtin_inff()) return 1;
    exp_shifted(s, nk, m);
    float sum = 0.0f;
    for (int64_t j = 0; j < nk; j++) sum += s[j];
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < nk; j++) s[j] *= inv;
    for (int64_t j = nk; j < np; j++) s[j] = 0.0f;
    return 0;
}

/* o[r] = sum_{j < nk} p[r][j] v[j] for ROWS rows (p: ROWS rows of np weights, 0 past a
 * row's keys), v's row j at v + j * v_sr, dv features. */
static void weighted4(const float *p, int64_t np, int64_t nk, const float *v, int64_t v_sr,
                      int64_t dv, float *const o[ROWS]) {
    int64_t e0 = 0;
    for (; e0 + 16 <= dv; e0 += 16) {
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t j = 0; j < nk; j++) {
            const v16 vj = *(const v16 *)(v + j * v_sr + e0);
            a0 += p[j] * vj;
            a1 += p[np + j] * vj;
            a2 += p[2 * np + j] * vj;
            a3 += p[3 * np + j] * vj;
        }
        *(v16 *)(o[3] + e0) = a3; /* rows past the last alias row 0: it is written last */
        *(v16 *)(o[2] + e0) = a2;
        *(v16 *)(o[1] + e0) = a1;
        *(v16 *)(o[0] + e0) = a0;
    }
    for (int64_t e = e0; e < dv; e++) {
        float a[ROWS] = {0.0f};
        for (int64_t j = 0; j < nk; j++)
            for (int r = 0; r < ROWS; r++) a[r] += p[r * np + j] * v[j * v_sr + e];
        for (int r = ROWS - 1; r >= 0; r--) o[r][e] = a[r];
    }
}

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define STEP16 1 /* __builtin_shufflevector: the 16-key path of attnkit_step_attention */
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)

/* Lane t of the result: the sum of the lanes of p[t]. A tree of 15 additions of
 * shuffled pairs, instead of 16 reductions of one vector each. */
static inline v16 lane_sums16(const v16 p[16]) {
    v16 u[8], w[4], x[2];
    for (int i = 0; i < 8; i++) /* u[i]: 8 partial sums of p[2i], then 8 of p[2i+1] */
        u[i] = SHUF(p[2 * i], p[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7,
                    16, 17, 18, 19, 20, 21, 22, 23)
             + SHUF(p[2 * i], p[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15,
                    24, 25, 26, 27, 28, 29, 30, 31);
    for (int i = 0; i < 4; i++) /* w[i]: 4 each of p[4i .. 4i + 3] */
        w[i] = SHUF(u[2 * i], u[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11,
                    16, 17, 18, 19, 24, 25, 26, 27)
             + SHUF(u[2 * i], u[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15,
                    20, 21, 22, 23, 28, 29, 30, 31);
    for (int i = 0; i < 2; i++) /* x[i]: 2 each of p[8i .. 8i + 7] */
        x[i] = SHUF(w[2 * i], w[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13,
                    16, 17, 20, 21, 24, 25, 28, 29)
             + SHUF(w[2 * i], w[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15,
                    18, 19, 22, 23, 26, 27, 30, 31);
    return SHUF(x[0], x[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
         + SHUF(x[0], x[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

/* Key (or value) j of a (sequence, head): at base + j * sj, or with a row table at
 * base + row[j] * sb + j * sj (base then the head's offset only). */
static inline const float *at(const float *base, const int64_t *row, int64_t sb, int64_t sj,
                              int64_t j) {
    return base + (row ? row[j] * sb : 0) + j * sj;
}

/* One query row qr of attnkit_step_attention against n >= 1 keys, for d and dv multiples
 * of 16 and dv <= 64: the scores of 16 keys at a time (each key's products in one vector,
 * the 16 vectors summed across their lanes together: lane_sums16), the weighted values in
 * registers (even and odd keys apart, so two chains of additions run side by side). The
 * scalar loop spends most of its time on one reduction per key and on writing the output
 * back at each key (BENCHMARKS.md, "Decoding with the encoder's packed attention"). */
static void step_row16(const float *qr, int64_t d, int64_t dv, int64_t n, float scale,
                       const float *kb, const float *vb, const int64_t *row,
                       int64_t k_sb, int64_t k_sj, int64_t v_sb, int64_t v_sj,
                       float *o, float *s) {
    const int64_t np = (n + 15) & ~(int64_t)15, nb = dv / 16;
    for (int64_t jb = 0; jb < np; jb += 16) {
        v16 p[16];
        for (int t = 0; t < 16; t++) {
            v16 a = {0};
            if (jb + t < n) {
                const float *kj = at(kb, row, k_sb, k_sj, jb + t);
                for (int64_t e = 0; e < d; e += 16)
                    a += *(const v16 *)(qr + e) * *(const v16 *)(kj + e);
            }
            p[t] = a;
        }
        *(v16 *)(s + jb) = lane_sums16(p) * scale;
    }
    if (weights(s, n, np)) {
        for (int64_t e = 0; e < dv; e++) o[e] = __builtin_nanf("");
        return;
    }
    v16 even[4] = {{0}}, odd[4] = {{0}};
    int64_t j = 0;
    for (; j + 1 < n; j += 2) {
        const float *v0 = at(vb, row, v_sb, v_sj, j), *v1 = at(vb, row, v_sb, v_sj, j + 1);
        for (int64_t c = 0; c < nb; c++) {
            even[c] += s[j] * *(const v16 *)(v0 + 16 * c);
            odd[c] += s[j + 1] * *(const v16 *)(v1 + 16 * c);
        }
    }
    if (j < n) {
        const float *v0 = at(vb, row, v_sb, v_sj, j);
        for (int64_t c = 0; c < nb; c++) even[c] += s[j] * *(const v16 *)(v0 + 16 * c);
    }
    for (int64_t c = 0; c < nb; c++) *(v16 *)(o + 16 * c) = even[c] + odd[c];
}
#endif

void attnkit_step_attention(int64_t b0, int64_t b1, int64_t nh, int64_t nr, int64_t d,
                            int64_t dv, int64_t nk, float scale,
                            const float *q, int64_t q_sb, int64_t q_sh, int64_t q_sr,
                            const float *k, int64_t k_sb, int64_t k_sh, int64_t k_sj,
                            const float *v, int64_t v_sb, int64_t v_sh, int64_t v_sj,
                            const int64_t *lens, const int64_t *rows, int64_t rows_sb,
                            float *out, int64_t o_sb, int64_t o_sh, int64_t o_sr,
                            float *scratch /* nk + 16 floats */) {
    float *restrict s = scratch;
    for (int64_t b = b0; b < b1; b++) {
        int64_t n = nk;
        if (lens) {
            n = lens[b] < nk ? lens[b] : nk;
            n = n < 0 ? 0 : n;
        }
        const int64_t *row = rows ? rows + b * rows_sb : 0; /* key j's row: row[j] */
        for (int64_t h = 0; h < nh; h++) {
            const float *kh = k + b * k_sb + h * k_sh;
            const float *vh = v + b * v_sb + h * v_sh;
            for (int64_t r = 0; r < nr; r++) {
                const float *restrict qr = q + b * q_sb + h * q_sh + r * q_sr;
                float *restrict o = out + b * o_sb + h * o_sh + r * o_sr;
                for (int64_t e = 0; e < dv; e++) o[e] = 0.0f;
                if (n == 0) continue;
#ifdef STEP16
                if (d % 16 == 0 && dv % 16 == 0 && dv <= 64) {
                    step_row16(qr, d, dv, n, scale, row ? k + h * k_sh : kh,
                               row ? v + h * v_sh : vh, row, k_sb, k_sj, v_sb, v_sj, o, s);
                    continue;
                }
#endif
                float m = -__builtin_inff();
                int nan = 0;
                for (int64_t j = 0; j < n; j++) {
                    const float *restrict kj = row ? k + row[j] * k_sb + h * k_sh + j * k_sj
                                                   : kh + j * k_sj;
                    float acc = 0.0f;
                    for (int64_t e = 0; e < d; e++) acc += qr[e] * kj[e];
                    acc *= scale;
                    s[j] = acc;
                    nan |= acc != acc;
                    m = acc > m ? acc : m;
                }
                if (nan || m == __builtin_inff() || m == -__builtin_inff()) {
                    /* a NaN or infinite score: the reference's row of NaN */
                    for (int64_t e = 0; e < dv; e++) o[e] = __builtin_nanf("");
                    continue;
                }
                float sum = 0.0f;
                exp_shifted(s, n, m);
                for (int64_t j = 0; j < n; j++) sum += s[j];
                const float inv = 1.0f / sum;
                for (int64_t j = 0; j < n; j++) {
                    const float *restrict vj = row ? v + row[j] * v_sb + h * v_sh + j * v_sj
                                                   : vh + j * v_sj;
                    const float p = s[j] * inv;
                    for (int64_t e = 0; e < dv; e++) o[e] += p * vj[e];
                }
            }
        }
    }
}

/* Self-attention over packed rows (an encoder's at inference): sequence b owns rows
 * [off[b], off[b + 1]) of q, k, v and out, and each of its rows attends the sequence's
 * keys (with causal, row i of the sequence its first i + 1). Query head h reads key and
 * value head h / group. A (sequence, kv head)'s n keys are first copied transposed into
 * scratch, d rows of np floats (n rounded up to 16, the tail zero); then ROWS query
 * rows at a time, their scores and weighted values accumulate in registers, each load
 * of a key or value shared by the rows. Sequences [b0, b1) only; NaN and infinite
 * scores as in attnkit_step_attention. */
void attnkit_packed_attention(int64_t b0, int64_t b1, const int64_t *off, int64_t nh,
                              int64_t group, int64_t d, int64_t dv, float scale,
                              int64_t causal,
                              const float *q, int64_t q_sr, int64_t q_sh,
                              const float *k, int64_t k_sr, int64_t k_sh,
                              const float *v, int64_t v_sr, int64_t v_sh,
                              float *out, int64_t o_sr, int64_t o_sh,
                              float *scratch /* (d + ROWS) * (max n + 15) floats */) {
    for (int64_t b = b0; b < b1; b++) {
        const int64_t r0 = off[b], n = off[b + 1] - off[b], np = (n + 15) & ~(int64_t)15;
        if (n <= 0) continue;
        float *kt = scratch, *s = scratch + d * np;
        for (int64_t hk = 0; hk < nh / group; hk++) {
            for (int64_t e = 0; e < d; e++)
                for (int64_t j = n; j < np; j++) kt[e * np + j] = 0.0f;
            for (int64_t j = 0; j < n; j++) {
                const float *kj = k + (r0 + j) * k_sr + hk * k_sh;
                for (int64_t e = 0; e < d; e++) kt[e * np + j] = kj[e];
            }
            const float *vh = v + r0 * v_sr + hk * v_sh;
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
                for (int64_t i0 = 0; i0 < n; i0 += ROWS) {
                    const float *qr[ROWS];
                    float *o[ROWS];
                    int bad[ROWS] = {0};
                    for (int r = 0; r < ROWS; r++) { /* rows past n: row i0 again */
                        const int64_t i = i0 + r < n ? i0 + r : i0;
                        qr[r] = q + (r0 + i) * q_sr + h * q_sh;
                        o[r] = out + (r0 + i) * o_sr + h * o_sh;
                    }
                    scores4(qr, kt, d, np, scale, s);
                    int64_t most = 0;
                    for (int r = 0; r < ROWS; r++) {
                        const int64_t i = i0 + r < n ? i0 + r : i0;
                        const int64_t nk = causal ? i + 1 : n;
                        most = nk > most ? nk : most;
                        bad[r] = weights(s + r * np, nk, np);
                    }
                    weighted4(s, np, most, vh, v_sr, dv, o);
                    for (int r = 0; r < ROWS; r++)
                        if (bad[r])
                            for (int64_t e = 0; e < dv; e++) o[r][e] = __builtin_nanf("");
                }
            }
        }
    }
}
