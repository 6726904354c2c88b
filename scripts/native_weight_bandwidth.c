/* Two of the default's (whisper-conv-256ms-ft) largest products in the native step, with their
 * weights hot (just used) and cold (64 MB written first, as a game's frame would): Whisper's conv2
 * on the 5 rows of one call (384 x 3 -> 384, 1.77 MB of weights) and the head's first reduction on
 * the 11 rows of one window (288 x 3 -> 288, 1.0 MB). Random weights (the cost does not depend on
 * them); best of 50. Used for "The default in C" in docs/performance.md:
 *
 *   cc -O3 -march=native -mprefer-vector-width=256 -ffast-math -I src/distilface/runtime/csrc \
 *     -o /tmp/native_weight_bandwidth scripts/native_weight_bandwidth.c -lm && /tmp/native_weight_bandwidth
 *
 * (At commit 5391020 the same program times the row-major weight layout before the panels.)
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

static char *junk;
static const size_t junk_bytes = (size_t)64 << 20;

static void evict(void) { for (size_t i = 0; i < junk_bytes; i += 64) junk[i]++; }

static void product(const char *label, int rows, int cin, int cout, int k, int s) {
    float *x = rnd((size_t)(rows * s + k) * cin), *w = rnd((size_t)k * cin * cout), *y = rnd((size_t)rows * cout);
    const double macs = (double)rows * k * cin * cout, bytes = 4.0 * k * cin * cout;
    for (int cold = 0; cold < 2; cold++) {
        double best = 1e9;
        for (int rep = 0; rep < 50; rep++) {
            if (cold) evict();
            else conv_rows(x, cin, cin, rows, s, k, 1, w, cout, NULL, y);
            const double t0 = now();
            conv_rows(x, cin, cin, rows, s, k, 1, w, cout, NULL, y);
            const double dt = now() - t0;
            best = dt < best ? dt : best;
        }
        printf("%-34s %s  %7.1f us  %5.1f GMAC/s  weights %5.1f GB/s\n", label, cold ? "cold" : "hot ", best * 1e6,
               macs / best * 1e-9, bytes / best * 1e-9);
    }
    free(x); free(w); free(y);
}

int main(void) {
    junk = calloc(junk_bytes, 1);
    product("conv2: 5 rows, k3 x 384 -> 384", 5, 384, 384, 3, 2);
    product("reduction 1: 11 rows, k3 x 288", 11, 288, 288, 3, 2);
    free(junk);
    return 0;
}
