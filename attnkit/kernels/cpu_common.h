/* What the CPU kernels share (attnkit.kernels._build writes this file's text in place of
 * each `#include "cpu_common.h"`, so a kernel's source is one text and its hash covers it).
 *
 * exp_nonpositive(x): e^x in float32 for x <= 0 (a little above 0 is fine too), as
 * 2^n * e^r, n = round(x / ln 2), r = x - n ln 2 (ln 2 in two parts, so r is exact to
 * float32), e^r by its Taylor polynomial of degree 7 on |r| <= ln(2)/2 (truncation below
 * 1e-8, relative); x is clamped at -87 (exp(-87) ~ 1.6e-38 is still a normal float). A
 * function that uses it must not reassociate (see exp_shifted in the kernels): it would
 * undo the two-part reduction.
 *
 * widen_bf16 / narrow_bf16: bfloat16 (its bits, uint16_t) to float32 and back; widening
 * is exact, narrowing rounds to nearest even as torch's cast does, and a NaN stays a
 * quiet NaN. */
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

static inline float widen_bf16(uint16_t h) {
    union { uint32_t u; float f; } w;
    w.u = (uint32_t)h << 16;
    return w.f;
}

static inline uint16_t narrow_bf16(float x) {
    union { float f; uint32_t u; } w;
    w.f = x;
    if ((w.u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((w.u >> 16) | 0x40u);
    return (uint16_t)((w.u + 0x7FFFu + ((w.u >> 16) & 1u)) >> 16);
}
