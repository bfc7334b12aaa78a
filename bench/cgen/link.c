/* Connections: connect, upgrade, Engine.IO/Socket.IO handshake, frames; the receive tally and
 * the publisher's acks. The C twin of lean_client.Link, Tally and Publisher. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

#define MAX_OFFSET (1 << 24) /* far above any run's offsets; a guard against a garbled one */
#define SUBSCRIBE_ACK_ID 1
#define RECV_BUFFER_BYTES (1 << 18)

static char recv_buffer[RECV_BUFFER_BYTES];
static const char *const STATUSES[2] = {"recording", "paused"}; /* each may follow the other */

static void *grow(void *data, size_t old_count, size_t new_count, size_t item) {
    char *bigger = realloc(data, new_count * item);
    if (!bigger) {
        fputs("[cgen] out of memory\n", stderr);
        exit(3);
    }
    memset(bigger + old_count * item, 0, (new_count - old_count) * item);
    return bigger;
}

void ints_push(Ints *a, int64_t value) {
    if (a->len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4096;
        a->v = grow(a->v, a->cap, cap, sizeof *a->v);
        a->cap = cap;
    }
    a->v[a->len++] = value;
}

void offsets_ensure(int64_t offset) {
    Offsets *o = &G.off;
    if (offset < o->size) return;
    int64_t size = o->size ? o->size : 1024;
    while (size <= offset) size *= 2;
    o->count = grow(o->count, (size_t)o->size, (size_t)size, sizeof *o->count);
    o->pending_seq = grow(o->pending_seq, (size_t)o->size, (size_t)size, sizeof *o->pending_seq);
    o->sent_s = grow(o->sent_s, (size_t)o->size, (size_t)size, sizeof *o->sent_s);
    for (int64_t i = o->size; i < size; i++) o->sent_s[i] = NAN;
    o->size = size;
}

/* --- epoll registration and writing ----------------------------------------------------- */

static void watch(Link *link, int want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0u), .data.u32 = (uint32_t)(link - G.links)};
    epoll_ctl(G.epfd, EPOLL_CTL_MOD, link->fd, &ev);
    link->want_out = want_out;
}

void link_close(Link *link) {
    if (link->fd >= 0) {
        epoll_ctl(G.epfd, EPOLL_CTL_DEL, link->fd, NULL);
        close(link->fd);
        link->fd = -1;
    }
    bytes_free(&link->head);
    bytes_free(&link->rx);
    bytes_free(&link->tx);
}

static void settle(Link *link, int ready) {
    if (link->ready != 0) return;
    link->ready = ready;
    if (link->subscriber) G.subscribed_settled++;
}

static void link_fail(Link *link, const char *format, const char *detail, size_t detail_len) {
    if (link->ready == 0) {
        char text[161];
        size_t len = detail_len < 160 ? detail_len : 160;
        for (size_t i = 0; i < len; i++) text[i] = (detail[i] >= 0x20 && detail[i] < 0x7f) ? detail[i] : '.';
        text[len] = '\0';
        snprintf(link->reason, sizeof link->reason, format, text);
        settle(link, -1);
    }
    link->closed = 1;
    link_close(link);
}

static void flush(Link *link) {
    while (link->tx.len) {
        ssize_t sent = send(link->fd, link->tx.data, link->tx.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent > 0) {
            bytes_consume(&link->tx, (size_t)sent);
        } else if (sent < 0 && (errno == EAGAIN || errno == EINTR)) {
            break;
        } else {
            link_fail(link, "ConnectionError('send failed: %s')", strerror(errno), strlen(strerror(errno)));
            return;
        }
    }
    if ((link->tx.len > 0) != link->want_out) watch(link, link->tx.len > 0);
}

void link_send(Link *link, int opcode, const char *payload, size_t len) {
    if (link->fd < 0 || link->connecting) return;
    ws_client_frame(&link->tx, opcode, payload, len);
    flush(link);
}

static void send_text(Link *link, const char *text) { link_send(link, WS_TEXT, text, strlen(text)); }

/* --- connecting ---------------------------------------------------------------------------- */

void link_open(int index, int subscriber) {
    Link *link = &G.links[index];
    memset(link, 0, sizeof *link);
    link->subscriber = subscriber;
    link->last_offset = -1;
    link->started_s = now_s();
    link->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (link->fd < 0) {
        link_fail(link, "OSError('socket: %s')", strerror(errno), strlen(strerror(errno)));
        return;
    }
    int one = 1; /* as asyncio's transports do: small frames go out at once */
    setsockopt(link->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)G.opt.port)};
    inet_pton(AF_INET, G.opt.host, &addr.sin_addr);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)index};
    link->connecting = 1;
    link->want_out = 1;
    epoll_ctl(G.epfd, EPOLL_CTL_ADD, link->fd, &ev);
    if (connect(link->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        link_fail(link, "ConnectionRefusedError('connect: %s')", strerror(errno), strlen(strerror(errno)));
    }
}

static void connected(Link *link) {
    int error = 0;
    socklen_t size = sizeof error;
    getsockopt(link->fd, SOL_SOCKET, SO_ERROR, &error, &size);
    if (error) {
        link_fail(link, "ConnectionRefusedError('connect: %s')", strerror(error), strlen(strerror(error)));
        return;
    }
    link->connecting = 0;
    ws_upgrade_request(&link->tx, G.opt.host, G.opt.port);
    flush(link);
}

/* --- the receive tally ------------------------------------------------------------------ */

static void publisher_close(int64_t seq);

static void mark_seen(Link *link, int64_t offset) {
    if (offset <= link->base_offset || offset >= MAX_OFFSET) return;
    size_t bit = (size_t)(offset - link->base_offset);
    if (bit / 8 >= link->seen_bytes) {
        size_t bytes = link->seen_bytes ? link->seen_bytes : 256;
        while (bytes <= bit / 8) bytes *= 2;
        link->seen = grow(link->seen, link->seen_bytes, bytes, 1);
        link->seen_bytes = bytes;
    }
    uint8_t mask = (uint8_t)(1u << (bit % 8));
    if (link->seen[bit / 8] & mask) link->duplicates++;
    link->seen[bit / 8] |= mask;
}

/* The hot path: a live event; only its offset is read. */
static void on_event(Link *link, int64_t offset, double t) {
    if (offset >= MAX_OFFSET) return;
    offsets_ensure(offset);
    int32_t count = ++G.off.count[offset];
    ints_push(&G.rx_off, offset);
    doubles_push(&G.rx_t, t);
    if (offset != link->last_offset + 1 && link->last_offset >= 0) link->gaps++;
    link->last_offset = offset;
    mark_seen(link, offset);
    if (count == G.full) {
        int64_t seq = G.off.pending_seq[offset];
        G.off.pending_seq[offset] = 0;
        if (seq) publisher_close(seq);
    }
}

/* --- acks ------------------------------------------------------------------------------- */

static void subscribed(Link *link, const AckBody *body, const char *arg, size_t arg_len) {
    if (body->is_object && !body->ok_false) {
        link->last_offset = body->offset_present ? body->offset : 0;
        link->base_offset = link->last_offset;
        settle(link, 1);
    } else {
        link_fail(link, "ConnectionError('subscribe refused: %s')", arg, arg_len);
    }
}

static void publisher_ack(int64_t seq, const AckBody *body, const char *arg, size_t arg_len, double t) {
    if (seq < 1 || seq > G.seq) return;
    if (seq < G.last_ack_seq) {
        G.acks_out_of_order++;
    } else {
        G.last_ack_seq = seq;
    }
    double sent = G.sent_s.v[seq - 1];
    doubles_push(&G.ack_sent_s, sent);
    doubles_push(&G.ack_lat_s, t - sent);
    if (!body->is_object || !body->ok_truthy) {
        if (G.errors < (long)(sizeof G.error_text / sizeof G.error_text[0])) {
            bytes_put(&G.error_text[G.errors], arg, arg_len < 200 ? arg_len : 200);
        }
        G.errors++;
        publisher_close(seq);
    } else if (!body->changed_truthy) {
        G.noop++; /* "recording" and "paused" alternate: a no-op means two requests swapped */
        publisher_close(seq);
    } else {
        int64_t offset = body->offset;
        if (offset < 0 || offset >= MAX_OFFSET) {
            publisher_close(seq);
            return;
        }
        if (offset <= G.last_changed_offset) {
            G.offsets_out_of_order++;
        } else {
            G.last_changed_offset = offset;
        }
        offsets_ensure(offset);
        G.off.sent_s[offset] = sent;
        ints_push(&G.committed, offset);
        if (G.off.count[offset] >= G.full) {
            publisher_close(seq);
        } else {
            G.off.pending_seq[offset] = seq;
        }
    }
}

/* --- frames ----------------------------------------------------------------------------- */

static void on_socketio(Link *link, const char *text, size_t len, double t) {
    char kind = text[1];
    if (kind == SIO_ACK) {
        long ack_id;
        AckBody body;
        const char *arg;
        size_t arg_len;
        if (!sio_parse_ack(text, len, &ack_id, &body, &arg, &arg_len)) return;
        if (link->subscriber && ack_id == SUBSCRIBE_ACK_ID) {
            subscribed(link, &body, arg, arg_len);
        } else if (!link->subscriber) {
            publisher_ack(ack_id, &body, arg, arg_len, t);
        }
    } else if (kind == SIO_CONNECT) {
        if (!link->subscriber) {
            settle(link, 1);
        } else {
            Bytes packet = {0};
            bytes_puts(&packet, "421[\"subscribe_on_session\",{\"session_id\":");
            bytes_put_json_string(&packet, G.opt.session, strlen(G.opt.session));
            bytes_puts(&packet, "}]");
            link_send(link, WS_TEXT, packet.data, packet.len);
            bytes_free(&packet);
        }
    } else if (kind == SIO_CONNECT_ERROR) {
        link_fail(link, "ConnectionError('connect refused: %s')", text, len);
    } else if (kind == SIO_DISCONNECT) {
        link->closed = 1;
    }
}

static void on_frame(Link *link, const WsFrame *frame, double t) {
    if (frame->opcode == WS_PING) {
        link_send(link, WS_PONG, frame->payload, frame->len);
    } else if (frame->opcode == WS_CLOSE) {
        link->closed = 1;
    } else if (frame->len) {
        char kind = frame->payload[0];
        if (kind == EIO_PING) {
            send_text(link, "3");
        } else if (kind == EIO_OPEN) {
            Bytes packet = {0};
            bytes_puts(&packet, "40{\"token\":");
            bytes_put_json_string(&packet, G.opt.token, strlen(G.opt.token));
            bytes_puts(&packet, "}");
            link_send(link, WS_TEXT, packet.data, packet.len);
            bytes_free(&packet);
        } else if (kind == EIO_MESSAGE && frame->len > 1) {
            on_socketio(link, frame->payload, frame->len, t);
        }
    }
}

/* Parse every complete frame of data[0..size) received at t; the bytes parsed. */
static size_t feed(Link *link, const char *data, size_t size, double t) {
    size_t pos = 0;
    WsFrame frame;
    while (link->fd >= 0 && ws_next_frame(data + pos, size - pos, &frame)) {
        int64_t offset = frame.opcode == WS_TEXT ? sio_event_offset(frame.payload, frame.len) : -1;
        if (offset >= 0) {
            on_event(link, offset, t);
        } else {
            on_frame(link, &frame, t);
        }
        pos += frame.frame_len;
    }
    return pos;
}

/* The HTTP response head; the bytes after it (frames), or NULL while it is incomplete. */
static const char *upgrade(Link *link, const char *data, size_t *size) {
    bytes_put(&link->head, data, *size);
    char *end = memmem(link->head.data, link->head.len, "\r\n\r\n", 4);
    if (!end) return NULL;
    link->head_done = 1;
    if (strncmp(link->head.data, "HTTP/1.1 101", 12) != 0) {
        link_fail(link, "ConnectionError('upgrade refused: %s')", link->head.data, link->head.len < 80 ? link->head.len : 80);
        return NULL;
    }
    size_t skip = (size_t)(end + 4 - link->head.data);
    *size = link->head.len - skip;
    memmove(recv_buffer, link->head.data + skip, *size); /* data may be recv_buffer itself */
    bytes_free(&link->head);
    return recv_buffer;
}

static void link_read(Link *link) {
    ssize_t got = recv(link->fd, recv_buffer, sizeof recv_buffer, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (got <= 0) {
        link_fail(link, "ConnectionError('connection lost: %s')", got ? strerror(errno) : "EOF",
                  strlen(got ? strerror(errno) : "EOF"));
        return;
    }
    double t = now_s();
    size_t size = (size_t)got;
    const char *data = recv_buffer;
    if (!link->head_done) {
        data = upgrade(link, data, &size);
        if (!data || size == 0) return;
    }
    if (link->rx.len) { /* a partial frame from the previous read */
        bytes_put(&link->rx, data, size);
        bytes_consume(&link->rx, feed(link, link->rx.data, link->rx.len, t));
        return;
    }
    size_t used = feed(link, data, size, t);
    if (used < size && link->fd >= 0) bytes_put(&link->rx, data + used, size - used);
}

void link_event(int index, uint32_t events) {
    Link *link = &G.links[index];
    if (link->fd < 0) return;
    if (link->connecting) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) connected(link);
        return;
    }
    if ((events & EPOLLOUT) && link->tx.len) flush(link);
    if (link->fd >= 0 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) link_read(link);
}

/* --- the publisher ---------------------------------------------------------------------- */

const char *publisher_status(int64_t seq) { return STATUSES[(seq - 1) % 2]; }

void publisher_send(void) {
    Link *link = &G.links[0];
    int64_t seq = ++G.seq;
    if ((size_t)seq >= G.is_open_cap) {
        size_t cap = G.is_open_cap ? G.is_open_cap * 2 : 4096;
        G.is_open = grow(G.is_open, G.is_open_cap, cap, 1);
        G.is_open_cap = cap;
    }
    char packet[512];
    int len = snprintf(packet, sizeof packet,
                       "42%lld[\"set_session_status\",{\"session_id\":\"%s\",\"status\":\"%s\"}]", (long long)seq,
                       G.opt.session, publisher_status(seq));
    double now = now_s();
    doubles_push(&G.sent_s, now);
    G.is_open[seq] = 1;
    G.n_open++;
    if (G.low_open == 0) G.low_open = seq;
    link_send(link, WS_TEXT, packet, (size_t)len < sizeof packet ? (size_t)len : sizeof packet - 1);
}

void publisher_fill(void) {
    while (G.filling && G.n_open < G.opt.outstanding && now_s() < G.fill_end_s) publisher_send();
}

/* The event leaves the window (acked and everywhere, refused, a no-op, or stalled). */
static void publisher_close(int64_t seq) {
    if (seq < 1 || (size_t)seq >= G.is_open_cap || !G.is_open[seq]) return;
    G.is_open[seq] = 0;
    G.n_open--;
    while (G.low_open && G.low_open <= G.seq && !G.is_open[G.low_open]) G.low_open++;
    if (G.low_open > G.seq) G.low_open = 0;
    publisher_fill();
}

void publisher_expire(double now) {
    if (!G.low_open) return;
    for (int64_t seq = G.low_open; seq <= G.seq; seq++) {
        if (G.is_open[seq] && now - G.sent_s.v[seq - 1] > G.opt.stall_s) {
            G.stalled++;
            publisher_close(seq);
        }
    }
}
