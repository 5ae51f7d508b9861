/* graphc_model.h: the C API of a model compiled by graphc (graphc compile GRAPH --target c --emit-lib DIR).
 *
 * One shared library (libgraphc_model.so) holds one compiled graph: its kernels, its memory plan and a
 * table of its tensors (names, types, shapes, byte sizes, roles). Weights are not inside the library:
 * gcm_create() memory-maps a weights pack (weights.bin, written next to the library) read-only and runs
 * straight from the mapping, without copying it.
 *
 *     char err[256];
 *     gcm_model *m = gcm_create("weights.bin", 0, err, sizeof err);     (0 threads: the default)
 *     if (!m) { fprintf(stderr, "%s\n", err); return 1; }
 *     int x = gcm_find(m, "x", GCM_INPUT), y = gcm_find(m, "y", GCM_OUTPUT);
 *     if (x < 0 || y < 0) { fprintf(stderr, "%s\n", gcm_error(m)); ... }
 *     gcm_set(m, x, values, nbytes);           (or write through gcm_data(m, x))
 *     gcm_run(m);
 *     gcm_get(m, y, out, nbytes);
 *     gcm_free(m);
 *
 * Tensors are addressed by index (0 .. gcm_n_tensors() - 1); gcm_find() maps a name to its index. Names
 * are the graph's free text (UTF-8, at most 63 bytes) and are compared byte for byte. Roles:
 *   GCM_INPUT   set before each run (gcm_set / gcm_data); keeps its value until changed
 *   GCM_OUTPUT  written by every run; read with gcm_get / gcm_data
 *   GCM_STATE   persists between runs (e.g. a KV cache); starts from its initial value (zeros unless the
 *               graph gave one), gcm_reset_state() puts it back; may also be set and read
 *   GCM_WEIGHT  read-only, mapped from the weights file; gcm_get reads it, gcm_set refuses it
 * Data layout: ggml's. Shapes are ne[4] with ne[0] innermost; gcm_set/gcm_get move `nbytes` bytes in
 * dense order (ne[0] fastest, then ne[1], ...), the raw bytes of the tensor's type: f32 as float,
 * f16/bf16 as uint16_t bits, i32 as int32_t, quantized types as ggml blocks (rows of ne[0]/blck blocks).
 * gcm_data() returns the tensor's own memory; it is dense only when info.contiguous is 1.
 *
 * Errors: functions returning int give GCM_OK (0) or a negative GCM_E_* code and leave a message in
 * gcm_error(m); gcm_create returns NULL and writes its message into err. No function aborts or prints.
 *
 * Thread safety: a gcm_model is used by one thread at a time (gcm_run runs on n_threads OpenMP threads
 * itself). Different models, from one library or several, are independent: each has its own memory
 * (arena, inputs, outputs, state) and its own read-only mapping of the weights file, so threads may
 * each create and run their own model. The functions without a model argument read constant data only.
 *
 * Weights file (weights.bin, little-endian): a 64-byte header (magic "GRAPHCW\0", u32 version, u32 count,
 * u64 file size, u64 data offset, u64 content checksum, 16-byte model id, 8 reserved bytes), a table of
 * count entries {u64 offset, u64 nbytes}, then each tensor's bytes at a 64-byte aligned offset. The
 * library knows the exact header and table it was compiled with: a truncated file, another model's file
 * or a damaged header is refused; gcm_create also checks the content checksum unless GCM_NO_VERIFY.
 * When every weight was an unchanged tensor of one GGUF file at compile time, gcm_create also takes that
 * GGUF file itself (recognised by its magic): its size and the checksum of the tensors' bytes must match
 * what the library recorded (manifest.json "gguf" says whether this library can).
 */
#ifndef GRAPHC_MODEL_H
#define GRAPHC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GCM_API __attribute__((visibility("default")))
#else
#define GCM_API
#endif

#define GCM_API_VERSION 1

/* status codes (negative) */
#define GCM_OK            0
#define GCM_E_ARG        -1     /* a bad argument: NULL pointer, index out of range, wrong byte count */
#define GCM_E_NOT_FOUND  -2     /* no tensor of that name (and role) */
#define GCM_E_ROLE       -3     /* the tensor's role does not allow this (e.g. gcm_set on a weight) */
#define GCM_E_IO         -4     /* the weights file cannot be opened, read or mapped */
#define GCM_E_FORMAT     -5     /* the weights file is not this model's pack (size, header, checksum) */
#define GCM_E_NOMEM      -6     /* out of memory */
#define GCM_E_UNSUPPORTED -7    /* the kernel library declines a node's types/shapes on this build */

/* roles (a bit set: a tensor may have several, e.g. an output that is also state) */
#define GCM_INPUT   1u
#define GCM_OUTPUT  2u
#define GCM_STATE   4u
#define GCM_WEIGHT  8u
#define GCM_ANY     0u          /* gcm_find: any role */

/* gcm_create_ex flags */
#define GCM_NO_VERIFY 1u        /* skip the content checksum (header, sizes and table are still checked) */

typedef struct gcm_model gcm_model;

typedef struct gcm_tensor_info {
    const char *name;           /* the graph's tensor name (NUL-terminated; points into the library) */
    unsigned roles;             /* GCM_INPUT | GCM_OUTPUT | GCM_STATE | GCM_WEIGHT */
    int type;                   /* ggml type id: 0 f32, 1 f16, 2 q4_0, 3 q4_1, 6 q5_0, 7 q5_1, 8 q8_0,
                                   12 q4_K, 14 q6_K, 24 i8, 25 i16, 26 i32, 27 i64, 28 f64, 30 bf16, ... */
    const char *type_name;      /* "f32", "q4_0", ... */
    int n_dims;                 /* rank with ggml's trailing 1-sized dims dropped (numpy's ndim) */
    int64_t ne[4];              /* elements per dim, ne[0] innermost */
    int64_t nb[4];              /* byte strides of the tensor's memory (see contiguous) */
    int64_t nelements;
    size_t nbytes;              /* bytes gcm_set / gcm_get move */
    int blck;                   /* elements per block (1 for plain types) */
    int type_size;              /* bytes per block (per element for plain types) */
    int contiguous;             /* 1: the nbytes at gcm_data() are the dense data */
} gcm_tensor_info;

/* API version of this library (GCM_API_VERSION it was built with). */
GCM_API int gcm_api_version(void);

/* The graph's name (constant). */
GCM_API const char *gcm_graph_name(void);

/* The model id (32 hex digits) of the weights pack this library was compiled with (constant). */
GCM_API const char *gcm_model_id(void);

/* Create a model: map the weights pack (or its GGUF source, see above) at weights_path read-only, check it
 * belongs to this library,
 * allocate the memory (one arena, inputs, outputs, state) and prepare n_threads threads (n_threads <= 0:
 * the default chosen at compile time, or OpenMP's). Returns NULL on error with a message in err
 * (err may be NULL; errlen counts the terminating NUL). */
GCM_API gcm_model *gcm_create(const char *weights_path, int n_threads, char *err, size_t errlen);

/* gcm_create with flags (GCM_NO_VERIFY). */
GCM_API gcm_model *gcm_create_ex(const char *weights_path, int n_threads, unsigned flags, char *err, size_t errlen);

/* Free a model and unmap its weights (NULL is fine). Pointers from gcm_data become invalid. */
GCM_API void gcm_free(gcm_model *m);

/* The message of the last failed call on m ("" when none). Valid until the next call on m. */
GCM_API const char *gcm_error(const gcm_model *m);

/* Number of tensors in the table (inputs, outputs, state, weights). */
GCM_API int gcm_n_tensors(const gcm_model *m);

/* Describe tensor `index` into *info. */
GCM_API int gcm_tensor(const gcm_model *m, int index, gcm_tensor_info *info);

/* The index of the tensor named `name` that has one of `roles` (GCM_ANY: any role); the first in table
 * order when several match. GCM_E_NOT_FOUND (with a message listing the candidates) when none does. */
GCM_API int gcm_find(gcm_model *m, const char *name, unsigned roles);

/* Copy nbytes (must equal info.nbytes) of dense data into an input or state tensor. */
GCM_API int gcm_set(gcm_model *m, int index, const void *src, size_t nbytes);

/* Copy a tensor's nbytes (must equal info.nbytes) of dense data out (any role). */
GCM_API int gcm_get(gcm_model *m, int index, void *dst, size_t nbytes);

/* The tensor's own memory (its first byte), writable for inputs, outputs and state; NULL for weights
 * (read-only: use gcm_get) and on error. Dense only when info.contiguous; valid until gcm_free. */
GCM_API void *gcm_data(gcm_model *m, int index);

/* Run the graph once on the current inputs and state; outputs and state are updated. */
GCM_API int gcm_run(gcm_model *m);

/* Put every state tensor back to its initial value. */
GCM_API int gcm_reset_state(gcm_model *m);

/* Recompute the weights file's content checksum now and compare (gcm_create does it unless GCM_NO_VERIFY). */
GCM_API int gcm_verify_weights(gcm_model *m);

#ifdef __cplusplus
}
#endif

#endif
