/* dfanimate: the C runtime end to end, no Python. Mono signed 16-bit little-endian PCM on stdin
 * (16 kHz, what `distilface stream --input stdin` takes, or any rate given with --rate: resampled
 * in C), frames as CSV on stdout (frame, time_s, one column per curve). An example of linking the
 * runtime into an engine: dfstep.c, dfstream.c, dfmodel.c and dfresample.c with this file, libm
 * only.
 *
 *   cc -O3 -march=native -ffast-math -c dfstep.c && cc -O2 -c dfstream.c dfmodel.c dfresample.c \
 *     dfanimate.c && cc -o dfanimate dfstep.o dfstream.o dfmodel.o dfresample.o dfanimate.o -lm
 *   ffmpeg -i speech.wav -f s16le -ac 1 -ar 48000 - | ./dfanimate model.dfn 30 --rate 48000 > curves.csv
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

#include "dfstep.h"

#define CHUNK 320  /* samples per push (20 ms at 16 kHz), as a game loop or an audio callback would make them */

static void write_frames(const df_model *m, const float *frames, int64_t n, int64_t *k, double fps) {
    const int outputs = df_model_outputs(m);
    for (int64_t f = 0; f < n; f++, (*k)++) {
        printf("%lld,%.6f", (long long)*k, (double)*k / fps);
        for (int o = 0; o < outputs; o++) printf(",%.7g", frames[f * outputs + o]);
        putchar('\n');
    }
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s MODEL.dfn [FPS=30] [smooth] [--rate HZ=16000] < audio.s16le > frames.csv\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage(argv[0]);
    double fps = 30.0;
    int smooth = 0, rate = 16000;
    for (int i = 2; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "smooth")) smooth = 1;
        else if (!strcmp(argv[i], "--rate") && i + 1 < argc) {
            rate = (int)strtol(argv[++i], &end, 10);
            if (*end) return usage(argv[0]);
        } else {
            fps = strtod(argv[i], &end);
            if (*end || !(fps > 0)) { fprintf(stderr, "dfanimate: bad fps %s\n", argv[i]); return 2; }
        }
    }
#ifdef _WIN32
    _setmode(_fileno(stdin), _O_BINARY);   /* PCM, not text: no CRLF or Ctrl-Z translation */
    _setmode(_fileno(stdout), _O_BINARY);  /* the same CSV bytes as on Linux */
#endif
    char err[512];
    df_model *m = df_model_load(argv[1], err, sizeof err);
    if (!m) { fprintf(stderr, "dfanimate: %s\n", err); return 1; }
    const float weights[3] = {0.25f, 0.5f, 0.25f};
    df_stream *s = df_model_stream(m, fps, smooth ? weights : NULL);
    if (!s) { fprintf(stderr, "dfanimate: cannot stream at %g fps\n", fps); df_model_free(m); return 2; }
    if (df_stream_set_input_rate(s, rate) != DF_OK) {
        fprintf(stderr, "dfanimate: sample rate %d Hz not supported (1000..384000 Hz, ratio to 16000 in "
                "terms up to 8000)\n", rate);
        df_stream_free(s); df_model_free(m);
        return 2;
    }
    const int outputs = df_model_outputs(m);
    /* a push completes at most a few frames (one per 1/fps s, plus smoothing's); more would wait */
    const int64_t cap = (int64_t)(fps * CHUNK / rate) + 4;
    float *frames = malloc(sizeof(float) * (size_t)cap * outputs), audio[CHUNK];
    if (!frames) { fprintf(stderr, "dfanimate: out of memory\n"); df_stream_free(s); df_model_free(m); return 1; }
    int16_t pcm[CHUNK];
    printf("frame,time_s");
    for (int o = 0; o < outputs; o++) printf(",%s", df_model_name(m, o));
    putchar('\n');
    int64_t k = 0, n;
    size_t got;
    int rc = 0;
    while ((got = fread(pcm, sizeof(int16_t), CHUNK, stdin)) > 0) {
        for (size_t i = 0; i < got; i++) audio[i] = pcm[i] / 32768.0f;
        if ((n = df_stream_push(s, audio, (int64_t)got, 0, frames, cap)) < 0) { rc = 1; break; }
        write_frames(m, frames, n, &k, fps);
    }
    while (rc == 0) {  /* the end: the last frames (future context taken as silence), cap at a time */
        if ((n = df_stream_push(s, NULL, 0, 1, frames, cap)) < 0) rc = 1;
        else if (n == 0) break;
        else write_frames(m, frames, n, &k, fps);
    }
    if (rc) fprintf(stderr, "dfanimate: stream error\n");
    free(frames);
    df_stream_free(s);
    df_model_free(m);
    return rc;
}
