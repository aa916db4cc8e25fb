/*
 * Simulated microcontroller on a pseudo-terminal, for tests and benchmarks.
 *
 * Runs the portable core (fb_device.c) exactly as firmware would, with the pty master
 * as its UART. The host side opens the slave path like any serial port.
 *
 *   fb_sim [--link PATH] [--counter-max-hz HZ] [--counter-hz HZ] [--clock-offset-us US]
 *          [--drift-ppm PPM] [--tx-buffer BYTES] [--batch-latency-us US]
 *
 * stdout: "PTY /dev/pts/N" once ready, then "RATE ch hz", "ENVELOPE ch 0|1" and
 * "GPIO pin value" lines as the firmware applies commands.
 * --link keeps a symlink to the slave path up to date, like a udev by-id link.
 * SIGUSR1 tears the next frame and inserts garbage (a glitch on the wire).
 * SIGUSR2 reboots the firmware behind the open port (watchdog reset on a UART):
 * sequence numbers, sample indices and rates restart, and HELLO is sent unasked.
 * SIGHUP toggles a level step of +100 on the accel and temperature values (activity on
 * command, for adaptive-sampling tests; the counter stays the sample index).
 * SIGWINCH puts one spike (value 1e6) into a single measurement of the counter. With the
 * envelope on, it goes into a measurement that is not reported (when the channel
 * reports only every k-th, k > 1), so only the reported min/max can show it; stdout
 * then says "SPIKE ch index", index being the reported sample whose window holds it.
 * SIGTERM/SIGINT exit cleanly; SIGKILL is a yanked cable.
 * Built with -DFB_ENVELOPE=0 it is a firmware older than the envelope mode.
 *
 * Channels: 0 "counter" (value = sample index, so loss is visible in the values),
 * 1 "accel" (3 values, sine), 2 "temperature" (1 Hz).
 */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "fb_device.h"

#define RING_MAX (1u << 20)

static uint8_t ring[RING_MAX];
static size_t ring_cap = 16384;
static size_t ring_head, ring_len;
static volatile sig_atomic_t inject_garbage;
static volatile sig_atomic_t stop;
static volatile sig_atomic_t reboot;
static volatile sig_atomic_t step_on;
static volatile sig_atomic_t spike_pending;
static int master_fd = -1;

static double drift_ppm;
static uint32_t clock_offset_us;
static struct timespec t0;

static uint32_t device_now_us(void)
{
    struct timespec ts;
    double elapsed_us;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    elapsed_us = (double)(ts.tv_sec - t0.tv_sec) * 1e6 + (double)(ts.tv_nsec - t0.tv_nsec) / 1e3;
    elapsed_us *= 1.0 + drift_ppm * 1e-6;
    return clock_offset_us + (uint32_t)(uint64_t)elapsed_us;
}

static void ring_put(const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        ring[(ring_head + ring_len) % ring_cap] = data[i];
        ring_len++;
    }
}

/* The "UART TX buffer": a whole frame or nothing, like fb_io_t.write requires. */
static int sim_write(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    if (ring_cap - ring_len < len + 64) {
        return 0;
    }
    if (inject_garbage) {
        static const uint8_t junk[] = {0x13, 0x37, 0x00, 0xff, 0x01, 0x00, 0x00, 0x42, 0x99,
                                       0x05, 0x01, 0x02, 0x00, 0xde, 0xad, 0xbe, 0xef};
        inject_garbage = 0;
        ring_put(data, len / 2); /* torn frame: its second half never comes */
        ring_put(junk, sizeof junk);
        ring_put(data, 3);        /* and a stray frame start, with no end */
        return 1;
    }
    ring_put(data, len);
    return 1;
}

static uint8_t sim_gpio(void *ctx, uint8_t pin, uint8_t value)
{
    (void)ctx;
    if (pin >= 32) {
        return FB_NACK_BAD_PIN;
    }
    printf("GPIO %u %u\n", pin, value);
    fflush(stdout);
    return 0;
}

static void sim_rate(void *ctx, uint8_t channel, float rate_hz)
{
    (void)ctx;
    printf("RATE %u %.9g\n", channel, (double)rate_hz);
    fflush(stdout);
}

static void flush_ring(void)
{
    while (ring_len) {
        size_t chunk = ring_cap - ring_head;
        ssize_t n;
        if (chunk > ring_len) chunk = ring_len;
        n = write(master_fd, ring + ring_head, chunk);
        if (n <= 0) {
            return; /* EAGAIN: the "wire" is busy; try again after poll */
        }
        ring_head = (ring_head + (size_t)n) % ring_cap;
        ring_len -= (size_t)n;
    }
}

static void on_usr1(int sig)
{
    (void)sig;
    inject_garbage = 1;
}

static void on_usr2(int sig)
{
    (void)sig;
    reboot = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    step_on = !step_on;
}

static void on_winch(int sig)
{
    (void)sig;
    spike_pending = 1;
}

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static int update_link(const char *link, const char *target)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", link, (long)getpid());
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
        perror("fb_sim: link");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static fb_channel_def_t chans[3] = {
        {"counter", "count", 1, 20000.0f, 10.0f},
        {"accel", "m/s2", 3, 1000.0f, 0.0f},
        {"temperature", "degC", 1, 10.0f, 1.0f},
    };
    static fb_device_t dev;
    const char *link = 0;
    long batch_latency_us = -1;
    fb_io_t io = {sim_write, sim_gpio, sim_rate, 0};
    char *slave_name;
    int slave_fd;
    struct termios tio;
    struct sigaction sa;
    int i;

    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--link")) link = argv[i + 1];
        else if (!strcmp(argv[i], "--counter-max-hz")) chans[0].max_rate_hz = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--counter-hz")) chans[0].default_rate_hz = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--clock-offset-us")) clock_offset_us = (uint32_t)strtoul(argv[i + 1], 0, 10);
        else if (!strcmp(argv[i], "--drift-ppm")) drift_ppm = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--tx-buffer")) ring_cap = (size_t)strtoul(argv[i + 1], 0, 10);
        else if (!strcmp(argv[i], "--batch-latency-us")) batch_latency_us = atol(argv[i + 1]);
        else {
            fprintf(stderr, "fb_sim: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (i != argc || ring_cap < 1024 || ring_cap > RING_MAX) {
        fprintf(stderr, "fb_sim: bad arguments (options take one value; --tx-buffer 1024..%u)\n", RING_MAX);
        return 2;
    }

    master_fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (master_fd < 0 || grantpt(master_fd) != 0 || unlockpt(master_fd) != 0) {
        perror("fb_sim: posix_openpt");
        return 1;
    }
    slave_name = ptsname(master_fd);
    /* Hold the slave open in raw mode: no echo of our frames back to us, and no EIO
     * on the master while the host has the port closed. */
    slave_fd = open(slave_name, O_RDWR | O_NOCTTY);
    if (slave_fd < 0 || tcgetattr(slave_fd, &tio) != 0) {
        perror("fb_sim: slave");
        return 1;
    }
    cfmakeraw(&tio);
    tcsetattr(slave_fd, TCSANOW, &tio);
    fcntl(master_fd, F_SETFL, fcntl(master_fd, F_GETFL) | O_NONBLOCK);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, 0);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, 0);
    sa.sa_handler = on_winch;
    sigaction(SIGWINCH, &sa, 0);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, 0);
    sigaction(SIGINT, &sa, 0);
    signal(SIGPIPE, SIG_IGN);

    if (link && update_link(link, slave_name) != 0) return 1;
    printf("PTY %s\n", slave_name);
    fflush(stdout);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* Boot: fb_init sends the unsolicited HELLO a host uses to notice a reboot. */
    if (fb_init(&dev, &io, "edge-sim", "1.0.0", chans, 3, device_now_us()) != FB_OK) {
        fprintf(stderr, "fb_sim: fb_init failed\n");
        return 1;
    }
    if (batch_latency_us >= 0) dev.batch_latency_us = (uint32_t)batch_latency_us;

    while (!stop) {
        struct pollfd pfd;
        uint8_t buf[512];
        uint32_t now = device_now_us();
        uint32_t t;
        uint8_t c;
        ssize_t n;
        if (reboot) {
            uint32_t latency = dev.batch_latency_us;
            reboot = 0;
            fb_init(&dev, &io, "edge-sim", "1.0.0", chans, 3, device_now_us());
            dev.batch_latency_us = latency;
        }
        pfd.fd = master_fd;
        pfd.events = POLLIN | (ring_len ? POLLOUT : 0);
        pfd.revents = 0;
        poll(&pfd, 1, 1);
        now = device_now_us();
        n = read(master_fd, buf, sizeof buf);
        if (n > 0) {
            uint8_t before[3];
            for (c = 0; c < dev.n_channels; c++) before[c] = dev.ch[c].envelope;
            fb_rx_bytes(&dev, buf, (size_t)n, now);
            for (c = 0; c < dev.n_channels; c++) {
                if (dev.ch[c].envelope != before[c]) {
                    printf("ENVELOPE %u %u\n", c, dev.ch[c].envelope);
                    fflush(stdout);
                }
            }
        }
        for (c = 0; c < dev.n_channels; c++) {
            while (!stop && fb_sample_due(&dev, c, now, &t)) {
                float v[3];
                double ts = (double)t * 1e-6;
                float step = step_on ? 100.0f : 0.0f;
                if (c == 0) {
                    const fb_channel_t *ch = &dev.ch[0];
                    v[0] = (float)ch->next_index;
                    /* Not the reported measurement of its window, when there is a choice. */
                    if (spike_pending && (ch->decim_k == 1 || ch->decim_n + 1 < ch->decim_k)) {
                        spike_pending = 0;
                        v[0] = 1e6f;
                        printf("SPIKE 0 %lu\n", (unsigned long)ch->next_index);
                        fflush(stdout);
                    }
                } else if (c == 1) {
                    v[0] = (float)sin(ts) + step;
                    v[1] = (float)cos(ts);
                    v[2] = 9.81f;
                } else {
                    v[0] = (float)(21.5 + 0.5 * sin(ts / 60.0)) + step;
                }
                fb_push_sample(&dev, c, t, v);
            }
        }
        fb_poll(&dev, now);
        flush_ring();
    }
    close(slave_fd);
    close(master_fd);
    return 0;
}
