/* The C API under misuse (tests/test_c_api.py builds it with AddressSanitizer and UBSan, against
 * csrc/ itself): every case prints one line "name result" and must neither crash nor make a
 * sanitizer report. Usage: api_misuse MODEL.dfn MUTATIONS_DIR? (each file there: load, and if it
 * loads, stream one second). */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dfstep.h"

#define RATE 16000

static int all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* frames of `n` samples of `audio` pushed at once and flushed -> count (out: cap rows) */
static int64_t run(const df_model *m, const float *audio, int64_t n, float *out, int64_t cap) {
    df_stream *s = df_model_stream(m, 30.0, NULL);
    if (!s) return -100;
    int64_t got = df_stream_push(s, audio, n, 0, out, cap);
    if (got >= 0) {
        int64_t more;
        while ((more = df_stream_push(s, NULL, 0, 1, out + got * df_model_outputs(m), cap - got)) > 0) got += more;
        if (more < 0) got = more;
    }
    df_stream_free(s);
    return got;
}

static int mutations(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 1;
    struct dirent *e;
    float *audio = calloc(RATE, sizeof(float)), *out = malloc(sizeof(float) * 64 * 4096);
    for (int i = 0; i < RATE; i++) audio[i] = 0.3f * sinf(0.05f * (float)i);
    int loaded = 0, refused = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096], err[256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        df_model *m = df_model_load(path, err, sizeof err);
        if (!m) { refused++; continue; }
        loaded++;
        const int64_t got = run(m, audio, RATE, out, 64);
        printf("loaded %s frames %lld finite %d\n", e->d_name, (long long)got,
               got > 0 ? all_finite(out, got * df_model_outputs(m)) : -1);
        df_model_free(m);
    }
    closedir(d);
    printf("mutations loaded %d refused %d\n", loaded, refused);
    free(audio); free(out);
    return 0;
}

int main(int argc, char **argv) {
    char err[256];
    if (argc > 2) return mutations(argv[2]);
    df_model *m = df_model_load(argv[1], err, sizeof err);
    if (!m) { printf("load failed: %s\n", err); return 1; }
    const int outs = df_model_outputs(m);
    float *audio = malloc(sizeof(float) * RATE), *out = malloc(sizeof(float) * 64 * (size_t)outs);
    for (int i = 0; i < RATE; i++) audio[i] = 0.3f * sinf(0.05f * (float)i);
    int64_t stats[4];

    /* NULL handles */
    printf("stream_of_null %d\n", df_model_stream(NULL, 30.0, NULL) == NULL);
    printf("outputs_of_null %d\n", df_model_outputs(NULL));
    printf("name_of_null %d\n", df_model_name(NULL, 0) == NULL);
    printf("net_of_null %d\n", df_model_net(NULL) == NULL);
    printf("lookahead_of_null %d\n", df_model_lookahead_samples(NULL));
    printf("push_null_stream %lld\n", (long long)df_stream_push(NULL, audio, 10, 0, out, 64));
    printf("rate_null_stream %d\n", df_stream_set_input_rate(NULL, 48000));
    df_stream_reset(NULL);
    df_stream_stats(NULL, stats);
    df_stream_free(NULL);
    df_model_free(NULL);
    printf("load_null_path %d %s\n", df_model_load(NULL, err, sizeof err) == NULL, err);
    printf("load_memory_null %d %s\n", df_model_load_memory(NULL, 100, "x", err, sizeof err) == NULL, err);

    /* frame rates and weights */
    const double bad_fps[] = {0.0, -1.0, NAN, INFINITY, 1e9, 1000.5};
    for (int i = 0; i < 6; i++) printf("fps %g refused %d\n", bad_fps[i], df_model_stream(m, bad_fps[i], NULL) == NULL);
    const float bad_w[3] = {NAN, 1.f, 1.f};
    printf("weights_nan refused %d\n", df_model_stream(m, 30.0, bad_w) == NULL);

    /* pushes */
    df_stream *s = df_model_stream(m, 30.0, NULL);
    printf("push_zero_first %lld\n", (long long)df_stream_push(s, audio, 0, 0, out, 64));
    printf("push_out_null %lld\n", (long long)df_stream_push(s, audio, RATE, 0, NULL, 64));
    printf("push_cap_negative %lld\n", (long long)df_stream_push(s, audio, RATE, 0, out, -1));
    printf("push_audio_null %lld\n", (long long)df_stream_push(s, NULL, 10, 0, out, 64));
    printf("push_out_null_cap0 %lld\n", (long long)df_stream_push(s, audio, RATE, 0, NULL, 0));
    df_stream_free(s);
    for (int rate = 0; rate < 2; rate++) {  /* NaN and inf samples: frames stay finite, as if silent */
        float *bad = malloc(sizeof(float) * RATE), *zero = malloc(sizeof(float) * RATE);
        float *fb = malloc(sizeof(float) * 64 * (size_t)outs), *fz = malloc(sizeof(float) * 64 * (size_t)outs);
        memcpy(bad, audio, sizeof(float) * RATE);
        memcpy(zero, audio, sizeof(float) * RATE);
        for (int i = 4000; i < 4010; i++) { bad[i] = i % 2 ? NAN : INFINITY; zero[i] = 0.f; }
        bad[9000] = 1e20f; zero[9000] = 0.f;
        int64_t nb = 0, nz = 0;
        df_stream *a = df_model_stream(m, 30.0, NULL), *b = df_model_stream(m, 30.0, NULL);
        if (rate) { df_stream_set_input_rate(a, 48000); df_stream_set_input_rate(b, 48000); }
        nb = df_stream_push(a, bad, RATE, 0, fb, 64);
        nz = df_stream_push(b, zero, RATE, 0, fz, 64);
        for (int64_t more = 1; more > 0 && nb >= 0;) nb += (more = df_stream_push(a, NULL, 0, 1, fb + nb * outs, 64 - nb));
        for (int64_t more = 1; more > 0 && nz >= 0;) nz += (more = df_stream_push(b, NULL, 0, 1, fz + nz * outs, 64 - nz));
        printf("nonfinite_samples_%s frames %lld %lld finite %d equal %d\n", rate ? "48k" : "16k", (long long)nb,
               (long long)nz, all_finite(fb, nb * outs), nb == nz && !memcmp(fb, fz, sizeof(float) * (size_t)(nb * outs)));
        df_stream_free(a); df_stream_free(b);
        free(bad); free(zero); free(fb); free(fz);
    }
    printf("plain frames %lld\n", (long long)run(m, audio, RATE, out, 64));
    df_model_free(m);
    free(audio); free(out);
    return 0;
}
