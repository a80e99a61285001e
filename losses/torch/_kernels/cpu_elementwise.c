/* Elementwise functions with their derivatives, on the CPU (see cpu_elementwise.py).
 *
 * Each function is written once, as its value and its derivative computed together (they share
 * the expensive part: one exp per element), for float (float32, and float16 / bfloat16 read into
 * float32) and for double (float64, with libm's exp and tanh). Kernels apply one to every element
 * of a task (a fixed range of elements), in one of three ways:
 *   v   value only                       (the forward; a straight-through form's hard value)
 *   g   upstream · derivative            (the backward, recomputed from the input; upstream per
 *                                          element, which it may overwrite, or `scale` for all)
 *   s   Σ value per task, and optionally derivative · scale (a loss reduced to its mean or sum)
 *
 * Unlike cpu_dice.c this file is compiled without -ffinite-math-only: a NaN or an infinity that
 * comes in must come out (every select below is written so that a NaN falls through to
 * arithmetic on it). The loops have no branches and vectorise with `omp simd` (-fopenmp-simd).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

struct Elementwise {
    const void *x;        /* the input (n), of the kernel's dtype */
    const void *target;   /* penalized MAE: the target (n), of the same dtype */
    void *value;          /* the value (n): float32, or float64 for float64 input */
    void *grad;           /* s: the derivative · scale; g: the gradient; both in the input's dtype */
    const void *upstream; /* g: the upstream gradient (n), in the value's dtype, or `grad` itself (it is
                             read before it is written, element by element); NULL: `scale` for all */
    double *partial;      /* s: Σ value of each task */
    int64_t n, chunk;
    double p0, p1, p2;    /* the function's parameters */
    double scale;
};

/* Loads and stores by dtype; every kernel computes in float (or double for float64). */
static inline float bf16_to_float(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t float_to_bf16(float f) { /* round to nearest even; a NaN stays a (quiet) NaN */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    return (uint16_t)((bits & 0x7FFFFFFFu) > 0x7F800000u ? (bits >> 16) | 0x40u : rounded);
}

/* float16 by its bits, branch-free (F. Giesen's conversions, rounding to nearest even), so that
 * the loops vectorise and need no compiler support for a half-precision type. */
static inline float f16_to_float(uint16_t h) {
    const uint32_t shifted = (uint32_t)(h & 0x7FFFu) << 13, exponent = shifted & 0x0F800000u;
    uint32_t bits = shifted + ((127u - 15u) << 23);
    bits += exponent == 0x0F800000u ? (128u - 16u) << 23 : 0u; /* inf and NaN */
    float f;
    const uint32_t tiny_bits = bits + (1u << 23);               /* zero and subnormal */
    memcpy(&f, &tiny_bits, sizeof f);
    f -= 6.103515625e-05f;                                      /* 2^-14 */
    uint32_t tiny;
    memcpy(&tiny, &f, sizeof tiny);
    bits = exponent == 0u ? tiny : bits;
    bits |= (uint32_t)(h & 0x8000u) << 16;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t float_to_f16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const uint32_t sign = (bits >> 16) & 0x8000u, magnitude = bits & 0x7FFFFFFFu;
    /* normal: rebias, round to nearest even on the 13 dropped bits (a carry into the exponent is right) */
    const uint32_t normal = (magnitude + ((uint32_t)(15 - 127) << 23) + 0xFFFu + ((magnitude >> 13) & 1u)) >> 13;
    /* subnormal: adding 0.5 leaves the rounded value in the low mantissa bits */
    float tiny;
    memcpy(&tiny, &magnitude, sizeof tiny);
    tiny += 0.5f;
    uint32_t tiny_bits;
    memcpy(&tiny_bits, &tiny, sizeof tiny_bits);
    tiny_bits -= 0x3F000000u;
    uint32_t half = magnitude < (113u << 23) ? tiny_bits : normal;
    half = magnitude >= (143u << 23) ? (magnitude > 0x7F800000u ? 0x7E00u : 0x7C00u) : half; /* >= 65536, inf, NaN */
    return (uint16_t)(half | sign);
}

#define LOAD_f32(p, j) (((const float *)(p))[j])
#define LOAD_f64(p, j) (((const double *)(p))[j])
#define LOAD_bf16(p, j) bf16_to_float(((const uint16_t *)(p))[j])
#define LOAD_f16(p, j) f16_to_float(((const uint16_t *)(p))[j])
#define STORE_f32(p, j, v) (((float *)(p))[j] = (v))
#define STORE_f64(p, j, v) (((double *)(p))[j] = (v))
#define STORE_bf16(p, j, v) (((uint16_t *)(p))[j] = float_to_bf16(v))
#define STORE_f16(p, j, v) (((uint16_t *)(p))[j] = float_to_f16(v))

/* e^q for q <= 0 (a NaN stays NaN), Cephes' polynomial: about 1 ulp, branch-free so that loops
 * over it vectorise (the libm call does not); 0 below -87, where e^q would be subnormal. */
static inline float exp_nonpositive(float q) {
    const float x = q < -87.0f ? -87.0f : q;
    /* Adding 1.5·2^23 rounds x·log2(e) to the integer k and leaves k in the low mantissa bits. */
    const float shifted = x * 1.44269504088896341f + 12582912.0f;
    const float k = shifted - 12582912.0f;
    int32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23; /* 2^k */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float r = x - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = (y * r * r + r + 1.0f) * scale;
    return q < -87.0f ? 0.0f : y;
}

/* tanh(z) and 1 - tanh(z)^2 = 4e / (1 + e)^2 with e = exp(-2|z|): the latter without cancellation
 * in the tails. Near 0, tanh from Cephes' odd polynomial (the quotient (1 - e) / (1 + e) would
 * lose the relative precision there). */
static inline void tanh_sech2_f(float z, float *t, float *sech2) {
    const float e = exp_nonpositive(-2.0f * fabsf(z));
    const float inv = 1.0f / (1.0f + e);
    const float zz = z * z;
    float small = -5.70498872745e-3f;
    small = small * zz + 2.06390887954e-2f;
    small = small * zz - 5.37397155531e-2f;
    small = small * zz + 1.33314422036e-1f;
    small = small * zz - 3.33332819422e-1f;
    small = small * zz * z + z;
    *t = fabsf(z) < 0.625f ? small : copysignf((1.0f - e) * inv, z);
    *sech2 = 4.0f * e * inv * inv;
}

static inline void tanh_sech2_d(double z, double *t, double *sech2) {
    const double e = exp(-2.0 * fabs(z));
    *t = tanh(z);
    *sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
}

/* sigmoid(z) and sigmoid(z)·sigmoid(-z) = e / (1 + e)^2 with e = exp(-|z|) */
static inline void sigmoid_f(float z, float *s, float *slope) {
    const float e = exp_nonpositive(-fabsf(z));
    const float inv = 1.0f / (1.0f + e);
    *s = z >= 0.0f ? inv : e * inv;
    *slope = e * inv * inv;
}

static inline void sigmoid_d(double z, double *s, double *slope) {
    const double e = exp(-fabs(z));
    const double inv = 1.0 / (1.0 + e);
    *s = z >= 0.0 ? inv : e * inv;
    *slope = e * inv * inv;
}

/* The functions, for R = float (S = f) and R = double (S = d): the value is returned, the
 * derivative stored in *d. Parameters: p0 = alpha, p1 = 1 / (2 tanh(alpha / 2)) and p2 = the
 * shift (-1/2, 0, +1/2) for the rounding family; p0 = delta, p1 = penalty for penalized MAE. */
#define FUNCTIONS(S, R, FLOOR, RINT, CEIL)                                                              \
    /* sign(±0) = +0 (as torch.sign); a NaN stays NaN */                                               \
    static inline R sign_##S(R x) { return x > 0 ? (R)1 : x < 0 ? (R)-1 : x == 0 ? (R)0 : x; }            \
                                                                                                        \
    /* soft_round(x + shift) = m + s·tanh(alpha·(y - m)), y = x + shift, m = floor(y) + 1/2, never   \
     * from x + shift itself, which rounds where it crosses a power of two and, beyond 2^22 in        \
     * float32, to even, picking the neighbouring cell: floor(y) = k + j from k = floor(x), f = x - k   \
     * and j = [f >= 1 - shift] - [f < -shift] (shift -1/2, 0 or 1/2; exact even where f rounds), and \
     * y - m = x - (k + c) = f - c with c = j + 1/2 - shift: f - c wherever f is exact (all but x in   \
     * (-1/2, 0)), where both are exact and equal, and it stays exact where k + c would round */       \
    static inline R soft_round_##S(R x, const struct Elementwise *a, R *d) {                            \
        const R shift = (R)a->p2, k = FLOOR(x), f = x - k;                                              \
        const R j = (f >= (R)1 - shift ? (R)1 : (R)0) - (f < -shift ? (R)1 : (R)0);                     \
        const R c = j + ((R)0.5 - shift);                                                               \
        const R r = ((x > (R)-0.5) & (x < (R)0)) ? x - (k + c) : f - c;                                 \
        const R m = (k + j) + (R)0.5;                                                                   \
        R t, sech2;                                                                                     \
        tanh_sech2_##S((R)a->p0 * r, &t, &sech2);                                                       \
        *d = (R)(a->p0 * a->p1) * sech2;                                                                \
        return m + t * (R)a->p1;                                                                        \
    }                                                                                                   \
    static inline R soft_step_##S(R x, const struct Elementwise *a, R *d) {                             \
        R s, slope;                                                                                     \
        sigmoid_##S((R)a->p0 * x, &s, &slope);                                                          \
        *d = (R)a->p0 * slope;                                                                          \
        return s;                                                                                       \
    }                                                                                                   \
    /* tanh(alpha·x / 2) = 2·sigmoid(alpha·x) - 1 */                                                    \
    static inline R soft_sign_##S(R x, const struct Elementwise *a, R *d) {                             \
        R t, sech2;                                                                                     \
        tanh_sech2_##S((R)(0.5 * a->p0) * x, &t, &sech2);                                               \
        *d = (R)(0.5 * a->p0) * sech2;                                                                  \
        return t;                                                                                       \
    }                                                                                                   \
    static inline R hard_round_##S(R x) { return RINT(x); } /* half to even */                          \
    static inline R hard_floor_##S(R x) { return FLOOR(x); }                                            \
    static inline R hard_ceil_##S(R x) { return CEIL(x); }                                              \
    static inline R hard_step_##S(R x) { return (sign_##S(x) + (R)1) * (R)0.5; } /* step(0) = 1/2 */   \
    static inline R hard_sign_##S(R x) { return sign_##S(x); }                                          \
                                                                                                        \
    /* |e| + penalty·max(|e| - delta, 0)^2, derivative sign(e)·(1 + 2·penalty·max(|e| - delta, 0)).  \
     * The value in double: a term beyond float's range becomes inf only where it is stored as one    \
     * (reduction "none"), while a mean of such terms is summed in double and may be in range. A      \
     * penalty that rounds to 0 in R is 0: no 0·inf = NaN where e overflowed (finite inputs more than  \
     * float's range apart). */                                                                         \
    static inline double penalized_mae_##S(R e, const struct Elementwise *a, R *d) {                    \
        const R magnitude = e < 0 ? -e : e, over = magnitude - (R)a->p0;                               \
        const R excess = over > 0 ? over : (R)0;                                                        \
        const int penalized = (R)a->p1 > 0;                                                             \
        *d = sign_##S(e) * ((R)1 + (penalized ? (R)(2.0 * a->p1) * excess : (R)0));                     \
        return (double)magnitude + (penalized ? a->p1 * (double)excess * (double)excess : 0.0);         \
    }

FUNCTIONS(f, float, floorf, rintf, ceilf)
FUNCTIONS(d, double, floor, rint, ceil)

/* The task loop every kernel shares: elements [begin, end) of each task, `omp simd` over them. The
 * arguments are copied to a local whose address never escapes: the compiler then knows that no
 * store of the loop changes them, and keeps them in registers. */
#define TASKS_BEGIN                                                                                     \
    const struct Elementwise local = *(const struct Elementwise *)args, *const a = &local;              \
    const int64_t n = a->n, chunk = a->chunk;                                                           \
    for (int64_t task = t0; task < t1; ++task) {                                                        \
        const int64_t begin = task * chunk, end = begin + chunk < n ? begin + chunk : n;
#define TASKS_END }

/* The argument of a function at element j: the input, or for a loss the input minus the target. */
#define ARGUMENT_UNARY(T, j) LOAD_##T(a->x, j)
#define ARGUMENT_LOSS(T, j) (LOAD_##T(a->x, j) - LOAD_##T(a->target, j))

/* FN##_v_T: the value, in the value's dtype V. FN##_g_T: upstream · derivative in the input's dtype,
 * upstream per element (in V) or `scale` for every element. T: the input's dtype, computed in R
 * (S = f or d). */
#define KERNELS(FN, ARGUMENT, T, S, R, V)                                                               \
    void FN##_v_##T(const void *args, int64_t t0, int64_t t1) {                                         \
        TASKS_BEGIN                                                                                     \
        _Pragma("omp simd")                                                                             \
        for (int64_t j = begin; j < end; ++j) {                                                         \
            R d;                                                                                        \
            STORE_##V(a->value, j, FN##_##S(ARGUMENT(T, j), a, &d));                                    \
        }                                                                                               \
        TASKS_END                                                                                       \
    }                                                                                                   \
    void FN##_g_##T(const void *args, int64_t t0, int64_t t1) {                                         \
        TASKS_BEGIN                                                                                     \
        const R scale = (R)a->scale;                                                                    \
        if (a->upstream == NULL) {                                                                      \
            _Pragma("omp simd")                                                                         \
            for (int64_t j = begin; j < end; ++j) {                                                     \
                R d;                                                                                    \
                FN##_##S(ARGUMENT(T, j), a, &d);                                                        \
                STORE_##T(a->grad, j, scale * d);                                                       \
            }                                                                                           \
        } else {                                                                                        \
            _Pragma("omp simd")                                                                         \
            for (int64_t j = begin; j < end; ++j) {                                                     \
                R d;                                                                                    \
                FN##_##S(ARGUMENT(T, j), a, &d);                                                        \
                STORE_##T(a->grad, j, LOAD_##V(a->upstream, j) * d);                                    \
            }                                                                                           \
        }                                                                                               \
        TASKS_END                                                                                       \
    }

/* FN##_s_T: the sum of the values of each task, in double, and with `grad` the derivative · scale
 * in the same pass (a loss reduced to its sum or mean: the backward then only scales it). */
#define SUM_KERNEL(FN, ARGUMENT, T, S, R)                                                               \
    void FN##_s_##T(const void *args, int64_t t0, int64_t t1) {                                         \
        TASKS_BEGIN                                                                                     \
        const R scale = (R)a->scale;                                                                    \
        double sum = 0.0;                                                                               \
        if (a->grad == NULL) {                                                                          \
            _Pragma("omp simd reduction(+ : sum)")                                                      \
            for (int64_t j = begin; j < end; ++j) {                                                     \
                R d;                                                                                    \
                sum += (double)FN##_##S(ARGUMENT(T, j), a, &d);                                         \
            }                                                                                           \
        } else {                                                                                        \
            _Pragma("omp simd reduction(+ : sum)")                                                      \
            for (int64_t j = begin; j < end; ++j) {                                                     \
                R d;                                                                                    \
                sum += (double)FN##_##S(ARGUMENT(T, j), a, &d);                                         \
                STORE_##T(a->grad, j, d * scale);                                                       \
            }                                                                                           \
        }                                                                                               \
        a->partial[task] = sum;                                                                         \
        TASKS_END                                                                                       \
    }

/* HARD##_v_T: the exact hard value of a straight-through surrogate (its gradient is the
 * surrogate's: FN##_g_T). */
#define HARD_KERNEL(HARD, T, S, V)                                                                      \
    void HARD##_v_##T(const void *args, int64_t t0, int64_t t1) {                                       \
        TASKS_BEGIN                                                                                     \
        _Pragma("omp simd")                                                                             \
        for (int64_t j = begin; j < end; ++j) STORE_##V(a->value, j, hard_##HARD##_##S(LOAD_##T(a->x, j))); \
        TASKS_END                                                                                       \
    }

#define ALL_KERNELS(T, S, R, V)                                                                         \
    KERNELS(soft_round, ARGUMENT_UNARY, T, S, R, V)                                                     \
    KERNELS(soft_step, ARGUMENT_UNARY, T, S, R, V)                                                      \
    KERNELS(soft_sign, ARGUMENT_UNARY, T, S, R, V)                                                      \
    HARD_KERNEL(round, T, S, V)                                                                         \
    HARD_KERNEL(floor, T, S, V)                                                                         \
    HARD_KERNEL(ceil, T, S, V)                                                                          \
    HARD_KERNEL(step, T, S, V)                                                                          \
    HARD_KERNEL(sign, T, S, V)                                                                          \
    KERNELS(penalized_mae, ARGUMENT_LOSS, T, S, R, V)                                                   \
    SUM_KERNEL(penalized_mae, ARGUMENT_LOSS, T, S, R)

ALL_KERNELS(f32, f, float, f32)
ALL_KERNELS(f64, d, double, f64)
ALL_KERNELS(bf16, f, float, f32)
ALL_KERNELS(f16, f, float, f32)
