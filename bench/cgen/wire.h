/* The few bytes of WebSocket, Engine.IO v4 and Socket.IO v5 the load generator speaks.
 *
 * The C twin of bench/wire.py: the upgrade request, masked client frames (zero mask key,
 * so the payload goes out as it is), the packets the generator sends, and a scanner for the
 * top-level keys of an ack's first argument (the only JSON the generator reads). */
#ifndef CGEN_WIRE_H
#define CGEN_WIRE_H

#include <stddef.h>
#include <stdint.h>

enum { WS_TEXT = 0x1, WS_CLOSE = 0x8, WS_PING = 0x9, WS_PONG = 0xA };

/* Engine.IO packet types (first character), then Socket.IO's (second character of a '4'). */
enum { EIO_OPEN = '0', EIO_PING = '2', EIO_MESSAGE = '4' };
enum { SIO_CONNECT = '0', SIO_DISCONNECT = '1', SIO_EVENT = '2', SIO_ACK = '3', SIO_CONNECT_ERROR = '4' };

/* A growable byte string. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Bytes;

void bytes_reserve(Bytes *b, size_t extra);
void bytes_put(Bytes *b, const void *data, size_t len);
void bytes_puts(Bytes *b, const char *text);
void bytes_printf(Bytes *b, const char *format, ...) __attribute__((format(printf, 2, 3)));
void bytes_put_json_string(Bytes *b, const char *text, size_t len);
void bytes_consume(Bytes *b, size_t len);
void bytes_free(Bytes *b);

/* The HTTP request that opens an Engine.IO WebSocket (no compression offered). */
void ws_upgrade_request(Bytes *out, const char *host, int port);

/* A final, masked client-to-server frame around `payload`, appended to `out`. */
void ws_client_frame(Bytes *out, int opcode, const char *payload, size_t len);

/* One server frame found at the start of a buffer. */
typedef struct {
    int opcode;
    const char *payload;
    size_t len;
    size_t frame_len; /* header + payload */
} WsFrame;

/* 1 and `*frame` when a whole frame starts at `data`, 0 when more bytes are needed. */
int ws_next_frame(const char *data, size_t size, WsFrame *frame);

/* What an ack's first argument says, read from its top-level keys only. */
typedef struct {
    int is_object;  /* the argument is a JSON object */
    int ok_present; /* it has an "ok" key */
    int ok_false;   /* "ok" is literally false */
    int ok_truthy;  /* "ok" is true, a non-zero number or a non-empty string/array/object */
    int changed_truthy;
    int offset_present;
    int64_t offset;
} AckBody;

/* `43<id>[arg,...]` (without the WebSocket header): 1 with the id and the scanned argument,
 * 0 when the text is not an ack. */
int sio_parse_ack(const char *text, size_t len, long *ack_id, AckBody *body, const char **arg, size_t *arg_len);

/* The offset of a live `42["session_status",{...,"offset":N,...}]`, or -1. */
int64_t sio_event_offset(const char *payload, size_t len);

#endif
