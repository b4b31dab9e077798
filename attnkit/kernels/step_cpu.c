/* Scaled-dot attention of a decoding step, for the CPU: a few queries per sequence and
 * head against the keys and values cached so far.
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
 * exp is evaluated in float32 as 2^n * e^r, n = round(x / ln 2), r = x - n ln 2 (ln 2 in
 * two parts, so r is exact to float32), e^r by its Taylor polynomial of degree 7 on
 * |r| <= ln(2)/2 (truncation below 1e-8, relative); its
 * argument is a score minus the row's maximum, so at most 0, and it is clamped at -87
 * (exp(-87) ~ 1.6e-38 is still a normal float; below it the weight is negligible beside
 * the maximum's 1). A NaN or infinite score makes its row NaN, as in the reference. */
#include <stdint.h>

static inline __attribute__((always_inline)) float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f); /* round(x / ln 2) */
    float r = x - n * 0.693359375f;  /* ln 2 in two parts (Cody and Waite): the first */
    r = r - n * -2.12194440e-4f;     /* exact in a few bits, so r is exact to float */
    float p = 1.9841269841e-4f;      /* e^r, |r| <= ln(2)/2: Taylor to degree 7 */
    p = p * r + 1.3888888889e-3f;
    p = p * r + 8.3333333333e-3f;
    p = p * r + 4.1666666667e-2f;
    p = p * r + 1.6666666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; int32_t i; } two_n;
    two_n.i = ((int32_t)n + 127) << 23; /* n in [-126, 0] */
    return p * two_n.f;
}

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

void attnkit_step_attention(int64_t b0, int64_t b1, int64_t nh, int64_t nr, int64_t d,
                            int64_t dv, int64_t nk, float scale,
                            const float *q, int64_t q_sb, int64_t q_sh, int64_t q_sr,
                            const float *k, int64_t k_sb, int64_t k_sh, int64_t k_sj,
                            const float *v, int64_t v_sb, int64_t v_sh, int64_t v_sj,
                            const int64_t *lens, const int64_t *rows, int64_t rows_sb,
                            float *out, int64_t o_sb, int64_t o_sh, int64_t o_sr,
                            float *scratch /* nk floats */) {
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
