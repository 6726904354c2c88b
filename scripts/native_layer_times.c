/* Where a C0/4 frame's time goes in the native step (csrc/dfstep.c), layer shape by layer shape,
 * on one thread: the shapes of one 30 fps frame on an 80-sample frame grid (6.67 new steps of
 * 80 samples), random weights (the cost does not depend on them). Used for "Native runtime" in
 * docs/performance.md:
 *
 *   cc -O3 -march=native -mprefer-vector-width=256 -ffast-math -I src/distilface/runtime/csrc \
 *     -o /tmp/native_layer_times scripts/native_layer_times.c -lm && /tmp/native_layer_times
 */
#include "dfstep.c"

#include <stdio.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

static float *rnd(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)(rand() % 2001 - 1000) * 1e-4f;
    return p;
}

#define TIME(label, macs, stmt)                                                                      \
    do {                                                                                             \
        double best = 1e9;                                                                           \
        for (int rep = 0; rep < 5; rep++) {                                                          \
            double t0 = now();                                                                       \
            for (int r = 0; r < 2000; r++) { stmt; }                                                 \
            double dt = (now() - t0) / 2000;                                                         \
            best = dt < best ? dt : best;                                                            \
        }                                                                                            \
        printf("%-34s %8.2f us  %6.1f GMAC/s\n", label, best * 1e6, (macs) / best * 1e-9);            \
    } while (0)

int main(void) {
    const int C = 72, cp = 72;
    float *x = rnd(4000 * cp), *w = rnd(216 * cp), *y = rnd(4000 * cp), *w1 = rnd(10 * cp), *audio = rnd(4000);
    /* per frame: layer 1 107 rows, 2 53, 3 27, 4 13, 5 7, the dilated 6 and 7 7 each */
    TIME("encoder 1: 107 rows, k10 x 1 ch", 107.0 * 10 * C, conv_rows(audio, 1, 1, 107, 5, 10, 1, w1, cp, NULL, y));
    TIME("encoder 2: 53 rows, k3 x 72 ch", 53.0 * 216 * C, conv_rows(x, cp, C, 53, 2, 3, 1, w, cp, NULL, y));
    TIME("encoder 3: 27 rows", 27.0 * 216 * C, conv_rows(x, cp, C, 27, 2, 3, 1, w, cp, NULL, y));
    TIME("encoder 4: 13 rows", 13.0 * 216 * C, conv_rows(x, cp, C, 13, 2, 3, 1, w, cp, NULL, y));
    TIME("encoder 5: 7 rows", 7.0 * 216 * C, conv_rows(x, cp, C, 7, 2, 3, 1, w, cp, NULL, y));
    TIME("encoder 6 or 7: 7 rows, k2 dilated", 7.0 * 144 * C, conv_rows(x, cp, C, 7, 1, 2, 1, w, cp, NULL, y));
    TIME("encoder GELUs: 228 rows x 72", 0, gelu_rows(y, 228, C, cp));
    TIME("encoder LayerNorms: 228 rows x 72", 0, norm_rows(y, 228, C, cp, DF_NORM_LAYER, w, w, 1e-5f));
    df_net net;
    memset(&net, 0, sizeof net);
    net.channels = C; net.cp = cp; net.steps = 25; net.dilation = 4; net.groups = 8; net.ctx_zlen = 24 + 32;
    net.ctx_z = rnd(72 * 9 * 56); net.ctx_bias = rnd(72); net.red_g = rnd(72); net.red_b = rnd(72); net.red_eps = 1e-5f;
    const int rk[4] = {3, 3, 3, 2}, rs[4] = {2, 2, 2, 1}, fi[3] = {72, 256, 150}, fo[3] = {256, 150, 52};
    net.n_red = 4;
    for (int i = 0; i < 4; i++) { net.red_kernel[i] = rk[i]; net.red_stride[i] = rs[i]; net.red_w[i] = rnd(216 * cp); net.red_bias[i] = rnd(cp); }
    net.n_fc = 3;
    for (int i = 0; i < 3; i++) { net.fc_in[i] = fi[i]; net.fc_out[i] = fo[i]; net.fc_w[i] = rnd(fi[i] * pad8(fo[i])); net.fc_bias[i] = rnd(pad8(fo[i])); }
    net.activation = DF_ACT_SIGMOID; net.outputs = 52;
    float *feats = rnd(200 * cp), out[64], *scratch = malloc(sizeof(float) * head_scratch_floats(&net));
    TIME("head pass (all of it)", 0, head(&net, feats, 0, out, scratch));
    net.n_fc = 0; net.outputs = 0;
    TIME("head without the fc layers", 0, head(&net, feats, 0, out, scratch));
    net.n_red = 0;
    TIME("head: context conv, GELU, norm", 0, head(&net, feats, 0, out, scratch));
    net.groups = 72;
    TIME("head: the same, 1 channel per group", 0, head(&net, feats, 0, out, scratch));
    return out[0] > 1e30f;
}
