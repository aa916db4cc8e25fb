/*
 * SensorBridge: stream an analog sensor and an internal temperature-like value to the
 * edge runtime, at the rates the host asks for, and drive pins on request.
 *
 * Install: copy firmware_bridge/firmware/EdgeBridge into your Arduino "libraries"
 * folder (or add it as a PlatformIO lib), then open this example.
 * Host side: edge-runtime bridge probe /dev/ttyACM0
 *
 * The sketch only does hardware: the protocol lives in fb_device.c. When the host turns
 * a channel's peak-hold envelope on (SET_ENVELOPE), fb_sample_due asks for samples at
 * the channel's max_rate_hz and the core reports the min/max in between: the loop below
 * stays the same, but each read must fit in 1 / max_rate_hz (analogRead takes ~0.1 ms).
 */
#include <EdgeBridge.h>

static const fb_channel_def_t CHANNELS[] = {
    /* name,   unit,   width, max_rate_hz, default_rate_hz */
    {"light", "raw", 1, 1000.0f, 10.0f},
    {"vcc", "V", 1, 10.0f, 1.0f},
};
static const uint8_t N_CHANNELS = sizeof CHANNELS / sizeof CHANNELS[0];

static fb_device_t dev;

/* Whole frame into the TX buffer, or report "no room" so the core counts a drop
 * (never write half a frame: the host would lose the next one too). */
static int write_frame(void *ctx, const uint8_t *data, size_t len) {
  (void)ctx;
  if ((size_t)Serial.availableForWrite() < len) {
    return 0;
  }
  Serial.write(data, len);
  return 1;
}

static uint8_t gpio_write(void *ctx, uint8_t pin, uint8_t value) {
  (void)ctx;
  if (pin >= NUM_DIGITAL_PINS) {
    return FB_NACK_BAD_PIN;
  }
  pinMode(pin, OUTPUT);
  digitalWrite(pin, value ? HIGH : LOW);
  return 0;
}

void setup() {
  Serial.begin(115200);
  fb_io_t io = {write_frame, gpio_write, NULL, NULL};
  fb_init(&dev, &io, "SensorBridge", "1.0.0", CHANNELS, N_CHANNELS, micros());
}

void loop() {
  uint32_t now = micros();
  while (Serial.available() > 0) {
    uint8_t b = (uint8_t)Serial.read();
    fb_rx_bytes(&dev, &b, 1, now);
  }
  uint32_t t;
  while (fb_sample_due(&dev, 0, now, &t)) {
    float v = (float)analogRead(A0);
    fb_push_sample(&dev, 0, t, &v);
  }
  while (fb_sample_due(&dev, 1, now, &t)) {
    float v = 5.0f; /* replace with a real supply measurement */
    fb_push_sample(&dev, 1, t, &v);
  }
  fb_poll(&dev, now);
}
