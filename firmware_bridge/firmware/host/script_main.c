/*
 * The device core on a scripted clock, for exact tests of its arithmetic (batching,
 * envelope decimation, min/max, indices, intervals) without real time.
 *
 *   fb_script < SCRIPT
 *
 * Channels: 0 "a" (width 1, max 1000 Hz), 1 "b" (width 3, max 100 Hz); both stopped
 * at boot. Measurement m (0, 1, 2, ... per channel, counting every fb_push_sample) has
 * the value m in every element, plus 1000 * element index, unless a spike replaces it.
 * Script lines:
 *
 *   rx HEX          bytes from the host (e.g. an encoded SET_RATE / SET_ENVELOPE)
 *   spike CH M V    measurement M of channel CH reads V in every element
 *   run US          advance the clock US microseconds, 1 us at a time, sampling every
 *                   due channel and polling the core after each step
 *   jump US         advance the clock US microseconds at once (a long sleep, or a
 *                   sampling period of many minutes), then sample and poll once
 *   flush           send every channel's partial batch now
 *   latency US      set batch_latency_us (default 20000)
 *
 * stdout: "TX HEX" for every frame the core writes (one per line, wire bytes).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_device.h"

#define MAX_SPIKES 16

static uint32_t measured[2];
static struct {
    uint8_t ch;
    uint32_t m;
    float v;
} spikes[MAX_SPIKES];
static size_t n_spikes;

static int print_write(void *ctx, const uint8_t *data, size_t len)
{
    size_t i;
    (void)ctx;
    fputs("TX ", stdout);
    for (i = 0; i < len; i++) printf("%02x", data[i]);
    fputc('\n', stdout);
    return 1;
}

static float measure(uint8_t ch, uint8_t element)
{
    uint32_t m = measured[ch];
    size_t i;
    for (i = 0; i < n_spikes; i++) {
        if (spikes[i].ch == ch && spikes[i].m == m) return spikes[i].v;
    }
    return (float)m + 1000.0f * (float)element;
}

/* Sample every due channel at now, then poll the core. */
static void step_core(fb_device_t *dev, const fb_channel_def_t *chans, uint32_t now)
{
    uint8_t c;
    uint32_t t;
    for (c = 0; c < dev->n_channels; c++) {
        while (fb_sample_due(dev, c, now, &t)) {
            float vals[3];
            uint8_t j;
            for (j = 0; j < chans[c].width; j++) vals[j] = measure(c, j);
            measured[c]++;
            fb_push_sample(dev, c, t, vals);
        }
    }
    fb_poll(dev, now);
}

int main(void)
{
    static const fb_channel_def_t chans[2] = {
        {"a", "u", 1, 1000.0f, 0.0f},
        {"b", "v", 3, 100.0f, 0.0f},
    };
    static fb_device_t dev;
    static char line[4096];
    static uint8_t bytes[2048];
    fb_io_t io = {print_write, 0, 0, 0};
    uint32_t now = 0;
    if (fb_init(&dev, &io, "script", "0", chans, 2, now) != FB_OK) return 1;
    while (fgets(line, sizeof line, stdin)) {
        char hex[4096];
        unsigned long a, b;
        float v;
        if (sscanf(line, "rx %4095s", hex) == 1) {
            size_t n = strlen(hex) / 2, i;
            for (i = 0; i < n && i < sizeof bytes; i++) {
                unsigned byte;
                if (sscanf(hex + 2 * i, "%2x", &byte) != 1) return 2;
                bytes[i] = (uint8_t)byte;
            }
            fb_rx_bytes(&dev, bytes, i, now);
        } else if (sscanf(line, "spike %lu %lu %f", &a, &b, &v) == 3) {
            if (n_spikes == MAX_SPIKES || a > 1) return 2;
            spikes[n_spikes].ch = (uint8_t)a;
            spikes[n_spikes].m = (uint32_t)b;
            spikes[n_spikes].v = v;
            n_spikes++;
        } else if (sscanf(line, "run %lu", &a) == 1) {
            unsigned long step;
            for (step = 0; step < a; step++) {
                now++;
                step_core(&dev, chans, now);
            }
        } else if (sscanf(line, "jump %lu", &a) == 1) {
            now += (uint32_t)a;
            step_core(&dev, chans, now);
        } else if (sscanf(line, "latency %lu", &a) == 1) {
            dev.batch_latency_us = (uint32_t)a;
        } else if (strncmp(line, "flush", 5) == 0) {
            uint8_t c;
            for (c = 0; c < dev.n_channels; c++) fb_flush_channel(&dev, c);
        } else if (line[0] != '\n' && line[0] != '#') {
            fprintf(stderr, "fb_script: bad line: %s", line);
            return 2;
        }
    }
    return 0;
}
