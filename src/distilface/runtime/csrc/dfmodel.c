/* A `.dfn` file (written by `distilface export --native -o model.dfn`) loaded in C, for engines
 * that link the C runtime without Python: dfstep.c + dfstream.c + this file, libm only.
 *
 *     char err[256];
 *     df_model *m = df_model_load("c04.dfn", err, sizeof err);        // NULL: err says why
 *     df_stream *s = df_model_stream(m, 30.0, NULL);                   // or weights {.25,.5,.25}
 *     int64_t n = df_stream_push(s, audio16k, samples, 0, frames, cap);  // frames: n x outputs
 *
 * Layout, little-endian (distilface/runtime/native.py `write_dfn` writes it):
 *   "DFN1", int32 version (2), int32 n, int32 ints[n] (DFN_INTS order below, then the layers'
 *   kernels, strides, dilations, output channels, bias flags and sizes), float32 [6] (eps of the
 *   encoder, projection and reduction norms; log-mel floor, scale, shift), int32 bytes + the curve
 *   names joined by '\n', int32 arrays, then per array int32 count + data[count]: float32, or
 *   float16 for the weight matrices of a half-precision file (I_HALF; order in `load_arrays`, as
 *   native.py `array_sizes`). Every count is checked against the size the header implies, and every
 *   layer size and stream geometry against the relations an export satisfies (`df_net_problem`):
 *   a damaged header is refused here, never read out of bounds later.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dfstep.h"

enum { I_CHANNELS, I_FRONT, I_MEL_WINDOW, I_MEL_HOP, I_MEL_BINS, I_MEL_BANDS, I_N_ENC, I_ENC_NORM, I_PROJ_IN,
       I_PROJ_GELU, I_STEPS, I_DILATION, I_CACHE, I_TAIL, I_GROUPS, I_ZLEN, I_N_RED, I_N_FC, I_ACTIVATION,
       I_OUTPUTS, I_PAST, I_SPAN, I_RECEPTIVE, I_HOP, I_GRID, I_SMOOTH, I_WINDOW, I_HALF, DFN_INTS };
#define DFN_VERSION 2
#define DFN_LISTS_MAX (5 * DF_MAX_ENC + 2 * DF_MAX_RED + 2 * DF_MAX_FC)

struct df_model {
    df_net net;
    int32_t g[DFN_INTS];
    void *data[2 + 4 * DF_MAX_ENC + 8 + 2 * DF_MAX_RED + 2 * DF_MAX_FC];
    int32_t enc_bias[DF_MAX_ENC];
    int32_t half;       /* the file stores the weight matrices in half precision */
    int n_data;
    char *names;        /* '\n' replaced by '\0' */
    const char **name;  /* outputs entries into names */
};

static int fail(char *err, size_t len, const char *path, const char *what) {
    if (err && len) snprintf(err, len, "%s: %s", path, what);
    return 0;
}

/* Where the bytes come from: a file, or a buffer already in memory (`df_model_load_memory`). */
typedef struct {
    FILE *file;
    const unsigned char *data;
    size_t size, pos;
} reader;

/* As fread, from either source: the number of whole items read. */
static size_t get(reader *r, void *dst, size_t size, size_t count) {
    if (r->file) {
        const size_t n = fread(dst, size, count, r->file);
        r->pos += n * size;
        return n;
    }
    const size_t fit = (r->size - r->pos) / size, n = count < fit ? count : fit;
    if (n) memcpy(dst, r->data + r->pos, size * n);
    r->pos += size * n;
    return n;
}

static int at_end(reader *r) { return r->file ? fgetc(r->file) == EOF : r->pos == r->size; }

static int read_i32(reader *f, int32_t *v) { return get(f, v, 4, 1) == 1; }

/* The next array, which must hold `count` values of `size` bytes (4: float, 2: a weight matrix
 * in half precision). */
static void *read_values(df_model *m, reader *f, int64_t count, size_t size) {
    int32_t n;
    if (!read_i32(f, &n) || n != count || count <= 0) return NULL;
    /* never more than the bytes left (r->size: the file's or the buffer's length): a damaged header
     * must not ask for gigabytes, nor wrap a 32-bit size_t (wasm32) into a small buffer */
    if ((uint64_t)count > (uint64_t)((f->size - f->pos) / size)) return NULL;
    void *a = malloc(size * (size_t)count);
    if (!a) return NULL;
    if (get(f, a, size, (size_t)count) != (size_t)count) { free(a); return NULL; }
    m->data[m->n_data++] = a;
    return a;
}

static float *read_array(df_model *m, reader *f, int64_t count) { return read_values(m, f, count, sizeof(float)); }

/* An IEEE half-precision value as a float (exact: every half is a float). */
static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t bits;
    if (e == 0) {  /* zero or subnormal: m 2^-24 */
        const float v = (float)m * 5.9604644775390625e-8f;
        memcpy(&bits, &v, sizeof bits);
        bits |= sign;
    } else if (e == 31) {
        bits = sign | 0x7f800000u | (m << 13);
    } else {
        bits = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* A weight matrix: float, or half precision in a half file, widened to float here. Half
 * precision halves the file; the step keeps float weights, which it multiplies faster (widening
 * in its inner loop cost 20-25 % per frame and saved nothing with cold caches: docs/runtime.md). */
static float *read_matrix(df_model *m, reader *f, int64_t count) {
    if (!m->half) return read_array(m, f, count);
    uint16_t *h = read_values(m, f, count, sizeof(uint16_t));
    float *a = h ? malloc(sizeof(float) * (size_t)count) : NULL;
    if (!a) return NULL;
    for (int64_t i = 0; i < count; i++) a[i] = half_to_float(h[i]);
    m->data[m->n_data - 1] = a;  /* replaces the half copy */
    free(h);
    return a;
}

static int load_arrays(df_model *m, reader *f) {
    df_net *net = &m->net;
    const int64_t C = net->channels, cp = net->cp, W = net->steps;
    int64_t cin = 1;
#define PAD8(n) (((int64_t)(n) + 7) / 8 * 8)
    if (net->front == DF_FRONT_LOGMEL) {
        if (!(net->mel_dft = read_matrix(m, f, (int64_t)net->mel_window * PAD8(2 * net->mel_bins))) ||
            !(net->mel_fb = read_matrix(m, f, (int64_t)net->mel_bins * PAD8(net->mel_bands)))) return 0;
        cin = net->mel_bands;
    }
    for (int i = 0; i < net->n_enc; i++) {
        const int64_t op = PAD8(net->enc_cout[i]);
        if (!(net->enc_w[i] = read_matrix(m, f, net->enc_kernel[i] * cin * op))) return 0;
        if (m->enc_bias[i] && !(net->enc_bias[i] = read_array(m, f, op))) return 0;
        if (net->enc_norm != DF_NORM_NONE &&
            (!(net->enc_g[i] = read_array(m, f, op)) || !(net->enc_b[i] = read_array(m, f, op)))) return 0;
        cin = net->enc_cout[i];
    }
    if (!(net->proj_g = read_array(m, f, PAD8(net->proj_in))) || !(net->proj_b = read_array(m, f, PAD8(net->proj_in)))) return 0;
    if (!(net->proj_w = read_matrix(m, f, net->proj_in * cp)) || !(net->proj_bias = read_array(m, f, cp))) return 0;
    if (net->groups) {
        if (!(net->ctx_z = read_array(m, f, C * (C / net->groups) * net->ctx_zlen))) return 0;
        if (!(net->ctx_bias = read_array(m, f, C))) return 0;
        if (!(net->red_g = read_array(m, f, C)) || !(net->red_b = read_array(m, f, C))) return 0;
    }
    for (int i = 0; i < net->n_red; i++)
        if (!(net->red_w[i] = read_matrix(m, f, net->red_kernel[i] * C * cp)) ||
            !(net->red_bias[i] = read_array(m, f, cp))) return 0;
    for (int i = 0; i < net->n_fc; i++) {
        const int64_t np = PAD8(net->fc_out[i]);
        if (!(net->fc_w[i] = read_matrix(m, f, (int64_t)net->fc_in[i] * np)) ||
            !(net->fc_bias[i] = read_array(m, f, np))) return 0;
    }
#undef PAD8
    return W > 0;
}

void df_model_free(df_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_data; i++) free(m->data[i]);
    free(m->names); free(m->name); free(m);
}

static int load(df_model *m, reader *f, const char *path, char *err, size_t len) {
    char magic[4];
    int32_t version, n;
    if (get(f, magic, 1, 4) != 4 || memcmp(magic, "DFN1", 4)) return fail(err, len, path, "not a DistilFace native model (.dfn)");
    if (!read_i32(f, &version)) return fail(err, len, path, "truncated header");
    if (version != DFN_VERSION)
        return fail(err, len, path, "unsupported .dfn version (this runtime reads 2: export it again)");
    if (!read_i32(f, &n) || n < DFN_INTS || n > DFN_INTS + DFN_LISTS_MAX) return fail(err, len, path, "bad header size");
    int32_t ints[DFN_INTS + DFN_LISTS_MAX];
    if (get(f, ints, 4, (size_t)n) != (size_t)n) return fail(err, len, path, "truncated header");
    memcpy(m->g, ints, sizeof m->g);
    df_net *net = &m->net;
    const int32_t *g = m->g;
    if (g[I_N_ENC] < 1 || g[I_N_ENC] > DF_MAX_ENC || g[I_N_RED] < 0 || g[I_N_RED] > DF_MAX_RED || g[I_N_FC] < 1 ||
        g[I_N_FC] > DF_MAX_FC || g[I_CHANNELS] < 1 || g[I_GROUPS] < 0 || (g[I_GROUPS] && g[I_CHANNELS] % g[I_GROUPS]) ||
        n != DFN_INTS + 5 * g[I_N_ENC] + 2 * g[I_N_RED] + 2 * g[I_N_FC] || g[I_HOP] < 1 || g[I_GRID] < 1 ||
        (g[I_FRONT] != DF_FRONT_RAW && g[I_FRONT] != DF_FRONT_LOGMEL) || g[I_PROJ_IN] < 1 || (g[I_HALF] & ~1) ||
        (g[I_FRONT] == DF_FRONT_LOGMEL && (g[I_MEL_WINDOW] < 1 || g[I_MEL_HOP] < 1 || g[I_MEL_BINS] < 1 || g[I_MEL_BANDS] < 1)))
        return fail(err, len, path, "inconsistent header");
    net->abi = DF_ABI;
    net->channels = g[I_CHANNELS]; net->cp = (g[I_CHANNELS] + 7) / 8 * 8; net->front = g[I_FRONT];
    net->mel_window = g[I_MEL_WINDOW]; net->mel_hop = g[I_MEL_HOP]; net->mel_bins = g[I_MEL_BINS];
    net->mel_bands = g[I_MEL_BANDS]; net->n_enc = g[I_N_ENC]; net->enc_norm = g[I_ENC_NORM];
    net->proj_in = g[I_PROJ_IN]; net->proj_gelu = g[I_PROJ_GELU];
    net->steps = g[I_STEPS]; net->dilation = g[I_DILATION];
    net->cache_steps = g[I_CACHE]; net->tail_steps = g[I_TAIL]; net->groups = g[I_GROUPS];
    net->ctx_zlen = g[I_ZLEN]; net->n_red = g[I_N_RED]; net->n_fc = g[I_N_FC];
    net->activation = g[I_ACTIVATION]; net->outputs = g[I_OUTPUTS]; m->half = g[I_HALF];
    const int32_t *p = ints + DFN_INTS;
    for (int i = 0; i < net->n_enc; i++) net->enc_kernel[i] = *p++;
    for (int i = 0; i < net->n_enc; i++) net->enc_stride[i] = *p++;
    for (int i = 0; i < net->n_enc; i++) net->enc_dilation[i] = *p++;
    for (int i = 0; i < net->n_enc; i++) net->enc_cout[i] = *p++;
    for (int i = 0; i < net->n_enc; i++) m->enc_bias[i] = *p++;
    for (int i = 0; i < net->n_red; i++) net->red_kernel[i] = *p++;
    for (int i = 0; i < net->n_red; i++) net->red_stride[i] = *p++;
    for (int i = 0; i < net->n_fc; i++) net->fc_in[i] = *p++;
    for (int i = 0; i < net->n_fc; i++) net->fc_out[i] = *p++;
    for (int i = 0; i < net->n_enc; i++)
        if (net->enc_cout[i] < 1) return fail(err, len, path, "inconsistent header");
    if (net->fc_out[net->n_fc - 1] != net->outputs || net->fc_in[0] != net->channels ||
        net->proj_in != net->enc_cout[net->n_enc - 1])
        return fail(err, len, path, "inconsistent header");
    for (int i = 0; i < net->n_enc; i++)
        if (m->enc_bias[i] != 0 && m->enc_bias[i] != 1) return fail(err, len, path, "inconsistent header");
    /* Every relation between the sizes and the stream geometry (dfstream.c): a damaged header fails
     * here, not in the first push. */
    const char *problem = df_net_problem(net, g[I_PAST], g[I_SPAN], g[I_RECEPTIVE], g[I_HOP], g[I_GRID]);
    if (!problem && (g[I_WINDOW] < g[I_SPAN] || g[I_PAST] > g[I_WINDOW] || g[I_SMOOTH] < 0 || g[I_SMOOTH] > g[I_WINDOW]))
        problem = "window";
    if (problem) {
        char what[96];
        snprintf(what, sizeof what, "inconsistent header (%s)", problem);
        return fail(err, len, path, what);
    }
    float fl[6];
    if (get(f, fl, 4, 6) != 6) return fail(err, len, path, "truncated header");
    net->enc_eps = fl[0]; net->proj_eps = fl[1]; net->red_eps = fl[2];
    net->mel_floor = fl[3]; net->mel_scale = fl[4]; net->mel_shift = fl[5];
    /* eps of the norms a net runs: finite and positive (NaN fails the comparison) */
    if ((net->enc_norm != DF_NORM_NONE && !(net->enc_eps > 0.f && net->enc_eps < 1.f)) ||
        !(net->proj_eps > 0.f && net->proj_eps < 1.f) || (net->groups && !(net->red_eps > 0.f && net->red_eps < 1.f)) ||
        (net->front == DF_FRONT_LOGMEL && !(net->mel_floor > 0.f && isfinite(net->mel_scale) && isfinite(net->mel_shift))))
        return fail(err, len, path, "inconsistent header (norm eps or log-mel constants)");
    int32_t nb;
    if (!read_i32(f, &nb) || nb < 0 || nb > (1 << 20)) return fail(err, len, path, "bad names");
    m->names = malloc((size_t)nb + 1);
    m->name = calloc((size_t)net->outputs + 1, sizeof(char *));
    if (!m->names || !m->name || get(f, m->names, 1, (size_t)nb) != (size_t)nb) return fail(err, len, path, "truncated names");
    m->names[nb] = '\0';
    int lines = 1;
    for (int i = 0; i < nb; i++) lines += m->names[i] == '\n';
    if (net->outputs < 1 || lines != net->outputs) return fail(err, len, path, "names do not match the outputs");
    char *q = m->names;
    for (int k = 0; k < net->outputs; k++) {  /* one name per line */
        m->name[k] = q;
        char *nl = strchr(q, '\n');
        if (nl) { *nl = '\0'; q = nl + 1; }
    }
    int32_t arrays;
    if (!read_i32(f, &arrays) || !load_arrays(m, f)) return fail(err, len, path, "truncated or mis-sized weights");
    if (arrays != m->n_data || !at_end(f)) return fail(err, len, path, "unexpected data after the weights");
    return 1;
}

#ifdef _WIN32
#include <windows.h>
/* Windows' fopen reads a path in the ANSI code page: the UTF-8 path of the API as UTF-16 instead
 * (any other bytes: as given). */
static FILE *open_path(const char *path) {
    wchar_t wide[4096];
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, wide, 4096)) return _wfopen(wide, L"rb");
    return fopen(path, "rb");
}
#else
static FILE *open_path(const char *path) { return fopen(path, "rb"); }
#endif

/* `path` is UTF-8 on every system. */
df_model *df_model_load(const char *path, char *err, size_t errlen) {
    if (!path) { fail(err, errlen, "(null)", "no path"); return NULL; }
    reader r = {open_path(path), NULL, 0, 0};
    if (!r.file) { fail(err, errlen, path, "cannot open"); return NULL; }
    long size = -1;
    if (fseek(r.file, 0, SEEK_END) == 0) size = ftell(r.file);
    if (size < 0 || fseek(r.file, 0, SEEK_SET) != 0) { fclose(r.file); fail(err, errlen, path, "cannot read"); return NULL; }
    r.size = (size_t)size;
    df_model *m = calloc(1, sizeof *m);
    int ok = m && load(m, &r, path, err, errlen);
    fclose(r.file);
    if (!ok) { df_model_free(m); return NULL; }
    return m;
}

/* The same from `size` bytes already in memory (an engine's asset system, a browser's fetch);
 * `name` stands for the file in error messages. The bytes are copied: free them when it returns. */
df_model *df_model_load_memory(const void *data, size_t size, const char *name, char *err, size_t errlen) {
    reader r = {NULL, data, data ? size : 0, 0};
    df_model *m = calloc(1, sizeof *m);
    if (!m || !load(m, &r, name ? name : "(memory)", err, errlen)) { df_model_free(m); return NULL; }
    return m;
}

const df_net *df_model_net(const df_model *m) { return m ? &m->net : NULL; }
int df_model_outputs(const df_model *m) { return m ? m->net.outputs : 0; }
const char *df_model_name(const df_model *m, int i) { return m && i >= 0 && i < m->net.outputs ? m->name[i] : NULL; }
/* Samples of audio after a frame's time that must arrive before it comes out (no smoothing). */
int df_model_lookahead_samples(const df_model *m) { return m ? m->g[I_SPAN] - m->g[I_PAST] : 0; }

/* A stream at `fps` as `StreamingAnimator` would run it: weights NULL for plain frames, or the
 * three ensemble-smoothing weights (each prediction a smoothing offset later; zero ones skipped). */
df_stream *df_model_stream(const df_model *m, double fps, const float *weights) {
    if (!m || !(fps > 0 && fps <= DF_MAX_FPS)) return NULL;  /* before any cast of fps: NaN, inf */
    int64_t offset[3] = {0, 0, 0};
    float w[3] = {1.f, 0.f, 0.f};
    int n = 1;
    int64_t widen = 0;
    if (weights) {
        n = 0;
        for (int i = 0; i < 3; i++)
            if (!(weights[i] >= 0.f && isfinite(weights[i]))) return NULL;
        for (int i = 0; i < 3; i++)
            if (weights[i] != 0.f) { offset[n] = (int64_t)i * m->g[I_SMOOTH]; w[n] = weights[i]; n++; }
        if (n == 0) return NULL;
        widen = m->g[I_SMOOTH];
    }
    const int64_t per_pass = (int64_t)(20.0 * fps) > 1 ? (int64_t)(20.0 * fps) : 1;  /* PASS_S = 20 s */
    return df_stream_new(&m->net, fps, m->g[I_PAST] + widen, m->g[I_SPAN], m->g[I_RECEPTIVE], m->g[I_HOP],
                         m->g[I_GRID], n, offset, w, per_pass * n);
}
