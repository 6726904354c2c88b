/* The conv student's streaming step in plain C: one phase's new encoder steps and the frames
 * they complete, the function `distilface.runtime.step.PhaseStep` computes in torch and the ONNX
 * streaming graph in onnxruntime (same inputs, outputs and state; docs/runtime.md, "Native").
 *
 * Why it exists: a C0/4 frame is about 3 M multiply-adds, but onnxruntime called from Python
 * spends 60-80 us per call on its ~90 nodes and the call itself whatever their size
 * (docs/performance.md, "Frame grid"). Here a call is one C function: every layer is a blocked
 * matrix product over channels-last rows, so the time goes to the multiply-adds.
 *
 * No dependency but libm (GELU's erff, vectorised by glibc's libmvec under -ffast-math). The
 * network arrives as a `df_net` of sizes and weight pointers that `distilface.runtime.native`
 * fills from a student; weights are laid out there for the products below (see `conv_rows`).
 * Every channels-last tensor has rows of `cp` floats: the channels rounded up to 8 (one AVX
 * vector), the padding zero throughout.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "dfstep.h"

typedef float v8 __attribute__((vector_size(32)));

static inline v8 ld(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, v8 v) { memcpy(p, &v, sizeof v); }
static inline int pad8(int n) { return (n + 7) & ~7; }

/* R rows x V vectors of y[t][n] = bias[n] + sum_j sum_ci x[(t s + j dil) xs + ci] W[j cin + ci][n].
 * R and V are constants at every call site, so the accumulators live in registers (4 x 3 + 3 of
 * the 16 AVX registers). W is stored in column panels (`conv_rows`), so a block reads its weights
 * as one contiguous run. */
static inline __attribute__((always_inline)) void
block(const float *x, int xs, int cin, int t, int s, int k, int dil, const float *w, int np, int n,
      const float *bias, float *y, const int R, const int V) {
    v8 acc[4][3];
    for (int v = 0; v < V; v++) {
        v8 b0 = bias ? ld(bias + n + 8 * v) : (v8){0};
        for (int r = 0; r < R; r++) acc[r][v] = b0;
    }
    const float *wj = w + (size_t)n * k * cin;  /* this panel: k cin rows of 8 V, one after another */
    for (int j = 0; j < k; j++) {
        const float *xr[4];
        for (int r = 0; r < R; r++) xr[r] = x + (size_t)((t + r) * s + j * dil) * xs;
        for (int ci = 0; ci < cin; ci++, wj += 8 * V) {
            v8 wv[3];
            for (int v = 0; v < V; v++) wv[v] = ld(wj + 8 * v);
            for (int r = 0; r < R; r++) {
                float b = xr[r][ci];
                for (int v = 0; v < V; v++) acc[r][v] += b * wv[v];
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) st(y + (size_t)(t + r) * np + n + 8 * v, acc[r][v]);
}

/* Rows per register block of a conv (`block`). 4 rows x 3 vectors of 8 floats keep 12 of the 16
 * AVX registers busy. WebAssembly's vectors are 128-bit, so V8 needs twice the registers for the
 * same block, more than x86-64 has, and spills them: with 4-row blocks, every shipped model's step
 * ran 30-50 % slower in some builds and processes than in others, by where its buffers fell
 * (docs/performance.md, "At a glance"). 2-row blocks were faster in every process
 * measured (C0/2: 2.91-3.39 ms a frame against 3.73-3.82 for the faster 4-row build) and varied
 * far less. */
#ifndef DF_BLOCK_ROWS
#if defined(__wasm__)
#define DF_BLOCK_ROWS 2
#else
#define DF_BLOCK_ROWS 4
#endif
#endif

/* All t_out rows of outputs n..n+8V of a conv: blocks of DF_BLOCK_ROWS rows, then the rest as one block. */
static inline __attribute__((always_inline)) void
rows_of(const float *x, int xs, int cin, int t_out, int s, int k, int dil, const float *w, int np, int n,
        const float *bias, float *y, const int V) {
    int t = 0;
    for (; t + DF_BLOCK_ROWS <= t_out; t += DF_BLOCK_ROWS)
        block(x, xs, cin, t, s, k, dil, w, np, n, bias, y, DF_BLOCK_ROWS, V);
    switch (t_out - t) {
    case 3: block(x, xs, cin, t, s, k, dil, w, np, n, bias, y, 3, V); break;
    case 2: block(x, xs, cin, t, s, k, dil, w, np, n, bias, y, 2, V); break;
    case 1: block(x, xs, cin, t, s, k, dil, w, np, n, bias, y, 1, V); break;
    }
}

/* A conv (or a linear layer: k = 1) on channels-last rows as one matrix product: t_out rows of np
 * outputs, row t reading k taps dil input rows apart from input row t s (rows xs floats apart,
 * cin of each read).
 *
 * The weights W (k cin rows, np columns) are stored in column panels: columns n..n+23 for each
 * n + 24 <= np, then n..n+7 for the rest, each panel its k cin rows of 24 (or 8) floats in a row,
 * starting at float n k cin (`distilface.runtime.native._panels` lays them out). Columns outside,
 * rows inside: each panel is read from memory once, as one sequential run the prefetcher streams,
 * and from cache by the other rows. (Weights of the Whisper student, 7 MB, come from DRAM in a
 * game loop: read row-major, 96 useful bytes every np floats, they streamed at 4.8 GB/s here.) */
static void conv_rows(const float *x, int xs, int cin, int t_out, int s, int k, int dil,
                      const float *w, int np, const float *bias, float *y) {
    int n = 0;
    for (; n + 24 <= np; n += 24) rows_of(x, xs, cin, t_out, s, k, dil, w, np, n, bias, y, 3);
    for (; n < np; n += 8) rows_of(x, xs, cin, t_out, s, k, dil, w, np, n, bias, y, 1);
}

#if !defined(__GLIBC__) || defined(DF_ERF_RATIONAL)
/* Without glibc's libmvec (WebAssembly, MinGW on Windows, macOS, musl) erff runs one value at a
 * time and takes most of a C0/4 frame. Instead a rational approximation the compiler vectorises:
 * x P(x^2) / Q(x^2) on x clamped to [-4, 4] (beyond, erf is +-1 in float), P of degree 6 and Q of
 * degree 4 in x^2, the minimax fit that Eigen and XLA use for float erf; within 4.2e-7 of erf over
 * [-6, 6] (checked in float32 against math.erf, 2 M points). Measured (docs/engines.md): the
 * Windows dfanimate on C0/4 2.1x faster under Wine; on glibc no faster than libmvec, so kept there
 * (-DDF_ERF_RATIONAL selects it on glibc too, to compare). */
static inline float erf_(float x) {
    x = x < -4.f ? -4.f : (x > 4.f ? 4.f : x);
    const float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 - 2.10102402082508e-06f;
    p = p * x2 - 5.69250639462346e-05f;
    p = p * x2 - 7.34990630326855e-04f;
    p = p * x2 - 2.95459980854025e-03f;
    p = p * x2 - 1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 - 2.13374055278905e-04f;
    q = q * x2 - 1.68282697438203e-03f;
    q = q * x2 - 7.37332916720468e-03f;
    q = q * x2 - 1.42647390514189e-02f;
    return x * p / q;
}
#else
#define erf_ erff  /* glibc: vectorised by libmvec under -ffast-math */
#endif

static inline float gelu(float x) { return 0.5f * x * (1.0f + erf_(x * 0.70710678118654752f)); }

static void gelu_rows(float *x, int rows, int c, int cp) {
    for (int t = 0; t < rows; t++) {
        float *r = x + (size_t)t * cp;
        for (int i = 0; i < c; i++) r[i] = gelu(r[i]);
    }
}

/* Per-row normalisation over the first c channels (torch's LayerNorm: biased variance), then
 * scale and shift; DF_NORM_AFFINE only scales and shifts (an eval-mode BatchNorm folded). */
static void norm_rows(float *x, int rows, int c, int cp, int kind, const float *g, const float *b,
                      float eps) {
    if (kind == DF_NORM_NONE) return;
    for (int t = 0; t < rows; t++) {
        float *r = x + (size_t)t * cp;
        float mean = 0.f, rstd = 1.f;
        if (kind == DF_NORM_LAYER) {
            float sum = 0.f, sq = 0.f;
            for (int i = 0; i < c; i++) sum += r[i];
            mean = sum / c;
            for (int i = 0; i < c; i++) { float d = r[i] - mean; sq += d * d; }
            rstd = 1.0f / sqrtf(sq / c + eps);
        }
        for (int i = 0; i < c; i++) r[i] = (r[i] - mean) * rstd * g[i] + b[i];
    }
}

/* The conv student's context conv on one window (rows `first`, `first` + d, ... of feats), its
 * residual and the LayerNorm after it, written channels-last into a (W, cp). xcf, h: (C, pad8(W))
 * scratch each. */
static void context(const df_net *net, const float *feats, int first, float *xcf, float *h, float *a) {
    const int C = net->channels, cp = net->cp, W = net->steps, Wp = pad8(W), cg = C / net->groups;
    const int zl = net->ctx_zlen;
    for (int c = 0; c < C; c++) {
        for (int i = 0; i < W; i++) xcf[(size_t)c * Wp + i] = feats[(size_t)(first + i * net->dilation) * cp + c];
        for (int i = W; i < Wp; i++) xcf[(size_t)c * Wp + i] = 0.f;
    }
    /* Context conv, zero-padded at the window's edges: ctx[co][i] = sum_ci sum_p x[ci][p]
     * w[co][ci][p - i + pad]. With z[q] = w[pad + W - 1 - q] (zero outside the kernel), the taps
     * for input step p over i = 0..Wp-1 are the contiguous z[W - 1 - p + i]: a vector product. */
    const int nv = Wp / 8, per_group = C / net->groups;
    int co = 0;
    if (nv == 4) {  /* W = 25..32, the shipped windows: three output channels of one group at a
                     * time share each input value, and their 12 accumulators hide the FMA latency */
        for (; co < C; co += 3) {
            const int g = co / per_group;
            if (co + 3 > (g + 1) * per_group) break;  /* the rest of this group one by one */
            v8 acc[3][4];
            for (int u = 0; u < 3; u++)
                for (int v = 0; v < 4; v++) acc[u][v] = (v8){0} + net->ctx_bias[co + u];
            for (int cl = 0; cl < cg; cl++) {
                const float *xr = xcf + (size_t)(g * cg + cl) * Wp;
                const float *z0 = net->ctx_z + ((size_t)co * cg + cl) * zl + (W - 1);
                const float *z1 = z0 + (size_t)cg * zl, *z2 = z1 + (size_t)cg * zl;
                for (int p = 0; p < W; p++) {
                    const float xp = xr[p];
                    for (int v = 0; v < 4; v++) {
                        acc[0][v] += xp * ld(z0 - p + 8 * v);
                        acc[1][v] += xp * ld(z1 - p + 8 * v);
                        acc[2][v] += xp * ld(z2 - p + 8 * v);
                    }
                }
            }
            for (int u = 0; u < 3; u++)
                for (int v = 0; v < 4; v++) st(h + (size_t)(co + u) * Wp + 8 * v, acc[u][v]);
        }
    }
    for (; co < C; co++) {  /* any window length, any group size */
        const int g = co / per_group;
        v8 acc[8];
        for (int v = 0; v < nv; v++) acc[v] = (v8){0} + net->ctx_bias[co];
        for (int cl = 0; cl < cg; cl++) {
            const float *xr = xcf + (size_t)(g * cg + cl) * Wp;
            const float *z = net->ctx_z + ((size_t)co * cg + cl) * zl + (W - 1);
            for (int p = 0; p < W; p++)
                for (int v = 0; v < nv; v++) acc[v] += xr[p] * ld(z - p + 8 * v);
        }
        for (int v = 0; v < nv; v++) st(h + (size_t)co * Wp + 8 * v, acc[v]);
    }
    for (int c = 0; c < C; c++) {
        float *hr = h + (size_t)c * Wp;
        const float *xr = xcf + (size_t)c * Wp;
        for (int i = 0; i < W; i++) hr[i] = xr[i] + gelu(hr[i]);
    }
    /* LayerNorm over channels at each step, written channels-last for the reductions. */
    for (int i = 0; i < W; i++) {
        float sum = 0.f, sq = 0.f;
        for (int c = 0; c < C; c++) sum += h[(size_t)c * Wp + i];
        const float mean = sum / C;
        for (int c = 0; c < C; c++) { float d = h[(size_t)c * Wp + i] - mean; sq += d * d; }
        const float rstd = 1.0f / sqrtf(sq / C + net->red_eps);
        float *r = a + (size_t)i * cp;
        for (int c = 0; c < C; c++) r[c] = (h[(size_t)c * Wp + i] - mean) * rstd * net->red_g[c] + net->red_b[c];
        for (int c = C; c < cp; c++) r[c] = 0.f;
    }
}

/* The head on one window: rows `first`, `first` + d, ... of feats (channels-last, cp apart) ->
 * the outputs: the context conv where the net has one, then the reductions (GELU after each) and
 * the fully connected layers. scratch: see `head_scratch_floats`. */
static void head(const df_net *net, const float *feats, int first, float *out, float *scratch) {
    const int C = net->channels, cp = net->cp, W = net->steps, Wp = pad8(W);
    float *xcf = scratch;                    /* (C, Wp) the window, channels first */
    float *h = xcf + (size_t)C * Wp;         /* (C, Wp) feats + GELU(context) */
    float *a = h + (size_t)C * Wp;           /* (W, cp) channels-last ping */
    float *bb = a + (size_t)W * cp;          /* (W, cp) pong */
    if (net->groups == 0) {  /* no context conv: the window's rows straight to the reductions */
        for (int i = 0; i < W; i++)
            memcpy(a + (size_t)i * cp, feats + (size_t)(first + i * net->dilation) * cp, sizeof(float) * cp);
    } else {
        context(net, feats, first, xcf, h, a);
    }
    int t = W;
    for (int l = 0; l < net->n_red; l++) {
        const int k = net->red_kernel[l], s = net->red_stride[l], t_out = (t - k) / s + 1;
        conv_rows(a, cp, C, t_out, s, k, 1, net->red_w[l], cp, net->red_bias[l], bb);
        gelu_rows(bb, t_out, C, cp);
        float *tmp = a; a = bb; bb = tmp;
        t = t_out;
    }
    int xs = cp;  /* fully connected layers on the one row left */
    for (int l = 0; l < net->n_fc; l++) {
        const int no = net->fc_out[l], np = pad8(no);
        conv_rows(a, xs, net->fc_in[l], 1, 1, 1, 1, net->fc_w[l], np, net->fc_bias[l], bb);
        if (l < net->n_fc - 1) {
            for (int i = 0; i < no; i++) bb[i] = gelu(bb[i]);
        }
        float *tmp = a; a = bb; bb = tmp;
        xs = np;
    }
    for (int i = 0; i < net->outputs; i++) {
        float y = a[i];
        if (net->activation == DF_ACT_SIGMOID) y = 1.0f / (1.0f + expf(-y));
        else if (net->activation == DF_ACT_TANH) y = tanhf(y);
        out[i] = y;
    }
}

static size_t head_scratch_floats(const df_net *net) {
    size_t fc = 8;
    for (int l = 0; l < net->n_fc; l++) fc = fc > (size_t)pad8(net->fc_out[l]) ? fc : (size_t)pad8(net->fc_out[l]);
    size_t rows = (size_t)net->steps * net->cp;
    rows = rows > fc ? rows : fc;
    return 2 * (size_t)net->channels * pad8(net->steps) + 2 * rows;
}

int df_abi(void) { return DF_ABI; }

/* One streaming call (distilface.runtime.step):
 *   audio (n_audio)             the samples of the new steps
 *   cache_in (S + R, cp)        state in, channels-last: S feature rows, then R tail rows
 *   frames (n_frames)           first row of each wanted window in cache rows + new rows
 *   out (n_frames, outputs)     one frame per window
 *   cache_out (S + R, cp)       state out (must not overlap cache_in)
 * Returns the number of new steps, or a negative DF_ERR_*. */
static int step(const df_net *net, const float *audio, int n_audio, const float *cache_in,
                const int64_t *frames, int n_frames, float *out, float *cache_out);

int df_step(const df_net *net, const float *audio, int n_audio, const float *cache_in,
            const int64_t *frames, int n_frames, float *out, float *cache_out) {
#if defined(__SSE__)
    /* Denormals (near-silent audio makes them) cost ~100x per operation on x86: flush them for
     * this call only, and give the caller back its own floating-point mode. (The library is
     * linked without -ffast-math for the same reason: gcc would add a constructor that sets
     * flush-to-zero for the whole process that loads it.) */
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);  /* FTZ | DAZ */
    const int r = step(net, audio, n_audio, cache_in, frames, n_frames, out, cache_out);
    _mm_setcsr(csr);
    return r;
#else
    return step(net, audio, n_audio, cache_in, frames, n_frames, out, cache_out);
#endif
}

/* Rows after the front end for n_audio samples (0: too few), and the floats per row. */
static int front_rows(const df_net *net, int n_audio, int *width) {
    if (net->front == DF_FRONT_LOGMEL) {
        *width = net->mel_bands;
        return n_audio < net->mel_window ? 0 : (n_audio - net->mel_window) / net->mel_hop + 1;
    }
    *width = 1;
    return n_audio;
}

/* Whisper's log-mel of `rows` frames hop apart: windowed DFT as a product, power, mel bands, then
 * log10 floored and scaled (distilface.baselines.WhisperConvFrontEnd.log_mel). spec: rows x
 * pad8(2 bins) floats of scratch; out: rows x pad8(bands). */
static void log_mel(const df_net *net, const float *audio, int rows, float *spec, float *out) {
    const int bins = net->mel_bins, sp = pad8(2 * bins), bp = pad8(net->mel_bands);
    conv_rows(audio, 1, 1, rows, net->mel_hop, net->mel_window, 1, net->mel_dft, sp, NULL, spec);
    for (int t = 0; t < rows; t++) {  /* power in place: bin i of row t */
        float *r = spec + (size_t)t * sp;
        for (int i = 0; i < bins; i++) r[i] = r[i] * r[i] + r[bins + i] * r[bins + i];
    }
    conv_rows(spec, sp, bins, rows, 1, 1, 1, net->mel_fb, bp, NULL, out);
    for (int t = 0; t < rows; t++) {
        float *r = out + (size_t)t * bp;
        for (int i = 0; i < net->mel_bands; i++)
            r[i] = log10f(r[i] > net->mel_floor ? r[i] : net->mel_floor) * net->mel_scale + net->mel_shift;
    }
}

static int step(const df_net *net, const float *audio, int n_audio, const float *cache_in,
                const int64_t *frames, int n_frames, float *out, float *cache_out) {
    if (net->abi != DF_ABI) return DF_ERR_ABI;
    const int cp = net->cp, S = net->cache_steps, R = net->tail_steps;
    /* Rows and row widths each stage produces, to size the buffers (the tail joins before the
     * first dilated layer). */
    int width, t = front_rows(net, n_audio, &width), rows_max = R + 1, width_max = cp, tail_joined = 0;
    if (t < 1) return DF_ERR_AUDIO;
    if (net->front == DF_FRONT_LOGMEL) {
        rows_max = t > rows_max ? t : rows_max;
        width_max = pad8(2 * net->mel_bins) > width_max ? pad8(2 * net->mel_bins) : width_max;
    }
    for (int l = 0; l < net->n_enc; l++) {
        const int k = net->enc_kernel[l], d = net->enc_dilation[l];
        if (d && !tail_joined) { t += R; tail_joined = 1; }
        const int span = d ? (k - 1) * d + 1 : k;  /* input rows one output reads */
        if (t < span) return DF_ERR_AUDIO;
        t = d ? t - (k - 1) * d : (t - k) / net->enc_stride[l] + 1;
        if (t + R > rows_max) rows_max = t + R;
        if (pad8(net->enc_cout[l]) > width_max) width_max = pad8(net->enc_cout[l]);
    }
    const int n_new = t;
    for (int f = 0; f < n_frames; f++)
        if (frames[f] < 0 || frames[f] + (int64_t)(net->steps - 1) * net->dilation >= S + n_new) return DF_ERR_FRAME;
    const size_t buf = (size_t)rows_max * width_max;
    float *mem = malloc(sizeof(float) * (2 * buf + (size_t)(S + n_new) * cp + head_scratch_floats(net)));
    if (!mem) return DF_ERR_MEMORY;
    float *a = mem, *b = mem + buf, *feats = b + buf, *scratch = feats + (size_t)(S + n_new) * cp;

    const float *x = audio;
    int xs = 1, cin = 1;
    t = n_audio;
    if (net->front == DF_FRONT_LOGMEL) {
        t = front_rows(net, n_audio, &cin);
        log_mel(net, audio, t, b, a);
        x = a; xs = pad8(cin);
    }
    tail_joined = 0;
    for (int l = 0; l < net->n_enc; l++) {
        const int k = net->enc_kernel[l], d = net->enc_dilation[l], cout = net->enc_cout[l], ys = pad8(cout);
        if (d && !tail_joined) {  /* the shared layers' last R outputs from the state come first */
            memmove(a + (size_t)R * xs, x, sizeof(float) * (size_t)t * xs);
            memcpy(a, cache_in + (size_t)S * cp, sizeof(float) * (size_t)R * cp);
            t += R;
            memcpy(cache_out + (size_t)S * cp, a + (size_t)(t - R) * cp, sizeof(float) * (size_t)R * cp);
            x = a;
            tail_joined = 1;
        }
        const int t_out = d ? t - (k - 1) * d : (t - k) / net->enc_stride[l] + 1;
        float *y = (x == a) ? b : a;
        conv_rows(x, xs, cin, t_out, d ? 1 : net->enc_stride[l], k, d ? d : 1, net->enc_w[l], ys, net->enc_bias[l], y);
        if (net->enc_g[l]) norm_rows(y, t_out, cout, ys, net->enc_norm, net->enc_g[l], net->enc_b[l], net->enc_eps);
        gelu_rows(y, t_out, cout, ys);
        x = y; xs = ys; cin = cout; t = t_out;
    }
    float *xn = (float *)x, *new_feats = feats + (size_t)S * cp;
    norm_rows(xn, t, net->proj_in, xs, DF_NORM_LAYER, net->proj_g, net->proj_b, net->proj_eps);
    memcpy(feats, cache_in, sizeof(float) * (size_t)S * cp);
    conv_rows(xn, xs, net->proj_in, t, 1, 1, 1, net->proj_w, cp, net->proj_bias, new_feats);
    if (net->proj_gelu) gelu_rows(new_feats, t, net->channels, cp);
    for (int f = 0; f < n_frames; f++) head(net, feats, (int)frames[f], out + (size_t)f * net->outputs, scratch);
    memcpy(cache_out, feats + (size_t)n_new * cp, sizeof(float) * (size_t)S * cp);
    free(mem);
    return n_new;
}
