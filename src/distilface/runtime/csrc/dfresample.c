/* Streaming resampling to the students' 16 kHz in C: the same samples as scipy's
 * `resample_poly(x, up, down)` on the whole signal (what `distilface.audio.resample` and the
 * Python `StreamResampler` compute), pushed in chunks of any size.
 *
 * Why: engines and microphones deliver 44.1 or 48 kHz. Resampled in Python (`StreamResampler`
 * reruns resample_poly over its retained input) a 30 fps push of 48 kHz audio cost 113 us here,
 * half of a C0/4 frame in C; and a C caller (csrc/dfanimate.c, a plugin) has no Python at all.
 *
 * The filter is resample_poly's default, computed here as scipy does: up/down in lowest terms,
 * half_len = 10 max(up, down), a (2 half_len + 1)-tap low-pass `firwin(.., 1 / max(up, down),
 * window=("kaiser", 5.0))` (windowed sinc scaled to unit DC gain) rounded to float32 and times
 * `up` in float32. Output m is then
 *     y[m] = sum_n x[n] h[m down + half_len - n up]      (x zero before 0 and after the end)
 * and there are ceil(N up / down) outputs for N inputs. Output m reads inputs up to
 * floor((m down + half_len) / up), so it comes out as soon as that sample has arrived. The taps
 * are stored by phase ((m down + half_len) mod up), each phase's taps contiguous and zero-padded
 * in front to a multiple of 8, so every output is one dot product of fixed length with a run of
 * the input: zeros stand in for the samples before the first (the buffer starts with them) and
 * after the last (a final push appends them). Sums in float, 8 lanes (the order differs from
 * scipy's: equal within a few 1e-7 on unit-scale audio, tests/test_native.py).
 *
 * Compiled without -ffast-math, like dfstream.c: the float32 rounding of the taps must be
 * scipy's.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dfstep.h"

typedef float v8 __attribute__((vector_size(32)));

struct df_resampler {
    int64_t up, down, half_len, taps;  /* taps: per phase, rounded up to a multiple of 8 */
    float *h;                          /* (up, taps): phase p's taps in the order of the inputs they
                                        * meet, oldest first; zeros in front */
    float *buf;                        /* input from sample buf_start on (may start before 0: zeros) */
    int64_t buf_start, buf_len, buf_cap;
    int64_t n_in, m_next;              /* inputs received; next output not yet written */
    int final_seen;
};

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) { const int64_t t = a % b; a = b; b = t; }
    return a;
}

static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* The modified Bessel function I0 by its power series: terms (x/2)^2k / (k!)^2, 1e-17 relative
 * after ~20 terms for the window's x <= 5. */
static double bessel_i0(double x) {
    double term = 1.0, sum = 1.0;
    const double q = 0.25 * x * x;
    for (int k = 1; k < 200 && term > 1e-18 * sum; k++) {
        term *= q / ((double)k * k);
        sum += term;
    }
    return sum;
}

df_resampler *df_resampler_new(int from_hz, int to_hz) {
    if (from_hz < DF_MIN_RATE_HZ || from_hz > DF_MAX_RATE_HZ || to_hz < DF_MIN_RATE_HZ || to_hz > DF_MAX_RATE_HZ)
        return NULL;
    const int64_t g = gcd64(from_hz, to_hz), up = to_hz / g, down = from_hz / g;
    if ((up > down ? up : down) > DF_MAX_RATIO_TERM) return NULL;
    df_resampler *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->up = up; r->down = down;
    const int64_t max_rate = up > down ? up : down;
    r->half_len = up == down ? 0 : 10 * max_rate;
    const int64_t n_taps = 2 * r->half_len + 1;
    r->taps = ((n_taps + up - 1) / up + 7) / 8 * 8;
    r->h = calloc((size_t)(up * r->taps), sizeof(float));
    double *hd = malloc(sizeof(double) * (size_t)n_taps);
    if (!r->h || !hd) { free(hd); df_resampler_free(r); return NULL; }
    if (up == down) {
        hd[0] = 1.0;
    } else {  /* scipy.signal.firwin(n_taps, 1 / max_rate, window=("kaiser", 5.0)) */
        const double fc = 1.0 / (double)max_rate, beta = 5.0, alpha = (double)r->half_len;
        const double i0_beta = bessel_i0(beta);
        double sum = 0.0;
        for (int64_t i = 0; i < n_taps; i++) {
            const double m = (double)(i - r->half_len), x = M_PI * fc * m;
            const double sinc = m == 0 ? 1.0 : sin(x) / x;
            const double u = (i - alpha) / alpha;
            const double w = bessel_i0(beta * sqrt(fmax(0.0, 1.0 - u * u))) / i0_beta;
            hd[i] = fc * sinc * w;
            sum += hd[i];
        }
        for (int64_t i = 0; i < n_taps; i++) hd[i] /= sum;  /* unit gain at DC */
    }
    /* output m, phase p = t mod up with t = m down + half_len, meets input t / up - k through
     * tap h[p + k up]: stored at position taps - 1 - k of its phase */
    for (int64_t p = 0; p < up; p++)
        for (int64_t k = 0; p + k * up < n_taps; k++) {
            float f = (float)hd[p + k * up];  /* as resample_poly: float32 taps, times up in float32 */
            f *= (float)up;
            r->h[p * r->taps + r->taps - 1 - k] = f;
        }
    free(hd);
    df_resampler_reset(r);
    return r;
}

static int append(df_resampler *r, const float *in, int64_t n) {  /* in NULL: zeros */
    if (r->buf_len + n > r->buf_cap) {
        int64_t c = r->buf_cap ? r->buf_cap : 1024;
        while (c < r->buf_len + n) c *= 2;
        float *q = realloc(r->buf, sizeof(float) * (size_t)c);
        if (!q) return DF_ERR_MEMORY;
        r->buf = q; r->buf_cap = c;
    }
    if (in) memcpy(r->buf + r->buf_len, in, sizeof(float) * (size_t)n);
    else memset(r->buf + r->buf_len, 0, sizeof(float) * (size_t)n);
    r->buf_len += n;
    return 0;
}

void df_resampler_reset(df_resampler *r) {
    r->buf_len = r->n_in = r->m_next = 0;
    r->final_seen = 0;
    r->buf_start = -r->taps;  /* the samples before the first are zeros */
    append(r, NULL, r->taps);  /* (its first buffer is made here: a failure shows at the first push) */
}

void df_resampler_free(df_resampler *r) {
    if (!r) return;
    free(r->h); free(r->buf); free(r);
}

/* Outputs that exist for the inputs so far: all of them after the final push, else those whose
 * newest input has arrived. */
static int64_t ready(const df_resampler *r) {
    if (r->final_seen) return (r->n_in * r->up + r->down - 1) / r->down;
    /* largest m with floor((m down + half_len) / up) <= n_in - 1, plus one */
    const int64_t m = floor_div(r->n_in * r->up - 1 - r->half_len, r->down);
    return m + 1 > 0 ? m + 1 : 0;
}

/* Push n input samples (final = 1 ends the signal); writes at most cap outputs to out and returns
 * how many, or a negative DF_ERR_*. Outputs beyond cap wait for the next push; after a final push,
 * push (NULL, 0, 1) until it returns 0. `df_resampler_reset` starts a new signal. */
int64_t df_resampler_push(df_resampler *r, const float *in, int64_t n, int final, float *out, int64_t cap) {
    if (n < 0 || cap < 0 || (n > 0 && !in) || (cap > 0 && !out)) return DF_ERR_ARGUMENT;
    if (r->final_seen && (n > 0 || !final)) return DF_ERR_STATE;
    if (!r->final_seen && r->buf_start + r->buf_len != r->n_in) return DF_ERR_MEMORY;  /* the reset's zeros did not fit */
    if (n > 0) {
        if (append(r, in, n)) return DF_ERR_MEMORY;
        r->n_in += n;
    }
    if (final && !r->final_seen) {  /* the samples after the last are zeros */
        if (append(r, NULL, r->taps)) return DF_ERR_MEMORY;
        r->final_seen = 1;
    }
    int64_t end = ready(r);
    if (end - r->m_next > cap) end = r->m_next + cap;
    const int64_t up = r->up, down = r->down, taps = r->taps;
    for (int64_t m = r->m_next; m < end; m++) {
        const int64_t t = m * down + r->half_len;
        const float *h = r->h + (t % up) * taps;
        const float *x = r->buf + (t / up - taps + 1 - r->buf_start);  /* its oldest input */
        v8 acc = {0};
        for (int64_t j = 0; j < taps; j += 8) {
            v8 hv, xv;
            memcpy(&hv, h + j, sizeof hv);
            memcpy(&xv, x + j, sizeof xv);
            acc += hv * xv;
        }
        out[m - r->m_next] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
    const int64_t count = end - r->m_next;
    r->m_next = end;
    if (!r->final_seen) {  /* drop input no later output reads: output m_next's oldest on */
        int64_t keep = (r->m_next * down + r->half_len) / up - taps + 1;
        if (keep > r->buf_start) {
            memmove(r->buf, r->buf + (keep - r->buf_start), sizeof(float) * (size_t)(r->buf_len - (keep - r->buf_start)));
            r->buf_len -= keep - r->buf_start;
            r->buf_start = keep;
        }
    }
    return count;
}
