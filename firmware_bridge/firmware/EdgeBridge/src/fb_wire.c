/* fb_wire: COBS, CRC-16/CCITT-FALSE and frame layout. See fb_wire.h. */
#include "fb_wire.h"

#include <string.h>

typedef char fb_float_is_32_bits[(sizeof(float) == 4) ? 1 : -1];

uint16_t fb_crc16(const uint8_t *data, size_t len)
{
    /* Bitwise, no table: 512 bytes of flash matter more than cycles on small MCUs. */
    uint16_t crc = 0xFFFFu;
    size_t i;
    for (i = 0; i < len; i++) {
        int bit;
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

size_t fb_cobs_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t read = 0;
    size_t write = 1;
    size_t code_at = 0;
    uint8_t code = 1;
    while (read < len) {
        if (in[read] == 0) {
            out[code_at] = code;
            code_at = write++;
            code = 1;
        } else {
            out[write++] = in[read];
            code++;
            if (code == 0xFF) {
                out[code_at] = code;
                code_at = write++;
                code = 1;
                if (read + 1 == len) {
                    /* A full block ends the input: no trailing empty block. */
                    return write - 1;
                }
            }
        }
        read++;
    }
    out[code_at] = code;
    return write;
}

int fb_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    size_t pos = 0;
    size_t n = 0;
    if (len == 0) {
        return FB_ERR_COBS;
    }
    while (pos < len) {
        uint8_t code = in[pos];
        size_t end;
        size_t i;
        if (code == 0) {
            return FB_ERR_COBS;
        }
        end = pos + code;
        if (end > len) {
            return FB_ERR_COBS;
        }
        for (i = pos + 1; i < end; i++) {
            if (in[i] == 0) {
                return FB_ERR_COBS;
            }
            if (n >= out_cap) {
                return FB_ERR_TOO_LONG;
            }
            out[n++] = in[i];
        }
        pos = end;
        if (code != 0xFF && pos < len) {
            if (n >= out_cap) {
                return FB_ERR_TOO_LONG;
            }
            out[n++] = 0;
        }
    }
    *out_len = n;
    return FB_OK;
}

size_t fb_frame_finish(uint8_t *raw, uint8_t type, uint16_t seq, size_t payload_len,
                       uint8_t *out)
{
    size_t body = FB_HEADER_LEN + payload_len;
    size_t n;
    raw[0] = (uint8_t)FB_PROTOCOL_VERSION;
    raw[1] = type;
    fb_put_u16(raw + 2, seq);
    fb_put_u16(raw + body, fb_crc16(raw, body));
    out[0] = 0;
    n = fb_cobs_encode(raw, body + FB_CRC_LEN, out + 1);
    out[n + 1] = 0;
    return n + 2;
}

int fb_frame_parse(const uint8_t *raw, size_t len, fb_frame_t *out)
{
    size_t body;
    if (len < FB_HEADER_LEN + FB_CRC_LEN) {
        return FB_ERR_PAYLOAD;
    }
    if (len > FB_HEADER_LEN + FB_PROTOCOL_MAX_PAYLOAD + FB_CRC_LEN) {
        return FB_ERR_TOO_LONG;
    }
    body = len - FB_CRC_LEN;
    if (fb_get_u16(raw + body) != fb_crc16(raw, body)) {
        return FB_ERR_CRC;
    }
    out->version = raw[0];
    out->type = raw[1];
    out->seq = fb_get_u16(raw + 2);
    out->payload = raw + FB_HEADER_LEN;
    out->payload_len = body - FB_HEADER_LEN;
    return raw[0] == FB_PROTOCOL_VERSION ? FB_OK : FB_ERR_VERSION;
}

void fb_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

void fb_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

void fb_put_f32(uint8_t *p, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    fb_put_u32(p, bits);
}

uint16_t fb_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}

uint32_t fb_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

float fb_get_f32(const uint8_t *p)
{
    uint32_t bits = fb_get_u32(p);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}
