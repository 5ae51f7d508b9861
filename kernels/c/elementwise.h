/* Scalar f32 formulas of every elementwise op, for the fused loops the C target generates.
 *
 * Each is ggml CPU's f32 code (src/ggml-cpu/unary-ops.cpp, binary-ops.cpp, vec.h) in the same operation
 * order, so with -ffp-contract=off (the target's default flags) results match the reference target.
 * The generated code computes a kernel's whole expression DAG per element with these inline functions
 * and stores only the kernel outputs; loads and stores convert f16/bf16 (graphc.h helpers).
 */
#ifndef GC_ELEMENTWISE_H
#define GC_ELEMENTWISE_H

#include <math.h>
#include <stdint.h>
#include "graphc.h"

#define GC_GELU_COEF_A 0.044715f
#define GC_GELU_QUICK_COEF (-1.702f)
#define GC_SQRT_2_OVER_PI 0.79788456080286535587989211986876f
#define GC_SQRT_2_INV 0.70710678118654752440084436210484f

/* --- binary (graphc maximum/minimum propagate NaN like numpy) ------------------------------- */
static inline float gc_ew_add(float a, float b) { return a + b; }
static inline float gc_ew_sub(float a, float b) { return a - b; }
static inline float gc_ew_mul(float a, float b) { return a * b; }
static inline float gc_ew_div(float a, float b) { return a / b; }
static inline float gc_ew_maximum(float a, float b) { return (a != a || b != b) ? a + b : (a >= b ? a : b); }
static inline float gc_ew_minimum(float a, float b) { return (a != a || b != b) ? a + b : (a <= b ? a : b); }

/* --- simple unary ---------------------------------------------------------------------------- */
static inline float gc_ew_sqr(float x) { return x * x; }
static inline float gc_ew_sqrt(float x) { return sqrtf(x); }
static inline float gc_ew_log(float x) { return logf(x); }
static inline float gc_ew_sin(float x) { return (float)sin((double)x); }
static inline float gc_ew_cos(float x) { return (float)cos((double)x); }

/* --- GGML_UNARY_OP_* ------------------------------------------------------------------------- */
static inline float gc_ew_abs(float x) { return fabsf(x); }
static inline float gc_ew_sgn(float x) { return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f); }
static inline float gc_ew_neg(float x) { return -x; }
static inline float gc_ew_step(float x) { return x > 0.f ? 1.f : 0.f; }
static inline float gc_ew_tanh(float x) { return tanhf(x); }
static inline float gc_ew_elu(float x) { return x > 0.f ? x : expm1f(x); }
static inline float gc_ew_relu(float x) { return x > 0.f ? x : 0.f; }
static inline float gc_ew_sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
static inline float gc_ew_silu(float x) { return x / (1.f + expf(-x)); }
static inline float gc_ew_hardsigmoid(float x) { return fminf(1.f, fmaxf(0.f, (x + 3.f) / 6.f)); }
static inline float gc_ew_hardswish(float x) { return x * gc_ew_hardsigmoid(x); }
static inline float gc_ew_exp(float x) { return expf(x); }
static inline float gc_ew_expm1(float x) { return expf(x) - 1.f; }   /* ggml: expf(x) - 1, not expm1f */
static inline float gc_ew_softplus(float x) { return x > 20.f ? x : logf(1.f + expf(x)); }
static inline float gc_ew_one_minus(float x) { return 1.f - x; }    /* graphc (RWKV) */

static inline float gc_ew_gelu(float x) {
    float inner = (GC_SQRT_2_OVER_PI * x) * (1.f + (GC_GELU_COEF_A * x) * x);
    return (0.5f * x) * (1.f + tanhf(inner));
}
static inline float gc_ew_gelu_quick(float x) { return x * (1.f / (1.f + expf(GC_GELU_QUICK_COEF * x))); }
static inline float gc_ew_gelu_erf(float x) { return (0.5f * x) * (1.f + erff(x * GC_SQRT_2_INV)); }

/* ggml's GGML_GELU_FP16 lookup tables: the formula at x rounded to f16, the result rounded to f16 */
static inline float gc_f16_round(float x) { return gc_f16_to_f32(gc_f32_to_f16(x)); }
static inline float gc_ew_gelu_table(float x) {
    if (x <= -10.f) return 0.f;
    if (x >= 10.f) return x;
    return gc_f16_round(gc_ew_gelu(gc_f16_round(x)));
}
static inline float gc_ew_gelu_quick_table(float x) { return gc_f16_round(gc_ew_gelu_quick(gc_f16_round(x))); }

/* --- glu: activation of x times the gate g ---------------------------------------------------- */
static inline float gc_glu_reglu(float x, float g) { return x > 0.f ? x * g : 0.f; }
static inline float gc_glu_geglu(float x, float g) { return gc_ew_gelu(x) * g; }
static inline float gc_glu_geglu_table(float x, float g) { return gc_ew_gelu_table(x) * g; }
static inline float gc_glu_swiglu(float x, float g) { return gc_ew_silu(x) * g; }
static inline float gc_glu_geglu_erf(float x, float g) { return gc_ew_gelu_erf(x) * g; }
static inline float gc_glu_geglu_quick(float x, float g) { return gc_ew_gelu_quick(x) * g; }
static inline float gc_glu_geglu_quick_table(float x, float g) { return gc_ew_gelu_quick_table(x) * g; }

/* --- parameterised ----------------------------------------------------------------------------- */
static inline float gc_ew_scale(float x, float s, float b) { return b == 0.f ? x * s : x * s + b; }
static inline float gc_ew_clamp(float x, float lo, float hi) {
    float y = x < hi ? x : hi;
    return y > lo ? y : lo;
}
static inline float gc_ew_leaky_relu(float x, float ns) { return (x > 0.f ? x : 0.f) + ns * (x < 0.f ? x : 0.f); }

/* --- loads and stores by type ------------------------------------------------------------------ */
static inline float gc_ld_f32(const char *p) { float v; memcpy(&v, p, 4); return v; }
static inline float gc_ld_f16(const char *p) { uint16_t h; memcpy(&h, p, 2); return gc_f16_to_f32(h); }
static inline float gc_ld_bf16(const char *p) { uint16_t h; memcpy(&h, p, 2); return gc_bf16_to_f32(h); }
static inline void gc_st_f32(char *p, float v) { memcpy(p, &v, 4); }
static inline void gc_st_f16(char *p, float v) { uint16_t h = gc_f32_to_f16(v); memcpy(p, &h, 2); }
static inline void gc_st_bf16(char *p, float v) { uint16_t h = gc_f32_to_bf16(v); memcpy(p, &h, 2); }

#endif
