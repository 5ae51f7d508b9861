/* graphc model runtime: the graphc_model.h API over one generated program (program.c: gc_create, gc_check,
 * gc_run, gc_destroy over buffer base pointers). model_data.h, generated per model, holds the tables:
 * the buffers the program expects, the public tensors, and the weights pack it was compiled with.
 *
 * Memory: buffers are the arena, the temp buffer, then one per persistent root tensor: weights point into
 * the read-only mapping of the pack; inputs, outputs and state are zeroed 64-byte aligned allocations
 * (state and inputs with an initial value are filled from the pack). POSIX (open/mmap), little-endian.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "graphc_model.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "graphc model libraries and weights packs are little-endian"
#endif

enum { GCM_BUF_ARENA, GCM_BUF_TEMP, GCM_BUF_WEIGHT, GCM_BUF_COPY, GCM_BUF_STATE, GCM_BUF_IO };
/* ARENA/TEMP/IO: zeroed memory; WEIGHT: the mapped pack entry itself; COPY: a private copy of a pack
 * entry made at create (a constant some node writes into, an input with an initial value);
 * STATE: private, zeros then the pack entry (if any) at create and at every gcm_reset_state. */

typedef struct gcm_buf_desc {
    int kind;
    uint64_t size;
    int pack;                  /* pack entry index, -1 for none */
} gcm_buf_desc;

typedef struct gcm_tensor_desc {
    const char *name;
    unsigned roles;
    int type;
    const char *type_name;
    int n_dims;
    int64_t ne[4], nb[4];
    int64_t nelements;
    uint64_t nbytes;
    int blck, type_size, contiguous;
    int buf;
    uint64_t offset;           /* byte offset of the tensor's first byte in its buffer */
} gcm_tensor_desc;

#include "model_data.h"

/* the generated program (program.c) */
void *gc_create(char **bufs, int n_threads);
int gc_check(void *p);
void gc_run(void *p);
void gc_destroy(void *p);

#define GCM_MAGIC "GRAPHCW"    /* 8 bytes with its NUL */
#define GCM_HEADER 64

struct gcm_model {
    void *inst;                          /* gc_create's instance */
    char *bufs[GCM_N_BUFS + 1];          /* base pointer of every buffer */
    unsigned char owned[GCM_N_BUFS + 1]; /* 1: allocated here (freed by gcm_free) */
    const unsigned char *map;            /* the weights mapping (NULL when the model has no weights) */
    size_t map_size;
    int gguf;                            /* 1: map is a GGUF file (gcm_gguf offsets), 0: the pack */
    int n_threads;
    char err[512];
};

/* --- messages ---------------------------------------------------------------------------------- */

static void gcm_fmt(char *buf, size_t len, const char *fmt, ...) {
    if (!buf || len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static int gcm_fail(gcm_model *m, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    return code;
}

/* a name (free text) quoted for a message: quotes, backslashes and non-printable bytes escaped */
static void gcm_quote(char *out, size_t len, const char *s) {
    size_t o = 0;
    if (len < 3) { if (len) out[0] = 0; return; }
    out[o++] = '"';
    for (; *s && o + 6 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = (char)c; }
        else if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(out + o, len - o, "\\x%02x", c);
        else out[o++] = (char)c;          /* UTF-8 bytes pass through */
    }
    if (*s && o + 4 < len) { memcpy(out + o, "...", 3); o += 3; }
    out[o++] = '"';
    out[o] = 0;
}

static const char *gcm_role_word(unsigned roles) {
    if (roles == GCM_ANY) return "tensor";
    if (roles == GCM_INPUT) return "input";
    if (roles == GCM_OUTPUT) return "output";
    if (roles == GCM_STATE) return "state tensor";
    if (roles == GCM_WEIGHT) return "weight";
    return "tensor of those roles";
}

/* --- constant information --------------------------------------------------------------------- */

int gcm_api_version(void) { return GCM_API_VERSION; }
const char *gcm_graph_name(void) { return GCM_GRAPH_NAME; }
const char *gcm_model_id(void) { return GCM_MODEL_ID; }

int gcm_n_tensors(const gcm_model *m) { (void)m; return GCM_N_TENSORS; }

const char *gcm_error(const gcm_model *m) { return m ? m->err : "no model (NULL)"; }

static const gcm_tensor_desc *gcm_desc(gcm_model *m, int index) {
    if (index < 0 || index >= GCM_N_TENSORS) {
        gcm_fail(m, GCM_E_ARG, "tensor index %d is out of range (the model has %d tensors)", index, GCM_N_TENSORS);
        return NULL;
    }
    return &gcm_tensors[index];
}

int gcm_tensor(const gcm_model *m, int index, gcm_tensor_info *info) {
    if (!info) {
        if (m) gcm_fail((gcm_model *)m, GCM_E_ARG, "gcm_tensor: info is NULL");
        return GCM_E_ARG;
    }
    if (index < 0 || index >= GCM_N_TENSORS) {
        if (m) gcm_fail((gcm_model *)m, GCM_E_ARG, "tensor index %d is out of range (the model has %d tensors)",
                        index, GCM_N_TENSORS);
        return GCM_E_ARG;
    }
    const gcm_tensor_desc *t = &gcm_tensors[index];
    info->name = t->name;
    info->roles = t->roles;
    info->type = t->type;
    info->type_name = t->type_name;
    info->n_dims = t->n_dims;
    for (int d = 0; d < 4; d++) { info->ne[d] = t->ne[d]; info->nb[d] = t->nb[d]; }
    info->nelements = t->nelements;
    info->nbytes = (size_t)t->nbytes;
    info->blck = t->blck;
    info->type_size = t->type_size;
    info->contiguous = t->contiguous;
    return GCM_OK;
}

int gcm_find(gcm_model *m, const char *name, unsigned roles) {
    if (!m) return GCM_E_ARG;
    if (!name) return gcm_fail(m, GCM_E_ARG, "gcm_find: name is NULL");
    for (int i = 0; i < GCM_N_TENSORS; i++)
        if ((roles == GCM_ANY || (gcm_tensors[i].roles & roles)) && strcmp(gcm_tensors[i].name, name) == 0)
            return i;
    char q[160];
    gcm_quote(q, sizeof q, name);
    int o = snprintf(m->err, sizeof m->err, "no %s named %s; the %ss are:", gcm_role_word(roles), q,
                     gcm_role_word(roles));
    int any = 0;
    for (int i = 0; i < GCM_N_TENSORS && o > 0 && (size_t)o < sizeof m->err - 8; i++) {
        if (roles != GCM_ANY && !(gcm_tensors[i].roles & roles)) continue;
        gcm_quote(q, sizeof q, gcm_tensors[i].name);
        if ((size_t)o + strlen(q) + 8 >= sizeof m->err) { snprintf(m->err + o, sizeof m->err - (size_t)o, " ..."); break; }
        o += snprintf(m->err + o, sizeof m->err - (size_t)o, "%s %s", any ? "," : "", q);
        any = 1;
    }
    if (!any && o > 0 && (size_t)o < sizeof m->err - 8) snprintf(m->err + o, sizeof m->err - (size_t)o, " (none)");
    return GCM_E_NOT_FOUND;
}

/* --- data in and out --------------------------------------------------------------------------- */

static char *gcm_ptr(gcm_model *m, const gcm_tensor_desc *t) { return m->bufs[t->buf] + t->offset; }

/* dense <-> strided: whole rows when a row's blocks (or elements) are adjacent, else element by element */
static void gcm_copy(const gcm_tensor_desc *t, char *mem, char *dense, int to_dense) {
    if (t->contiguous || t->nbytes == 0) {
        if (to_dense) memcpy(dense, mem, (size_t)t->nbytes);
        else memcpy(mem, dense, (size_t)t->nbytes);
        return;
    }
    const size_t row = (size_t)(t->ne[0] / t->blck) * (size_t)t->type_size;
    for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
            for (int64_t i1 = 0; i1 < t->ne[1]; i1++) {
                char *r = mem + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
                if (t->nb[0] == t->type_size) {
                    if (to_dense) memcpy(dense, r, row); else memcpy(r, dense, row);
                    dense += row;
                    continue;
                }
                for (int64_t i0 = 0; i0 < t->ne[0]; i0++, dense += t->type_size) {
                    if (to_dense) memcpy(dense, r + i0 * t->nb[0], (size_t)t->type_size);
                    else memcpy(r + i0 * t->nb[0], dense, (size_t)t->type_size);
                }
            }
}

static int gcm_check_io(gcm_model *m, const gcm_tensor_desc *t, const void *p, size_t nbytes, const char *fn) {
    char q[160];
    gcm_quote(q, sizeof q, t->name);
    if (!p && nbytes) return gcm_fail(m, GCM_E_ARG, "%s(%s): the data pointer is NULL", fn, q);
    if (nbytes != t->nbytes)
        return gcm_fail(m, GCM_E_ARG, "%s(%s): %s is %s [%lld, %lld, %lld, %lld], %llu bytes; got %zu bytes", fn, q,
                        q, t->type_name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                        (long long)t->ne[3], (unsigned long long)t->nbytes, nbytes);
    return GCM_OK;
}

int gcm_set(gcm_model *m, int index, const void *src, size_t nbytes) {
    if (!m) return GCM_E_ARG;
    const gcm_tensor_desc *t = gcm_desc(m, index);
    if (!t) return GCM_E_ARG;
    if (!(t->roles & (GCM_INPUT | GCM_STATE))) {
        char q[160];
        gcm_quote(q, sizeof q, t->name);
        return gcm_fail(m, GCM_E_ROLE, "gcm_set(%s): only inputs and state can be set (%s is %s)", q, q,
                        (t->roles & GCM_WEIGHT) ? "a read-only weight" : "an output");
    }
    int rc = gcm_check_io(m, t, src, nbytes, "gcm_set");
    if (rc) return rc;
    gcm_copy(t, gcm_ptr(m, t), (char *)(uintptr_t)src, 0);
    return GCM_OK;
}

int gcm_get(gcm_model *m, int index, void *dst, size_t nbytes) {
    if (!m) return GCM_E_ARG;
    const gcm_tensor_desc *t = gcm_desc(m, index);
    if (!t) return GCM_E_ARG;
    int rc = gcm_check_io(m, t, dst, nbytes, "gcm_get");
    if (rc) return rc;
    gcm_copy(t, gcm_ptr(m, t), (char *)dst, 1);
    return GCM_OK;
}

void *gcm_data(gcm_model *m, int index) {
    if (!m) return NULL;
    const gcm_tensor_desc *t = gcm_desc(m, index);
    if (!t) return NULL;
    if (gcm_bufs[t->buf].kind == GCM_BUF_WEIGHT) {
        char q[160];
        gcm_quote(q, sizeof q, t->name);
        gcm_fail(m, GCM_E_ROLE, "gcm_data(%s): a weight is read-only mapped memory; read it with gcm_get", q);
        return NULL;
    }
    return gcm_ptr(m, t);
}

/* --- running ----------------------------------------------------------------------------------- */

int gcm_run(gcm_model *m) {
    if (!m) return GCM_E_ARG;
    gc_run(m->inst);
    m->err[0] = 0;
    return GCM_OK;
}

/* the first byte of pack entry i in the mapping (the pack's or the GGUF file's layout) */
static const unsigned char *gcm_entry(const gcm_model *m, int i) {
    return m->map + (m->gguf ? gcm_gguf[i] : gcm_pack[i][0]);
}

static void gcm_init_state(gcm_model *m, int i) {
    memset(m->bufs[i], 0, (size_t)gcm_bufs[i].size);
    if (gcm_bufs[i].pack >= 0) memcpy(m->bufs[i], gcm_entry(m, gcm_bufs[i].pack), (size_t)gcm_bufs[i].size);
}

int gcm_reset_state(gcm_model *m) {
    if (!m) return GCM_E_ARG;
    for (int i = 0; i < GCM_N_BUFS; i++)
        if (gcm_bufs[i].kind == GCM_BUF_STATE) gcm_init_state(m, i);
    return GCM_OK;
}

/* --- the weights pack -------------------------------------------------------------------------- */

static inline uint64_t gcm_mix(uint64_t x) {        /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

/* content checksum: sum over the 64-bit words w[i] of data (a last partial word zero-padded) of
 * mix(w[i] + (first + i + 1) * phi), mod 2^64: a sum, so threads split it; the position term catches
 * moved bytes. The pack sums its data region with first = 0, a GGUF file each tensor with first = offset/8. */
static uint64_t gcm_checksum(const unsigned char *data, uint64_t nbytes, uint64_t first, int n_threads) {
    const int64_t n = (int64_t)(nbytes / 8);
    const uint64_t phi = UINT64_C(0x9e3779b97f4a7c15);
    uint64_t h = 0;
    (void)n_threads;
#ifdef _OPENMP
#pragma omp parallel for reduction(+:h) num_threads(n_threads) schedule(static) if(n > 65536)
#endif
    for (int64_t i = 0; i < n; i++) {
        uint64_t w;
        memcpy(&w, data + 8 * i, 8);
        h += gcm_mix(w + (first + (uint64_t)i + 1) * phi);
    }
    if (nbytes % 8) {
        uint64_t w = 0;
        memcpy(&w, data + 8 * (uint64_t)n, (size_t)(nbytes % 8));
        h += gcm_mix(w + (first + (uint64_t)n + 1) * phi);
    }
    return h;
}

static uint64_t gcm_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t gcm_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* map a GGUF file (fd, size bytes) whose tensors this library was compiled with; closes fd */
static int gcm_map_gguf(gcm_model *m, const char *path, int fd, uint64_t size, unsigned flags) {
    if (!GCM_HAS_GGUF) {
        close(fd);
        return gcm_fail(m, GCM_E_FORMAT, "%s is a GGUF file, but this library's weights are not all unchanged "
                        "tensors of one GGUF file: use its weights pack (weights.bin)", path);
    }
    if (size != GCM_GGUF_FILE_SIZE) {
        close(fd);
        return gcm_fail(m, GCM_E_FORMAT, "GGUF file %s is %llu bytes, this library was compiled against one of %llu "
                        "bytes (another file, or truncated)", path, (unsigned long long)size,
                        (unsigned long long)GCM_GGUF_FILE_SIZE);
    }
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return gcm_fail(m, GCM_E_IO, "cannot map GGUF file %s: %s", path, strerror(e));
    m->map = (const unsigned char *)p;
    m->map_size = (size_t)size;
    m->gguf = 1;
    if (!(flags & GCM_NO_VERIFY)) return gcm_verify_weights(m);
    return GCM_OK;
}

static int gcm_map(gcm_model *m, const char *path, unsigned flags) {
    if (GCM_N_PACK == 0 && path == NULL) return GCM_OK;          /* nothing to map */
    if (!path) return gcm_fail(m, GCM_E_ARG, "no weights path given (this model needs its weights pack)");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gcm_fail(m, GCM_E_IO, "cannot open weights file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return gcm_fail(m, GCM_E_IO, "cannot stat weights file %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return gcm_fail(m, GCM_E_IO, "weights file %s is not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    unsigned char h[GCM_HEADER];
    if (size >= 4 && pread(fd, h, 4, 0) == 4 && memcmp(h, "GGUF", 4) == 0) return gcm_map_gguf(m, path, fd, size, flags);
    if (size < GCM_HEADER || pread(fd, h, GCM_HEADER, 0) != GCM_HEADER) {
        close(fd);
        return gcm_fail(m, GCM_E_FORMAT, "weights file %s is %llu bytes: too short for a graphc weights pack "
                        "(truncated, or not a pack); this model's pack is %llu bytes", path,
                        (unsigned long long)size, (unsigned long long)GCM_PACK_FILE_SIZE);
    }
    if (memcmp(h, GCM_MAGIC, 8) != 0) {
        close(fd);
        return gcm_fail(m, GCM_E_FORMAT, "weights file %s is not a graphc weights pack (bad magic)", path);
    }
    if (gcm_u32(h + 8) != GCM_PACK_VERSION) {
        close(fd);
        return gcm_fail(m, GCM_E_FORMAT, "weights file %s: pack version %u, this library reads version %u",
                        path, gcm_u32(h + 8), GCM_PACK_VERSION);
    }
    if (size < gcm_u64(h + 16)) {
        close(fd);
        return gcm_fail(m, GCM_E_FORMAT, "weights file %s is truncated: %llu bytes, its header says %llu", path,
                        (unsigned long long)size, (unsigned long long)gcm_u64(h + 16));
    }
    if (memcmp(h + 40, gcm_pack_id, 16) != 0 || gcm_u32(h + 12) != GCM_N_PACK || gcm_u64(h + 24) != GCM_PACK_DATA_OFFSET
        || gcm_u64(h + 32) != GCM_PACK_CHECKSUM || gcm_u64(h + 16) != GCM_PACK_FILE_SIZE) {
        char id[33];
        for (int i = 0; i < 16; i++) snprintf(id + 2 * i, 3, "%02x", h[40 + i]);
        close(fd);
        return gcm_fail(m, GCM_E_FORMAT, "weights file %s belongs to another model (model id %s; this library "
                        "was compiled with %s)", path, id, GCM_MODEL_ID);
    }
    if (size != GCM_PACK_FILE_SIZE) {
        close(fd);
        return gcm_fail(m, GCM_E_FORMAT, "weights file %s is %llu bytes, this model's pack is %llu", path,
                        (unsigned long long)size, (unsigned long long)GCM_PACK_FILE_SIZE);
    }
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return gcm_fail(m, GCM_E_IO, "cannot map weights file %s: %s", path, strerror(e));
    m->map = (const unsigned char *)p;
    m->map_size = (size_t)size;
    for (int i = 0; i < GCM_N_PACK; i++) {
        const unsigned char *row = m->map + GCM_HEADER + 16 * (size_t)i;
        if (gcm_u64(row) != gcm_pack[i][0] || gcm_u64(row + 8) != gcm_pack[i][1])
            return gcm_fail(m, GCM_E_FORMAT, "weights file %s: table entry %d does not match this model (damaged "
                            "or another model's pack)", path, i);
    }
    if (!(flags & GCM_NO_VERIFY)) return gcm_verify_weights(m);
    return GCM_OK;
}

int gcm_verify_weights(gcm_model *m) {
    if (!m) return GCM_E_ARG;
    if (!m->map) return GCM_OK;
    if (m->gguf) {
        uint64_t h = 0;
        for (int i = 0; i < GCM_N_PACK; i++)
            h += gcm_checksum(m->map + gcm_gguf[i], gcm_pack[i][1], gcm_gguf[i] / 8, m->n_threads);
        if (h != GCM_GGUF_CHECKSUM)
            return gcm_fail(m, GCM_E_FORMAT, "GGUF file does not hold the tensors this library was compiled with "
                            "(content checksum %016llx, expected %016llx)", (unsigned long long)h,
                            (unsigned long long)GCM_GGUF_CHECKSUM);
        return GCM_OK;
    }
    uint64_t h = gcm_checksum(m->map + GCM_PACK_DATA_OFFSET, GCM_PACK_FILE_SIZE - GCM_PACK_DATA_OFFSET, 0, m->n_threads);
    if (h != GCM_PACK_CHECKSUM)
        return gcm_fail(m, GCM_E_FORMAT, "weights file is damaged: content checksum %016llx, expected %016llx",
                        (unsigned long long)h, (unsigned long long)GCM_PACK_CHECKSUM);
    return GCM_OK;
}

/* --- create / free ----------------------------------------------------------------------------- */

static int gcm_alloc(gcm_model *m) {
    for (int i = 0; i < GCM_N_BUFS; i++) {
        const gcm_buf_desc *b = &gcm_bufs[i];
        if (b->kind == GCM_BUF_WEIGHT) {
            m->bufs[i] = (char *)(uintptr_t)gcm_entry(m, b->pack);
            continue;
        }
        size_t sz = ((size_t)b->size + 63) / 64 * 64;
        if (sz == 0) sz = 64;                    /* an empty tensor: any valid pointer */
        m->bufs[i] = (char *)aligned_alloc(64, sz);
        if (!m->bufs[i]) return gcm_fail(m, GCM_E_NOMEM, "out of memory allocating %zu bytes", sz);
        m->owned[i] = 1;
        memset(m->bufs[i], 0, sz);
        if (b->kind == GCM_BUF_COPY) memcpy(m->bufs[i], gcm_entry(m, b->pack), (size_t)b->size);
        else if (b->kind == GCM_BUF_STATE) gcm_init_state(m, i);
    }
    return GCM_OK;
}

gcm_model *gcm_create_ex(const char *weights_path, int n_threads, unsigned flags, char *err, size_t errlen) {
    gcm_fmt(err, errlen, "%s", "");
    gcm_model *m = (gcm_model *)calloc(1, sizeof(gcm_model));
    if (!m) {
        gcm_fmt(err, errlen, "out of memory creating the model");
        return NULL;
    }
    if (n_threads <= 0) n_threads = GCM_DEFAULT_THREADS;
#ifdef _OPENMP
    if (n_threads <= 0) n_threads = omp_get_max_threads();
#endif
    m->n_threads = n_threads > 0 ? n_threads : 1;
    int rc = gcm_map(m, weights_path, flags);
    if (rc == GCM_OK) rc = gcm_alloc(m);
    if (rc == GCM_OK) {
        m->inst = gc_create(m->bufs, m->n_threads);
        if (!m->inst) rc = gcm_fail(m, GCM_E_NOMEM, "out of memory creating the program instance");
    }
    if (rc == GCM_OK) {
        int bad = gc_check(m->inst);
        if (bad > 0 && bad <= GCM_N_CHECKED)
            rc = gcm_fail(m, GCM_E_UNSUPPORTED, "the kernel library of this build declines node %s (its types or "
                          "shapes)", gcm_checked[bad - 1]);
        else if (bad)
            rc = gcm_fail(m, GCM_E_UNSUPPORTED, "the kernel library declines node %d", bad);
    }
    if (rc != GCM_OK) {
        gcm_fmt(err, errlen, "%s", m->err);
        gcm_free(m);
        return NULL;
    }
    m->err[0] = 0;
    return m;
}

gcm_model *gcm_create(const char *weights_path, int n_threads, char *err, size_t errlen) {
    return gcm_create_ex(weights_path, n_threads, 0u, err, errlen);
}

void gcm_free(gcm_model *m) {
    if (!m) return;
    if (m->inst) gc_destroy(m->inst);
    for (int i = 0; i < GCM_N_BUFS; i++)
        if (m->owned[i]) free(m->bufs[i]);
    if (m->map) munmap((void *)(uintptr_t)m->map, m->map_size);
    free(m);
}
