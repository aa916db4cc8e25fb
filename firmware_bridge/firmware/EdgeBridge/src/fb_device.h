/*
 * fb_device: the device side of the edge bridge protocol.
 *
 * The application owns the hardware; this core owns the protocol. It needs a clock
 * (microseconds, wrapping at 2^32, passed into every call) and a write function, and
 * it tells the application when to sample each channel:
 *
 *     fb_init(&dev, &io, "my-board", "1.0.0", channels, 2, micros());
 *     for (;;) {
 *         uint32_t now = micros(), t;
 *         while (serial_available()) { uint8_t b = serial_read(); fb_rx_bytes(&dev, &b, 1, now); }
 *         while (fb_sample_due(&dev, 0, now, &t)) { float v = read_sensor(); fb_push_sample(&dev, 0, t, &v); }
 *         fb_poll(&dev, now);
 *     }
 *
 * Portable C99, no hardware calls, no malloc; all state lives in fb_device_t.
 *
 * Peak-hold envelope (SET_ENVELOPE, PROTOCOL.md): with it on, fb_sample_due paces a
 * channel at its max_rate_hz whatever rate the host set, fb_push_sample keeps the min
 * and max of every measurement, and only every k-th one (k = max_rate_hz / rate_hz,
 * rounded) is reported, with the min and max since the previous report. The loop
 * above does not change; rate_changed still receives the reported rate.
 */
#ifndef FB_DEVICE_H
#define FB_DEVICE_H

#include "fb_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef FB_MAX_CHANNELS
#define FB_MAX_CHANNELS 4u
#endif

/* Floats one channel can hold before its batch is sent (samples x width). */
#ifndef FB_BATCH_MAX_VALUES
#if defined(__AVR__)
#define FB_BATCH_MAX_VALUES 8u
#else
#define FB_BATCH_MAX_VALUES 32u
#endif
#endif

/* 0 builds a core without the envelope mode (it then answers SET_ENVELOPE with NACK
 * UNKNOWN_TYPE, like a firmware older than the mode). */
#ifndef FB_ENVELOPE
#define FB_ENVELOPE 1
#endif

/* Widest channel that can run the envelope: a reported sample is 3 floats (value, min,
 * max) per element and must fit in one batch. Wider channels get NACK UNSUPPORTED. */
#define FB_ENVELOPE_MAX_WIDTH (FB_BATCH_MAX_VALUES / 3u)

/* Encoded bytes of one host-to-device frame (the longest, SET_RATE, needs 12). */
#ifndef FB_RX_MAX
#define FB_RX_MAX 32u
#endif

/* A device that fell further behind its sampling schedule skips ahead instead. */
#define FB_MAX_CATCHUP_US 250000u

/* Slowest rate SET_RATE may set other than 0 (stop): one sample every 2000 s. The due
 * check compares elapsed time on the 32-bit microsecond clock modulo 2^32, so a period
 * must stay below 2^31 us (35.8 min); slower rates are refused with RATE_OUT_OF_RANGE
 * (the host library refuses to send them too: MIN_RATE_HZ in protocol.py). */
#define FB_MIN_RATE_HZ 0.0005f
#define FB_MAX_PERIOD_US 0x7FFFFFFFu

/* A channel as the firmware declares it (announced in HELLO). */
typedef struct {
    const char *name;
    const char *unit;
    uint8_t width; /* values per sample */
    float max_rate_hz;
    float default_rate_hz; /* 0 = stopped until the host sets a rate */
} fb_channel_def_t;

/* What the core needs from the application. */
typedef struct {
    /* Queue one whole encoded frame for sending. Return 1 if queued, 0 if there was no
     * room: the frame is then dropped whole (never partly) and counted. */
    int (*write)(void *ctx, const uint8_t *data, size_t len);
    /* Drive a pin; return 0 when done or an fb_nack_reason. NULL: GPIO unsupported. */
    uint8_t (*gpio_write)(void *ctx, uint8_t pin, uint8_t value);
    /* Told after a channel's rate changed (e.g. to reconfigure the sensor). May be NULL. */
    void (*rate_changed)(void *ctx, uint8_t channel, float rate_hz);
    void *ctx;
} fb_io_t;

typedef struct {
    const fb_channel_def_t *def;
    float rate_hz;      /* rate the host set: samples reported per second */
    uint32_t period_us; /* measurement grid; 0 = stopped */
    uint32_t last_due_us; /* device time the previous measurement was due */
    uint32_t next_index; /* index of the next reported sample */
    uint8_t envelope;    /* 1: peak-hold envelope on (SAMPLE_ENVELOPE frames) */
    uint32_t decim_k;    /* measurements per reported sample (1 without the envelope) */
    uint32_t decim_n;    /* measurements folded into env_min/env_max so far */
    uint32_t report_us;  /* device time between reported samples */
    float env_min[FB_ENVELOPE_MAX_WIDTH > 0u ? FB_ENVELOPE_MAX_WIDTH : 1u];
    float env_max[FB_ENVELOPE_MAX_WIDTH > 0u ? FB_ENVELOPE_MAX_WIDTH : 1u];
    uint8_t batch_count;
    uint32_t batch_first_index;
    uint32_t batch_t_first_us;
    uint32_t batch_t_last_us;
    float batch_values[FB_BATCH_MAX_VALUES];
} fb_channel_t;

typedef struct {
    fb_io_t io;
    const char *fw_name;
    const char *fw_version;
    fb_channel_t ch[FB_MAX_CHANNELS];
    uint8_t n_channels;
    uint16_t tx_seq;
    uint32_t tx_dropped;   /* frames write() refused */
    uint32_t rx_frames;    /* good frames from the host */
    uint32_t rx_errors;    /* damaged or oversized chunks from the host */
    uint32_t batch_latency_us;      /* oldest sample waits at most this long */
    uint32_t heartbeat_interval_us;
    uint32_t last_heartbeat_us;
    uint16_t rx_len;
    uint8_t rx_overflow;
    uint8_t rx_buf[FB_RX_MAX];
    uint8_t rx_raw[FB_RX_MAX];
    uint8_t raw[FB_MAX_FRAME];
    uint8_t enc[FB_MAX_ENCODED + 2];
} fb_device_t;

/* Set up the core and send HELLO. Returns FB_OK, or FB_ERR_PAYLOAD if there are more
 * than FB_MAX_CHANNELS channels, a width of 0, or a width over FB_BATCH_MAX_VALUES. */
int fb_init(fb_device_t *dev, const fb_io_t *io, const char *fw_name, const char *fw_version,
            const fb_channel_def_t *channels, uint8_t n_channels, uint32_t now_us);

/* Feed bytes received from the host; answers commands through io.write. */
void fb_rx_bytes(fb_device_t *dev, const uint8_t *data, size_t len, uint32_t now_us);

/* Return 1 (and the sample's scheduled time in *t_us) if channel ch is due a sample. */
int fb_sample_due(fb_device_t *dev, uint8_t ch, uint32_t now_us, uint32_t *t_us);

/* Add one sample (width floats) taken at t_us; sends the batch when it is full. With
 * the envelope on, this is one measurement; every k-th is reported. */
int fb_push_sample(fb_device_t *dev, uint8_t ch, uint32_t t_us, const float *values);

/* Send batches older than batch_latency_us and the periodic HEARTBEAT. */
void fb_poll(fb_device_t *dev, uint32_t now_us);

void fb_send_hello(fb_device_t *dev);
void fb_flush_channel(fb_device_t *dev, uint8_t ch);

/* Change a channel's rate as if the host had asked; returns 0 or an fb_nack_reason. */
uint8_t fb_set_rate(fb_device_t *dev, uint8_t ch, float rate_hz, uint32_t now_us);

/* Turn a channel's peak-hold envelope on (1) or off (0) as if the host had asked;
 * returns 0 or an fb_nack_reason (UNSUPPORTED: the channel is too wide for this build,
 * or the core was built with FB_ENVELOPE 0). */
uint8_t fb_set_envelope(fb_device_t *dev, uint8_t ch, uint8_t enabled, uint32_t now_us);

#ifdef __cplusplus
}
#endif

#endif /* FB_DEVICE_H */
