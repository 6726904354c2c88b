/* The C runtime of DistilFace's students (distilface/runtime/native.py drives it through ctypes):
 * `df_step`, one streaming call of a phase (dfstep.c), and `df_stream`, the streaming bookkeeping
 * around it (dfstream.c). Two kinds of network: the conv student (raw audio, per-step norms,
 * context conv) and the frozen Whisper front end (log-mel, biased convs, plain head). */
#ifndef DFSTEP_H
#define DFSTEP_H
#include <stddef.h>
#include <stdint.h>

#define DF_ABI 4
#define DF_MAX_ENC 8
#define DF_MAX_RED 8
#define DF_MAX_FC 6

enum { DF_OK = 0, DF_ERR_ABI = -1, DF_ERR_AUDIO = -2, DF_ERR_FRAME = -3, DF_ERR_MEMORY = -4, DF_ERR_STATE = -5,
       DF_ERR_RATE = -6, DF_ERR_ARGUMENT = -7 };
enum { DF_NORM_NONE = 0, DF_NORM_LAYER = 1, DF_NORM_AFFINE = 2 };
enum { DF_ACT_NONE = 0, DF_ACT_SIGMOID = 1, DF_ACT_TANH = 2 };
enum { DF_FRONT_RAW = 0, DF_FRONT_LOGMEL = 1 };

/* Mirrored field by field by `_Net` in distilface/runtime/native.py: change both together and
 * bump DF_ABI. Every (rows, columns) weight matrix below is stored in column panels, as
 * dfstep.c's `conv_rows` reads it (native.py `_panels`). */
typedef struct {
    int32_t abi;
    int32_t channels, cp;                 /* C feature channels, and C rounded up to 8 */
    int32_t front;                        /* DF_FRONT_RAW: layer 0 reads samples; DF_FRONT_LOGMEL: frames */
    int32_t mel_window, mel_hop, mel_bins, mel_bands;  /* log-mel: frame and hop (samples), DFT bins, bands */
    float mel_floor, mel_scale, mel_shift;  /* band power p -> log10(max(p, floor)) * scale + shift */
    int32_t n_enc;                        /* encoder layers */
    int32_t enc_kernel[DF_MAX_ENC], enc_stride[DF_MAX_ENC];
    int32_t enc_dilation[DF_MAX_ENC];     /* 0: strided (shared) layer; d > 0: stride 1, taps d apart */
    int32_t enc_cout[DF_MAX_ENC];         /* output channels (C_in: the previous layer's, 1 or bands first) */
    int32_t enc_norm;                     /* DF_NORM_* of the encoder's per-step norms */
    int32_t proj_in, proj_gelu;           /* the projection's inputs (the last layer's outputs); GELU after it */
    int32_t steps, dilation;              /* W steps per window, d sequence steps apart */
    int32_t cache_steps, tail_steps;      /* S, R: the state is S feature rows, then R tail rows */
    int32_t groups, ctx_zlen;             /* context conv: groups (0: none, nor the LayerNorm after it),
                                           * length of each reversed kernel */
    int32_t n_red, red_kernel[DF_MAX_RED], red_stride[DF_MAX_RED];
    int32_t n_fc, fc_in[DF_MAX_FC], fc_out[DF_MAX_FC];
    int32_t activation, outputs;
    float enc_eps, proj_eps, red_eps;
    const float *mel_dft, *mel_fb;        /* (window, pad8(2 bins)) cos then -sin rows; (bins, pad8(bands)) */
    const float *enc_w[DF_MAX_ENC];       /* (k * C_in, pad8(C_out)): row j * C_in + ci holds W[:, ci, j] */
    const float *enc_bias[DF_MAX_ENC];    /* (pad8(C_out)) or NULL */
    const float *enc_g[DF_MAX_ENC], *enc_b[DF_MAX_ENC];  /* (pad8(C_out)) norm scale, shift; NULL: no norm */
    const float *proj_g, *proj_b;         /* LayerNorm before the projection (pad8(proj_in)) */
    const float *proj_w, *proj_bias;      /* (proj_in, cp), (cp) */
    const float *ctx_z, *ctx_bias;        /* (C, C / groups, zlen) see `context`, (C) */
    const float *red_g, *red_b;           /* LayerNorm before the reductions (C) */
    const float *red_w[DF_MAX_RED], *red_bias[DF_MAX_RED];  /* (k * C, cp), (cp) */
    const float *fc_w[DF_MAX_FC], *fc_bias[DF_MAX_FC];      /* (in, pad8(out)), (pad8(out)) */
} df_net;

int df_abi(void);
int df_step(const df_net *net, const float *audio, int n_audio, const float *cache_in,
            const int64_t *frames, int n_frames, float *out, float *cache_out);

/* What is wrong with a net and the stream geometry it is run with (the relations every export
 * satisfies, and the sizes the step's buffers assume), or NULL: a damaged file must fail here,
 * never read out of bounds or divide by zero later. The .dfn loader and df_stream_new check it. */
const char *df_net_problem(const df_net *net, int64_t past, int64_t span, int64_t receptive, int64_t hop,
                           int64_t grid);

/* Frame rates a stream takes: (0, DF_MAX_FPS], finite. */
#define DF_MAX_FPS 1000.0
/* Input samples that are NaN, infinite or beyond this magnitude are taken as 0 (silence), as the
 * Python live inputs do: one such sample would otherwise turn about half a second of frames NaN. */
#define DF_MAX_SAMPLE_MAGNITUDE 1e10f

/* Every function below returns DF_ERR_ARGUMENT, NULL or 0 for a NULL handle rather than crash
 * (the _free functions take NULL); using a handle after its _free is undefined, as with free(). */
typedef struct df_stream df_stream;
/* df_stream_new encodes the state of silence its phases start from (2 R + 2 encoder steps, docs/runtime.md
 * "The start of a stream"); df_stream_reset keeps it: reset a stream rather than make a new one. */
df_stream *df_stream_new(const df_net *net, double fps, int64_t past, int64_t span, int64_t receptive,
                         int64_t hop, int64_t grid, int n_preds, const int64_t *offset, const float *weight,
                         int64_t max_jobs);
int64_t df_stream_push(df_stream *s, const float *audio, int64_t n, int final, float *out, int64_t cap);
void df_stream_reset(df_stream *s);
void df_stream_stats(const df_stream *s, int64_t *out4);
void df_stream_free(df_stream *s);

/* dfmodel.c: a .dfn file (`distilface export --native -o model.dfn`) for callers without Python. */
typedef struct df_model df_model;
df_model *df_model_load(const char *path, char *err, size_t errlen);
df_model *df_model_load_memory(const void *data, size_t size, const char *name, char *err, size_t errlen);
const df_net *df_model_net(const df_model *m);
int df_model_outputs(const df_model *m);
const char *df_model_name(const df_model *m, int i);
int df_model_lookahead_samples(const df_model *m);
df_stream *df_model_stream(const df_model *m, double fps, const float *weights);
void df_model_free(df_model *m);

/* dfresample.c: streaming resampling equal to scipy's resample_poly on the whole signal. Rates
 * DF_MIN_RATE_HZ..DF_MAX_RATE_HZ whose ratio in lowest terms has terms up to DF_MAX_RATIO_TERM
 * (as distilface.audio.check_rate); NULL otherwise. */
#define DF_MIN_RATE_HZ 1000
#define DF_MAX_RATE_HZ 384000
#define DF_MAX_RATIO_TERM 8000
typedef struct df_resampler df_resampler;
df_resampler *df_resampler_new(int from_hz, int to_hz);
int64_t df_resampler_push(df_resampler *r, const float *in, int64_t n, int final, float *out, int64_t cap);
void df_resampler_reset(df_resampler *r);
void df_resampler_free(df_resampler *r);

/* A stream whose pushes carry audio at rate_hz (resampled to 16 kHz in C before the step): call
 * after df_stream_new / df_model_stream, before the first push or after a reset. 0, or DF_ERR_RATE
 * for a rate the resampler refuses (DF_ERR_STATE once audio has been pushed); 16000 removes it. */
int df_stream_set_input_rate(df_stream *s, int rate_hz);
#endif
