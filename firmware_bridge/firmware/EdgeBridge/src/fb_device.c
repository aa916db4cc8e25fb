/* fb_device: protocol core of the device side. See fb_device.h. */
#include "fb_device.h"

#include <string.h>

#define SAMPLE_HEADER_LEN 14u

static void send_frame(fb_device_t *dev, uint8_t type, size_t payload_len)
{
    size_t n = fb_frame_finish(dev->raw, type, dev->tx_seq, payload_len, dev->enc);
    /* The sequence number advances even for a dropped frame: the host counts the gap. */
    dev->tx_seq++;
    if (!dev->io.write(dev->io.ctx, dev->enc, n)) {
        dev->tx_dropped++;
    }
}

static size_t put_str(uint8_t *p, size_t room, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > 255u) {
        n = 255u;
    }
    if (n + 1u > room) {
        return 0; /* does not fit: the caller stops adding channels */
    }
    p[0] = (uint8_t)n;
    if (n) {
        memcpy(p + 1, s, n);
    }
    return n + 1u;
}

void fb_send_hello(fb_device_t *dev)
{
    uint8_t *p = dev->raw + FB_HEADER_LEN;
    size_t room = FB_MAX_PAYLOAD;
    size_t used = 0;
    size_t n;
    uint8_t count_at;
    uint8_t i;
    n = put_str(p, room, dev->fw_name);
    used += n;
    n = put_str(p + used, room - used, dev->fw_version);
    used += n;
    count_at = (uint8_t)used;
    p[used++] = 0;
    for (i = 0; i < dev->n_channels; i++) {
        const fb_channel_t *c = &dev->ch[i];
        size_t start = used;
        size_t a;
        size_t b;
        if (room - used < 10u + 2u) {
            break;
        }
        p[used] = i;
        p[used + 1] = c->def->width;
        fb_put_f32(p + used + 2, c->def->max_rate_hz);
        fb_put_f32(p + used + 6, c->rate_hz);
        used += 10u;
        a = put_str(p + used, room - used, c->def->name);
        b = a ? put_str(p + used + a, room - used - a, c->def->unit) : 0;
        if (!a || !b) {
            used = start; /* a channel that does not fit is left out of HELLO */
            break;
        }
        used += a + b;
        p[count_at]++;
    }
    send_frame(dev, FB_HELLO, used);
}

static void send_ack(fb_device_t *dev, const fb_frame_t *cmd, uint8_t reason)
{
    uint8_t *p = dev->raw + FB_HEADER_LEN;
    fb_put_u16(p, cmd->seq);
    p[2] = cmd->type;
    if (reason) {
        p[3] = reason;
        send_frame(dev, FB_NACK, 4u);
    } else {
        send_frame(dev, FB_ACK, 3u);
    }
}

static void send_heartbeat(fb_device_t *dev, uint32_t now_us)
{
    uint8_t *p = dev->raw + FB_HEADER_LEN;
    fb_put_u32(p, now_us);
    fb_put_u32(p + 4, dev->tx_dropped);
    send_frame(dev, FB_HEARTBEAT, 8u);
    dev->last_heartbeat_us = now_us;
}

int fb_init(fb_device_t *dev, const fb_io_t *io, const char *fw_name, const char *fw_version,
            const fb_channel_def_t *channels, uint8_t n_channels, uint32_t now_us)
{
    uint8_t i;
    memset(dev, 0, sizeof *dev);
    if (n_channels > FB_MAX_CHANNELS) {
        return FB_ERR_PAYLOAD;
    }
    dev->io = *io;
    dev->fw_name = fw_name;
    dev->fw_version = fw_version;
    dev->n_channels = n_channels;
    dev->batch_latency_us = 20000u;
    dev->heartbeat_interval_us = 1000000u;
    for (i = 0; i < n_channels; i++) {
        if (channels[i].width == 0 || channels[i].width > FB_BATCH_MAX_VALUES) {
            return FB_ERR_PAYLOAD;
        }
        dev->ch[i].def = &channels[i];
        (void)fb_set_rate(dev, i, channels[i].default_rate_hz, now_us);
    }
    dev->last_heartbeat_us = now_us;
    fb_send_hello(dev);
    return FB_OK;
}

/* Microseconds between samples at rate_hz (> 0), capped at FB_MAX_PERIOD_US. */
static uint32_t period_for(float rate_hz)
{
    float period = 1000000.0f / rate_hz + 0.5f;
    uint32_t us = period >= (float)FB_MAX_PERIOD_US ? FB_MAX_PERIOD_US : (uint32_t)period;
    return us ? us : 1u;
}

/* Measurement grid, decimation and report spacing from the rate and the envelope
 * flag; the grid starts at now_us. keep_window keeps the measurements of the
 * unfinished envelope window (a rate change: the next report's min/max still covers
 * everything since the previous report); otherwise the window restarts empty. */
static void schedule(fb_channel_t *c, uint32_t now_us, int keep_window)
{
    c->decim_k = 1;
    if (!keep_window) {
        c->decim_n = 0;
    }
    if (!(c->rate_hz > 0.0f)) {
        c->period_us = 0;
        c->report_us = 0;
        return;
    }
    if (c->envelope) {
        uint64_t report;
        float k = c->def->max_rate_hz / c->rate_hz + 0.5f; /* round half up */
        c->decim_k = k >= 4294967295.0f ? 0xFFFFFFFFu : (k < 1.0f ? 1u : (uint32_t)k);
        c->period_us = period_for(c->def->max_rate_hz);
        report = (uint64_t)c->period_us * c->decim_k;
        c->report_us = report > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)report;
    } else {
        c->period_us = period_for(c->rate_hz);
        c->report_us = c->period_us;
    }
    c->last_due_us = now_us - c->period_us; /* the first measurement is due now */
}

uint8_t fb_set_rate(fb_device_t *dev, uint8_t ch, float rate_hz, uint32_t now_us)
{
    fb_channel_t *c;
    if (ch >= dev->n_channels) {
        return FB_NACK_UNKNOWN_CHANNEL;
    }
    c = &dev->ch[ch];
    /* Written so that NaN fails too; a positive rate whose period the clock cannot
     * schedule (below FB_MIN_RATE_HZ) is refused rather than rounded. */
    if (!(rate_hz >= 0.0f && rate_hz <= c->def->max_rate_hz)) {
        return FB_NACK_RATE_OUT_OF_RANGE;
    }
    if (rate_hz > 0.0f && rate_hz < FB_MIN_RATE_HZ) {
        return FB_NACK_RATE_OUT_OF_RANGE;
    }
    /* Samples at the old rate leave in their own batch (its spacing is uniform). */
    fb_flush_channel(dev, ch);
    c->rate_hz = rate_hz;
    schedule(c, now_us, c->envelope && rate_hz > 0.0f);
    if (dev->io.rate_changed) {
        dev->io.rate_changed(dev->io.ctx, ch, rate_hz);
    }
    return 0;
}

static int envelope_fits(uint8_t width)
{
    return FB_ENVELOPE && width <= FB_ENVELOPE_MAX_WIDTH &&
           SAMPLE_HEADER_LEN + 12u * (size_t)width <= FB_MAX_PAYLOAD;
}

uint8_t fb_set_envelope(fb_device_t *dev, uint8_t ch, uint8_t enabled, uint32_t now_us)
{
    fb_channel_t *c;
    if (ch >= dev->n_channels) {
        return FB_NACK_UNKNOWN_CHANNEL;
    }
    if (enabled > 1u) {
        return FB_NACK_BAD_PAYLOAD;
    }
    c = &dev->ch[ch];
    if (enabled && !envelope_fits(c->def->width)) {
        return FB_NACK_UNSUPPORTED;
    }
    if (c->envelope == enabled) {
        return 0; /* idempotent: a re-sent command keeps the running grid */
    }
    /* A batch holds one frame type: plain samples leave before envelope ones. */
    fb_flush_channel(dev, ch);
    c->envelope = enabled;
    schedule(c, now_us, 0);
    return 0;
}

static void handle_frame(fb_device_t *dev, const fb_frame_t *f, uint32_t now_us)
{
    switch (f->type) {
    case FB_GET_HELLO:
        fb_send_hello(dev);
        break;
    case FB_SET_RATE:
        if (f->payload_len != 5u) {
            send_ack(dev, f, FB_NACK_BAD_PAYLOAD);
        } else {
            send_ack(dev, f, fb_set_rate(dev, f->payload[0], fb_get_f32(f->payload + 1), now_us));
        }
        break;
#if FB_ENVELOPE
    case FB_SET_ENVELOPE:
        if (f->payload_len != 2u || f->payload[1] > 1u) {
            send_ack(dev, f, FB_NACK_BAD_PAYLOAD);
        } else {
            send_ack(dev, f, fb_set_envelope(dev, f->payload[0], f->payload[1], now_us));
        }
        break;
#endif
    case FB_GPIO_WRITE:
        if (f->payload_len != 2u || f->payload[1] > 1u) {
            send_ack(dev, f, FB_NACK_BAD_PAYLOAD);
        } else if (!dev->io.gpio_write) {
            send_ack(dev, f, FB_NACK_BAD_PIN);
        } else {
            send_ack(dev, f, dev->io.gpio_write(dev->io.ctx, f->payload[0], f->payload[1]));
        }
        break;
    case FB_HEARTBEAT:
        break; /* the host is alive; nothing to answer */
    case FB_HELLO:
    case FB_SAMPLE:
    case FB_ACK:
    case FB_NACK:
    case FB_SAMPLE_ENVELOPE:
        break; /* device-to-host types (an echo?): never answer, no feedback loops */
    default:
        send_ack(dev, f, FB_NACK_UNKNOWN_TYPE);
        break;
    }
}

static void handle_chunk(fb_device_t *dev, uint32_t now_us)
{
    size_t raw_len = 0;
    fb_frame_t f;
    int rc = fb_cobs_decode(dev->rx_buf, dev->rx_len, dev->rx_raw, sizeof dev->rx_raw, &raw_len);
    if (rc == FB_OK) {
        rc = fb_frame_parse(dev->rx_raw, raw_len, &f);
    }
    if (rc == FB_OK) {
        dev->rx_frames++;
        handle_frame(dev, &f, now_us);
    } else if (rc == FB_ERR_VERSION) {
        dev->rx_errors++;
        send_ack(dev, &f, FB_NACK_BAD_VERSION);
    } else {
        dev->rx_errors++;
    }
}

void fb_rx_bytes(fb_device_t *dev, const uint8_t *data, size_t len, uint32_t now_us)
{
    size_t i;
    for (i = 0; i < len; i++) {
        uint8_t b = data[i];
        if (b == 0) {
            if (dev->rx_overflow) {
                dev->rx_errors++;
            } else if (dev->rx_len) {
                handle_chunk(dev, now_us);
            }
            dev->rx_len = 0;
            dev->rx_overflow = 0;
        } else if (dev->rx_len < sizeof dev->rx_buf) {
            dev->rx_buf[dev->rx_len++] = b;
        } else {
            dev->rx_overflow = 1; /* skip to the next delimiter */
        }
    }
}

int fb_sample_due(fb_device_t *dev, uint8_t ch, uint32_t now_us, uint32_t *t_us)
{
    fb_channel_t *c;
    uint32_t elapsed;
    if (ch >= dev->n_channels) {
        return 0;
    }
    c = &dev->ch[ch];
    if (!c->period_us) {
        return 0;
    }
    /* Elapsed time since the previous due time, modulo 2^32: exact for any period up
     * to FB_MAX_PERIOD_US as long as the loop polls at least every 35 minutes. A
     * "next due" time compared with the clock instead wraps for periods over 2^31 us
     * and reports every call as due, for ever. */
    elapsed = now_us - c->last_due_us;
    if (elapsed < c->period_us) {
        return 0;
    }
    if (elapsed - c->period_us > FB_MAX_CATCHUP_US) {
        /* Far behind: skip ahead rather than burst, so a caller's
         * while (fb_sample_due(...)) loop ends after one sample. The batch so far
         * leaves first: a batch's samples are evenly spaced, and the skip breaks that. */
        fb_flush_channel(dev, ch);
        c->last_due_us = now_us - c->period_us;
    }
    c->last_due_us += c->period_us;
    *t_us = c->last_due_us;
    return 1;
}

/* Floats one reported sample takes in the batch: value, or value, min, max. */
static size_t sample_floats(const fb_channel_t *c)
{
    return (size_t)c->def->width * (c->envelope ? 3u : 1u);
}

void fb_flush_channel(fb_device_t *dev, uint8_t ch)
{
    fb_channel_t *c = &dev->ch[ch];
    uint8_t *p = dev->raw + FB_HEADER_LEN;
    uint32_t interval = c->report_us;
    size_t n_values;
    size_t i;
    if (!c->batch_count) {
        return;
    }
    if (c->batch_count > 1u) {
        uint32_t span = c->batch_t_last_us - c->batch_t_first_us;
        uint32_t gaps = (uint32_t)c->batch_count - 1u;
        interval = (span + gaps / 2u) / gaps;
    }
    n_values = (size_t)c->batch_count * sample_floats(c);
    p[0] = ch;
    p[1] = c->batch_count;
    fb_put_u32(p + 2, c->batch_first_index);
    fb_put_u32(p + 6, c->batch_t_first_us);
    fb_put_u32(p + 10, interval);
    /* Envelope samples are stored as the wire carries them: value, min, max per element. */
    for (i = 0; i < n_values; i++) {
        fb_put_f32(p + SAMPLE_HEADER_LEN + 4u * i, c->batch_values[i]);
    }
    c->batch_count = 0;
    send_frame(dev, c->envelope ? FB_SAMPLE_ENVELOPE : FB_SAMPLE, SAMPLE_HEADER_LEN + 4u * n_values);
}

static int batch_has_room(const fb_device_t *dev, const fb_channel_t *c)
{
    size_t values = ((size_t)c->batch_count + 1u) * sample_floats(c);
    (void)dev;
    return c->batch_count < 255u && values <= FB_BATCH_MAX_VALUES &&
           SAMPLE_HEADER_LEN + 4u * values <= FB_MAX_PAYLOAD;
}

/* Fold one measurement into the envelope window. NaN never wins over a number, so a
 * dead reading does not hide the rest of the window. Returns 1 when the window holds
 * k measurements: this one is reported, with the window's min and max. */
static int envelope_fold(fb_channel_t *c, const float *values)
{
    uint8_t j;
    for (j = 0; j < c->def->width; j++) {
        float v = values[j];
        if (!c->decim_n || v < c->env_min[j] || c->env_min[j] != c->env_min[j]) {
            c->env_min[j] = v;
        }
        if (!c->decim_n || v > c->env_max[j] || c->env_max[j] != c->env_max[j]) {
            c->env_max[j] = v;
        }
    }
    c->decim_n++;
    if (c->decim_n < c->decim_k) {
        return 0;
    }
    c->decim_n = 0;
    return 1;
}

int fb_push_sample(fb_device_t *dev, uint8_t ch, uint32_t t_us, const float *values)
{
    fb_channel_t *c;
    float *dst;
    uint8_t w;
    uint8_t j;
    if (ch >= dev->n_channels) {
        return FB_ERR_PAYLOAD;
    }
    c = &dev->ch[ch];
    w = c->def->width;
    if (c->envelope && !envelope_fold(c, values)) {
        return FB_OK; /* measured, not reported: it lives on in the window's min/max */
    }
    if (!batch_has_room(dev, c)) {
        fb_flush_channel(dev, ch);
    }
    if (!c->batch_count) {
        c->batch_first_index = c->next_index;
        c->batch_t_first_us = t_us;
    }
    dst = &c->batch_values[(size_t)c->batch_count * sample_floats(c)];
    if (c->envelope) {
        for (j = 0; j < w; j++) {
            dst[3u * j] = values[j];
            dst[3u * j + 1u] = c->env_min[j];
            dst[3u * j + 2u] = c->env_max[j];
        }
    } else {
        memcpy(dst, values, sizeof(float) * w);
    }
    c->batch_t_last_us = t_us;
    c->batch_count++;
    c->next_index++;
    if (!batch_has_room(dev, c)) {
        fb_flush_channel(dev, ch);
    }
    return FB_OK;
}

void fb_poll(fb_device_t *dev, uint32_t now_us)
{
    uint8_t i;
    for (i = 0; i < dev->n_channels; i++) {
        fb_channel_t *c = &dev->ch[i];
        if (c->batch_count && now_us - c->batch_t_first_us >= dev->batch_latency_us &&
            now_us - c->batch_t_first_us < 0x80000000u) {
            fb_flush_channel(dev, i);
        }
    }
    if (now_us - dev->last_heartbeat_us >= dev->heartbeat_interval_us) {
        send_heartbeat(dev, now_us);
    }
}
