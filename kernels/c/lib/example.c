/* example.c: run a graphc model library (graphc_model.h + libgraphc_model.so) without Python.
 *
 *   ./example [-w WEIGHTS] [-t THREADS] [-n STEPS] [-i INPUTS.bin] [-o OUTPUTS.bin] [-r]
 *
 * Creates the model from its weights pack (default weights.bin), then for each of STEPS runs (default 2,
 * so that state such as a KV cache carries from one run to the next): sets every input, runs, and
 * prints every output: its first values (%.9g, exact for f32) and checksums (the sum of the values and
 * an FNV-1a hash of the raw bytes). -r resets the state before every step after the first.
 *
 * Inputs, in table order: from -i FILE (per step, each input's nbytes of raw data in turn), else
 * deterministic values: for input j (counting inputs only), element k (dense order) of step s,
 *   x = mix((k * 2654435761) ^ ((s + 1) * 40503) ^ (((j + 1) * 97) << 16))   (32-bit unsigned arithmetic;
 *       mix(x): x ^= x >> 13; x *= 0x5bd1e995; x ^= x >> 15)
 *   f32, f64:  ((x % 2001) - 1000) / 1000 (computed in float)
 *   f16, bf16: ((x % 17) - 8) / 8 (exact in both)
 *   integers:  s * nelements + k (so positions and token ids advance from step to step)
 *   quantized: zero bytes.
 * -o FILE writes every output's raw bytes, in table order, for each step.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphc_model.h"

static uint32_t mix32(uint32_t x) {
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    return x;
}

/* an f32 that f16 holds exactly (a normal number or zero) -> its f16 bits */
static uint16_t f16_bits_exact(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    if ((u & 0x7fffffffu) == 0) return sign;
    uint32_t e = ((u >> 23) & 0xffu) - 127u + 15u;
    return (uint16_t)(sign | (e << 10) | ((u >> 13) & 0x3ffu));
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (e == 0x1fu) bits = sign | 0x7f800000u | (man << 13);
    else if (e) bits = sign | ((e + 112u) << 23) | (man << 13);
    else if (!man) bits = sign;
    else {
        int k = -1;
        do { man <<= 1; k++; } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - k) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* value of element k of a tensor's dense data, when the type is one we print (else 0 with *ok = 0) */
static double value_at(const gcm_tensor_info *t, const unsigned char *p, int64_t k, int *ok) {
    *ok = 1;
    switch (t->type) {
    case 0: { float v; memcpy(&v, p + 4 * k, 4); return v; }
    case 1: { uint16_t h; memcpy(&h, p + 2 * k, 2); return f16_to_f32(h); }
    case 30: { uint16_t h; memcpy(&h, p + 2 * k, 2); uint32_t b = (uint32_t)h << 16; float v; memcpy(&v, &b, 4); return v; }
    case 24: return (int8_t)p[k];
    case 25: { int16_t v; memcpy(&v, p + 2 * k, 2); return v; }
    case 26: { int32_t v; memcpy(&v, p + 4 * k, 4); return v; }
    case 27: { int64_t v; memcpy(&v, p + 8 * k, 8); return (double)v; }
    case 28: { double v; memcpy(&v, p + 8 * k, 8); return v; }
    default: *ok = 0; return 0.0;
    }
}

static void fill(const gcm_tensor_info *t, unsigned char *p, int j, int s) {
    memset(p, 0, t->nbytes);
    for (int64_t k = 0; k < t->nelements && t->blck == 1; k++) {
        uint32_t x = mix32(((uint32_t)k * 2654435761u) ^ ((uint32_t)(s + 1) * 40503u) ^ (((uint32_t)(j + 1) * 97u) << 16));
        float f = (float)((int32_t)(x % 2001u) - 1000) / 1000.0f, small = (float)((int32_t)(x % 17u) - 8) / 8.0f;
        int64_t n = (int64_t)s * t->nelements + k;
        switch (t->type) {
        case 0: memcpy(p + 4 * k, &f, 4); break;
        case 28: { double d = f; memcpy(p + 8 * k, &d, 8); break; }
        case 1: { uint16_t h = f16_bits_exact(small); memcpy(p + 2 * k, &h, 2); break; }
        case 30: { uint32_t u; memcpy(&u, &small, 4); uint16_t h = (uint16_t)(u >> 16); memcpy(p + 2 * k, &h, 2); break; }
        case 24: p[k] = (unsigned char)(int8_t)n; break;
        case 25: { int16_t v = (int16_t)n; memcpy(p + 2 * k, &v, 2); break; }
        case 26: { int32_t v = (int32_t)n; memcpy(p + 4 * k, &v, 4); break; }
        case 27: memcpy(p + 8 * k, &n, 8); break;
        default: break;
        }
    }
}

static void print_name(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
}

static void report(const gcm_tensor_info *t, const unsigned char *p, int step) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < t->nbytes; i++) { h ^= p[i]; h *= 1099511628211ull; }
    printf("step %d output ", step);
    print_name(t->name);
    printf(" %s [%lld, %lld, %lld, %lld]", t->type_name, (long long)t->ne[0], (long long)t->ne[1],
           (long long)t->ne[2], (long long)t->ne[3]);
    int ok = 1;
    double sum = 0.0;
    for (int64_t k = 0; k < t->nelements && ok; k++) sum += value_at(t, p, k, &ok);
    if (ok) {
        printf(" first:");
        for (int64_t k = 0; k < t->nelements && k < 8; k++) printf(" %.9g", value_at(t, p, k, &ok));
        printf(" sum: %.17g", sum);
    }
    printf(" fnv: %016llx\n", (unsigned long long)h);
}

int main(int argc, char **argv) {
    const char *weights = "weights.bin", *in_path = NULL, *out_path = NULL;
    int threads = 0, steps = 2, reset = 0;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "-r")) { reset = 1; continue; }
        if (a + 1 >= argc || arg[0] != '-' || strlen(arg) != 2 || !strchr("wtnio", arg[1])) {
            fprintf(stderr, "usage: %s [-w WEIGHTS] [-t THREADS] [-n STEPS] [-i INPUTS.bin] [-o OUTPUTS.bin] [-r]\n",
                    argv[0]);
            return 2;
        }
        const char *v = argv[++a];
        switch (arg[1]) {
        case 'w': weights = v; break;
        case 't': threads = atoi(v); break;
        case 'n': steps = atoi(v); break;
        case 'i': in_path = v; break;
        default: out_path = v; break;
        }
    }
    char err[512];
    gcm_model *m = gcm_create(weights, threads, err, sizeof err);
    if (!m) {
        fprintf(stderr, "example: %s\n", err);
        return 1;
    }
    printf("model %s (id %s): %d tensors\n", gcm_graph_name(), gcm_model_id(), gcm_n_tensors(m));
    FILE *in = in_path ? fopen(in_path, "rb") : NULL, *out = out_path ? fopen(out_path, "wb") : NULL;
    if ((in_path && !in) || (out_path && !out)) {
        fprintf(stderr, "example: cannot open %s\n", in_path && !in ? in_path : out_path);
        gcm_free(m);
        return 1;
    }
    int rc = 0;
    for (int s = 0; s < steps && rc == 0; s++) {
        if (reset && s > 0) gcm_reset_state(m);
        for (int i = 0, j = 0; i < gcm_n_tensors(m) && rc == 0; i++) {
            gcm_tensor_info t;
            gcm_tensor(m, i, &t);
            if (!(t.roles & GCM_INPUT)) continue;
            unsigned char *buf = malloc(t.nbytes ? t.nbytes : 1);
            if (!buf) { rc = 1; break; }
            if (in) {
                if (fread(buf, 1, t.nbytes, in) != t.nbytes) {
                    fprintf(stderr, "example: %s ends before step %d's input %d\n", in_path, s, j);
                    rc = 1;
                }
            } else {
                fill(&t, buf, j, s);
            }
            if (rc == 0 && gcm_set(m, i, buf, t.nbytes) != GCM_OK) {
                fprintf(stderr, "example: %s\n", gcm_error(m));
                rc = 1;
            }
            free(buf);
            j++;
        }
        if (rc == 0 && gcm_run(m) != GCM_OK) {
            fprintf(stderr, "example: %s\n", gcm_error(m));
            rc = 1;
        }
        for (int i = 0; i < gcm_n_tensors(m) && rc == 0; i++) {
            gcm_tensor_info t;
            gcm_tensor(m, i, &t);
            if (!(t.roles & GCM_OUTPUT)) continue;
            unsigned char *buf = malloc(t.nbytes ? t.nbytes : 1);
            if (!buf || gcm_get(m, i, buf, t.nbytes) != GCM_OK) {
                fprintf(stderr, "example: %s\n", buf ? gcm_error(m) : "out of memory");
                free(buf);
                rc = 1;
                break;
            }
            report(&t, buf, s);
            if (out && fwrite(buf, 1, t.nbytes, out) != t.nbytes) rc = 1;
            free(buf);
        }
    }
    if (in) fclose(in);
    if (out && fclose(out) != 0) rc = 1;
    gcm_free(m);
    if (rc == 0) printf("ok\n");
    return rc;
}
