/* `StreamingAnimator`'s bookkeeping in C, around `df_step` (dfstep.c): push 16 kHz audio of any
 * size, get every frame whose window has arrived, with ensemble smoothing and frame grids, the
 * same frames in the same order as distilface/runtime/streaming.py (which documents the scheme:
 * frame k's window starts, phases of the stream hop, one cached state per phase).
 *
 * Why: with the step in C, the animator's Python around it was a quarter of a streamed frame
 * (docs/performance.md, "Native runtime"). This file is compiled WITHOUT -ffast-math, unlike
 * dfstep.c: frame k's start is round(k 16000 / fps / grid) in IEEE double, rounded half to even
 * as Python's round(), and reassociating that division would move frames off the Python ones.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dfstep.h"

#define SAMPLE_RATE_HZ 16000
#define MAX_PREDS 3
#define RESAMPLE_BLOCK 4096  /* samples per piece, into the resampler and out of it: bounded memory for any push */
#define PREFILL_FRAMES 8     /* phases due among a stream's first frames encode while the look-ahead fills */

typedef struct {
    int64_t first;        /* sequence step where the last window run in this phase starts (or would: prefill) */
    float *pred;          /* (outputs) that window's frame */
    int has_pred;         /* 0 while only prefilled: no window run yet */
    float *cache, *spare; /* (S + R, cp) the state, and where the next call writes its own */
} df_phase;

struct df_stream {
    const df_net *net;
    double fps;
    int64_t past, span, receptive, hop, grid, max_jobs;
    int n_preds;
    int64_t offset[MAX_PREDS];
    float weight[MAX_PREDS];
    size_t state_floats;
    float *zeros;                      /* a zero state: the first window of a phase, or after a gap */
    float *silence;                    /* the state after encoding only silence (`silence_state`) */
    float *buf;                        /* audio from sample buf_start on */
    int64_t buf_start, buf_len, buf_cap, n;
    int64_t next[MAX_PREDS];           /* per prediction: the next frame not yet run */
    int64_t due[MAX_PREDS];            /* per prediction: frames below were held back once (hold_back) */
    float *acc;                        /* frames emitted.. emitted + acc_rows - 1: weighted sums */
    int64_t acc_rows, emitted;
    df_phase **phases;                 /* by phase (window start modulo hop), NULL until seen */
    int finished, final_seen;         /* all frames out after a final push; a final push seen */
    int64_t stats[3];                  /* encoder steps computed, windows run, phases seen */
    df_resampler *rs;                  /* pushes at another rate than 16 kHz: resampled first */
    int64_t n_in;                      /* samples pushed, at the input rate */
    float *rbuf;                       /* (RESAMPLE_BLOCK) resampled audio */
    float *ibuf;                       /* (RESAMPLE_BLOCK) a piece of the input, sanitized */
};

static int64_t start_of(const df_stream *s, int64_t k, int i) {
    const double t = (double)(k * SAMPLE_RATE_HZ) / s->fps / (double)s->grid;
    return (int64_t)nearbyint(t) * s->grid - s->past + s->offset[i];
}

static int64_t mod_hop(const df_stream *s, int64_t x) { return ((x % s->hop) + s->hop) % s->hop; }

static void free_phases(df_stream *s) {
    if (!s->phases) return;  /* df_stream_new's own allocation failed */
    for (int64_t p = 0; p < s->hop; p++) {
        df_phase *ph = s->phases[p];
        if (ph) { free(ph->pred); free(ph->cache); free(ph->spare); free(ph); }
        s->phases[p] = NULL;
    }
}

void df_stream_reset(df_stream *s) {
    if (!s) return;
    free_phases(s);
    s->buf_start = s->buf_len = s->n = 0;
    for (int i = 0; i < MAX_PREDS; i++) s->next[i] = s->due[i] = 0;
    if (s->acc) memset(s->acc, 0, sizeof(float) * (size_t)s->acc_rows * s->net->outputs);
    s->emitted = 0;
    s->finished = s->final_seen = 0;
    s->stats[0] = s->stats[1] = s->stats[2] = 0;
    s->n_in = 0;
    if (s->rs) df_resampler_reset(s->rs);
}

void df_stream_free(df_stream *s) {
    if (!s) return;
    free_phases(s);
    free(s->phases); free(s->zeros); free(s->silence); free(s->buf); free(s->acc);
    df_resampler_free(s->rs); free(s->rbuf); free(s->ibuf); free(s);
}

/* past: samples of the (widened) window before the frame time; span: from a window's start to
 * the end of the last sample its frame reads; n_preds predictions per frame at offset[i] samples
 * from the widened window's start, weighted by weight[i]; max_jobs: most windows one batch of
 * calls covers (bounds memory however much is pushed at once). */
#define CHECK(cond, what) do { if (!(cond)) return what; } while (0)
#define LIMIT_SIZE 4096      /* channels, layer outputs */
#define LIMIT_KERNEL 1024    /* kernels and strides */
#define LIMIT_SAMPLES (1 << 24)

const char *df_net_problem(const df_net *net, int64_t past, int64_t span, int64_t receptive, int64_t hop,
                           int64_t grid) {
    CHECK(net, "no net");
    CHECK(net->abi == DF_ABI, "ABI mismatch");
    CHECK(net->channels >= 1 && net->channels <= LIMIT_SIZE && net->cp == (net->channels + 7) / 8 * 8, "channels");
    CHECK(net->n_enc >= 1 && net->n_enc <= DF_MAX_ENC && net->n_red >= 0 && net->n_red <= DF_MAX_RED &&
          net->n_fc >= 1 && net->n_fc <= DF_MAX_FC, "layer counts");
    CHECK(net->enc_norm >= DF_NORM_NONE && net->enc_norm <= DF_NORM_AFFINE && net->activation >= DF_ACT_NONE &&
          net->activation <= DF_ACT_TANH && (net->proj_gelu == 0 || net->proj_gelu == 1), "unknown norm or activation");
    /* The encoder's receptive field and stride, in samples, from its layers: strided layers first,
     * then the dense ones (dilation > 0: the strides they stand for, as taps that far apart). */
    int64_t r = 1, j = 1, dense_hop = 0, dil = 1, tail = 0;
    if (net->front == DF_FRONT_LOGMEL) {
        CHECK(net->mel_window >= 1 && net->mel_window <= LIMIT_SAMPLES && net->mel_hop >= 1 &&
              net->mel_hop <= LIMIT_SAMPLES && net->mel_bins >= 1 && net->mel_bins <= (1 << 14) &&
              net->mel_bands >= 1 && net->mel_bands <= LIMIT_SIZE, "log-mel sizes");
        r = net->mel_window; j = net->mel_hop;
    } else {
        CHECK(net->front == DF_FRONT_RAW, "unknown front end");
    }
    for (int i = 0; i < net->n_enc; i++) {
        const int64_t k = net->enc_kernel[i], st = net->enc_stride[i], d = net->enc_dilation[i];
        CHECK(k >= 1 && k <= LIMIT_KERNEL && st >= 1 && st <= LIMIT_KERNEL && net->enc_cout[i] >= 1 &&
              net->enc_cout[i] <= LIMIT_SIZE, "encoder layer sizes");
        if (d == 0) {
            CHECK(!dense_hop, "a strided encoder layer after a dense one");
        } else {
            if (!dense_hop) dense_hop = j;
            CHECK(d == dil, "encoder dilations");
            tail += (k - 1) * d;
            dil *= st;
        }
        r += (k - 1) * j;
        j *= st;
        CHECK(r <= LIMIT_SAMPLES && j <= LIMIT_SAMPLES, "encoder too large");
    }
    CHECK(receptive == r, "receptive field differs from the encoder's");
    CHECK(hop == (dense_hop ? dense_hop : j), "hop differs from the encoder's");
    CHECK(net->tail_steps == tail, "tail steps");
    CHECK(net->dilation >= 1 && (int64_t)net->dilation * hop == j, "window dilation");
    const int W = net->steps;
    CHECK(W >= 2 && W <= (net->groups ? 64 : 1024), "steps per window");  /* context: 8 vectors a row */
    CHECK(net->cache_steps == (int64_t)(W - 1) * net->dilation, "cache steps");
    CHECK(span == (int64_t)(W - 1) * j + r && span <= LIMIT_SAMPLES, "window span");
    /* the state a phase keeps, (S + R) rows of cp floats: at most 64 M floats (256 MB) */
    CHECK((int64_t)net->cache_steps + net->tail_steps <= (1 << 20) &&
          ((int64_t)net->cache_steps + net->tail_steps) * net->cp <= ((int64_t)1 << 26), "state too large");
    CHECK(past >= 0 && past <= LIMIT_SAMPLES && grid >= 1 && grid <= j, "past or grid");
    CHECK(net->groups >= 0 && (!net->groups || (net->channels % net->groups == 0 &&
          net->ctx_zlen == W - 1 + (W + 7) / 8 * 8)) && (net->groups || net->ctx_zlen == 0), "context conv");
    int64_t t = W;
    for (int i = 0; i < net->n_red; i++) {
        const int64_t k = net->red_kernel[i], st = net->red_stride[i];
        CHECK(k >= 1 && k <= t && st >= 1 && st <= LIMIT_KERNEL, "reductions");
        t = (t - k) / st + 1;
    }
    CHECK(t == 1, "the reductions do not end at one step");
    CHECK(net->proj_in == net->enc_cout[net->n_enc - 1] && net->fc_in[0] == net->channels, "projection or fc sizes");
    for (int i = 0; i < net->n_fc; i++)
        CHECK(net->fc_out[i] >= 1 && net->fc_out[i] <= (1 << 16) && (i == 0 || net->fc_in[i] == net->fc_out[i - 1]),
              "fc sizes");
    CHECK(net->outputs == net->fc_out[net->n_fc - 1], "outputs");
    return NULL;
}
#undef CHECK

/* The state after encoding nothing but silence, into s->silence (`streaming.silence_state`): the
 * same for every phase and step. Its S feature rows are one encoder step on zeros, repeated, so
 * one df_step on 2 R + 2 steps of zeros from the zero state makes it (its first R new steps read
 * zeros for the tail: they end up neither in the last feature row nor in the tail), and the last
 * feature row is copied over the others: creating a stream costs 2 R + 2 steps (2 without a
 * frame grid), not a window. */
static int encode_silence(df_stream *s) {
    const df_net *net = s->net;
    const int64_t S = net->cache_steps, n = 2 * (int64_t)net->tail_steps + 2;
    const int64_t len = s->hop * (n - 1) + s->receptive;
    float *audio = calloc((size_t)len, sizeof(float)), *pred = malloc(sizeof(float) * (size_t)net->outputs);
    const int64_t none = 0;
    int r = (audio && pred && len <= INT32_MAX) ? df_step(net, audio, (int)len, s->zeros, &none, 0, pred, s->silence)
                                                : DF_ERR_MEMORY;
    free(audio); free(pred);
    if (r < 0) return r;
    for (int64_t i = 0; i < S - 1; i++)
        memcpy(s->silence + (size_t)i * net->cp, s->silence + (size_t)(S - 1) * net->cp, sizeof(float) * net->cp);
    return 0;
}

df_stream *df_stream_new(const df_net *net, double fps, int64_t past, int64_t span, int64_t receptive,
                         int64_t hop, int64_t grid, int n_preds, const int64_t *offset, const float *weight,
                         int64_t max_jobs) {
    if (n_preds < 1 || n_preds > MAX_PREDS || !(fps > 0 && fps <= DF_MAX_FPS) || max_jobs < 1 || !offset ||
        !weight || df_net_problem(net, past, span, receptive, hop, grid))
        return NULL;
    for (int i = 0; i < n_preds; i++)
        if (offset[i] < 0 || offset[i] > LIMIT_SAMPLES || !isfinite(weight[i])) return NULL;
    df_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->net = net; s->fps = fps; s->past = past; s->span = span; s->receptive = receptive;
    s->hop = hop; s->grid = grid; s->max_jobs = max_jobs; s->n_preds = n_preds;
    for (int i = 0; i < n_preds; i++) { s->offset[i] = offset[i]; s->weight[i] = weight[i]; }
    s->state_floats = (size_t)(net->cache_steps + net->tail_steps) * net->cp;
    s->zeros = calloc(s->state_floats + 1, sizeof(float));
    s->silence = malloc(sizeof(float) * (s->state_floats + 1));
    s->phases = calloc((size_t)hop, sizeof(df_phase *));
    if (!s->zeros || !s->silence || !s->phases || encode_silence(s) < 0) { df_stream_free(s); return NULL; }
    df_stream_reset(s);
    return s;
}

void df_stream_stats(const df_stream *s, int64_t *out4) {
    if (!s || !out4) return;
    out4[0] = s->stats[0]; out4[1] = s->stats[1]; out4[2] = s->stats[2]; out4[3] = s->emitted;
}

static int grow(void **p, int64_t *cap, int64_t need, size_t item) {
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * item);
    if (!q) return DF_ERR_MEMORY;
    *p = q; *cap = c;
    return 0;
}

/* Audio [lo, hi) into dst: zeros before 0 and after the samples received so far. */
static int samples(const df_stream *s, int64_t lo, int64_t hi, float *dst) {
    if ((lo > 0 ? lo : 0) < s->buf_start) return DF_ERR_STATE;
    memset(dst, 0, sizeof(float) * (size_t)(hi - lo));
    const int64_t a = lo > s->buf_start ? lo : s->buf_start, b = hi < s->n ? hi : s->n;
    if (b > a) memcpy(dst + (a - lo), s->buf + (a - s->buf_start), sizeof(float) * (size_t)(b - a));
    return 0;
}

/* A new phase state, counted as seen (`StreamingAnimator._phases`); NULL without memory. */
static df_phase *new_phase(df_stream *s, int64_t phase) {
    df_phase *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->pred = malloc(sizeof(float) * s->net->outputs);
    st->cache = calloc(s->state_floats + 1, sizeof(float));
    st->spare = calloc(s->state_floats + 1, sizeof(float));
    if (!st->pred || !st->cache || !st->spare) {
        free(st->pred); free(st->cache); free(st->spare); free(st);
        return NULL;
    }
    s->phases[phase] = st;
    s->stats[2]++;
    return st;
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

/* The phase's state into *out (NULL: none); a phase not seen yet whose window at step `first`
 * starts with steps that read only the silence before the stream starts from s->silence, as if
 * it had encoded those steps (the last at most the window's last but one) and no others
 * (`StreamingAnimator._state`). */
static int state_of(df_stream *s, int64_t phase, int64_t first, df_phase **out) {
    df_phase *st = s->phases[phase];
    *out = st;
    if (st) return 0;
    const int64_t w = s->net->cache_steps + 1, R = s->net->tail_steps;
    const int64_t reach = s->receptive > (1 + R) * s->hop ? s->receptive : (1 + R) * s->hop;
    int64_t last = floor_div(-phase - reach, s->hop);  /* `last_silent_step` */
    if (last > first + w - 2) last = first + w - 2;
    if (last < first) return 0;  /* no step of the window reads only silence */
    if (!(st = new_phase(s, phase))) return DF_ERR_MEMORY;
    memcpy(st->cache, s->silence, sizeof(float) * s->state_floats);
    st->first = last - (w - 1);
    st->has_pred = 0;
    *out = st;
    return 0;
}

/* One df_step on a phase: encodes up to sequence step new_to and runs the nf windows at firsts
 * (nf 0: a prefill; first0 then the phase's first window to come), into preds (nf rows):
 * `StreamingAnimator._phase_call`. */
static int phase_call(df_stream *s, int64_t phase, int64_t first0, const int64_t *firsts, int nf,
                      int64_t new_to, float *preds) {
    const df_net *net = s->net;
    const int outputs = net->outputs, R = net->tail_steps;
    const int64_t w = net->cache_steps + 1;
    df_phase *st = s->phases[phase];
    int64_t base, new_from, skip;
    const float *cache;
    if (st && first0 <= st->first + w) {  /* new steps follow the cache directly */
        base = st->first + 1; cache = st->cache; new_from = base + w - 1; skip = R;
    } else {  /* first window of this phase, or a gap: nothing cached is read */
        base = first0 - (w - 1) - R; cache = s->zeros; new_from = first0; skip = 0;
    }
    const int64_t lo = phase + (new_from + skip) * s->hop, hi = phase + new_to * s->hop + s->receptive;
    if (!st && !(st = new_phase(s, phase))) return DF_ERR_MEMORY;
    float *audio = malloc(sizeof(float) * (size_t)(hi - lo));
    int64_t *frames = malloc(sizeof(int64_t) * (size_t)(nf + 1));
    int r = (audio && frames) ? samples(s, lo, hi, audio) : DF_ERR_MEMORY;
    if (r == 0) {
        for (int j = 0; j < nf; j++) frames[j] = firsts[j] - base;
        r = df_step(net, audio, (int)(hi - lo), cache, frames, nf, nf ? preds : st->pred, st->spare);
    }
    free(audio); free(frames);
    if (r < 0) return r;
    float *t = st->cache; st->cache = st->spare; st->spare = t;
    st->first = new_to - (w - 1);
    if (nf) memcpy(st->pred, preds + (size_t)(nf - 1) * outputs, sizeof(float) * outputs);
    st->has_pred = st->has_pred || nf > 0;
    s->stats[0] += new_to - new_from + 1;
    s->stats[1] += nf;
    return 0;
}

/* Frames of windows starting at sequence steps firsts[0..nf) (ascending, distinct) of one phase,
 * into preds (nf rows): `StreamingAnimator._run_phase`. */
static int run_phase(df_stream *s, int64_t phase, const int64_t *firsts, int nf, float *preds) {
    const int outputs = s->net->outputs;
    const int64_t w = s->net->cache_steps + 1;
    df_phase *st;
    const int r = state_of(s, phase, firsts[0], &st);
    if (r < 0) return r;
    if (st && firsts[0] < st->first) return DF_ERR_STATE;
    if (st && st->has_pred && firsts[0] == st->first) {  /* the same window as last time */
        memcpy(preds, st->pred, sizeof(float) * outputs);
        firsts++; preds += outputs; nf--;
    }
    if (nf == 0) return 0;
    return phase_call(s, phase, firsts[0], firsts, nf, firsts[nf - 1] + w - 1, preds);
}

/* While the look-ahead fills: the phases whose first window starts within the audio so far
 * encode steps whose audio is complete, never a window's last, at most n_pushed samples' share of
 * them, the earliest window's phase first (`StreamingAnimator._prefill`). */
static int prefill(df_stream *s, int64_t n_pushed) {
    const int64_t w = s->net->cache_steps + 1;
    int64_t *first = malloc(sizeof(int64_t) * (size_t)s->hop);
    if (!first) return DF_ERR_MEMORY;
    int64_t pending = 0;
    for (int64_t p = 0; p < s->hop; p++) first[p] = INT64_MAX;
    for (int i = 0; i < s->n_preds; i++) {
        int64_t st;
        for (int64_t k = s->next[i]; (st = start_of(s, k, i)) < s->n; k++) {
            const int64_t phase = mod_hop(s, st), step = (st - phase) / s->hop;
            const df_phase *ph = s->phases[phase];
            if ((!ph || !ph->has_pred) && step < first[phase]) {
                pending += first[phase] == INT64_MAX;
                first[phase] = step;
            }
        }
    }
    int64_t lookahead = s->offset[s->n_preds - 1] + s->span - s->past;
    if (lookahead < 1) lookahead = 1;
    int64_t budget = (n_pushed * pending * (w - 1) + lookahead - 1) / lookahead;  /* ceil */
    int r = 0;
    while (budget > 0 && r == 0) {  /* the phase of the earliest window first */
        int64_t p = -1;
        for (int64_t q = 0; q < s->hop; q++)
            if (first[q] != INT64_MAX && (p < 0 || first[q] * s->hop + q < first[p] * s->hop + p)) p = q;
        if (p < 0) break;
        df_phase *ph;
        if ((r = state_of(s, p, first[p], &ph)) < 0) break;
        const int64_t done = ph ? ph->first + w - 1 : first[p] - 1;  /* the last step encoded */
        int64_t last = floor_div(s->n - p - s->receptive, s->hop);
        if (last > first[p] + w - 2) last = first[p] + w - 2;
        if (last > done + budget) last = done + budget;
        if (last > done) {
            r = phase_call(s, p, first[p], NULL, 0, last, NULL);
            budget -= last - done;
        }
        first[p] = INT64_MAX;
    }
    free(first);
    return r;
}

static int cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* One batch of jobs (start, frame, prediction) in order of start: every phase's windows in one
 * call, then each prediction added to its frame's sum in job order (`StreamingAnimator._run`). */
static int run_jobs(df_stream *s, const int64_t *jobs, int64_t nj) {
    const int outputs = s->net->outputs;
    float *pred = malloc(sizeof(float) * (size_t)(nj * outputs + 1));
    int64_t *steps = malloc(sizeof(int64_t) * (size_t)(nj + 1));
    char *done = calloc((size_t)nj + 1, 1);
    int r = (pred && steps && done) ? 0 : DF_ERR_MEMORY;
    for (int64_t j = 0; j < nj && r == 0; j++) {  /* phases in order of first appearance */
        if (done[j]) continue;
        const int64_t phase = mod_hop(s, jobs[3 * j]);
        int nf = 0;
        for (int64_t q = j; q < nj; q++)
            if (!done[q] && mod_hop(s, jobs[3 * q]) == phase) steps[nf++] = (jobs[3 * q] - phase) / s->hop;
        qsort(steps, (size_t)nf, sizeof(int64_t), cmp_i64);
        int u = 0;
        for (int q = 0; q < nf; q++)
            if (u == 0 || steps[q] != steps[u - 1]) steps[u++] = steps[q];
        float *rows = malloc(sizeof(float) * (size_t)u * outputs);
        r = rows ? run_phase(s, phase, steps, u, rows) : DF_ERR_MEMORY;
        for (int64_t q = j; q < nj && r == 0; q++) {
            if (done[q] || mod_hop(s, jobs[3 * q]) != phase) continue;
            const int64_t step = (jobs[3 * q] - phase) / s->hop;
            const int64_t *hit = bsearch(&step, steps, (size_t)u, sizeof(int64_t), cmp_i64);
            memcpy(pred + (size_t)q * outputs, rows + (size_t)(hit - steps) * outputs, sizeof(float) * outputs);
            done[q] = 1;
        }
        free(rows);
    }
    for (int64_t j = 0; j < nj && r == 0; j++) {  /* in order of start: predictions in order i */
        const int64_t row = jobs[3 * j + 1] - s->emitted;
        if (row >= s->acc_rows) {
            int64_t cap = s->acc_rows;
            r = grow((void **)&s->acc, &cap, row + 1, sizeof(float) * outputs);
            if (r) break;
            memset(s->acc + (size_t)s->acc_rows * outputs, 0, sizeof(float) * (size_t)(cap - s->acc_rows) * outputs);
            s->acc_rows = cap;
        }
        const float wt = s->weight[jobs[3 * j + 2]];
        float *a = s->acc + (size_t)row * outputs;
        const float *p = pred + (size_t)j * outputs;
        for (int o = 0; o < outputs; o++) a[o] += wt * p[o];
    }
    free(pred); free(steps); free(done);
    return r;
}

/* The jobs to run now, compacted to the front of jobs (their count): in a push that completes a
 * frame, windows of frames it does not complete wait for the next push, which runs them whatever
 * it completes (due), unless a window of their phase with a later start runs now
 * (`StreamingAnimator._hold_back` says why). */
static int64_t hold_back(df_stream *s, int64_t *jobs, int64_t nj) {
    int64_t end = INT64_MAX, first_held[MAX_PREDS];
    for (int i = 0; i < s->n_preds; i++) {
        end = s->next[i] < end ? s->next[i] : end;
        first_held[i] = INT64_MAX;
    }
    if (end <= s->emitted) return nj;  /* no frame comes out of this push: nothing to wait for */
#define HELD(j) (jobs[3 * (j) + 1] >= end && jobs[3 * (j) + 1] >= s->due[jobs[3 * (j) + 2]])
    int any = 0;
    for (int64_t j = 0; j < nj; j++)
        if (HELD(j)) {
            const int i = (int)jobs[3 * j + 2];
            if (jobs[3 * j + 1] < first_held[i]) first_held[i] = jobs[3 * j + 1];
            any = 1;
        }
    if (!any) return nj;
    for (int64_t h = 0; h < nj; h++) {
        if (!HELD(h)) continue;
        for (int64_t r = 0; r < nj; r++)
            if (!HELD(r) && jobs[3 * r] > jobs[3 * h] && mod_hop(s, jobs[3 * r]) == mod_hop(s, jobs[3 * h])) return nj;
    }
    int64_t m = 0;
    for (int64_t j = 0; j < nj; j++)
        if (!HELD(j)) {
            if (m != j) memmove(jobs + 3 * m, jobs + 3 * j, 3 * sizeof(int64_t));
            m++;
        }
#undef HELD
    for (int i = 0; i < s->n_preds; i++)
        if (first_held[i] != INT64_MAX) { s->due[i] = s->next[i]; s->next[i] = first_held[i]; }
    return m;
}

static int64_t num_frames(const df_stream *s) {
    const double f = ceil((double)s->n / SAMPLE_RATE_HZ * s->fps - 1e-9);
    return f > 0 ? (int64_t)f : 0;
}

/* `df_stream_push` of 16 kHz audio. */
static int64_t push16(df_stream *s, const float *audio, int64_t n, int final, float *out, int64_t cap) {
    if (s->finished) return (n == 0 && final) ? 0 : DF_ERR_STATE;  /* flushing again: nothing left */
    if (s->final_seen && (n > 0 || !final)) return DF_ERR_STATE;
    const int outputs = s->net->outputs;
    if (n > 0) {
        if (grow((void **)&s->buf, &s->buf_cap, s->buf_len + n, sizeof(float))) return DF_ERR_MEMORY;
        float *dst = s->buf + s->buf_len;
        memcpy(dst, audio, sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++)  /* NaN fails the comparison: zeroed too */
            if (!(fabsf(dst[i]) <= DF_MAX_SAMPLE_MAGNITUDE)) dst[i] = 0.f;
        s->buf_len += n;
        s->n += n;
    }
    const int64_t total = num_frames(s);
    int64_t *jobs = NULL, njobs = 0, jobs_cap = 0;
    for (;;) {  /* every window that can run now, in order of start (`StreamingAnimator._ready`) */
        int best = -1;
        int64_t best_start = 0;
        for (int i = 0; i < s->n_preds; i++) {
            if (final && s->next[i] >= total) continue;
            const int64_t st = start_of(s, s->next[i], i);
            if (best < 0 || st < best_start) { best = i; best_start = st; }
        }
        if (best < 0 || (!final && best_start + s->span > s->n)) break;
        if (grow((void **)&jobs, &jobs_cap, njobs + 1, 3 * sizeof(int64_t))) { free(jobs); return DF_ERR_MEMORY; }
        jobs[3 * njobs] = best_start; jobs[3 * njobs + 1] = s->next[best]; jobs[3 * njobs + 2] = best;
        njobs++;
        s->next[best]++;
    }
    if (!final) njobs = hold_back(s, jobs, njobs);
    int r = 0;
    for (int64_t j = 0; j < njobs && r == 0; j += s->max_jobs)
        r = run_jobs(s, jobs + 3 * j, (njobs - j < s->max_jobs) ? njobs - j : s->max_jobs);
    free(jobs);
    if (r < 0) return r;
    int64_t oldest = INT64_MAX;
    for (int i = 0; i < s->n_preds; i++) oldest = s->next[i] < oldest ? s->next[i] : oldest;
    if (!final && oldest < PREFILL_FRAMES && (r = prefill(s, n)) < 0) return r;
    int64_t end = total;  /* frames below have all their predictions */
    for (int i = 0; i < s->n_preds; i++) end = s->next[i] < end ? s->next[i] : end;
    int64_t count = end > s->emitted ? end - s->emitted : 0;
    if (count > cap) count = cap;  /* the rest comes out on the next push (or final push) */
    if (count) {
        memcpy(out, s->acc, sizeof(float) * (size_t)count * outputs);
        const int64_t left = s->acc_rows - count;
        memmove(s->acc, s->acc + (size_t)count * outputs, sizeof(float) * (size_t)(left > 0 ? left : 0) * outputs);
        memset(s->acc + (size_t)(left > 0 ? left : 0) * outputs, 0, sizeof(float) * (size_t)(count < s->acc_rows ? count : s->acc_rows) * outputs);
        s->emitted += count;
    }
    if (final) {
        s->final_seen = 1;
        if (s->emitted >= end) {  /* all out: the stream is over */
            s->finished = 1;
            if (s->acc) memset(s->acc, 0, sizeof(float) * (size_t)s->acc_rows * outputs);
        }
    } else {  /* drop audio no later window reads */
        int64_t keep = INT64_MAX;
        for (int i = 0; i < s->n_preds; i++) {
            const int64_t st = start_of(s, s->next[i], i);
            keep = st < keep ? st : keep;
        }
        keep = keep > s->buf_start ? keep : s->buf_start;
        keep = keep < s->n ? keep : s->n;
        if (s->buf)  /* NULL until the first samples */
            memmove(s->buf, s->buf + (keep - s->buf_start), sizeof(float) * (size_t)(s->buf_len - (keep - s->buf_start)));
        s->buf_len -= keep - s->buf_start;
        s->buf_start = keep;
    }
    return count;
}

int df_stream_set_input_rate(df_stream *s, int rate_hz) {
    if (!s) return DF_ERR_ARGUMENT;
    if (s->n_in > 0 || s->final_seen) return DF_ERR_STATE;  /* audio already at the old rate */
    df_resampler *rs = NULL;
    if (rate_hz != SAMPLE_RATE_HZ && !(rs = df_resampler_new(rate_hz, SAMPLE_RATE_HZ))) return DF_ERR_RATE;
    if (rs && ((!s->rbuf && !(s->rbuf = malloc(sizeof(float) * RESAMPLE_BLOCK))) ||
               (!s->ibuf && !(s->ibuf = malloc(sizeof(float) * RESAMPLE_BLOCK))))) {
        df_resampler_free(rs);
        return DF_ERR_MEMORY;
    }
    df_resampler_free(s->rs);
    s->rs = rs;
    return 0;
}

/* Push n samples (16 kHz, or the rate of `df_stream_set_input_rate`); final = 1 ends the stream.
 * Writes the frames it completes to out (at most cap rows of outputs floats; any more wait for the
 * next push) and returns how many, or a negative DF_ERR_*. After a final push that left frames
 * waiting, push (NULL, 0, final = 1) again until it returns 0; audio after a final push is an
 * error (df_stream_reset starts anew). */
int64_t df_stream_push(df_stream *s, const float *audio, int64_t n, int final, float *out, int64_t cap) {
    if (!s || n < 0 || (n > 0 && !audio) || cap < 0 || (cap > 0 && !out)) return DF_ERR_ARGUMENT;
    if (!s->rs) {
        const int64_t c = push16(s, audio, n, final, out, cap);
        if (c >= 0) s->n_in += n;
        return c;
    }
    if (s->finished) return (n == 0 && final) ? 0 : DF_ERR_STATE;
    if (s->final_seen && (n > 0 || !final)) return DF_ERR_STATE;
    /* The input goes to the resampler RESAMPLE_BLOCK samples at a time and its output to the step
     * RESAMPLE_BLOCK samples at a time (memory stays bounded for a push of any length); only the
     * last piece of a final push is final. */
    const int outputs = s->net->outputs;
    int64_t total = 0, i = 0;
    do {
        const int64_t take = n - i < RESAMPLE_BLOCK ? n - i : RESAMPLE_BLOCK;
        const int last = final && i + take == n;
        const float *piece = NULL;
        if (take) {  /* sanitized before the resampler, which would spread a NaN over its taps */
            for (int64_t k = 0; k < take; k++) {
                const float x = audio[i + k];
                s->ibuf[k] = fabsf(x) <= DF_MAX_SAMPLE_MAGNITUDE ? x : 0.f;
            }
            piece = s->ibuf;
        }
        int64_t got = df_resampler_push(s->rs, piece, take, last, s->rbuf, RESAMPLE_BLOCK);
        for (;;) {
            if (got < 0) return got;
            const int more = got == RESAMPLE_BLOCK;
            const int64_t c = push16(s, s->rbuf, got, last && !more, out ? out + (size_t)total * outputs : NULL,
                                     cap - total);
            if (c < 0) return c;
            total += c;
            if (!more) break;
            got = df_resampler_push(s->rs, NULL, 0, last, s->rbuf, RESAMPLE_BLOCK);
        }
        i += take;
        s->n_in += take;
    } while (i < n);
    return total;
}
