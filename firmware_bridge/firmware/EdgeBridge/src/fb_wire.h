/*
 * fb_wire: framing of the edge bridge protocol (see PROTOCOL.md).
 *
 * Portable C99: no hardware calls, no malloc, no floating-point library calls.
 * A frame before COBS is  version:u8 type:u8 seq:u16 payload crc16 ; integers are
 * little-endian, the CRC is CRC-16/CCITT-FALSE. On the wire the frame is COBS-encoded
 * with a 0x00 delimiter on each side.
 */
#ifndef FB_WIRE_H
#define FB_WIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FB_PROTOCOL_VERSION 1u
#define FB_HEADER_LEN 4u
#define FB_CRC_LEN 2u
/* Longest payload the protocol allows; a device may use a smaller FB_MAX_PAYLOAD. */
#define FB_PROTOCOL_MAX_PAYLOAD 250u

#ifndef FB_MAX_PAYLOAD
#if defined(__AVR__)
#define FB_MAX_PAYLOAD 96u /* 2 KiB of RAM on an ATmega328P */
#else
#define FB_MAX_PAYLOAD FB_PROTOCOL_MAX_PAYLOAD
#endif
#endif

#define FB_MAX_FRAME (FB_HEADER_LEN + FB_MAX_PAYLOAD + FB_CRC_LEN)
/* COBS adds one byte per 254 plus one; the delimiters are counted separately. */
#define FB_COBS_MAX(n) ((n) + (n) / 254u + 1u)
#define FB_MAX_ENCODED FB_COBS_MAX(FB_MAX_FRAME)

enum fb_type {
    FB_HELLO = 0x01,
    FB_SAMPLE = 0x02,
    FB_HEARTBEAT = 0x03,
    FB_ACK = 0x04,
    FB_NACK = 0x05,
    FB_SAMPLE_ENVELOPE = 0x06,
    FB_GET_HELLO = 0x10,
    FB_SET_RATE = 0x11,
    FB_GPIO_WRITE = 0x12,
    FB_SET_ENVELOPE = 0x13
};

enum fb_nack_reason {
    FB_NACK_UNKNOWN_TYPE = 1,
    FB_NACK_BAD_PAYLOAD = 2,
    FB_NACK_UNKNOWN_CHANNEL = 3,
    FB_NACK_RATE_OUT_OF_RANGE = 4,
    FB_NACK_BAD_PIN = 5,
    FB_NACK_BAD_VERSION = 6,
    FB_NACK_BUSY = 7,
    FB_NACK_UNSUPPORTED = 8
};

enum fb_status {
    FB_OK = 0,
    FB_ERR_COBS = -1,
    FB_ERR_CRC = -2,
    FB_ERR_VERSION = -3,
    FB_ERR_TYPE = -4,
    FB_ERR_PAYLOAD = -5,
    FB_ERR_TOO_LONG = -6
};

/* A parsed frame; payload points into the buffer given to fb_frame_parse. */
typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    const uint8_t *payload;
    size_t payload_len;
} fb_frame_t;

uint16_t fb_crc16(const uint8_t *data, size_t len);

/* Encode len bytes into out (room for FB_COBS_MAX(len)); returns the encoded length. */
size_t fb_cobs_encode(const uint8_t *in, size_t len, uint8_t *out);

/* Decode one COBS block run (no delimiter) into out (capacity out_cap).
 * Returns FB_OK, FB_ERR_COBS (empty, zero byte, bad pointer) or FB_ERR_TOO_LONG. */
int fb_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap, size_t *out_len);

/* Finish a frame whose payload was already written at raw + FB_HEADER_LEN: write the
 * header and CRC, then put 0x00, the COBS encoding and 0x00 into out. The leading
 * delimiter ends any garbage before the frame, so damage never spills into it.
 * raw needs FB_HEADER_LEN + payload_len + FB_CRC_LEN bytes, out FB_COBS_MAX(that) + 2.
 * Returns the number of bytes to send. */
size_t fb_frame_finish(uint8_t *raw, uint8_t type, uint16_t seq, size_t payload_len,
                       uint8_t *out);

/* Check length, CRC and version of a COBS-decoded frame and split it.
 * Returns FB_OK, FB_ERR_PAYLOAD (too short), FB_ERR_TOO_LONG, FB_ERR_CRC or
 * FB_ERR_VERSION (then out->seq and out->type are still filled in). */
int fb_frame_parse(const uint8_t *raw, size_t len, fb_frame_t *out);

/* Little-endian field access. Floats are IEEE-754 binary32 on every supported MCU. */
void fb_put_u16(uint8_t *p, uint16_t v);
void fb_put_u32(uint8_t *p, uint32_t v);
void fb_put_f32(uint8_t *p, float v);
uint16_t fb_get_u16(const uint8_t *p);
uint32_t fb_get_u32(const uint8_t *p);
float fb_get_f32(const uint8_t *p);

#ifdef __cplusplus
}
#endif

#endif /* FB_WIRE_H */
