/* The label-smoothed cross entropy's passes over the logits, for the CPU: one pass per
 * direction over an (n, V) matrix of float32 or bfloat16 logits (attnkit.train.loss says
 * what is computed and why it is done this way).
 *
 * Forward, per row i (x = row i, all arithmetic in float32):
 *     max[i] = max_v x_v,   sumexp[i] = sum_v exp(x_v - max[i]),   sum[i] = sum_v x_v
 * (the caller takes lse = max + log(sumexp), the mean and the target's logit from these).
 * Backward, per row i with target t_i and incoming gradient g_i:
 *     grad[i][v] = g_i * (exp(x_v - lse[i]) - eps / V) - g_i * (1 - eps) * [v == t_i]
 * written in the logits' dtype: a bfloat16 gradient rounded to nearest even, as torch's
 * cast rounds. Rows with a value that is not finite are the caller's: in the forward
 * pass their sum is not finite (the caller recomputes them with torch ops), and the
 * backward pass skips a row whose lse is not finite. Every other exp has an argument of
 * at most about 0.
 *
 * A bfloat16 row is widened into a float32 scratch row (the caller's, V floats) first,
 * so both dtypes share the arithmetic. exp is cpu_common.h's (relative error below 1e-8,
 * the argument clamped at -87: a weight of nothing beside the row's largest).
 * Single-threaded: the caller shares out ranges of rows. */
#include <stdint.h>

#include "cpu_common.h"

typedef float v16 __attribute__((vector_size(64), aligned(4)));
typedef int32_t i16v __attribute__((vector_size(64), aligned(4)));

/* e[v] = exp(x[v] - m). Built without reassociation (the rest of the file reassociates
 * its sums): it would undo the two-part reduction of exp's argument. */
#if defined(__clang__)
static void exp_shifted(const float *restrict x, float *restrict e, int64_t n, float m) {
#pragma clang fp reassociate(off)
#else
__attribute__((optimize("no-associative-math")))
static void exp_shifted(const float *restrict x, float *restrict e, int64_t n, float m) {
#endif
    for (int64_t v = 0; v < n; v++) e[v] = exp_nonpositive(x[v] - m);
}

static inline void widen(const uint16_t *restrict h, float *restrict x, int64_t n) {
    for (int64_t v = 0; v < n; v++) x[v] = widen_bf16(h[v]);
}

static inline void narrow(const float *restrict x, uint16_t *restrict h, int64_t n) {
    for (int64_t v = 0; v < n; v++) h[v] = narrow_bf16(x[v]);
}

static float row_max(const float *x, int64_t n) {
    v16 m = {0};
    float best = x[0];
    int64_t v = 0;
    if (n >= 16) {
        m = *(const v16 *)x;
        for (v = 16; v + 16 <= n; v += 16) {
            const v16 y = *(const v16 *)(x + v);
            const i16v more = y > m; /* all ones where y is larger (never for a NaN) */
            m = (v16)(((i16v)y & more) | ((i16v)m & ~more));
        }
        for (int l = 0; l < 16; l++) best = m[l] > best ? m[l] : best;
    }
    for (; v < n; v++) best = x[v] > best ? x[v] : best;
    return best;
}

static float row_sum(const float *x, int64_t n) {
    v16 acc = {0};
    int64_t v = 0;
    for (; v + 16 <= n; v += 16) acc += *(const v16 *)(x + v);
    float s = 0.0f;
    for (int l = 0; l < 16; l++) s += acc[l];
    for (; v < n; v++) s += x[v];
    return s;
}

static void forward_row(const float *x, float *scratch, int64_t V, float *max, float *sumexp,
                        float *sum) {
    const float m = row_max(x, V);
    exp_shifted(x, scratch, V, m);
    *max = m;
    *sumexp = row_sum(scratch, V);
    *sum = row_sum(x, V);
}

/* rows [r0, r1) of x (n rows of V, row stride ld elements); scratch: 2 V floats. */
void attnkit_loss_forward_f32(const float *x, int64_t r0, int64_t r1, int64_t V, int64_t ld,
                              float *scratch, float *max, float *sumexp, float *sum) {
    for (int64_t i = r0; i < r1; i++)
        forward_row(x + i * ld, scratch, V, max + i, sumexp + i, sum + i);
}

void attnkit_loss_forward_bf16(const uint16_t *x, int64_t r0, int64_t r1, int64_t V,
                               int64_t ld, float *scratch, float *max, float *sumexp,
                               float *sum) {
    for (int64_t i = r0; i < r1; i++) {
        widen(x + i * ld, scratch + V, V);
        forward_row(scratch + V, scratch, V, max + i, sumexp + i, sum + i);
    }
}

/* grad row = g * (exp(x - lse) - eps / V), then - g * (1 - eps) at the target */
static void backward_row(const float *x, float *out, int64_t V, float lse, float g,
                         int64_t target, float eps) {
    exp_shifted(x, out, V, lse);
    const float c = eps / (float)V;
    for (int64_t v = 0; v < V; v++) out[v] = g * (out[v] - c);
    if (target >= 0 && target < V) out[target] -= g * (1.0f - eps);
}

static inline int is_finite(float f) {
    union { float f; uint32_t u; } w;
    w.f = f;
    return (w.u & 0x7F800000u) != 0x7F800000u;
}

/* rows [r0, r1), gradient rows with stride ldg; a row whose lse is not finite is left
 * as it is (the caller computes it); scratch: 2 V floats. */
void attnkit_loss_backward_f32(const float *x, int64_t ld, int64_t r0, int64_t r1, int64_t V,
                               const float *lse, const float *g, const int64_t *target,
                               float eps, float *grad, int64_t ldg, float *scratch) {
    (void)scratch;
    for (int64_t i = r0; i < r1; i++)
        if (is_finite(lse[i]))
            backward_row(x + i * ld, grad + i * ldg, V, lse[i], g[i], target[i], eps);
}

void attnkit_loss_backward_bf16(const uint16_t *x, int64_t ld, int64_t r0, int64_t r1,
                                int64_t V, const float *lse, const float *g,
                                const int64_t *target, float eps, uint16_t *grad, int64_t ldg,
                                float *scratch) {
    for (int64_t i = r0; i < r1; i++) {
        if (!is_finite(lse[i])) continue;
        widen(x + i * ld, scratch + V, V);
        backward_row(scratch + V, scratch, V, lse[i], g[i], target[i], eps);
        narrow(scratch, grad + i * ldg, V);
    }
}
