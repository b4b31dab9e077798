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
 * resumes it. */
#include <stdint.h>

typedef uint64_t u64x8 __attribute__((vector_size(64)));
typedef int32_t i32x8 __attribute__((vector_size(32), aligned(4)));
typedef float f32x8 __attribute__((vector_size(32), aligned(4)));
typedef uint8_t u8x8 __attribute__((vector_size(8), aligned(1)));

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

/* keep may be NULL (no backward pass will need it). */
void attnkit_dropout_forward(const float *x, float *y, uint8_t *keep, int64_t n,
                             uint64_t seed, int64_t threshold, float scale) {
    const u64x8 lane = {1, 2, 3, 4, 5, 6, 7, 8};
    const int32_t thr = (int32_t)threshold;
    int64_t j = 0;
    for (; 32 * j + 32 <= n; j++) {
        const u64x8 bits = splitmix64x8(seed + ((uint64_t)(8 * j) + lane) * GAMMA);
        for (int t = 0; t < 4; t++) {
            const int64_t i = 32 * j + 8 * t;
            const i32x8 u = __builtin_convertvector((bits >> (16 * t)) & 0xFFFF, i32x8);
            const i32x8 k = u >= thr; /* all ones where kept */
            const f32x8 xv = *(const f32x8 *)(x + i);
            *(f32x8 *)(y + i) = (f32x8)((i32x8)(xv * scale) & k);
            if (keep) *(u8x8 *)(keep + i) = __builtin_convertvector(k & 1, u8x8);
        }
    }
    for (int64_t i = 32 * j; i < n; i++) { /* the last group, not full: one at a time */
        const int64_t r = i - 32 * j, t = r / 8, l = r % 8;
        const uint64_t bits = splitmix64(seed + ((uint64_t)(8 * j + l) + 1) * GAMMA);
        const int k = (int64_t)((bits >> (16 * t)) & 0xFFFF) >= threshold;
        y[i] = k ? x[i] * scale : 0.0f;
        if (keep) keep[i] = (uint8_t)k;
    }
}

void attnkit_dropout_backward(const float *g, const uint8_t *keep, float *out, int64_t n,
                              float scale) {
    for (int64_t i = 0; i < n; i++) out[i] = keep[i] ? g[i] * scale : 0.0f;
}
