/* The general form of the overlap losses on the per-class sums, with its derivative, in float64:
 * the host step of the fused CPU path between its two passes (see cpu.py, overlap_formula).
 *
 * The definition is losses/_overlap.py (overlap_loss); this is the same computation, step by step
 * and in the same order, on (S, C, NUM_STATS) sums, where NumPy spends ~100 µs on dispatching some
 * sixty operations on arrays of a few elements. The linear parts (the numerator k·TP and the
 * denominator k·TP + α·FP + β·FN as coefficients of the sums) come from Form.coefficients;
 * tests/test_overlap_formula.py checks this file against overlap_loss over every member and option.
 *
 * term_rows is the same host step for the cross-entropy / focal term beside the overlap loss.
 *
 * NaN must propagate here: no -ffinite-math-only, and comparisons are written so that a NaN makes
 * them False, as NumPy's. -ffp-contract=off (cpu.py) keeps NumPy's rounding: no fused multiply-add.
 */
#include <math.h>
#include <stdint.h>

#if !defined(NUM_STATS) || !defined(STAT_TARGET_SUM) || !defined(STAT_PRED_SUM) || !defined(STAT_VALID_COUNT)
#error "the stats layout comes from the build (cpu.py): -DSTAT_...=, -DNUM_STATS="
#endif
#if !defined(NUM_PARTIALS) || !defined(PARTIAL_NON_FINITE) || !defined(PARTIAL_CE)
#error "the partial sums' layout comes from the build (cpu.py): -DNUM_PARTIALS=, -DPARTIAL_..."
#endif
#if !defined(LOG_CLAMP) || !defined(DENOMINATOR_MIN)
#error "the clamps come from the build (cpu.py): -DLOG_CLAMP=, -DDENOMINATOR_MIN="
#endif

enum { TRANSFORM_LINEAR, TRANSFORM_LOG, TRANSFORM_POWER };
enum { POOLING_NONE, POOLING_SUM, POOLING_GENERALIZED };
enum { EMPTY_SMOOTH, EMPTY_EXCLUDE, EMPTY_PENALIZE };

struct Formula {
    const double *stats;       /* (S, C, NUM_STATS) */
    const double *weights;     /* (C,): one weight per class, 0 for a class left out */
    const double *numerator;   /* (NUM_STATS,): k·TP = stats · numerator */
    const double *denominator; /* (NUM_STATS,): k·TP + α·FP + β·FN = stats · denominator */
    double *loss;              /* (S,) */
    double *grad;              /* (S, C, NUM_STATS): ∂loss[s]/∂stats[s] */
    int64_t rows, classes;
    int32_t transform, pooling, empty_target;
    double gamma, weight_power, smooth_nr, smooth_dr;
};

/* What one class (or pooled row) contributes: its loss `per` and weight, and the factors of the
 * derivative that multiply ∂loss/∂per. */
struct Terms {
    double per, weight;
    double d_score, d_numerator, d_denominator; /* ∂per/∂score; ∂score/∂numerator, ∂score/∂denominator */
    double d_pred_sum, d_count;                  /* penalize: ∂per/∂Σp, ∂per/∂Σv */
};

static double nan_max(double x, double low) { return x < low ? low : x; } /* np.maximum: keeps NaN */

/* stats · coefficients, term by term in index order as _linear adds them (0 · the first sum when
 * every coefficient is 0). */
static double linear(const double *sums, const double *coefficients) {
    double total = 0.0;
    int any = 0;
    for (int i = 0; i < NUM_STATS; ++i) {
        const double c = coefficients[i];
        if (c == 0.0) continue;
        const double term = c == 1.0 ? sums[i] : c * sums[i];
        total = any ? total + term : term;
        any = 1;
    }
    return any ? total : 0.0 * sums[0];
}

static struct Terms class_terms(const struct Formula *f, const double *sums, double scale, double weight) {
    struct Terms t = {0};
    const double numerator = linear(sums, f->numerator) + scale * f->smooth_nr;
    const double denominator = linear(sums, f->denominator) + scale * f->smooth_dr;
    const int zero = denominator == 0;
    const double safe = nan_max(denominator, DENOMINATOR_MIN);
    const double score = zero ? 1.0 : numerator / safe;
    if (f->transform == TRANSFORM_LOG) {
        const int below = score < LOG_CLAMP;
        t.per = -log(below ? LOG_CLAMP : score);
        t.d_score = below ? 0.0 : -1.0 / (below ? 1.0 : score);
    } else if (f->transform == TRANSFORM_POWER) {
        const double miss = nan_max(1.0 - score, 0.0);
        const int none_missed = miss <= 0;
        const double safe_miss = none_missed ? 1.0 : miss;
        t.per = none_missed ? 0.0 : pow(safe_miss, f->gamma);
        t.d_score = none_missed ? 0.0 : -f->gamma * pow(safe_miss, f->gamma - 1.0);
    } else {
        t.per = 1.0 - score;
        t.d_score = -1.0;
    }
    t.weight = weight;
    const int empty = sums[STAT_TARGET_SUM] <= 0;
    if (f->empty_target == EMPTY_EXCLUDE && empty) t.weight = 0.0;
    if (f->empty_target == EMPTY_PENALIZE) {
        const double count = sums[STAT_VALID_COUNT];
        const int has_valid = count > 0;
        const double safe_count = has_valid ? count : 1.0;
        const double false_positive = has_valid ? sums[STAT_PRED_SUM] / safe_count : 0.0;
        if (empty) {
            t.per = false_positive;
            t.d_score = 0.0;
        }
        const int penalized = empty && has_valid;
        t.d_pred_sum = penalized ? 1.0 / safe_count : 0.0;
        t.d_count = penalized ? -false_positive / safe_count : 0.0;
    }
    t.d_numerator = zero ? 0.0 : 1.0 / safe;
    t.d_denominator = (zero || denominator < DENOMINATOR_MIN) ? 0.0 : -score / safe;
    return t;
}

/* ∂loss/∂sums of one class (or pooled row), given ∂loss/∂per. */
static void class_grad(const struct Formula *f, const struct Terms *t, double d_per, double *out) {
    const double d_numerator = d_per * t->d_score * t->d_numerator;
    const double d_denominator = d_per * t->d_score * t->d_denominator;
    for (int i = 0; i < NUM_STATS; ++i) out[i] = f->numerator[i] * d_numerator + f->denominator[i] * d_denominator;
    if (f->empty_target == EMPTY_PENALIZE) {
        out[STAT_PRED_SUM] = out[STAT_PRED_SUM] + d_per * t->d_pred_sum;
        out[STAT_VALID_COUNT] = out[STAT_VALID_COUNT] + d_per * t->d_count;
    }
}

/* The pool weights w_c of a pooled row (written to pool[c * NUM_STATS]) and its smoothing scale, as
 * _generalized_weights gives them ("sum": the class weights themselves, scale 1). */
static double pool_weights(const struct Formula *f, const double *row, double *pool) {
    const int64_t C = f->classes;
    if (f->pooling == POOLING_SUM || f->weight_power == 0) {
        for (int64_t c = 0; c < C; ++c) pool[c * NUM_STATS] = f->weights[c] > 0 ? f->weights[c] : 0.0;
        return 1.0;
    }
    double smallest = INFINITY;
    for (int64_t c = 0; c < C; ++c) {
        const double g = row[c * NUM_STATS + STAT_TARGET_SUM];
        if (g > 0 && f->weights[c] > 0 && g < smallest) smallest = g;
    }
    const int any_present = smallest < INFINITY;
    if (!any_present) smallest = 1.0;
    for (int64_t c = 0; c < C; ++c) {
        const double g = row[c * NUM_STATS + STAT_TARGET_SUM];
        const int selected = f->weights[c] > 0;
        const int present = g > 0 && selected;
        const double ratio = present ? pow(smallest / g, f->weight_power) : (any_present ? 1.0 : 0.0);
        pool[c * NUM_STATS] = selected ? ratio * f->weights[c] : 0.0;
    }
    /* Divided by max(G_min^q, 1), as _generalized_weights: a smoothing scale of at most 1. */
    const double scale = pow(smallest, f->weight_power), divisor = scale > 1.0 ? scale : 1.0;
    for (int64_t c = 0; c < C; ++c) pool[c * NUM_STATS] = pool[c * NUM_STATS] / divisor;
    return scale / divisor;
}

static void formula_row(const struct Formula *f, int64_t s) {
    const int64_t C = f->classes;
    const double *row = f->stats + s * C * NUM_STATS;
    double *grad = f->grad + s * C * NUM_STATS;
    double loss;
    if (f->pooling == POOLING_NONE) {
        double total = 0.0, weighted = 0.0;
        for (int64_t c = 0; c < C; ++c) {
            const struct Terms t = class_terms(f, row + c * NUM_STATS, 1.0, f->weights[c]);
            total = c ? total + t.weight : t.weight;
            weighted = c ? weighted + t.weight * t.per : t.weight * t.per;
        }
        const int counted = total > 0;
        const double safe_total = counted ? total : 1.0;
        loss = counted ? weighted / safe_total : 0.0;
        for (int64_t c = 0; c < C; ++c) {
            const struct Terms t = class_terms(f, row + c * NUM_STATS, 1.0, f->weights[c]);
            class_grad(f, &t, counted ? t.weight / safe_total : 0.0, grad + c * NUM_STATS);
        }
    } else {
        /* One pooled class: the sums weighted by w_c and added over the classes. The pool weights
         * wait in the gradient's first column until the pooled derivative is spread over them. */
        const double scale = pool_weights(f, row, grad);
        double pooled[NUM_STATS];
        for (int i = 0; i < NUM_STATS; ++i) {
            double sum = 0.0;
            for (int64_t c = 0; c < C; ++c) {
                const double term = row[c * NUM_STATS + i] * grad[c * NUM_STATS];
                sum = c ? sum + term : term;
            }
            pooled[i] = sum;
        }
        const struct Terms t = class_terms(f, pooled, scale, 1.0);
        const int counted = t.weight > 0;
        loss = counted ? t.weight * t.per / (counted ? t.weight : 1.0) : 0.0;
        double d_pooled[NUM_STATS];
        class_grad(f, &t, counted ? t.weight / t.weight : 0.0, d_pooled);
        for (int64_t c = 0; c < C; ++c) {
            const double w = grad[c * NUM_STATS];
            for (int i = 0; i < NUM_STATS; ++i) grad[c * NUM_STATS + i] = d_pooled[i] * w;
        }
    }
    f->loss[s] = loss;
    if (loss != loss) /* a row whose loss is NaN has no finite derivative */
        for (int64_t j = 0; j < C * NUM_STATS; ++j) grad[j] = NAN;
}

void overlap_formula(const struct Formula *f) {
    for (int64_t s = 0; s < f->rows; ++s) formula_row(f, s);
}

/* The rows of a cross-entropy / focal term beside an overlap loss (or alone), from the float64 sums of
 * the stats pass (B, C, NUM_PARTIALS): the host step of FusedCpuTerm (_fused_cpu.py). Per row (image,
 * or the batch) λ_term·T + λ_overlap·L_overlap, with T = Σ v·ℓ / Σ v as losses/torch/_term_core.py
 * (composed_term_loss) defines it and L_overlap the loss of overlap_formula. */
enum { NORMALIZATION_ROW, NORMALIZATION_MEAN, NORMALIZATION_SUM };

struct TermRows {
    const double *partials; /* (B, C, NUM_PARTIALS) */
    const double *overlap;  /* (S,): the overlap loss of each row, or NULL */
    double *rows;           /* (S,): the loss of each row */
    double *slope;          /* (S,): λ_term·∂T/∂(Σ v·ℓ) */
    double *nan_row;        /* (S,): 1 where the gradient of the row is NaN: a mean over nothing, a NaN overlap loss */
    double *non_finite;     /* (B,): 1 for an image with a NaN or ±inf */
    int64_t batch, classes;
    int32_t one_term_per_position; /* multiclass: the term's sum and Σ v in the slot of class 0 */
    int32_t per_image, normalization;
    double lambda_term, lambda_overlap;
};

/* Returns 1 if a row's gradient is NaN, plus 2 if an image holds a NaN or ±inf. */
int32_t term_rows(const struct TermRows *t) {
    const int64_t C = t->classes;
    int32_t any = 0;
    double row_sum = 0.0, row_count = 0.0;
    for (int64_t b = 0; b < t->batch; ++b) {
        const double *image = t->partials + b * C * NUM_PARTIALS;
        double bad = 0.0, sum = image[PARTIAL_CE], count = image[STAT_VALID_COUNT];
        for (int64_t c = 0; c < C; ++c) bad += image[c * NUM_PARTIALS + PARTIAL_NON_FINITE];
        if (!t->one_term_per_position)
            for (int64_t c = 1; c < C; ++c) {
                sum += image[c * NUM_PARTIALS + PARTIAL_CE];
                count += image[c * NUM_PARTIALS + STAT_VALID_COUNT];
            }
        t->non_finite[b] = bad > 0 ? 1.0 : 0.0;
        if (bad > 0) {
            sum = NAN;
            any |= 2;
        }
        row_sum = b && !t->per_image ? row_sum + sum : sum;
        row_count = b && !t->per_image ? row_count + count : count;
        if (!t->per_image && b + 1 < t->batch) continue;
        const int64_t s = t->per_image ? b : 0;
        const int has_valid = row_count > 0;
        const double safe_count = has_valid ? row_count : 1.0;
        double term, slope;
        if (t->normalization == NORMALIZATION_SUM) {
            term = row_sum;
            slope = 1.0;
        } else if (t->normalization == NORMALIZATION_MEAN) { /* a mean over nothing is NaN, and its gradient */
            term = has_valid ? row_sum / safe_count : NAN;
            slope = 1.0 / safe_count;
        } else { /* a row without a valid position adds 0 (NaN where a NaN entered it) */
            term = has_valid ? row_sum / safe_count : row_sum * 0.0;
            slope = has_valid ? 1.0 / safe_count : 0.0;
        }
        double loss = t->lambda_term * term;
        int nan_row = !has_valid && t->normalization == NORMALIZATION_MEAN;
        if (t->overlap) {
            const double overlap = t->overlap[s];
            loss = loss + t->lambda_overlap * overlap;
            nan_row |= !isfinite(overlap);
        }
        t->rows[s] = loss;
        t->slope[s] = t->lambda_term * slope;
        t->nan_row[s] = nan_row ? 1.0 : 0.0;
        any |= nan_row;
    }
    return any;
}
