/*
 * Host test of the C core against test_vectors.txt (shared with the Python tests),
 * plus a fuzz loop of the device receive path.
 *
 *   vectors_test test_vectors.txt            check every vector
 *   vectors_test test_vectors.txt FUZZ_N     also feed FUZZ_N random chunks to fb_rx_bytes
 *
 * For each vector: decode the wire bytes (COBS, length, CRC, version, type, payload),
 * print the canonical text and compare; for good frames also re-encode and compare
 * the bytes. Ends with "N passed, N failed".
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_device.h"
#include "fb_wire.h"

#define LINE_MAX_LEN 8192

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Append printf-style text to out (bounded). */
static void app(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#include <stdarg.h>
static void app(char *out, size_t cap, const char *fmt, ...)
{
    size_t used = strlen(out);
    va_list ap;
    if (used >= cap) return;
    va_start(ap, fmt);
    vsnprintf(out + used, cap - used, fmt, ap);
    va_end(ap);
}

static int take_str(const uint8_t *p, size_t len, size_t *pos, char *dst, size_t cap)
{
    size_t n;
    if (*pos + 1 > len) return -1;
    n = p[*pos];
    if (*pos + 1 + n > len || n + 1 > cap) return -1;
    memcpy(dst, p + *pos + 1, n);
    dst[n] = 0;
    *pos += 1 + n;
    return 0;
}

/* Canonical text of a parsed frame, as firmware_bridge.protocol.describe() prints it.
 * Returns 0, or "type"/"payload" as an error class. */
static const char *describe(const fb_frame_t *f, char *out, size_t cap)
{
    const uint8_t *p = f->payload;
    size_t n = f->payload_len;
    out[0] = 0;
    switch (f->type) {
    case FB_HELLO: {
        char fw[256], ver[256], name[256], unit[256];
        size_t pos = 0;
        unsigned count, i;
        if (take_str(p, n, &pos, fw, sizeof fw) || take_str(p, n, &pos, ver, sizeof ver)) return "payload";
        if (pos + 1 > n) return "payload";
        count = p[pos++];
        app(out, cap, "HELLO seq=%u fw=\"%s\" ver=\"%s\"", f->seq, fw, ver);
        for (i = 0; i < count; i++) {
            unsigned ch, width;
            float max_rate, rate;
            if (pos + 10 > n) return "payload";
            ch = p[pos];
            width = p[pos + 1];
            max_rate = fb_get_f32(p + pos + 2);
            rate = fb_get_f32(p + pos + 6);
            pos += 10;
            if (take_str(p, n, &pos, name, sizeof name) || take_str(p, n, &pos, unit, sizeof unit)) return "payload";
            app(out, cap, " ch=%u,%u,%.9g,%.9g,\"%s\",\"%s\"", ch, width, (double)max_rate, (double)rate, name, unit);
        }
        if (pos != n) return "payload";
        return 0;
    }
    case FB_SAMPLE: {
        unsigned count;
        size_t values, i;
        if (n < 14) return "payload";
        count = p[1];
        values = (n - 14) / 4;
        if (count == 0 || (n - 14) % 4 || values == 0 || values % count) return "payload";
        app(out, cap, "SAMPLE seq=%u channel=%u count=%u first_index=%lu t_first_us=%lu interval_us=%lu values=",
            f->seq, p[0], count, (unsigned long)fb_get_u32(p + 2), (unsigned long)fb_get_u32(p + 6),
            (unsigned long)fb_get_u32(p + 10));
        for (i = 0; i < values; i++) {
            app(out, cap, "%s%.9g", i ? "," : "", (double)fb_get_f32(p + 14 + 4 * i));
        }
        return 0;
    }
    case FB_SAMPLE_ENVELOPE: {
        /* value, min, max per element: three passes over the interleaved triples */
        static const char *const label[3] = {" values=", " mins=", " maxs="};
        unsigned count, k;
        size_t points, i;
        if (n < 14) return "payload";
        count = p[1];
        points = (n - 14) / 12;
        if (count == 0 || (n - 14) % 12 || points == 0 || points % count) return "payload";
        app(out, cap, "SAMPLE_ENVELOPE seq=%u channel=%u count=%u first_index=%lu t_first_us=%lu interval_us=%lu",
            f->seq, p[0], count, (unsigned long)fb_get_u32(p + 2), (unsigned long)fb_get_u32(p + 6),
            (unsigned long)fb_get_u32(p + 10));
        for (k = 0; k < 3; k++) {
            app(out, cap, "%s", label[k]);
            for (i = 0; i < points; i++) {
                app(out, cap, "%s%.9g", i ? "," : "", (double)fb_get_f32(p + 14 + 12 * i + 4 * k));
            }
        }
        return 0;
    }
    case FB_HEARTBEAT:
        if (n != 8) return "payload";
        app(out, cap, "HEARTBEAT seq=%u uptime_us=%lu tx_dropped=%lu", f->seq,
            (unsigned long)fb_get_u32(p), (unsigned long)fb_get_u32(p + 4));
        return 0;
    case FB_ACK:
        if (n != 3) return "payload";
        app(out, cap, "ACK seq=%u acked_seq=%u acked_type=%u", f->seq, fb_get_u16(p), p[2]);
        return 0;
    case FB_NACK:
        if (n != 4) return "payload";
        app(out, cap, "NACK seq=%u acked_seq=%u acked_type=%u reason=%u", f->seq, fb_get_u16(p), p[2], p[3]);
        return 0;
    case FB_GET_HELLO:
        if (n != 0) return "payload";
        app(out, cap, "GET_HELLO seq=%u", f->seq);
        return 0;
    case FB_SET_RATE:
        if (n != 5) return "payload";
        app(out, cap, "SET_RATE seq=%u channel=%u rate_hz=%.9g", f->seq, p[0], (double)fb_get_f32(p + 1));
        return 0;
    case FB_GPIO_WRITE:
        if (n != 2) return "payload";
        app(out, cap, "GPIO_WRITE seq=%u pin=%u value=%u", f->seq, p[0], p[1]);
        return 0;
    case FB_SET_ENVELOPE:
        if (n != 2 || p[1] > 1) return "payload";
        app(out, cap, "SET_ENVELOPE seq=%u channel=%u enabled=%u", f->seq, p[0], p[1]);
        return 0;
    default:
        return "type";
    }
}

static const char *status_class(int rc)
{
    switch (rc) {
    case FB_ERR_COBS: return "cobs";
    case FB_ERR_CRC: return "crc";
    case FB_ERR_VERSION: return "version";
    case FB_ERR_TYPE: return "type";
    case FB_ERR_PAYLOAD: return "payload";
    case FB_ERR_TOO_LONG: return "oversize";
    default: return "?";
    }
}

static int check_vector(const char *name, const char *expect, const uint8_t *wire, size_t wire_len,
                        const char *canonical)
{
    static uint8_t raw[4096];
    static uint8_t again[4096];
    static uint8_t reenc[4096];
    char text[LINE_MAX_LEN];
    const char *got = 0;
    size_t raw_len = 0;
    fb_frame_t f;
    int rc;
    if (wire_len < 2 || wire[0] != 0 || wire[wire_len - 1] != 0) {
        printf("FAIL %s: wire is not 0x00, frame, 0x00\n", name);
        return 0;
    }
    wire_len -= 2;
    wire++;
    if (wire_len > FB_COBS_MAX(FB_HEADER_LEN + FB_PROTOCOL_MAX_PAYLOAD + FB_CRC_LEN)) {
        got = "oversize";
    } else {
        rc = fb_cobs_decode(wire, wire_len, raw, sizeof raw, &raw_len);
        if (rc == FB_OK) rc = fb_frame_parse(raw, raw_len, &f);
        if (rc != FB_OK) {
            got = status_class(rc);
        } else {
            got = describe(&f, text, sizeof text);
        }
    }
    if (strcmp(expect, "ok") == 0) {
        size_t n;
        if (got) {
            printf("FAIL %s: rejected as %s\n", name, got);
            return 0;
        }
        if (strcmp(text, canonical) != 0) {
            printf("FAIL %s:\n  got      %s\n  expected %s\n", name, text, canonical);
            return 0;
        }
        /* Re-encode with the C encoder: CRC and COBS must give the same bytes. */
        memcpy(again + FB_HEADER_LEN, f.payload, f.payload_len);
        n = fb_frame_finish(again, f.type, f.seq, f.payload_len, reenc);
        if (n != wire_len + 2 || memcmp(reenc + 1, wire, wire_len) != 0) {
            printf("FAIL %s: C re-encoding differs\n", name);
            return 0;
        }
        return 1;
    }
    if (!got || strcmp(got, expect) != 0) {
        printf("FAIL %s: expected %s, got %s\n", name, expect, got ? got : "ok");
        return 0;
    }
    return 1;
}

/* --- fuzz of the device receive path --------------------------------------------- */

static unsigned long fuzz_frames_out;

static int sink_write(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)data;
    if (len > FB_MAX_ENCODED + 2) abort();
    fuzz_frames_out++;
    return 1;
}

static uint8_t sink_gpio(void *ctx, uint8_t pin, uint8_t value)
{
    (void)ctx;
    (void)value;
    return pin < 32 ? 0 : FB_NACK_BAD_PIN;
}

static uint32_t rng_state = 12345u;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static int fuzz(unsigned long iterations)
{
    static const fb_channel_def_t chans[2] = {
        {"a", "u", 1, 1000.0f, 10.0f},
        {"b", "v", 3, 100.0f, 0.0f},
    };
    static fb_device_t dev;
    fb_io_t io = {sink_write, sink_gpio, 0, 0};
    uint8_t buf[96];
    uint8_t good[16];
    uint8_t raw[16];
    uint8_t env[16];
    size_t env_len;
    unsigned long i;
    uint32_t now = 0;
    unsigned long acks_before;
    size_t good_len;
    fb_init(&dev, &io, "fuzz", "0", chans, 2, now);
    /* A valid SET_RATE, to check the receiver still works after each random chunk. */
    raw[FB_HEADER_LEN] = 0;
    fb_put_f32(raw + FB_HEADER_LEN + 1, 20.0f);
    good_len = fb_frame_finish(raw, FB_SET_RATE, 7, 5, good);
    for (i = 0; i < iterations; i++) {
        size_t len = rnd() % sizeof buf;
        size_t j;
        uint32_t t;
        float v[3] = {1, 2, 3};
        for (j = 0; j < len; j++) {
            uint32_t r = rnd();
            buf[j] = (r & 0x300u) ? (uint8_t)r : 0; /* plenty of delimiters */
        }
        fb_rx_bytes(&dev, buf, len, now);
        now += rnd() % 5000u;
        while (fb_sample_due(&dev, 0, now, &t)) fb_push_sample(&dev, 0, t, v);
        while (fb_sample_due(&dev, 1, now, &t)) fb_push_sample(&dev, 1, t, v);
        fb_poll(&dev, now);
        if (i % 64 == 0) {
            uint8_t zero = 0;
            acks_before = dev.rx_frames;
            fb_rx_bytes(&dev, &zero, 1, now);
            fb_rx_bytes(&dev, good, good_len, now);
            if (dev.rx_frames != acks_before + 1) {
                printf("FAIL fuzz: good frame not decoded after iteration %lu\n", i);
                return 0;
            }
            /* Peak-hold on and off on both channels (the wide one may be refused). */
            raw[FB_HEADER_LEN] = (uint8_t)((i / 64) % 2);
            raw[FB_HEADER_LEN + 1] = (uint8_t)((i / 128) % 2);
            env_len = fb_frame_finish(raw, FB_SET_ENVELOPE, 8, 2, env);
            fb_rx_bytes(&dev, env, env_len, now);
        }
    }
    printf("fuzz: %lu inputs, %lu frames sent, %lu rx errors\n", iterations, fuzz_frames_out,
           (unsigned long)dev.rx_errors);
    return 1;
}

int main(int argc, char **argv)
{
    static char line[LINE_MAX_LEN];
    static uint8_t wire[LINE_MAX_LEN / 2];
    FILE *fp;
    int passed = 0, failed = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s test_vectors.txt [FUZZ_N]\n", argv[0]);
        return 2;
    }
    fp = fopen(argv[1], "r");
    if (!fp) {
        perror(argv[1]);
        return 2;
    }
    while (fgets(line, sizeof line, fp)) {
        char *fields[4];
        char *s = line;
        size_t k, n;
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] == '#' || line[0] == 0) continue;
        for (k = 0; k < 3; k++) {
            char *bar = strchr(s, '|');
            if (!bar) break;
            *bar = 0;
            fields[k] = s;
            s = bar + 1;
        }
        if (k != 3) {
            printf("FAIL malformed vector line\n");
            failed++;
            continue;
        }
        fields[3] = s;
        n = strlen(fields[2]) / 2;
        for (k = 0; k < n; k++) {
            int hi = hexval(fields[2][2 * k]), lo = hexval(fields[2][2 * k + 1]);
            if (hi < 0 || lo < 0) break;
            wire[k] = (uint8_t)(hi * 16 + lo);
        }
        if (check_vector(fields[0], fields[1], wire, n, fields[3])) passed++;
        else failed++;
    }
    fclose(fp);
    if (argc > 2) {
        if (fuzz(strtoul(argv[2], 0, 10))) passed++;
        else failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
