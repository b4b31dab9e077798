/* Additive (Bahdanau) attention scores and their gradients, fused, for the CPU.
 *
 * For one block of sequences b, query rows i and key columns j:
 *
 *     s[b][i][j] = sum_f w[f] * tanh(q[b][i][f] + k[b][j][f])
 *
 * without ever storing the (b, i, j, f) features. q holds the projected queries
 * row-major (f contiguous); the keys come transposed, kt[b][f][j] (j contiguous),
 * so that the innermost loop runs over keys and vectorizes. Each function is
 * single-threaded: the caller shares blocks out among threads.
 *
 * tanh is a rational approximation, odd, x * P(x^2) / Q(x^2) with degree-4
 * polynomials fitted to minimize the relative error on [0, 9]: 2.2e-8 in exact
 * arithmetic; evaluated in float32 (with the division as reciprocal + Newton step
 * where the build allows) it stays within TANH_MAX_REL_ERR in cpu_additive.py
 * (8 * 2^-24), the bound the tests hold it to. It is cheaper than a tanh built
 * from a vectorized exp. The argument is clamped to [-9, 9]
 * (|tanh| > 1 - 3.1e-8 beyond); near there the result may round a few ulp past
 * +-1 (clamping it would slow the forward pass, and nothing downstream needs
 * |t| <= 1: the scores are sums). NaN propagates (the comparisons are false for
 * NaN). Strides are in elements. kernels/README.md ("tanh", "Measured") has the
 * measured errors and times.
 */
#include <stdint.h>

static inline float tanh_rational(float x) {
    x = x > 9.0f ? 9.0f : x;
    x = x < -9.0f ? -9.0f : x;
    const float y = x * x;
    float p = 1.342048888e-08f;
    p = p * y + 2.066179530e-05f;
    p = p * y + 3.499031179e-03f;
    p = p * y + 1.338401118e-01f;
    p = p * y + 1.0f;
    float q = 7.805017193e-07f;
    q = q * y + 3.291093679e-04f;
    q = q * y + 2.589034375e-02f;
    q = q * y + 4.671733276e-01f;
    q = q * y + 1.0f;
    return x * p / q;
}

/* s[b][i][j] = sum_f w[f] tanh(q[b][i][f] + kt[b][f][j]); b < nb, i < nq, j < nk, f < h. */
void attnkit_additive_scores(int64_t nb, int64_t nq, int64_t nk, int64_t h,
                             const float *q, int64_t q_sb, int64_t q_si,
                             const float *kt, int64_t k_sb, int64_t k_sf,
                             const float *w, float *s, int64_t s_sb, int64_t s_si) {
    for (int64_t b = 0; b < nb; b++) {
        for (int64_t i = 0; i < nq; i++) {
            const float *qr = q + b * q_sb + i * q_si;
            float *restrict sr = s + b * s_sb + i * s_si;
            for (int64_t j = 0; j < nk; j++) sr[j] = 0.0f;
            for (int64_t f = 0; f < h; f++) {
                const float a = qr[f], wf = w[f];
                const float *restrict kr = kt + b * k_sb + f * k_sf;
                for (int64_t j = 0; j < nk; j++) sr[j] += wf * tanh_rational(a + kr[j]);
            }
        }
    }
}

/* Given ds = dL/ds on the same block, add
 *     dq[b][i][f]  += w[f] sum_j ds[b][i][j] (1 - t^2)
 *     dkt[b][f][j] += w[f] sum_i ds[b][i][j] (1 - t^2)
 *     dw[f]        +=      sum_ij ds[b][i][j] t
 * with t = tanh(q[b][i][f] + kt[b][f][j]) recomputed. */
void attnkit_additive_grads(int64_t nb, int64_t nq, int64_t nk, int64_t h,
                            const float *q, int64_t q_sb, int64_t q_si,
                            const float *kt, int64_t k_sb, int64_t k_sf,
                            const float *w, const float *ds, int64_t d_sb, int64_t d_si,
                            float *dq, int64_t dq_sb, int64_t dq_si,
                            float *dkt, int64_t dk_sb, int64_t dk_sf, float *dw) {
    for (int64_t b = 0; b < nb; b++) {
        for (int64_t i = 0; i < nq; i++) {
            const float *restrict dr = ds + b * d_sb + i * d_si;
            const float *qr = q + b * q_sb + i * q_si;
            float *dqr = dq + b * dq_sb + i * dq_si;
            for (int64_t f = 0; f < h; f++) {
                const float a = qr[f], wf = w[f];
                const float *restrict kr = kt + b * k_sb + f * k_sf;
                float *restrict dkr = dkt + b * dk_sb + f * dk_sf;
                float to_q = 0.0f, to_w = 0.0f;
                for (int64_t j = 0; j < nk; j++) {
                    const float t = tanh_rational(a + kr[j]);
                    const float g = dr[j];
                    const float u = g - g * t * t;
                    to_w += g * t;
                    to_q += u;
                    dkr[j] += wf * u;
                }
                dqr[f] += wf * to_q;
                dw[f] += to_w;
            }
        }
    }
}
