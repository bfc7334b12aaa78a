/* WebSocket framing, Engine.IO/Socket.IO packets and the ack scanner (see wire.h). */
#define _GNU_SOURCE /* memmem */
#include "wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die_oom(void) {
    fputs("[cgen] out of memory\n", stderr);
    exit(3);
}

void bytes_reserve(Bytes *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) die_oom();
    b->data = data;
    b->cap = cap;
}

void bytes_put(Bytes *b, const void *data, size_t len) {
    bytes_reserve(b, len + 1);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void bytes_puts(Bytes *b, const char *text) { bytes_put(b, text, strlen(text)); }

void bytes_printf(Bytes *b, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char probe[1];
    int need = vsnprintf(probe, sizeof probe, format, args);
    va_end(args);
    if (need < 0) return;
    bytes_reserve(b, (size_t)need + 1);
    va_start(args, format);
    vsnprintf(b->data + b->len, (size_t)need + 1, format, args);
    va_end(args);
    b->len += (size_t)need;
}

void bytes_put_json_string(Bytes *b, const char *text, size_t len) {
    bytes_put(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            char escaped[2] = {'\\', (char)c};
            bytes_put(b, escaped, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            bytes_printf(b, "\\u%04x", c); /* bytes, not code points: this is diagnostics only */
        } else {
            bytes_put(b, &text[i], 1);
        }
    }
    bytes_put(b, "\"", 1);
}

void bytes_consume(Bytes *b, size_t len) {
    if (len >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + len, b->len - len);
    b->len -= len;
}

void bytes_free(Bytes *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ws_upgrade_request(Bytes *out, const char *host, int port) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[25];
    for (int i = 0; i < 21; i++) key[i] = alphabet[rand() % 64];
    key[21] = alphabet[(rand() % 4) * 16]; /* 16 random bytes: the last sextet holds 2 bits */
    memcpy(key + 22, "==", 3);
    bytes_printf(out,
                 "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                 "Host: %s:%d\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "\r\n",
                 host, port, key);
}

void ws_client_frame(Bytes *out, int opcode, const char *payload, size_t len) {
    unsigned char header[14];
    size_t n = 0;
    header[n++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        header[n++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        header[n++] = 0x80 | 126;
        header[n++] = (unsigned char)(len >> 8);
        header[n++] = (unsigned char)len;
    } else {
        header[n++] = 0x80 | 127;
        for (int shift = 56; shift >= 0; shift -= 8) header[n++] = (unsigned char)((uint64_t)len >> shift);
    }
    memset(header + n, 0, 4); /* the zero mask key: nothing to XOR */
    n += 4;
    bytes_put(out, header, n);
    bytes_put(out, payload, len);
}

int ws_next_frame(const char *data, size_t size, WsFrame *frame) {
    if (size < 2) return 0;
    const unsigned char *p = (const unsigned char *)data;
    uint64_t len = p[1] & 0x7f;
    size_t start = 2;
    if (len == 126) {
        start = 4;
        if (size < start) return 0;
        len = ((uint64_t)p[2] << 8) | p[3];
    } else if (len == 127) {
        start = 10;
        if (size < start) return 0;
        len = 0;
        for (int i = 2; i < 10; i++) len = (len << 8) | p[i];
    }
    if (len > size - start) return 0;
    frame->opcode = p[0] & 0x0f;
    frame->payload = data + start;
    frame->len = (size_t)len;
    frame->frame_len = start + (size_t)len;
    return 1;
}

/* --- the ack scanner: top-level keys of one JSON object, nested values skipped ------------- */

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* The end of the JSON string starting at `p` (on its opening quote), or NULL. */
static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end; p++) {
        if (*p == '\\') {
            p++;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* The end of the JSON value starting at `p`, or NULL. */
static const char *skip_value(const char *p, const char *end) {
    if (p >= end) return NULL;
    if (*p == '"') return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = skip_string(p, end);
                if (!p) return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') depth--;
            p++;
            if (depth == 0) return p;
        }
        return NULL;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n') p++;
    return p;
}

static int truthy(const char *v, const char *end) {
    size_t len = (size_t)(end - v);
    if (len == 0) return 0;
    if (*v == '"') return len > 2;
    if (*v == '{' || *v == '[') {
        const char *inside = skip_ws(v + 1, end);
        return inside < end && *inside != '}' && *inside != ']';
    }
    if (len == 4 && memcmp(v, "true", 4) == 0) return 1;
    if ((len == 5 && memcmp(v, "false", 5) == 0) || (len == 4 && memcmp(v, "null", 4) == 0)) return 0;
    return strtod(v, NULL) != 0.0;
}

static int key_is(const char *key, const char *key_end, const char *name) {
    size_t len = strlen(name);
    return (size_t)(key_end - key) == len + 2 && memcmp(key + 1, name, len) == 0;
}

static void scan_object(const char *p, const char *end, AckBody *body) {
    p = skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *key = p;
        const char *key_end = skip_string(p, end);
        if (!key_end) return;
        p = skip_ws(key_end, end);
        if (p >= end || *p != ':') return;
        const char *value = skip_ws(p + 1, end);
        const char *value_end = skip_value(value, end);
        if (!value_end) return;
        if (key_is(key, key_end, "ok")) {
            body->ok_present = 1;
            body->ok_false = (value_end - value == 5 && memcmp(value, "false", 5) == 0);
            body->ok_truthy = truthy(value, value_end);
        } else if (key_is(key, key_end, "changed")) {
            body->changed_truthy = truthy(value, value_end);
        } else if (key_is(key, key_end, "offset")) {
            body->offset_present = 1;
            body->offset = strtoll(value, NULL, 10);
        }
        p = skip_ws(value_end, end);
        if (p < end && *p == ',') p = skip_ws(p + 1, end);
    }
}

int sio_parse_ack(const char *text, size_t len, long *ack_id, AckBody *body, const char **arg, size_t *arg_len) {
    const char *end = text + len;
    if (len < 4 || text[0] != EIO_MESSAGE || text[1] != SIO_ACK) return 0;
    const char *p = text + 2;
    long id = 0;
    while (p < end && *p >= '0' && *p <= '9') id = id * 10 + (*p++ - '0');
    if (p >= end || *p != '[') return 0;
    *ack_id = id;
    memset(body, 0, sizeof *body);
    const char *value = skip_ws(p + 1, end);
    const char *value_end = skip_value(value, end);
    if (!value_end) value_end = value;
    *arg = value;
    *arg_len = (size_t)(value_end - value);
    if (value < end && *value == '{') {
        body->is_object = 1;
        scan_object(value, value_end, body);
    }
    return 1;
}

static const char EVENT_PREFIX[] = "42[\"session_status\",";
static const char OFFSET_KEY[] = "\"offset\":";

int64_t sio_event_offset(const char *payload, size_t len) {
    size_t prefix = sizeof EVENT_PREFIX - 1;
    if (len < prefix || memcmp(payload, EVENT_PREFIX, prefix) != 0) return -1;
    const char *at = memmem(payload + prefix, len - prefix, OFFSET_KEY, sizeof OFFSET_KEY - 1);
    if (!at) return -1;
    const char *p = at + sizeof OFFSET_KEY - 1;
    const char *end = payload + len;
    while (p < end && *p == ' ') p++;
    int64_t offset = 0;
    int digits = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) offset = offset * 10 + (*p - '0');
    return digits ? offset : -1;
}
