/* Dropout for the CPU in one pass: y = keep ? x * scale : 0, and the mask kept for the
 * backward pass (g * scale where kept, 0 elsewhere), instead of the five passes of torch
 * ops (draw, compare, multiply, select; and two in the backward).
 *
 * The random numbers are counter-based: draw c is splitmix64's output for the counter
 * seed + (c + 1) * gamma (Steele, Lea and Flood, "Fast splittable pseudorandom number
 * generators", 2014), four 16-bit uniforms. Elements go in groups of 32: element
 * 32 j + 8 t + l is kept when bits [16 t, 16 t + 16) of draw 8 j + l are at least the
 * threshold round(p * 2^16), so that a group's 8 draws are one vector of 64-bit lanes
 * and its elements 4 vectors of 8 floats. The caller draws the seed from torch's
 * generator, so torch.manual_seed reproduces a mask and a checkpoint of the generator
 * resumes it. Float32 and bfloat16 elements (bfloat16 computed in float32 and rounded
 * once, as torch does). */
#include <stdint.h>

#include "cpu_common.h"

typedef uint64_t u64x8 __attribute__((vector_size(64)));
typedef int32_t i32x8 __attribute__((vector_size(32), aligned(4)));
typedef float f32x8 __attribute__((vector_size(32), aligned(4)));
typedef uint8_t u8x8 __attribute__((vector_size(8), aligned(1)));
typedef uint16_t u16x8 __attribute__((vector_size(16), aligned(2)));
typedef uint32_t u32x8 __attribute__((vector_size(32), aligned(4)));

#define GAMMA 0x9E3779B97F4A7C15ull
#define MIX1 0xBF58476D1CE4E5B9ull
#define MIX2 0x94D049BB133111EBull

static inline uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * MIX1;
    z = (z ^ (z >> 27)) * MIX2;
    return z ^ (z >> 31);
}

static inline u64x8 splitmix64x8(u64x8 z) {
    z = (z ^ (z >> 30)) * MIX1;
    z = (z ^ (z >> 27)) * MIX2;
    return z ^ (z >> 31);
}

/* bfloat16 <-> float32 for 8 elements (cpu_common.h's rule), so that y = bf16(x * scale) is
 * what torch's bfloat16 x * scale gives (its arithmetic is float32, rounded once). */
static inline f32x8 widen8(u16x8 h) {
    return (f32x8)(__builtin_convertvector(h, u32x8) << 16);
}

static inline u16x8 narrow8(f32x8 x) {
    const u32x8 u = (u32x8)x;
    const u32x8 rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    const u32x8 nan = (u & 0x7FFFFFFFu) > 0x7F800000u; /* all ones where NaN */
    return __builtin_convertvector((rounded & ~nan) | (((u >> 16) | 0x40u) & nan), u16x8);
}

#define LOAD8_F32(p) (*(const f32x8 *)(p))
#define STORE8_F32(p, v) (*(f32x8 *)(p) = (v))
#define GET_F32(x) (x)
#define PUT_F32(x) (x)
#define LOAD8_BF16(p) widen8(*(const u16x8 *)(p))
#define STORE8_BF16(p, v) (*(u16x8 *)(p) = narrow8(v))
#define GET_BF16(h) widen_bf16(h)
#define PUT_BF16(x) narrow_bf16(x)

/* The forward pass on elements of type T (float, or bfloat16 as uint16_t): the same mask
 * for both (same seed, same elements dropped). keep may be NULL (no backward pass will
 * need it). */
#define DROPOUT_FORWARD(NAME, T, LOAD8, STORE8, GET, PUT)                                     \
    void NAME(const T *x, T *y, uint8_t *keep, int64_t n, uint64_t seed, int64_t threshold, \
              float scale) {                                                                \
        const u64x8 lane = {1, 2, 3, 4, 5, 6, 7, 8};                                        \
        const int32_t thr = (int32_t)threshold;                                             \
        int64_t j = 0;                                                                      \
        for (; 32 * j + 32 <= n; j++) {                                                     \
            const u64x8 bits = splitmix64x8(seed + ((uint64_t)(8 * j) + lane) * GAMMA);     \
            for (int t = 0; t < 4; t++) {                                                   \
                const int64_t i = 32 * j + 8 * t;                                           \
                const i32x8 u = __builtin_convertvector((bits >> (16 * t)) & 0xFFFF, i32x8); \
                const i32x8 k = u >= thr; /* all ones where kept */                         \
                const f32x8 xv = LOAD8(x + i);                                              \
                STORE8(y + i, (f32x8)((i32x8)(xv * scale) & k));                            \
                if (keep) *(u8x8 *)(keep + i) = __builtin_convertvector(k & 1, u8x8);       \
            }                                                                               \
        }                                                                                   \
        for (int64_t i = 32 * j; i < n; i++) { /* the last group, not full */              \
            const int64_t r = i - 32 * j, t = r / 8, l = r % 8;                             \
            const uint64_t bits = splitmix64(seed + ((uint64_t)(8 * j + l) + 1) * GAMMA);   \
            const int k = (int64_t)((bits >> (16 * t)) & 0xFFFF) >= threshold;              \
            y[i] = k ? PUT(GET(x[i]) * scale) : PUT(0.0f);                                  \
            if (keep) keep[i] = (uint8_t)k;                                                 \
        }                                                                                   \
    }

#define DROPOUT_BACKWARD(NAME, T, GET, PUT)                                                 \
    void NAME(const T *g, const uint8_t *keep, T *out, int64_t n, float scale) {             \
        for (int64_t i = 0; i < n; i++) out[i] = keep[i] ? PUT(GET(g[i]) * scale) : PUT(0.0f); \
    }

DROPOUT_FORWARD(attnkit_dropout_forward, float, LOAD8_F32, STORE8_F32, GET_F32, PUT_F32)
DROPOUT_FORWARD(attnkit_dropout_forward_bf16, uint16_t, LOAD8_BF16, STORE8_BF16, GET_BF16,
                PUT_BF16)
DROPOUT_BACKWARD(attnkit_dropout_backward, float, GET_F32, PUT_F32)
DROPOUT_BACKWARD(attnkit_dropout_backward_bf16, uint16_t, GET_BF16, PUT_BF16)
