/* Helpers of the fused elementwise loops the C target prints: typed loads and stores (f16/bf16 convert
 * through graphc.h) and the f16 round trip. The formulas themselves are not here: every elementwise op's
 * formula lives once in graphc/codegen/formulas.py and is printed inline into the generated loops.
 */
#ifndef GC_ELEMENTWISE_H
#define GC_ELEMENTWISE_H

#include <math.h>
#include <stdint.h>
#include "graphc.h"

/* ggml's GGML_FP32_TO_FP16 round trip (the f16_round function of graphc.codegen.expr) */
static inline float gc_f16_round(float x) { return gc_f16_to_f32(gc_f32_to_f16(x)); }

/* --- loads and stores by type ------------------------------------------------------------------ */
static inline float gc_ld_f32(const char *p) { float v; memcpy(&v, p, 4); return v; }
static inline float gc_ld_f16(const char *p) { uint16_t h; memcpy(&h, p, 2); return gc_f16_to_f32(h); }
static inline float gc_ld_bf16(const char *p) { uint16_t h; memcpy(&h, p, 2); return gc_bf16_to_f32(h); }
static inline void gc_st_f32(char *p, float v) { memcpy(p, &v, 4); }
static inline void gc_st_f16(char *p, float v) { uint16_t h = gc_f32_to_f16(v); memcpy(p, &h, 2); }
static inline void gc_st_bf16(char *p, float v) { uint16_t h = gc_f32_to_bf16(v); memcpy(p, &h, 2); }

#endif
