/* The overlap losses (Dice, Jaccard, Tversky, ...) on the CPU in two fused passes over float32
 * predictions (see cpu.py).
 *
 * Stats pass: the probabilities p (sigmoid / softmax of the logits, or the input itself; the focal
 * rows write sigmoid(−|x|) instead, see sigmoid_of), written once for the gradient pass, and for
 * every task (a fixed range of positions of one row or image) the partial sums of losses/_overlap.py
 * for every class, plus two counts:
 *   STAT_INTERSECTION Σ v·p·g   STAT_PRED_SUM Σ v·p   STAT_TARGET_SUM Σ v·g   STAT_PRED_SQUARES Σ v·p²
 *   STAT_TARGET_SQUARES Σ v·g²  STAT_ABS_DIFF Σ v·|p − g|   STAT_VALID_COUNT Σ v
 *   PARTIAL_OUT_OF_RANGE: the number of values out of range
 *   PARTIAL_NON_FINITE: the number of NaN or ±inf
 * where v is the weight of the position (1, or the weight map's value) and 0 where the target
 * equals ignore_index, and g = 0 there. The indices are definitions passed at build time from the
 * one place that names the layout (losses/_overlap.py, cpu.py). The out-of-range count holds the
 * valid labels outside {0, 1} (binary) or [0, C) (multiclass), the valid per-class targets outside
 * [0, 1], and, when the input holds probabilities, every finite input outside [0, 1]; the
 * non-finite count every input and float target that is NaN or infinite (the caller turns the sums
 * of such an image into NaN). The rows passes (binary, multilabel) find such values with one
 * maximum of bits per value and count a chunk exactly only where that maximum is suspect (see
 * float_bits); the callers read both counts only as "any". Variants: "basic" (no ignore_index, no weights; only I, P, G
 * needed) skips the other sums; "weighted" reads the weight map (B, N).
 *
 * Gradient pass: from four coefficients per row and class (∂loss/∂I, ∂loss/∂P, ∂loss/∂P2,
 * ∂loss/∂A) and the stored p, the gradient with respect to the logits, written over p (the caller
 * owns that buffer). Tasks are fixed by the caller, independent of the number of threads, so the
 * sums are the same run to run.
 *
 * Plain C99 with no library but libm, compiled on first use. The loops are written without
 * branches (selects, `&` rather than `&&`, the activation a constant of each function) and
 * compiled with `omp simd` (-fopenmp-simd, no OpenMP runtime) for the float reductions and
 * -ffinite-math-only -fno-signed-zeros, which let the clamps become vector min/max: otherwise GCC
 * leaves every loop that calls exp_full scalar, 10-15× slower. Under those flags the compiler may
 * assume that no value is NaN or infinite, so non-finite inputs are detected from their bits
 * (not_finite), never by a float comparison, and the caller replaces what they touch by NaN.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if !defined(NUM_STATS) || !defined(NUM_PARTIALS) || !defined(PARTIAL_OUT_OF_RANGE) || !defined(PARTIAL_NON_FINITE) || \
    !defined(PARTIAL_CE)
#error "the stats layout comes from the build (cpu.py): -DSTAT_...=, -DNUM_STATS=, -DNUM_PARTIALS=, -DPARTIAL_..."
#endif

#define TILE 256
#define MAX_CLASSES 64

/* Everything a pass reads and writes; every kernel takes it and a range of tasks [t0, t1). */
struct Pass {
    const float *x;       /* the prediction (B, C, N), float32 */
    const void *target;   /* per-class targets (B, C, N) float32, or a label map (B, N) */
    float *probs;         /* written by a stats pass, turned into the gradient by a gradient pass */
    float *out;           /* partial sums of a stats pass: (tasks, C or 1, NUM_PARTIALS) */
    const float *coef;    /* gradient pass: (rows, C, 4) ∂loss/∂ of Σp·g, Σv·p, Σv·p², Σv·|p − g| */
    int64_t classes, n, chunk;
    int32_t activation, has_ignore;
    double ignore;        /* ignore_index, for float targets */
    int64_t ignore_int;   /* ignore_index, for label maps (it fits their dtype when has_ignore) */
    const float *weight;  /* the weight map (B, N) of the weighted variants, else NULL */
    /* The cross-entropy / focal term (the "_ce" rows variants; the label kernels when ce_factor is set):
     * ce_factor[c] = w_c·α_c, a PARTIAL_CE sum per task, ce_scale[b] its coefficient in a gradient pass. */
    const float *ce_factor, *ce_scale;
    float gamma, smoothing, alpha; /* alpha < 0: no balancing of positives and negatives */
};

/* The scalar helpers of the vectorised loops: always inlined (the many kernels of this file would
 * otherwise exhaust GCC's inlining budget, and a loop with a call in it is not vectorised). */
#define SCALAR static inline __attribute__((always_inline))

/* e^x as libm gives it in float32 (Cephes' polynomial, about 1 ulp): +inf above 88.72, subnormal
 * below -87.34 and 0 below -103.97, so that the sigmoid and softmax agree with PyTorch's to the
 * last bits also for extreme logits; branch-free, so that loops over it vectorise (the libm call
 * does not). 2^k is applied as two factors 2^(k/2), each a normal float even where 2^k is not. */
SCALAR float exp_in_range(float x) { /* x in [-110, 89] */
    /* Adding 1.5·2^23 rounds x·log2(e) to the integer k and leaves k in the low mantissa bits. */
    const float shifted = x * 1.44269504088896341f + 12582912.0f;
    const float k = shifted - 12582912.0f;
    int32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    const int32_t k_int = bits - 0x4B400000; /* in [-159, 129] */
    const int32_t k_low = k_int >> 1, k_high = k_int - k_low;
    const int32_t low_bits = (k_low + 127) << 23, high_bits = (k_high + 127) << 23;
    float scale_low, scale_high;
    memcpy(&scale_low, &low_bits, sizeof scale_low);
    memcpy(&scale_high, &high_bits, sizeof scale_high);
    float r = x - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    return y * scale_low * scale_high;
}

SCALAR float exp_full(float x) {
    x = x < -110.0f ? -110.0f : x; /* e^-110 rounds to 0, as everything below */
    x = x > 89.0f ? 89.0f : x;     /* e^89 overflows to +inf, as everything above */
    return exp_in_range(x);
}

/* e^x for x <= 0 (e^−|x|, and e^(x − max) of the softmax): exp_full without its upper clamp. */
SCALAR float exp_nonpositive(float x) { return exp_in_range(x < -110.0f ? -110.0f : x); }

/* −|x| from the bits: one operation where −fabsf(x) takes two. */
SCALAR float negative_magnitude(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits |= 0x80000000u;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* 1 / (1 + e^-x), the form PyTorch computes: exactly 0 below about -88.7, where e^-x overflows. */
SCALAR float sigmoid(float x) { return 1.0f / (1.0f + exp_full(-x)); }

/* log(1 + m) − m for m in [√½ − 1, √2 − 1] (Cephes' logf polynomial, about 1 ulp). */
SCALAR float log1p_remainder(float m) {
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    return y * m * z - 0.5f * z;
}

/* log((1 + m)·2^e), with log 2 = 0.693359375 − 2.12194440e-4 (the first part exact in float, times e). */
SCALAR float log_of_parts(float m, float e) {
    return m + (log1p_remainder(m) - 2.12194440e-4f * e) + 0.693359375f * e;
}

/* x > 0, subnormal too, as (1 + m)·2^e with 1 + m in [√½, √2), branch-free: returns e, sets *m. */
SCALAR float log_split(float x, float *m_out) {
    const float subnormal = x < 1.17549435e-38f ? 1.0f : 0.0f;
    x = subnormal > 0.0f ? x * 8388608.0f : x; /* 2^23: a normal float */
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    int32_t e = ((bits >> 23) & 0xff) - 126; /* x = m·2^e, m in [1/2, 1) */
    bits = (bits & 0x007fffff) | 0x3f000000;
    float m;
    memcpy(&m, &bits, sizeof m);
    const int32_t low = m < 0.707106781186547524f;
    e -= low;
    *m_out = low ? m + m - 1.0f : m - 1.0f;
    return (float)e - 23.0f * subnormal;
}

/* log(x) for x > 0, subnormal too. */
SCALAR float log_full(float x) {
    float m;
    const float e = log_split(x, &m);
    return log_of_parts(m, e);
}

/* The two logarithms of the binary term on fixed ranges, t + t²·G(t) with a polynomial G of degree 7
 * fitted for the least relative error (tools/fit_log_polynomials.py: at most 1.7 ulp): no range
 * reduction, 9 operations where log_full takes about 20, and t itself exact in the first term, so
 * that a t far below float's precision next to 1 keeps its relative precision. */
SCALAR float short_log(float t, const float *g) {
    float y = g[7];
    for (int k = 6; k >= 0; --k) y = y * t + g[k];
    return (t * t) * y + t;
}

/* log(1 + u) for u in [0, 1]. */
SCALAR float log1p_unit(float u) {
    static const float g[8] = {-0.49999648332595825f, 0.33321329951286316f, -0.24857231974601746f,
                               0.1915392279624939f,   -0.13754352927207947f, 0.07921075820922852f,
                               -0.030069466680288315f, 0.0053657107055187225f};
    return short_log(u, g);
}

/* −log(1 − s) for s in [0, 1/2]. */
SCALAR float neg_log1m_half(float s) {
    static const float g[8] = {0.49999523162841797f, 0.33363187313079834f, 0.24368633329868317f,
                               0.2636638283729553f,  -0.18084648251533508f, 1.2084821462631226f,
                               -1.6393194198608398f, 1.414416790008545f};
    return short_log(s, g);
}

/* m^γ for m in [0, 1] and γ > 0 (0 at m = 0). */
SCALAR float pow_unit(float m, float gamma) {
    const float positive = m > 0.0f ? 1.0f : 0.0f;
    return positive * exp_full(gamma * log_full(positive > 0.0f ? m : 1.0f));
}

/* NaN or ±inf, from the bits: -ffinite-math-only folds float tests for them to false. */
SCALAR float not_finite(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (bits & 0x7f800000u) == 0x7f800000u ? 1.0f : 0.0f;
}

/* 1 for a finite value outside [0, 1] (NaN and ±inf are counted by not_finite instead). */
SCALAR float outside_unit(float p) {
    return ((p < 0.0f) | (p > 1.0f)) ? 1.0f - not_finite(p) : 0.0f;
}

/* Keys of the stats passes' cheap check: the largest bit pattern seen (as unsigned) says whether a
 * chunk may hold a bad value, and only then is it counted exactly (one max per value instead of
 * the compares of not_finite and outside_unit). A float in [0, 1] has bits <= UNIT_BITS; a finite
 * magnitude, <= FINITE_BITS; a negative value (−0.0 too) has the sign bit, above both. */
#define UNIT_BITS 0x3f800000u
#define FINITE_BITS 0x7f7fffffu
SCALAR uint32_t float_bits(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}
SCALAR uint32_t magnitude_bits(float x) { return float_bits(x) & 0x7fffffffu; }
SCALAR uint32_t max_key(uint32_t a, uint32_t b) { return a > b ? a : b; }

/* k·sign(d), sign(0) = 0: k with the sign bit of d flipped into it, from the bits (4 operations
 * where the product with (d > 0) − (d < 0) takes 8). */
SCALAR float times_sign(float k, float d) {
    uint32_t bits;
    memcpy(&bits, &k, sizeof bits);
    bits ^= float_bits(d) & 0x80000000u;
    float signed_k;
    memcpy(&signed_k, &bits, sizeof signed_k);
    return d != 0.0f ? signed_k : 0.0f;
}

static inline void store_partials(float *o, float si, float sp, float sg, float sp2, float sg2, float sa, float sn,
                                  float bad, float nf, float ce) {
    o[STAT_INTERSECTION] = si;
    o[STAT_PRED_SUM] = sp;
    o[STAT_TARGET_SUM] = sg;
    o[STAT_PRED_SQUARES] = sp2;
    o[STAT_TARGET_SQUARES] = sg2;
    o[STAT_ABS_DIFF] = sa;
    o[STAT_VALID_COUNT] = sn;
    o[PARTIAL_OUT_OF_RANGE] = bad;
    o[PARTIAL_NON_FINITE] = nf;
    o[PARTIAL_CE] = ce;
}

/* sigmoid(x) from one exponential u = e^−|x| and one reciprocal r = 1 / (1 + u) (the passes with a
 * cross-entropy term, which take log(1 + u) from the same u). The focal passes store sigmoid(−|x|) =
 * u·r, to float's relative precision also where sigmoid(x) rounds to 1: their gradient pass takes
 * sigmoid(x) and 1 − sigmoid(x) from it and the sign of x (sigmoid_of_low), and log(1 + u) =
 * −log(1 − u·r) without an exponential (the cross-entropy's gradient needs p alone, and no x). */
SCALAR float sigmoid_of(float x, float u, float r) { return (x >= 0.0f ? 1.0f : u) * r; }
SCALAR float sigmoid_of_low(float x, float low) { return x >= 0.0f ? 1.0f - low : low; }

/* The binary cross-entropy −(t·log p + (1 − t)·log(1 − p)) of p = sigmoid(x), from log1p_u =
 * log(1 + e^−|x|): max(x, 0) − t·x + log1p_u, exact where a large x meets t = 1, finite where p underflows. */
SCALAR float binary_ce(float x, float t, float log1p_u) { return ((x > 0.0f ? x : 0.0f) - t * x) + log1p_u; }

/* How (1 − p)^γ is computed: FOCUS_NONE (γ = 0, the cross-entropy), FOCUS_SQUARE (γ = 2, the usual
 * value: products only) or FOCUS_POWER (any other γ: an exponential and a logarithm). */
enum { FOCUS_NONE = 0, FOCUS_POWER = 1, FOCUS_SQUARE = 2 };
SCALAR int focus_of(float gamma) { return gamma == 0.0f ? FOCUS_NONE : gamma == 2.0f ? FOCUS_SQUARE : FOCUS_POWER; }
SCALAR float focal_power(float m, float gamma, int focus) {
    return focus == FOCUS_NONE ? 1.0f : focus == FOCUS_SQUARE ? m * m : pow_unit(m, gamma);
}
/* γ·p·(1 − p)^(γ−1)·log p − (1 − p)^γ, the factor of G; at p = 1 its limit, 0. */
SCALAR float focal_slope(float p, float log_p, float gamma, int focus) {
    const float rest = 1.0f - p;
    if (focus == FOCUS_NONE) return -1.0f;
    if (focus == FOCUS_SQUARE) return 2.0f * p * rest * log_p - rest * rest;
    const float lower = rest > 0.0f ? exp_full((gamma - 1.0f) * log_full(rest > 0.0f ? rest : 1.0f)) : 0.0f;
    return gamma * p * lower * log_p - rest * lower;
}

/* The exact counts of a chunk of a rows stats pass (see ROWS_STATS): the values out of range and
 * the non-finite ones, into bad and nf. */
#define ROWS_COUNT(T, IS_LABEL, ACTIVATION, VARIANT)                                                   \
    _Pragma("omp simd reduction(+ : bad, nf)")                                                          \
    for (int64_t j = begin; j < end; ++j) {                                                             \
        const float xj = xr[j];                                                                         \
        const T raw = tr[j];                                                                            \
        const float valid = VARIANT ? (raw == ign ? keep_ignored : 1.0f) : 1.0f;                        \
        if (IS_LABEL)                                                                                   \
            bad += valid * (float)((raw != (T)0) & (raw != (T)1));                                      \
        else                                                                                            \
            bad += valid * outside_unit((float)raw);                                                    \
        if (!ACTIVATION) bad += outside_unit(xj);                                                       \
        nf += IS_LABEL ? not_finite(xj) : not_finite(xj) + not_finite((float)raw);                      \
    }

/* Rows of positions: binary and multilabel (sigmoid or probabilities). Row r of the prediction
 * (r = b·C + c) pairs with row r of the target: per-class targets of the prediction's shape, or
 * with C = 1 a label map (IS_LABEL: values 0 or 1). VARIANT: 0 basic, 1 full, 2 weighted. */
#define ROWS_STATS(NAME, T, IS_LABEL, ACTIVATION, VARIANT, CE, FOCUS)                                  \
    void NAME(const struct Pass *a, int64_t t0, int64_t t1) {                                           \
        const float *x = a->x;                                                                          \
        const T *target = (const T *)a->target;                                                         \
        float *out = a->out, *probs = a->probs;                                                         \
        const int64_t n = a->n, chunk = a->chunk, classes = a->classes;                                 \
        const int32_t has_ignore = a->has_ignore;                                                       \
        const int64_t chunks = (n + chunk - 1) / chunk;                                                 \
        const T ign = IS_LABEL ? (T)a->ignore_int : (T)a->ignore;                                       \
        const float keep_ignored = has_ignore ? 0.0f : 1.0f;                                            \
        const float gamma = a->gamma, eps = a->smoothing;                                               \
        /* α_t = α·t + (1 − α)·(1 − t), or 1 without balancing */                                      \
        const float a_pos = a->alpha >= 0.0f ? a->alpha : 1.0f, a_neg = a->alpha >= 0.0f ? 1.0f - a->alpha : 1.0f; \
        /* t_s = g·(1 − ε) + ε/2 and α_t, both affine in g: one multiply-add each */                   \
        const float ts_slope = 1.0f - eps, ts_base = 0.5f * eps;                                        \
        const float at_slope = (a_pos - a_neg) * ts_slope, at_base = a_neg + (a_pos - a_neg) * ts_base; \
        for (int64_t task = t0; task < t1; ++task) {                                                    \
            const int64_t row = task / chunks, begin = (task % chunks) * chunk;                         \
            const int64_t end = begin + chunk < n ? begin + chunk : n;                                  \
            const float *xr = x + row * n;                                                              \
            const T *tr = target + row * n;                                                             \
            const float *wr = VARIANT == 2 ? a->weight + (row / classes) * n : NULL;                    \
            const float factor = CE ? a->ce_factor[row % classes] : 0.0f; /* of the whole task's sum */ \
            float *pr = probs + row * n;                                                                \
            float si = 0, sp = 0, sg = 0, sp2 = 0, sg2 = 0, sa = 0, sn = 0, bad = 0, nf = 0, sce = 0;   \
            uint32_t x_key = 0, target_key = 0, label_key = 0;                                          \
            _Pragma("omp simd reduction(+ : si, sp, sg, sp2, sg2, sa, sn, sce) reduction(max : x_key, target_key) reduction(| : label_key)") \
            for (int64_t j = begin; j < end; ++j) {                                                     \
                const float xj = xr[j];                                                                 \
                const float u = CE ? exp_nonpositive(negative_magnitude(xj)) : 0.0f, r = CE ? 1.0f / (1.0f + u) : 0.0f;    \
                const float p = CE ? sigmoid_of(xj, u, r) : ACTIVATION ? sigmoid(xj) : xj;              \
                pr[j] = FOCUS != FOCUS_NONE ? u * r : p; /* focal: sigmoid(−|x|), see sigmoid_of */     \
                const T raw = tr[j];                                                                    \
                const float valid = VARIANT ? (raw == ign ? keep_ignored : 1.0f) : 1.0f;                \
                const float v = VARIANT == 2 ? valid * wr[j] : valid;                                   \
                const float g = valid * (float)raw;                                                     \
                si += v * p * g;                                                                        \
                sp += v * p;                                                                            \
                sg += v * g;                                                                            \
                if (VARIANT) {                                                                          \
                    sp2 += v * p * p;                                                                   \
                    sg2 += v * g * g;                                                                   \
                    sa += v * fabsf(p - g);                                                             \
                    sn += v;                                                                            \
                }                                                                                       \
                if (CE) {                                                                               \
                    const float ts = g * ts_slope + ts_base;                                            \
                    const float ce = binary_ce(xj, ts, log1p_unit(u));                                  \
                    const float miss = p * (1.0f - ts) + (1.0f - p) * ts; /* 1 − p_t */                 \
                    const float modulator = focal_power(miss, gamma, FOCUS);                            \
                    const float at = g * at_slope + at_base;                                            \
                    sce += v * at * modulator * ce;                                                     \
                }                                                                                       \
                x_key = max_key(x_key, ACTIVATION ? magnitude_bits(xj) : float_bits(xj));              \
                if (IS_LABEL)                                                                           \
                    label_key |= valid != 0.0f ? (uint32_t)(((uint64_t)(int64_t)raw & ~(uint64_t)1) != 0u) : 0u; \
                else                                                                                    \
                    target_key = max_key(target_key, valid != 0.0f ? float_bits((float)raw) : 0u);      \
            }                                                                                           \
            /* A suspect key (rare: bad input, or a −0.0) has the chunk counted exactly. */            \
            if (label_key != 0u || target_key > UNIT_BITS || x_key > (ACTIVATION ? FINITE_BITS : UNIT_BITS)) \
                ROWS_COUNT(T, IS_LABEL, ACTIVATION, VARIANT);                                           \
            store_partials(out + task * NUM_PARTIALS, si, sp, sg, sp2, sg2, sa, sn, bad, nf, factor * sce); \
        }                                                                                               \
    }

/* CE: adds ce_scale[b]·v·∂ℓ/∂x of the focal term, ∂ℓ/∂x = w·α_t·((1 − p_t)^γ·(p − t) +
 * γ·(1 − p_t)^(γ−1)·(1 − 2t)·p·(1 − p)·BCE), the second product written (1 − p_t)^γ·ratio·… with
 * ratio = p·(1 − p) / (1 − p_t) <= 1 (since 1 − p_t >= p·(1 − p)): no overflow, one power; at γ = 2
 * (1 − p_t)²·ratio is the product (1 − p_t)·p·(1 − p), without a division. */
#define ROWS_GRAD(NAME, T, IS_LABEL, ACTIVATION, WEIGHTED, CE, FOCUS)                                  \
    void NAME(const struct Pass *a, int64_t t0, int64_t t1) {                                           \
        const T *target = (const T *)a->target;                                                         \
        float *probs = a->probs;                                                                        \
        const float *coef = a->coef, *x = a->x;                                                         \
        const int64_t n = a->n, chunk = a->chunk, classes = a->classes;                                 \
        const int32_t has_ignore = a->has_ignore;                                                       \
        const int64_t chunks = (n + chunk - 1) / chunk;                                                 \
        const T ign = IS_LABEL ? (T)a->ignore_int : (T)a->ignore;                                       \
        const float keep_ignored = has_ignore ? 0.0f : 1.0f;                                            \
        const float gamma = a->gamma, eps = a->smoothing;                                               \
        /* α_t = α·t + (1 − α)·(1 − t), or 1 without balancing */                                      \
        const float a_pos = a->alpha >= 0.0f ? a->alpha : 1.0f, a_neg = a->alpha >= 0.0f ? 1.0f - a->alpha : 1.0f; \
        /* t_s and α_t affine in g, as in ROWS_STATS */                                                 \
        const float ts_slope = 1.0f - eps, ts_base = 0.5f * eps;                                        \
        const float at_slope = (a_pos - a_neg) * ts_slope, at_base = a_neg + (a_pos - a_neg) * ts_base; \
        for (int64_t task = t0; task < t1; ++task) {                                                    \
            const int64_t row = task / chunks, begin = (task % chunks) * chunk;                         \
            const int64_t end = begin + chunk < n ? begin + chunk : n;                                  \
            const T *tr = target + row * n;                                                             \
            const float *xr = x + row * n;                                                              \
            const float *wr = WEIGHTED ? a->weight + (row / classes) * n : NULL;                        \
            float *pr = probs + row * n;                                                                \
            const float ki = coef[row * 4], kp = coef[row * 4 + 1];                                     \
            const float kp2 = 2.0f * coef[row * 4 + 2], ka = coef[row * 4 + 3];                         \
            const float ce_k = CE ? a->ce_scale[row / classes] * a->ce_factor[row % classes] : 0.0f;    \
            const float scaled_at_slope = ce_k * at_slope, scaled_at_base = ce_k * at_base;             \
            _Pragma("omp simd")                                                                         \
            for (int64_t j = begin; j < end; ++j) {                                                     \
                const float p = FOCUS != FOCUS_NONE ? sigmoid_of_low(xr[j], pr[j]) : pr[j];             \
                const float q = FOCUS != FOCUS_NONE ? sigmoid_of_low(-xr[j], pr[j]) : 1.0f - p;         \
                const T raw = tr[j];                                                                    \
                const float valid = raw == ign ? keep_ignored : 1.0f;                                   \
                const float v = WEIGHTED ? valid * wr[j] : valid;                                       \
                const float g = valid * (float)raw;                                                     \
                const float d = v * (ki * g + kp + kp2 * p + times_sign(ka, p - g));                      \
                float out = ACTIVATION ? d * p * q : d;                                                 \
                if (CE) {                                                                               \
                    const float ts = g * ts_slope + ts_base;                                            \
                    /* p − t, as (1 − t) − (1 − p) where 1 − p has the precision that p lost */        \
                    float slope = FOCUS != FOCUS_NONE && xr[j] >= 0.0f ? (1.0f - ts) - q : p - ts;      \
                    if (FOCUS != FOCUS_NONE) {                                                          \
                        const float ce = binary_ce(xr[j], ts, neg_log1m_half(pr[j]));                      \
                        const float miss = p * (1.0f - ts) + q * ts;                                    \
                        const float pq = p * q, spread = (1.0f - 2.0f * ts) * ce;                       \
                        if (FOCUS == FOCUS_SQUARE) /* (1 − p_t)²·ratio = (1 − p_t)·p·(1 − p) */         \
                            slope = miss * (miss * slope + 2.0f * pq * spread);                         \
                        else {                                                                          \
                            const float modulator = focal_power(miss, gamma, FOCUS);                    \
                            const float ratio = miss > 0.0f ? pq / (miss > 0.0f ? miss : 1.0f) : 0.0f;  \
                            slope = modulator * (slope + gamma * ratio * spread);                       \
                        }                                                                               \
                    }                                                                                   \
                    out += v * (g * scaled_at_slope + scaled_at_base) * slope; /* ce_k·v·α_t·slope */   \
                }                                                                                       \
                pr[j] = out;                                                                            \
            }                                                                                           \
        }                                                                                               \
    }

#define ROWS_ACTIVATION_KERNELS(SUFFIX, T, IS_LABEL, ACT_NAME, ACTIVATION)                             \
    ROWS_STATS(rows_stats_##SUFFIX##_##ACT_NAME##_basic, T, IS_LABEL, ACTIVATION, 0, 0, FOCUS_NONE)         \
    ROWS_STATS(rows_stats_##SUFFIX##_##ACT_NAME##_full, T, IS_LABEL, ACTIVATION, 1, 0, FOCUS_NONE)          \
    ROWS_STATS(rows_stats_##SUFFIX##_##ACT_NAME##_weighted, T, IS_LABEL, ACTIVATION, 2, 0, FOCUS_NONE)      \
    ROWS_GRAD(rows_grad_##SUFFIX##_##ACT_NAME##_full, T, IS_LABEL, ACTIVATION, 0, 0, FOCUS_NONE)            \
    ROWS_GRAD(rows_grad_##SUFFIX##_##ACT_NAME##_weighted, T, IS_LABEL, ACTIVATION, 1, 0, FOCUS_NONE)

/* With the cross-entropy (TERM "ce") or focal term ("focal2": γ = 2, "focal": any other γ): from logits only. */
#define ROWS_TERM_KERNELS(SUFFIX, T, IS_LABEL, TERM, FOCUS)                                            \
    ROWS_STATS(rows_stats_##SUFFIX##_sigmoid_basic_##TERM, T, IS_LABEL, 1, 0, 1, FOCUS)                 \
    ROWS_STATS(rows_stats_##SUFFIX##_sigmoid_full_##TERM, T, IS_LABEL, 1, 1, 1, FOCUS)                  \
    ROWS_STATS(rows_stats_##SUFFIX##_sigmoid_weighted_##TERM, T, IS_LABEL, 1, 2, 1, FOCUS)              \
    ROWS_GRAD(rows_grad_##SUFFIX##_sigmoid_full_##TERM, T, IS_LABEL, 1, 0, 1, FOCUS)                    \
    ROWS_GRAD(rows_grad_##SUFFIX##_sigmoid_weighted_##TERM, T, IS_LABEL, 1, 1, 1, FOCUS)

#define ROWS_KERNELS(SUFFIX, T, IS_LABEL)                                                              \
    ROWS_ACTIVATION_KERNELS(SUFFIX, T, IS_LABEL, sigmoid, 1)                                            \
    ROWS_ACTIVATION_KERNELS(SUFFIX, T, IS_LABEL, identity, 0)                                           \
    ROWS_TERM_KERNELS(SUFFIX, T, IS_LABEL, ce, FOCUS_NONE)                                              \
    ROWS_TERM_KERNELS(SUFFIX, T, IS_LABEL, focal2, FOCUS_SQUARE)                                        \
    ROWS_TERM_KERNELS(SUFFIX, T, IS_LABEL, focal, FOCUS_POWER)

ROWS_KERNELS(f32, float, 0)
ROWS_KERNELS(i64, int64_t, 1)
ROWS_KERNELS(i32, int32_t, 1)
ROWS_KERNELS(u8, uint8_t, 1)

/* log Σ_c e^x_c of each position of a tile, kept as its two parts, the largest logit and
 * log Σ_c e^(x_c − max): the cross-entropy reads log p_c = (x_c − max) − log_sum, whose first
 * difference is exact; max + log_sum itself would round at the scale of the logits (1e-3 at 1e4). */
struct Normalizer {
    float max[TILE], log_sum[TILE];
};
SCALAR float log_softmax_of(float x, const struct Normalizer *z, int j) { return (x - z->max[j]) - z->log_sum[j]; }

/* The probabilities of a tile of positions [n0, n0 + len) of one image, all classes: softmax over
 * the classes (activation) or the input itself; written to p and to the image's probs. Adds the
 * number of non-finite inputs to *nonfinite and, for probabilities, of those outside [0, 1] to *bad. */
static inline void tile_probabilities(const float *xb, int64_t classes, int64_t n, int64_t n0, int len,
                                      int32_t activation, float p[][TILE], float *pb, float *nonfinite,
                                      float *bad, struct Normalizer *lse) {
    /* Integer counts: a float sum in these loops would keep GCC from vectorising them. */
    int32_t nf = 0, outside = 0;
    if (!activation) {
        for (int64_t c = 0; c < classes; ++c)
            for (int j = 0; j < len; ++j) {
                const float value = xb[c * n + n0 + j];
                p[c][j] = value;
                nf += not_finite(value) != 0.0f;
                outside += outside_unit(value) != 0.0f;
            }
    } else {
        float m[TILE], s[TILE];
        for (int j = 0; j < len; ++j) {
            m[j] = xb[n0 + j];
            nf += not_finite(m[j]) != 0.0f;
        }
        for (int64_t c = 1; c < classes; ++c)
            for (int j = 0; j < len; ++j) {
                const float value = xb[c * n + n0 + j];
                m[j] = value > m[j] ? value : m[j];
                nf += not_finite(value) != 0.0f;
            }
        for (int j = 0; j < len; ++j) s[j] = 0.0f;
        for (int64_t c = 0; c < classes; ++c)
            for (int j = 0; j < len; ++j) {
                const float e = exp_nonpositive(xb[c * n + n0 + j] - m[j]);
                p[c][j] = e;
                s[j] += e;
            }
        if (lse) /* for the log-probabilities of the cross-entropy */
            for (int j = 0; j < len; ++j) {
                lse->max[j] = m[j];
                lse->log_sum[j] = log_full(s[j]);
            }
        for (int j = 0; j < len; ++j) s[j] = 1.0f / s[j];
        for (int64_t c = 0; c < classes; ++c)
            for (int j = 0; j < len; ++j) p[c][j] *= s[j];
    }
    for (int64_t c = 0; c < classes; ++c) memcpy(pb + c * n + n0, p[c], sizeof(float) * len);
    *nonfinite += (float)nf;
    *bad += (float)outside;
}

/* The weights of a tile: v[j] *= w[j] (the weight map), for the weighted passes. */
static inline void tile_weights(const float *wb, int64_t n0, int len, float *v) {
    if (wb)
        for (int j = 0; j < len; ++j) v[j] *= wb[n0 + j];
}

/* The term and gradient of the multiclass focal loss (cross-entropy at γ = 0) over a tile, class by
 * class so that the loops over positions vectorise. With f_c = w_c·α_c and q the label y smoothed
 * by ε (q_c = ε/C + (1 − ε)·[c = y]; y = −1: no label), per position
 *   ℓ = −Σ_c f_c·q_c·(1 − p_c)^γ·log p_c,    ∂ℓ/∂x_k = G_k − p_k·Σ_c G_c,
 *   G_c = f_c·q_c·(γ·p_c·(1 − p_c)^(γ−1)·log p_c − (1 − p_c)^γ),
 * with log p_c = x_c − lse taken from the logits. Without smoothing only the label's class counts, and
 * the gradient pass takes its log p_y from the stored probabilities (log_probability) instead. */

/* The label's probability p_y, logit x_y and factor f_y of each position of a tile (0 where y = −1). */
SCALAR void tile_gather_label(const float *restrict xb, int64_t n, int64_t n0, int len, int64_t classes,
                              const float *restrict pb, int64_t p_stride, const int32_t *restrict lab,
                              const float *restrict f, float *restrict py, float *restrict xy, float *restrict fy) {
    _Pragma("omp simd")
    for (int j = 0; j < len; ++j) py[j] = xy[j] = fy[j] = 0.0f;
    for (int64_t c = 0; c < classes; ++c) {
        const float *pc = pb + c * p_stride, *xc = xb + c * n + n0, fc = f[c];
        _Pragma("omp simd")
        for (int j = 0; j < len; ++j) {
            const int hit = lab[j] == (int32_t)c;
            const float pv = pc[j], xv = xc[j]; /* read unconditionally: a masked load does not vectorise */
            py[j] = hit ? pv : py[j];
            xy[j] = hit ? xv : xy[j];
            fy[j] = hit ? fc : fy[j];
        }
    }
}

/* log p of a probability p and of 1 − p = rest, summed apart: next to p = 1 (above √½) log(1 − rest),
 * which keeps the precision of a small rest that p lost. Finite at p = 0, where it is multiplied by p. */
SCALAR float log_probability(float p, float rest) {
    float m;
    const float e = log_split(p, &m);
    const int high = p > 0.707106781186547524f; /* 1 + m = 1 − rest, e = 0: one polynomial for both */
    return log_of_parts(high ? -rest : m, high ? 0.0f : e);
}

/* Σ_j v_j·ℓ_j over a tile; p_c of position j at pb[c·p_stride + j]. */
SCALAR float tile_focal_sum_of(const float *xb, int64_t n, int64_t n0, int len, int64_t classes, const float *pb,
                               int64_t p_stride, const struct Normalizer *lse, const int32_t *lab, const float *v,
                               const struct Pass *a, int focus) {
    const float *f = a->ce_factor;
    const float eps = a->smoothing, gamma = a->gamma, share = eps / (float)classes;
    float sum = 0.0f;
    if (eps == 0.0f) {
        float py[TILE], xy[TILE], fy[TILE];
        tile_gather_label(xb, n, n0, len, classes, pb, p_stride, lab, f, py, xy, fy);
        _Pragma("omp simd reduction(+ : sum)")
        for (int j = 0; j < len; ++j)
            sum += -v[j] * fy[j] * focal_power(1.0f - py[j], gamma, focus) * log_softmax_of(xy[j], lse, j);
        return sum;
    }
    for (int64_t c = 0; c < classes; ++c) {
        const float *pc = pb + c * p_stride, *xc = xb + c * n + n0, fc = f[c];
        _Pragma("omp simd reduction(+ : sum)")
        for (int j = 0; j < len; ++j) {
            const float q = share + (lab[j] == (int32_t)c ? 1.0f - eps : 0.0f);
            sum += -v[j] * fc * q * focal_power(1.0f - pc[j], gamma, focus) * log_softmax_of(xc[j], lse, j);
        }
    }
    return sum;
}

/* e[c][j] = scale_j·∂ℓ_j/∂x_c over a tile, with label smoothing (every class has a share of the term);
 * p_c of position j at pb[c·n + j] (the probabilities buffer). Without smoothing only G_y counts,
 * ∂ℓ/∂x_c = G_y·([c = y] − p_c): see tile_overlap_slopes and tile_label_slope. */
SCALAR void tile_focal_gradient_of(const float *restrict xb, int64_t n, int64_t n0, int len, int64_t classes,
                                   const float *restrict pb, const struct Normalizer *restrict lse,
                                   const int32_t *restrict lab,
                                   const float *restrict scale, const struct Pass *a, float (*restrict e)[TILE],
                                   int focus) {
    const float *f = a->ce_factor;
    const float eps = a->smoothing, gamma = a->gamma, share = eps / (float)classes;
    float total[TILE];
    _Pragma("omp simd")
    for (int j = 0; j < len; ++j) total[j] = 0.0f;
    for (int64_t c = 0; c < classes; ++c) {
        const float *pc = pb + c * n, *xc = xb + c * n + n0, fc = f[c];
        float *ec = e[c];
        _Pragma("omp simd")
        for (int j = 0; j < len; ++j) {
            const float q = share + (lab[j] == (int32_t)c ? 1.0f - eps : 0.0f);
            ec[j] = fc * q * focal_slope(pc[j], log_softmax_of(xc[j], lse, j), gamma, focus);
            total[j] += ec[j];
        }
    }
    for (int64_t c = 0; c < classes; ++c) {
        const float *pc = pb + c * n;
        float *ec = e[c];
        _Pragma("omp simd")
        for (int j = 0; j < len; ++j) ec[j] = scale[j] * (ec[j] - pc[j] * total[j]);
    }
}

/* The two above with the focusing of a->gamma fixed at compile time (their loops then vectorise). */
static float tile_focal_sum(const float *xb, int64_t n, int64_t n0, int len, int64_t classes, const float *pb,
                            int64_t p_stride, const struct Normalizer *lse, const int32_t *lab, const float *v,
                            const struct Pass *a) {
    switch (focus_of(a->gamma)) {
    case FOCUS_NONE: return tile_focal_sum_of(xb, n, n0, len, classes, pb, p_stride, lse, lab, v, a, FOCUS_NONE);
    case FOCUS_SQUARE: return tile_focal_sum_of(xb, n, n0, len, classes, pb, p_stride, lse, lab, v, a, FOCUS_SQUARE);
    default: return tile_focal_sum_of(xb, n, n0, len, classes, pb, p_stride, lse, lab, v, a, FOCUS_POWER);
    }
}

static void tile_focal_gradient(const float *xb, int64_t n, int64_t n0, int len, int64_t classes, const float *pb,
                                const struct Normalizer *lse, const int32_t *lab, const float *scale,
                                const struct Pass *a,
                                float (*e)[TILE]) {
    switch (focus_of(a->gamma)) {
    case FOCUS_NONE: tile_focal_gradient_of(xb, n, n0, len, classes, pb, lse, lab, scale, a, e, FOCUS_NONE); break;
    case FOCUS_SQUARE: tile_focal_gradient_of(xb, n, n0, len, classes, pb, lse, lab, scale, a, e, FOCUS_SQUARE); break;
    default: tile_focal_gradient_of(xb, n, n0, len, classes, pb, lse, lab, scale, a, e, FOCUS_POWER);
    }
}

/* What the gradient pass takes of the label's class besides the overlap's slopes (the term without
 * smoothing): GATHER_NONE (no term, or the cross-entropy with one factor for every class), GATHER_FACTOR
 * (the cross-entropy: the label's factor f_y) or GATHER_LABEL (the focal term: f_y, p_y and the sum of
 * the other classes' probabilities, 1 − p_y where p_y is next to 1). */
enum { GATHER_NONE, GATHER_FACTOR, GATHER_LABEL };

/* The overlap's part of a tile of the multiclass gradient pass: d[c][j] = ∂loss/∂p_c (from the
 * coefficients kb of the image) and dot[j] = Σ_c p_c·d_c, for ∂loss/∂x_c = p_c·(d_c − dot); and in
 * the same loop over the classes, what `gather` asks for of the label's class, as sums whose only
 * other terms are exact zeros (no select, no second pass over the probabilities). */
SCALAR void tile_overlap_slopes(const float *restrict pb, int64_t n, int len, int64_t classes, const float *restrict kb,
                                const int32_t *restrict lab, const float *restrict v, const float *restrict f,
                                float (*restrict d)[TILE], float *restrict dot, float *restrict fy,
                                float *restrict py, float *restrict rest, int gather) {
    for (int j = 0; j < len; ++j) dot[j] = 0.0f;
    if (gather != GATHER_NONE)
        for (int j = 0; j < len; ++j) fy[j] = 0.0f;
    if (gather == GATHER_LABEL)
        for (int j = 0; j < len; ++j) py[j] = rest[j] = 0.0f;
    for (int64_t c = 0; c < classes; ++c) {
        const float *pc = pb + c * n;
        const float ki = kb[c * 4], kp = kb[c * 4 + 1], kp2 = 2.0f * kb[c * 4 + 2];
        const float fc = gather != GATHER_NONE ? f[c] : 0.0f;
        for (int j = 0; j < len; ++j) {
            const float g = lab[j] == (int32_t)c ? 1.0f : 0.0f, pv = pc[j];
            const float dc = v[j] * (ki * g + kp + kp2 * pv);
            d[c][j] = dc;
            dot[j] += pv * dc;
            if (gather != GATHER_NONE) fy[j] += g * fc;
            if (gather == GATHER_LABEL) {
                py[j] += g * pv;
                rest[j] += (1.0f - g) * pv;
            }
        }
    }
}

static void tile_overlap_slopes_for(const float *pb, int64_t n, int len, int64_t classes, const float *kb,
                                    const int32_t *lab, const float *v, const float *f, float (*d)[TILE], float *dot,
                                    float *fy, float *py, float *rest, int gather) {
    switch (gather) {
    case GATHER_NONE: tile_overlap_slopes(pb, n, len, classes, kb, lab, v, f, d, dot, fy, py, rest, GATHER_NONE); break;
    case GATHER_FACTOR:
        tile_overlap_slopes(pb, n, len, classes, kb, lab, v, f, d, dot, fy, py, rest, GATHER_FACTOR);
        break;
    default: tile_overlap_slopes(pb, n, len, classes, kb, lab, v, f, d, dot, fy, py, rest, GATHER_LABEL);
    }
}

/* gy[j] = scale_j·G_y of a tile, the term without smoothing (∂ℓ/∂x_c = G_y·([c = y] − p_c)), from what
 * tile_overlap_slopes gathered (GATHER_NONE: f_0, the factor of every class). */
SCALAR void tile_label_slope_of(int len, const float *restrict scale, const float *restrict fy,
                                const float *restrict py, const float *restrict rest, float f0, float gamma,
                                float *restrict gy, int gather, int focus) {
    _Pragma("omp simd")
    for (int j = 0; j < len; ++j) {
        const float factor = gather == GATHER_NONE ? f0 : fy[j];
        const float slope =
            focus == FOCUS_NONE ? -1.0f : focal_slope(py[j], log_probability(py[j], rest[j]), gamma, focus);
        gy[j] = factor * (scale[j] * slope);
    }
}

static void tile_label_slope(int len, const float *scale, const float *fy, const float *py, const float *rest,
                             const struct Pass *a, int gather, float *gy) {
    const float f0 = a->ce_factor[0];
    switch (focus_of(a->gamma)) {
    case FOCUS_NONE:
        if (gather == GATHER_NONE) tile_label_slope_of(len, scale, fy, py, rest, f0, 0.0f, gy, GATHER_NONE, FOCUS_NONE);
        else tile_label_slope_of(len, scale, fy, py, rest, f0, 0.0f, gy, GATHER_FACTOR, FOCUS_NONE);
        break;
    case FOCUS_SQUARE: tile_label_slope_of(len, scale, fy, py, rest, f0, 2.0f, gy, GATHER_LABEL, FOCUS_SQUARE); break;
    default: tile_label_slope_of(len, scale, fy, py, rest, f0, a->gamma, gy, GATHER_LABEL, FOCUS_POWER);
    }
}

/* Whether every class has the same factor of the term (no class weights, no per-class alpha). */
static int same_factors(const float *f, int64_t classes) {
    int same = 1;
    for (int64_t c = 1; c < classes; ++c) same &= f[c] == f[0];
    return same;
}

/* log Σ_c e^x_c of each position of a tile (the gradient pass, which has the probabilities only). */
static inline void tile_log_normalizer(const float *xb, int64_t classes, int64_t n, int64_t n0, int len,
                                       struct Normalizer *lse) {
    float *m = lse->max, s[TILE];
    for (int j = 0; j < len; ++j) m[j] = xb[n0 + j];
    for (int64_t c = 1; c < classes; ++c)
        for (int j = 0; j < len; ++j) {
            const float value = xb[c * n + n0 + j];
            m[j] = value > m[j] ? value : m[j];
        }
    for (int j = 0; j < len; ++j) s[j] = 0.0f;
    for (int64_t c = 0; c < classes; ++c)
        for (int j = 0; j < len; ++j) s[j] += exp_nonpositive(xb[c * n + n0 + j] - m[j]);
    for (int j = 0; j < len; ++j) lse->log_sum[j] = log_full(s[j]);
}

/* Images of C classes: multiclass. Label maps (B, N) of class indices, never expanded to one-hot;
 * a position whose label is ignore_index belongs to no class and counts nowhere. A (Σ v·|p − g|) is
 * left at 0: for one-hot g it is P + G − 2·I, which the caller derives as the portable path does,
 * and folds its coefficient into those of P and I for the gradient pass. */
#define LABEL_KERNELS(SUFFIX, T)                                                                       \
    static inline void tile_labels_##SUFFIX(const T *tb, int64_t n0, int len, int32_t has_ignore,       \
                                            T ign, int64_t classes, int32_t *lab, float *v,             \
                                            float *bad) {                                               \
        for (int j = 0; j < len; ++j) {                                                                 \
            const T raw = tb[n0 + j];                                                                   \
            const int valid = !((has_ignore != 0) & (raw == ign));                                      \
            v[j] = valid ? 1.0f : 0.0f;                                                                 \
            const int64_t label = (int64_t)raw;                                                         \
            const int in_range = (label >= 0) & (label < classes);                                      \
            lab[j] = (valid & in_range) ? (int32_t)label : -1;                                          \
            *bad += (valid & !in_range) ? 1.0f : 0.0f;                                                  \
        }                                                                                               \
    }                                                                                                   \
                                                                                                        \
    LABEL_STATS(labels_stats_##SUFFIX##_full, SUFFIX, T, 1)                                             \
    LABEL_STATS(labels_stats_##SUFFIX##_basic, SUFFIX, T, 0)                                            \
                                                                                                        \
    void labels_grad_##SUFFIX(const struct Pass *a, int64_t t0, int64_t t1) {                           \
        const T *target = (const T *)a->target;                                                         \
        float *probs = a->probs;                                                                        \
        const float *coef = a->coef;                                                                    \
        const int64_t classes = a->classes, n = a->n, chunk = a->chunk;                                 \
        const int32_t activation = a->activation, has_ignore = a->has_ignore;                           \
        const int64_t chunks = (n + chunk - 1) / chunk;                                                 \
        const T ign = (T)a->ignore_int;                                                                 \
        float d[MAX_CLASSES][TILE], e[MAX_CLASSES][TILE], v[TILE], dot[TILE], scale[TILE];                 \
        struct Normalizer lse;                                                                             \
        float gy[TILE], fy[TILE], py[TILE], rest[TILE];                                                  \
        float bad = 0.0f; /* counted by the stats pass */                                               \
        int32_t lab[TILE];                                                                              \
        const int32_t ce = a->ce_factor != NULL;                                                        \
        /* the term of the label's class alone (no smoothing; from logits): gy·([c = y] − p_c) */       \
        const int32_t label_term = ce && a->smoothing == 0.0f;                                          \
        const int gather = !label_term                           ? GATHER_NONE                          \
                           : focus_of(a->gamma) != FOCUS_NONE    ? GATHER_LABEL                         \
                           : same_factors(a->ce_factor, classes) ? GATHER_NONE                          \
                                                                 : GATHER_FACTOR;                       \
        for (int64_t task = t0; task < t1; ++task) {                                                    \
            const int64_t b = task / chunks, begin = (task % chunks) * chunk;                           \
            const int64_t end = begin + chunk < n ? begin + chunk : n;                                  \
            const T *tb = target + b * n;                                                               \
            const float *wb = a->weight ? a->weight + b * n : NULL;                                     \
            const float *kb = coef + b * classes * 4;                                                   \
            const float *xb = a->x + b * classes * n;                                                   \
            float *pb = probs + b * classes * n;                                                        \
            for (int64_t n0 = begin; n0 < end; n0 += TILE) {                                            \
                const int len = (int)(end - n0 < TILE ? end - n0 : TILE);                               \
                tile_labels_##SUFFIX(tb, n0, len, has_ignore, ign, classes, lab, v, &bad);              \
                tile_weights(wb, n0, len, v);                                                           \
                tile_overlap_slopes_for(pb + n0, n, len, classes, kb, lab, v, a->ce_factor, d, dot, fy, \
                                        py, rest, gather);                                              \
                if (ce) { /* the focal / cross-entropy term's gradient, from the probabilities still here */\
                    for (int j = 0; j < len; ++j) scale[j] = a->ce_scale[b] * v[j];                     \
                    if (label_term)                                                                     \
                        tile_label_slope(len, scale, fy, py, rest, a, gather, gy);                      \
                    else {                                                                              \
                        if (a->gamma != 0.0f) tile_log_normalizer(xb, classes, n, n0, len, &lse);       \
                        tile_focal_gradient(xb, n, n0, len, classes, pb + n0, &lse, lab, scale, a, e);  \
                    }                                                                                   \
                }                                                                                       \
                for (int64_t c = 0; c < classes; ++c) {                                                 \
                    float *pc = pb + c * n + n0;                                                        \
                    if (label_term)                                                                     \
                        for (int j = 0; j < len; ++j) {                                                 \
                            const float pv = pc[j], hit = lab[j] == (int32_t)c ? 1.0f : 0.0f;           \
                            pc[j] = pv * (d[c][j] - dot[j]) + gy[j] * (hit - pv);                       \
                        }                                                                               \
                    else if (activation)                                                                \
                        for (int j = 0; j < len; ++j) pc[j] = pc[j] * (d[c][j] - dot[j]);               \
                    else                                                                                \
                        for (int j = 0; j < len; ++j) pc[j] = d[c][j];                                  \
                    if (ce && !label_term)                                                              \
                        for (int j = 0; j < len; ++j) pc[j] += e[c][j];                                 \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }

/* How the stats pass sums the term: SUM_APART (no term, or one with smoothing or another γ, in
 * tile_focal_sum), or without smoothing in the loop over the classes of the overlap sums, class c
 * adding f_c·Σ v·(1 − p_c)^γ·(lse − x_c) over the positions of its label, γ = 0 (SUM_CE) or 2
 * (SUM_FOCAL2): no gather of the label's class, and the logits and probabilities read once. */
enum { SUM_APART, SUM_CE, SUM_FOCAL2 };

/* The overlap sums of each class over a tile of positions of the multiclass stats pass, added to the
 * task's partials o, and the term's sum over the tile (0 with SUM_APART). FULL: v is the weight of a
 * position (ignore_index, the weight map); basic: every v is 1. */
SCALAR float tile_class_sums(float (*restrict p)[TILE], const float *restrict xb, int64_t n, int64_t n0, int len,
                             int64_t classes, const int32_t *restrict lab, const float *restrict v,
                             const struct Normalizer *restrict lse, const struct Pass *a, float *restrict o,
                             int full, int term) {
    float sce = 0.0f;
    for (int64_t c = 0; c < classes; ++c) {
        const float *xc = xb + c * n + n0;
        float si = 0, sp = 0, sg = 0, sp2 = 0, st = 0;
        _Pragma("omp simd reduction(+ : si, sp, sg, sp2, st)")
        for (int j = 0; j < len; ++j) {
            const float pc = p[c][j];
            const float vj = full ? v[j] : 1.0f;
            const float g = lab[j] == (int32_t)c ? vj : 0.0f;
            si += g * pc;
            sp += vj * pc;
            sg += g;
            if (full) sp2 += vj * pc * pc;
            if (term != SUM_APART) {
                const float miss = 1.0f - pc;
                st += g * (term == SUM_FOCAL2 ? miss * miss : 1.0f) * (-log_softmax_of(xc[j], lse, j));
            }
        }
        float *oc = o + c * NUM_PARTIALS;
        oc[STAT_INTERSECTION] += si;
        oc[STAT_PRED_SUM] += sp;
        oc[STAT_TARGET_SUM] += sg;
        oc[STAT_PRED_SQUARES] += sp2;
        oc[STAT_TARGET_SQUARES] += sg; /* g is 0 or 1: Σ v·g² = Σ v·g */
        if (term != SUM_APART) sce += a->ce_factor[c] * st;
    }
    return sce;
}

/* FULL: v is the weight of a position (ignore_index, the weight map); basic: every v is 1. */
#define LABEL_STATS(NAME, SUFFIX, T, FULL)                                                             \
    void NAME(const struct Pass *a, int64_t t0, int64_t t1) {                                           \
        const float *x = a->x;                                                                          \
        const T *target = (const T *)a->target;                                                         \
        float *out = a->out, *probs = a->probs;                                                         \
        const int64_t classes = a->classes, n = a->n, chunk = a->chunk;                                 \
        const int32_t activation = a->activation, has_ignore = a->has_ignore;                           \
        const int64_t chunks = (n + chunk - 1) / chunk;                                                 \
        const T ign = (T)a->ignore_int;                                                                 \
        float p[MAX_CLASSES][TILE], v[TILE];                                                            \
        struct Normalizer lse;                                                                          \
        int32_t lab[TILE];                                                                              \
        const int32_t ce = a->ce_factor != NULL;                                                        \
        const int term = !ce || a->smoothing != 0.0f           ? SUM_APART                              \
                         : focus_of(a->gamma) == FOCUS_NONE   ? SUM_CE                                 \
                         : focus_of(a->gamma) == FOCUS_SQUARE ? SUM_FOCAL2                             \
                                                              : SUM_APART;                             \
        for (int64_t task = t0; task < t1; ++task) {                                                    \
            const int64_t b = task / chunks, begin = (task % chunks) * chunk;                           \
            const int64_t end = begin + chunk < n ? begin + chunk : n;                                  \
            const float *xb = x + b * classes * n;                                                      \
            const T *tb = target + b * n;                                                               \
            const float *wb = FULL && a->weight ? a->weight + b * n : NULL;                             \
            float *o = out + task * classes * NUM_PARTIALS;                                             \
            memset(o, 0, sizeof(float) * classes * NUM_PARTIALS);                                       \
            float count = 0.0f, bad = 0.0f, nonfinite = 0.0f, sce = 0.0f;                               \
            for (int64_t n0 = begin; n0 < end; n0 += TILE) {                                            \
                const int len = (int)(end - n0 < TILE ? end - n0 : TILE);                               \
                tile_probabilities(xb, classes, n, n0, len, activation, p, probs + b * classes * n,     \
                                   &nonfinite, &bad, ce ? &lse : NULL);                                 \
                tile_labels_##SUFFIX(tb, n0, len, has_ignore, ign, classes, lab, v, &bad);              \
                tile_weights(wb, n0, len, v);                                                           \
                for (int j = 0; j < len; ++j) count += v[j];                                            \
                if (term == SUM_APART && ce)                                                            \
                    sce += tile_focal_sum(xb, n, n0, len, classes, &p[0][0], TILE, &lse, lab, v, a);    \
                switch (term) { /* each a loop of its own */                                            \
                case SUM_APART:                                                                         \
                    tile_class_sums(p, xb, n, n0, len, classes, lab, v, &lse, a, o, FULL, SUM_APART);   \
                    break;                                                                              \
                case SUM_CE:                                                                            \
                    sce += tile_class_sums(p, xb, n, n0, len, classes, lab, v, &lse, a, o, FULL, SUM_CE); \
                    break;                                                                              \
                default:                                                                                \
                    sce += tile_class_sums(p, xb, n, n0, len, classes, lab, v, &lse, a, o, FULL, SUM_FOCAL2); \
                }                                                                                       \
            }                                                                                           \
            for (int64_t c = 0; c < classes; ++c) {                                                     \
                o[c * NUM_PARTIALS + STAT_VALID_COUNT] = count;                                         \
                o[c * NUM_PARTIALS + PARTIAL_OUT_OF_RANGE] = bad;                                       \
                o[c * NUM_PARTIALS + PARTIAL_NON_FINITE] = nonfinite;                                   \
            }                                                                                           \
            o[PARTIAL_CE] = sce; /* the term of the image's positions, in class 0 */                    \
        }                                                                                               \
    }

LABEL_KERNELS(i64, int64_t)
LABEL_KERNELS(i32, int32_t)
LABEL_KERNELS(u8, uint8_t)

/* Images of C classes with per-class targets (B, C, N) of the prediction's shape: soft or one-hot
 * multiclass targets; an element equal to ignore_index is left out. */
void classes_stats_f32(const struct Pass *a, int64_t t0, int64_t t1) {
    const float *x = a->x, *target = (const float *)a->target;
    float *out = a->out, *probs = a->probs;
    const int64_t classes = a->classes, n = a->n, chunk = a->chunk;
    const int32_t activation = a->activation, has_ignore = a->has_ignore;
    const int64_t chunks = (n + chunk - 1) / chunk;
    const float ign = (float)a->ignore, keep_ignored = has_ignore ? 0.0f : 1.0f;
    float p[MAX_CLASSES][TILE], w[TILE];
    for (int64_t task = t0; task < t1; ++task) {
        const int64_t b = task / chunks, begin = (task % chunks) * chunk;
        const int64_t end = begin + chunk < n ? begin + chunk : n;
        const float *xb = x + b * classes * n;
        const float *tb = target + b * classes * n;
        const float *wb = a->weight ? a->weight + b * n : NULL;
        float *o = out + task * classes * NUM_PARTIALS;
        memset(o, 0, sizeof(float) * classes * NUM_PARTIALS);
        float bad = 0.0f, nonfinite = 0.0f;
        for (int64_t n0 = begin; n0 < end; n0 += TILE) {
            const int len = (int)(end - n0 < TILE ? end - n0 : TILE);
            tile_probabilities(xb, classes, n, n0, len, activation, p, probs + b * classes * n, &nonfinite, &bad, NULL);
            for (int j = 0; j < len; ++j) w[j] = 1.0f;
            tile_weights(wb, n0, len, w);
            for (int64_t c = 0; c < classes; ++c) {
                const float *tc = tb + c * n + n0;
                float si = 0, sp = 0, sg = 0, sp2 = 0, sg2 = 0, sa = 0, sn = 0, out_of_range = 0, nf = 0;
                _Pragma("omp simd reduction(+ : si, sp, sg, sp2, sg2, sa, sn, out_of_range, nf)")
                for (int j = 0; j < len; ++j) {
                    const float pc = p[c][j];
                    const float valid = tc[j] == ign ? keep_ignored : 1.0f;
                    const float v = valid * w[j];
                    const float g = valid * tc[j];
                    si += v * pc * g;
                    sp += v * pc;
                    sg += v * g;
                    sp2 += v * pc * pc;
                    sg2 += v * g * g;
                    sa += v * fabsf(pc - g);
                    sn += v;
                    out_of_range += valid * outside_unit(tc[j]);
                    nf += not_finite(tc[j]);
                }
                float *oc = o + c * NUM_PARTIALS;
                oc[STAT_INTERSECTION] += si;
                oc[STAT_PRED_SUM] += sp;
                oc[STAT_TARGET_SUM] += sg;
                oc[STAT_PRED_SQUARES] += sp2;
                oc[STAT_TARGET_SQUARES] += sg2;
                oc[STAT_ABS_DIFF] += sa;
                oc[STAT_VALID_COUNT] += sn;
                bad += out_of_range;
                nonfinite += nf;
            }
        }
        for (int64_t c = 0; c < classes; ++c) {
            o[c * NUM_PARTIALS + PARTIAL_OUT_OF_RANGE] = bad;
            o[c * NUM_PARTIALS + PARTIAL_NON_FINITE] = nonfinite;
        }
    }
}

void classes_grad_f32(const struct Pass *a, int64_t t0, int64_t t1) {
    const float *target = (const float *)a->target, *coef = a->coef;
    float *probs = a->probs;
    const int64_t classes = a->classes, n = a->n, chunk = a->chunk;
    const int32_t activation = a->activation, has_ignore = a->has_ignore;
    const int64_t chunks = (n + chunk - 1) / chunk;
    const float ign = (float)a->ignore, keep_ignored = has_ignore ? 0.0f : 1.0f;
    float d[MAX_CLASSES][TILE], dot[TILE], w[TILE];
    for (int64_t task = t0; task < t1; ++task) {
        const int64_t b = task / chunks, begin = (task % chunks) * chunk;
        const int64_t end = begin + chunk < n ? begin + chunk : n;
        const float *tb = target + b * classes * n;
        const float *wb = a->weight ? a->weight + b * n : NULL;
        const float *kb = coef + b * classes * 4;
        float *pb = probs + b * classes * n;
        for (int64_t n0 = begin; n0 < end; n0 += TILE) {
            const int len = (int)(end - n0 < TILE ? end - n0 : TILE);
            for (int j = 0; j < len; ++j) {
                dot[j] = 0.0f;
                w[j] = 1.0f;
            }
            tile_weights(wb, n0, len, w);
            for (int64_t c = 0; c < classes; ++c) {
                const float *tc = tb + c * n + n0, *pc = pb + c * n + n0;
                const float ki = kb[c * 4], kp = kb[c * 4 + 1], kp2 = 2.0f * kb[c * 4 + 2], ka = kb[c * 4 + 3];
                for (int j = 0; j < len; ++j) {
                    const float valid = tc[j] == ign ? keep_ignored : 1.0f;
                    const float g = valid * tc[j];
                    const float dc = valid * w[j] * (ki * g + kp + kp2 * pc[j] + times_sign(ka, pc[j] - g));
                    d[c][j] = dc;
                    dot[j] += pc[j] * dc;
                }
            }
            for (int64_t c = 0; c < classes; ++c) {
                float *pc = pb + c * n + n0;
                if (activation)
                    for (int j = 0; j < len; ++j) pc[j] = pc[j] * (d[c][j] - dot[j]);
                else
                    for (int j = 0; j < len; ++j) pc[j] = d[c][j];
            }
        }
    }
}
