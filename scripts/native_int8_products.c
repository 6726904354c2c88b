/* Would int8 products speed up the C step on a CPU without VNNI? One C0/4 layer shape timed both
 * ways on one thread: csrc/dfstep.c's fp32 product (`conv_rows`) against an AVX2 int8 product of
 * the same shape, the usual kind without VNNI: activations quantised per call to 7-bit unsigned
 * (so that vpmaddubsw's pairs cannot saturate), weights 8-bit signed per output column, four
 * inputs per 32-bit lane (vpmaddubsw, vpmaddwd by ones, vpaddd), 4 rows x 24 outputs of
 * accumulators as in the fp32 kernel, then scaled back to float. Quantising the input and
 * dequantising the output are timed with it. Used for "Int8 without VNNI" in docs/performance.md:
 *
 *   cc -O3 -march=native -mprefer-vector-width=256 -ffast-math -I src/distilface/runtime/csrc \
 *     -o /tmp/native_int8_products scripts/native_int8_products.c -lm && /tmp/native_int8_products
 *
 * It also prints the largest difference of the int8 product from the fp32 one, relative to the
 * largest output (random weights and inputs: what quantisation alone costs on this shape).
 */
#include "dfstep.c"

#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define K4_OF(k) (((k) + 3) / 4 * 4)

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

static float *rnd(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)(rand() % 2001 - 1000) * 1e-4f;
    return p;
}

/* Input rows (n_in rows of c floats, cp apart) -> 7-bit unsigned codes, one scale and zero point
 * for the call: q = round(x / s) + z, 0..127. */
static void quantise(const float *x, int n_in, int c, int cp, uint8_t *q, float *scale, int *zero) {
    float lo = 0.f, hi = 0.f;
    for (int t = 0; t < n_in; t++)
        for (int i = 0; i < c; i++) { float v = x[(size_t)t * cp + i]; lo = v < lo ? v : lo; hi = v > hi ? v : hi; }
    const float s = (hi - lo) / 127.f + 1e-12f;
    const int z = (int)lrintf(-lo / s);
    for (int t = 0; t < n_in; t++)
        for (int i = 0; i < c; i++) q[(size_t)t * c + i] = (uint8_t)lrintf(x[(size_t)t * cp + i] / s + (float)z);
    *scale = s; *zero = z;
}

/* W (K rows, N columns, N a multiple of 24) -> int8 panels of 24 columns, each column's inputs in
 * groups of 4 (K rounded up to 4 with zeros): panel p, group g, column j at [p][g][j][0..3]; a
 * scale per column, and per column the sum of its codes (for the zero point). */
static int8_t *pack_int8(const float *w, int K, int N, float *wscale, int32_t *wsum) {
    const int K4 = (K + 3) / 4 * 4;
    int8_t *p = calloc((size_t)K4 * N, 1);
    for (int n = 0; n < N; n++) {
        float m = 1e-12f;
        for (int k = 0; k < K; k++) m = fabsf(w[(size_t)k * N + n]) > m ? fabsf(w[(size_t)k * N + n]) : m;
        wscale[n] = m / 127.f;
        wsum[n] = 0;
        for (int k = 0; k < K; k++) {
            const int8_t v = (int8_t)lrintf(w[(size_t)k * N + n] / wscale[n]);
            p[(size_t)(n / 24) * K4 * 24 + (size_t)(k / 4) * 96 + (n % 24) * 4 + k % 4] = v;
            wsum[n] += v;
        }
    }
    return p;
}

/* R rows x 24 columns of int32 sums back to float: the zero point's share taken out, both scales
 * applied. */
static void dequantise(__m256i acc[4][3], int R, int t, int n, float xs, int z, const float *ws,
                       const int32_t *wsum, float *y, int yp) {
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 3; v++) {
            int32_t s[8];
            _mm256_storeu_si256((__m256i *)s, acc[r][v]);
            for (int j = 0; j < 8; j++) {
                const int col = n + 8 * v + j;
                y[(size_t)(t + r) * yp + col] = xs * ws[col] * (float)(s[j] - z * wsum[col]);
            }
        }
}

/* y[t][n] = xs * ws[n] * (sum_k q[t s + k] W8[k][n] - z sum_k W8[k][n]): rows t s .. t s + K - 1
 * of the flattened codes (a conv with stride s over rows of c, as layer 2 reads them).
 * pairs = 1 takes weights of 7 bits (-63..63): two groups' vpmaddubsw results (each at most
 * 2 x 127 x 63) then add in 16 bits before one vpmaddwd, a multiply fewer per 8 inputs (K4 / 4
 * even). */
static inline __attribute__((always_inline)) void
product_int8(const uint8_t *q, int rows, int stride, int K, const int8_t *w8, int N, float xs, int z,
             const float *ws, const int32_t *wsum, float *y, int yp, const int pairs) {
    const int K4 = (K + 3) / 4 * 4, step = pairs ? 2 : 1;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int n = 0; n < N; n += 24) {
        const int8_t *panel = w8 + (size_t)(n / 24) * K4 * 24;
        for (int t = 0; t < rows; t += 4) {
            const int R = rows - t < 4 ? rows - t : 4;
            __m256i acc[4][3];
            for (int r = 0; r < 4; r++) for (int v = 0; v < 3; v++) acc[r][v] = _mm256_setzero_si256();
            for (int g = 0; g < K4 / 4; g += step) {
                __m256i wv[2][3];
                for (int h = 0; h < step; h++)
                    for (int v = 0; v < 3; v++) wv[h][v] = _mm256_loadu_si256((const __m256i *)(panel + (g + h) * 96 + 32 * v));
                for (int r = 0; r < R; r++) {
                    int32_t f[2];  /* four codes per group (K4 - K zero weights meet whatever follows) */
                    memcpy(f, q + (size_t)(t + r) * stride + 4 * g, 4 * step);
                    const __m256i a0 = _mm256_set1_epi32(f[0]), a1 = _mm256_set1_epi32(pairs ? f[1] : 0);
                    for (int v = 0; v < 3; v++) {
                        __m256i p16 = _mm256_maddubs_epi16(a0, wv[0][v]);
                        if (pairs) p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(a1, wv[1][v]));
                        acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(p16, ones));
                    }
                }
            }
            dequantise(acc, R, t, n, xs, z, ws, wsum, y, yp);
        }
    }
}

static float max_diff(const float *a, const float *b, int rows, int N, int yp, float *top) {
    float err = 0.f;
    *top = 0.f;
    for (int t = 0; t < rows; t++)
        for (int n = 0; n < N; n++) {
            const float u = a[(size_t)t * yp + n], v = b[(size_t)t * yp + n];
            err = fabsf(u - v) > err ? fabsf(u - v) : err;
            *top = fabsf(u) > *top ? fabsf(u) : *top;
        }
    return err;
}

#define TIME(label, macs, stmt)                                                                      \
    do {                                                                                             \
        double best = 1e9;                                                                           \
        for (int rep = 0; rep < 7; rep++) {                                                          \
            double t0 = now();                                                                       \
            for (int r = 0; r < 2000; r++) { stmt; }                                                 \
            double dt = (now() - t0) / 2000;                                                         \
            best = dt < best ? dt : best;                                                            \
        }                                                                                            \
        printf("%-44s %8.2f us  %6.1f GMAC/s\n", label, best * 1e6, (macs) / best * 1e-9);            \
    } while (0)

int main(void) {
    const int C = 72, cp = 72, K = 216, N = 72;
    /* layer 2 of C0/4 on one grid frame: 53 rows, kernel 3, stride 2 over 107 rows of 72 */
    const int rows = 53, n_in = 2 * rows + 1;
    float *x = rnd((size_t)(n_in + 4) * cp), *w = rnd((size_t)K * N), *y = calloc((size_t)rows * cp, 4);
    float *y8 = calloc((size_t)rows * cp, 4), ws[72], xs;
    int32_t wsum[72];
    int z;
    int8_t *w8 = pack_int8(w, K, N, ws, wsum);
    uint8_t *q = calloc((size_t)(n_in + 4) * C, 1);
    const double macs = (double)rows * K * N;
    float *wp = malloc(sizeof(float) * (size_t)K * N);  /* the same W in dfstep.c's column panels */
    for (int n = 0; n < N; n += 24)
        for (int k = 0; k < K; k++)
            for (int j = 0; j < 24; j++) wp[(size_t)n * K + (size_t)k * 24 + j] = w[(size_t)k * N + n + j];
    TIME("fp32 conv_rows: 53 rows x 216 x 72", macs, conv_rows(x, cp, C, rows, 2, 3, 1, wp, cp, NULL, y));
    TIME("int8: quantise 107 x 72 inputs", 0, quantise(x, n_in, C, cp, q, &xs, &z));
    TIME("int8: product + dequantise", macs, product_int8(q, rows, 2 * C, K, w8, N, xs, z, ws, wsum, y8, cp, 0));
    TIME("int8: all three", macs,
         (quantise(x, n_in, C, cp, q, &xs, &z), product_int8(q, rows, 2 * C, K, w8, N, xs, z, ws, wsum, y8, cp, 0)));
    float top, err = max_diff(y, y8, rows, N, cp, &top);
    printf("int8 vs fp32: largest difference %.3g of the largest output %.3g (%.2f %%)\n", err, top, 100 * err / top);
    /* 7-bit weights: the scales halve the range, the codes fit -63..63 */
    float w7[216 * 72];
    for (int i = 0; i < K * N; i++) w7[i] = w[i];
    int8_t *w8h = pack_int8(w7, K, N, ws, wsum);
    for (int i = 0; i < K4_OF(K) * N; i++) w8h[i] = (int8_t)(w8h[i] / 2);
    int32_t wsum7[72];
    for (int n = 0; n < N; n++) { ws[n] *= 2.f; wsum7[n] = 0; }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) wsum7[n] += w8h[(size_t)(n / 24) * K * 24 + (size_t)(k / 4) * 96 + (n % 24) * 4 + k % 4];
    TIME("int8, 7-bit weights, int16 pairs: product", macs,
         product_int8(q, rows, 2 * C, K, w8h, N, xs, z, ws, wsum7, y8, cp, 1));
    err = max_diff(y, y8, rows, N, cp, &top);
    printf("7-bit weights vs fp32: largest difference %.3g (%.2f %%)\n", err, 100 * err / top);
    return 0;
}
