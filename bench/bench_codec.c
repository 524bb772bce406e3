/*
 * bench_codec.c - decode and encode rates of the wire codec, per payload kind,
 * on the integration guide's examples in compact form. Each measurement
 * calibrates its iteration count to run for about one second.
 * Output: "decode <kind>: <msgs/s> msgs/s (<ns> ns/msg)", then the encode lines.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vend/codec.h"

static const char *const payloads[] = {
    "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"ORD123456\",\"timeoutMs\":2150}",
    "{\"orderId\":\"ORD123456\",\"slot\":1,\"success\":true,\"dropDetected\":true,"
    "\"durationMs\":1850,\"error\":null}",
    "{\"timestamp\":\"2025-11-04T10:30:00Z\",\"slots\":[{\"id\":1,\"level\":\"FULL\"},{\"id\":2,"
    "\"level\":\"LOW\"}],\"temperature\":25.5,\"door\":\"CLOSED\"}",
    "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-65,\"fw\":\"1.0.0\"}",
    "{\"motorTimeout\":3000,\"dropSensorDelay\":50,\"telemetryInterval\":60000}",
};
static const char *const kinds[] = {"command", "dispense_result", "telemetry", "status", "config"};

union any {
    struct vend_command c;
    struct vend_dispense_result r;
    struct vend_telemetry t;
    struct vend_status s;
    struct vend_config g;
};

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int decode(int k, const char *json, size_t len, union any *o)
{
    switch (k) {
    case 0:
        return vend_decode_command(json, len, &o->c, NULL);
    case 1:
        return vend_decode_dispense_result(json, len, &o->r, NULL);
    case 2:
        return vend_decode_telemetry(json, len, &o->t, NULL);
    case 3:
        return vend_decode_status(json, len, &o->s, NULL);
    default:
        return vend_decode_config(json, len, &o->g, NULL);
    }
}

static int encode(int k, char *buf, size_t size, const union any *o)
{
    switch (k) {
    case 0:
        return vend_encode_command(buf, size, &o->c);
    case 1:
        return vend_encode_dispense_result(buf, size, &o->r);
    case 2:
        return vend_encode_telemetry(buf, size, &o->t);
    case 3:
        return vend_encode_status(buf, size, &o->s);
    default:
        return vend_encode_config(buf, size, &o->g);
    }
}

/* Runs n decodes (or encodes) of kind k; returns the seconds taken. Aborts on a codec error. */
static double run(int k, int enc, long n, union any *o)
{
    static char buf[VEND_PAYLOAD_MAX + 1];
    size_t len = strlen(payloads[k]);
    double t0 = now();
    long i;

    for (i = 0; i < n; i++) {
        int rc = enc ? encode(k, buf, sizeof(buf), o) : decode(k, payloads[k], len, o);

        if (rc < 0) {
            fprintf(stderr, "%s %s failed: %s\n", enc ? "encode" : "decode", kinds[k],
                    vend_strerror(rc));
            exit(1);
        }
    }
    return now() - t0;
}

static void measure(int k, int enc)
{
    union any o;
    long n = 1000;
    double t;

    if (decode(k, payloads[k], strlen(payloads[k]), &o) < 0)
        exit(1);
    /* Grow n until a run is long enough to time, then size it for about one second. */
    for (t = run(k, enc, n, &o); t < 0.05; t = run(k, enc, n, &o))
        n *= 4;
    n = (long)((double)n / t);
    t = run(k, enc, n, &o);
    printf("%s %s: %.0f msgs/s (%.0f ns/msg)\n", enc ? "encode" : "decode", kinds[k], (double)n / t,
           t * 1e9 / (double)n);
}

int main(void)
{
    int k;

    for (k = 0; k < 5; k++)
        measure(k, 0);
    for (k = 0; k < 5; k++)
        measure(k, 1);
    return 0;
}
