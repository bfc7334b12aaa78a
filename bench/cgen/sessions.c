/* The many-small-sessions load generator: K sessions x M subscribers, P publishers, one epoll
 * loop, one thread (bench/sessions.py runs it; issue 26).
 *
 * Where build/loadgen drives one room from one publisher, this one measures what a committed
 * event costs when there are many small rooms: session s is driven by publisher s % P only
 * (so each session's changes go down one connection, in order), a publisher cycles through its
 * sessions, and each session has M subscribers of its own. Phases as loadgen's: connect and
 * subscribe (--concurrency handshakes at a time; publishers first), saturation (each publisher
 * keeps --outstanding events in flight, an event leaving its window once it is acked *and* all
 * of its session's subscribers have it, or after --stall-s), fixed rate (--rate events/s in
 * total, spread over the publishers in turn, on an absolute schedule), a bounded drain after
 * each. Every wait is bounded; --deadline-s ends the run. Same framing code (wire.c) and
 * figures (figures.c) as loadgen; the `RESULT {json}` line has the same phase blocks.
 *
 *   build/sessions --port P --token T --sessions-file F --server-pid PID [--redis-pid PID]
 *                  [--subscribers 10] [--publishers 64] [--outstanding 8] ... */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "figures.h"
#include "wire.h"

#define MAX_OFFSET (1 << 22) /* per session; far above any run's offsets */
#define SUBSCRIBE_ACK_ID 1
#define RECV_BUFFER_BYTES (1 << 18)
#define MAX_SESSIONS 100000
#define STATUS_SAMPLE 32 /* sessions whose last status sent is reported, for the read-back */

static const char *const STATUSES[2] = {"recording", "paused"}; /* each may follow the other */
static char recv_buffer[RECV_BUFFER_BYTES];

typedef struct {
    const char *host, *token, *sessions_file;
    int port, server_pid, redis_pid;
    int subscribers, publishers, concurrency, outstanding;
    double warmup_s, sat_s, rate, fixed_s, stall_s, drain_s, idle_s, handshake_timeout_s, deadline_s;
} Options;

/* Growable arrays. */
typedef struct {
    int64_t *v;
    size_t len, cap;
} Ints;

typedef struct {
    char id[128];
    int publisher;    /* link index of the one publisher that changes it */
    int64_t changes;  /* status changes sent (the statuses alternate, starting with "recording") */
    int full;         /* its subscribers that subscribed: "every subscriber" of an event */
    int64_t last_changed_offset;
    /* by offset: deliveries so far, when its request was sent (NAN until acked), the request
     * waiting for it to be everywhere (publisher link, seq) */
    int32_t *count;
    double *sent_s;
    int32_t *pending_pub;
    int64_t *pending_seq;
    int64_t size;
} Session;

typedef struct {
    int fd; /* -1 once closed here */
    int publisher;
    int session; /* subscribers: the session it subscribes to */
    int connecting, head_done, ready, closed, want_out;
    double started_s;
    Bytes head, rx, tx;
    /* a subscriber */
    int64_t last_offset, base_offset;
    long gaps, duplicates;
    uint8_t *seen;
    size_t seen_bytes;
    /* a publisher: its sessions, its requests by seq */
    int *sessions;
    int n_sessions, next_session;
    int64_t seq, n_open, low_open, last_ack_seq;
    double *sent_s;      /* by seq */
    int32_t *session_of; /* by seq */
    uint8_t *is_open;    /* by seq */
    size_t seq_cap;
    char reason[240];
} Link;

static struct {
    Options opt;
    int epfd;
    Link *links; /* [0, P) publishers, then K x M subscribers */
    int n_links;
    Session *sessions;
    int n_sessions;
    Ints rx_sess, rx_off;
    Doubles rx_t;
    Ints committed_sess, committed_off;
    Doubles ack_sent_s, ack_lat_s;
    long noop, errors, stalled, acks_out_of_order, offsets_out_of_order;
    Bytes error_text[64];
    int filling;
    double fill_end_s, expire_next_s, expire_end_s, deadline_s;
    long settled; /* handshakes over (ready or failed) */
} G;

static void log_line(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("[sessions] ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
}

static void result_error(const char *reason) {
    Bytes text = {0};
    bytes_put_json_string(&text, reason, strlen(reason));
    printf("RESULT {\"generator\": \"c\", \"error\": %s}\n", text.data);
    fflush(stdout);
    exit(1);
}

static void *grow(void *data, size_t old_count, size_t new_count, size_t item) {
    char *bigger = realloc(data, new_count * item);
    if (!bigger) {
        fputs("[sessions] out of memory\n", stderr);
        exit(3);
    }
    memset(bigger + old_count * item, 0, (new_count - old_count) * item);
    return bigger;
}

static void ints_push(Ints *a, int64_t value) {
    if (a->len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4096;
        a->v = grow(a->v, a->cap, cap, sizeof *a->v);
        a->cap = cap;
    }
    a->v[a->len++] = value;
}

static void session_ensure(Session *s, int64_t offset) {
    if (offset < s->size) return;
    int64_t size = s->size ? s->size : 64;
    while (size <= offset) size *= 2;
    s->count = grow(s->count, (size_t)s->size, (size_t)size, sizeof *s->count);
    s->pending_pub = grow(s->pending_pub, (size_t)s->size, (size_t)size, sizeof *s->pending_pub);
    s->pending_seq = grow(s->pending_seq, (size_t)s->size, (size_t)size, sizeof *s->pending_seq);
    s->sent_s = grow(s->sent_s, (size_t)s->size, (size_t)size, sizeof *s->sent_s);
    for (int64_t i = s->size; i < size; i++) s->sent_s[i] = NAN;
    s->size = size;
}

/* --- connections ------------------------------------------------------------------------ */

static void watch(Link *link, int want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0u), .data.u32 = (uint32_t)(link - G.links)};
    epoll_ctl(G.epfd, EPOLL_CTL_MOD, link->fd, &ev);
    link->want_out = want_out;
}

static void link_close(Link *link) {
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
    G.settled++;
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

static void link_send(Link *link, int opcode, const char *payload, size_t len) {
    if (link->fd < 0 || link->connecting) return;
    ws_client_frame(&link->tx, opcode, payload, len);
    flush(link);
}

static void link_open(int index) {
    Link *link = &G.links[index];
    link->last_offset = -1;
    link->started_s = now_s();
    link->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (link->fd < 0) {
        link_fail(link, "OSError('socket: %s')", strerror(errno), strlen(strerror(errno)));
        return;
    }
    int one = 1;
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

/* --- the publishers ------------------------------------------------------------------------ */

static void publisher_fill(Link *pub);

static void publisher_send(Link *pub) {
    if (pub->n_sessions == 0 || pub->fd < 0) return;
    int sidx = pub->sessions[pub->next_session];
    pub->next_session = (pub->next_session + 1) % pub->n_sessions;
    Session *s = &G.sessions[sidx];
    int64_t seq = ++pub->seq;
    if ((size_t)seq >= pub->seq_cap) {
        size_t cap = pub->seq_cap ? pub->seq_cap * 2 : 1024;
        pub->sent_s = grow(pub->sent_s, pub->seq_cap, cap, sizeof *pub->sent_s);
        pub->session_of = grow(pub->session_of, pub->seq_cap, cap, sizeof *pub->session_of);
        pub->is_open = grow(pub->is_open, pub->seq_cap, cap, 1);
        pub->seq_cap = cap;
    }
    const char *status = STATUSES[s->changes++ % 2];
    char packet[256];
    int len = snprintf(packet, sizeof packet, "42%lld[\"set_session_status\",{\"session_id\":\"%s\",\"status\":\"%s\"}]",
                       (long long)seq, s->id, status);
    pub->sent_s[seq] = now_s();
    pub->session_of[seq] = sidx;
    pub->is_open[seq] = 1;
    pub->n_open++;
    if (pub->low_open == 0) pub->low_open = seq;
    link_send(pub, WS_TEXT, packet, (size_t)len < sizeof packet ? (size_t)len : sizeof packet - 1);
}

/* The event leaves the publisher's window (acked and everywhere, refused, a no-op, or stalled). */
static void publisher_close(Link *pub, int64_t seq) {
    if (seq < 1 || (size_t)seq >= pub->seq_cap || !pub->is_open[seq]) return;
    pub->is_open[seq] = 0;
    pub->n_open--;
    while (pub->low_open && pub->low_open <= pub->seq && !pub->is_open[pub->low_open]) pub->low_open++;
    if (pub->low_open > pub->seq) pub->low_open = 0;
    publisher_fill(pub);
}

static void publisher_fill(Link *pub) {
    while (G.filling && pub->n_open < G.opt.outstanding && now_s() < G.fill_end_s && pub->fd >= 0) publisher_send(pub);
}

static void publishers_expire(double now) {
    for (int p = 0; p < G.opt.publishers; p++) {
        Link *pub = &G.links[p];
        if (!pub->low_open) continue;
        for (int64_t seq = pub->low_open; seq <= pub->seq; seq++) {
            if (pub->is_open[seq] && now - pub->sent_s[seq] > G.opt.stall_s) {
                G.stalled++;
                publisher_close(pub, seq);
            }
        }
    }
}

static void publisher_ack(Link *pub, int64_t seq, const AckBody *body, const char *arg, size_t arg_len, double t) {
    if (seq < 1 || seq > pub->seq) return;
    if (seq < pub->last_ack_seq) {
        G.acks_out_of_order++;
    } else {
        pub->last_ack_seq = seq;
    }
    double sent = pub->sent_s[seq];
    doubles_push(&G.ack_sent_s, sent);
    doubles_push(&G.ack_lat_s, t - sent);
    Session *s = &G.sessions[pub->session_of[seq]];
    if (!body->is_object || !body->ok_truthy) {
        if (G.errors < (long)(sizeof G.error_text / sizeof G.error_text[0])) {
            bytes_put(&G.error_text[G.errors], arg, arg_len < 200 ? arg_len : 200);
        }
        G.errors++;
        publisher_close(pub, seq);
    } else if (!body->changed_truthy) {
        G.noop++; /* a session's statuses alternate: a no-op means two of its requests swapped */
        publisher_close(pub, seq);
    } else {
        int64_t offset = body->offset;
        if (offset < 0 || offset >= MAX_OFFSET) {
            publisher_close(pub, seq);
            return;
        }
        if (offset <= s->last_changed_offset) {
            G.offsets_out_of_order++;
        } else {
            s->last_changed_offset = offset;
        }
        session_ensure(s, offset);
        s->sent_s[offset] = sent;
        ints_push(&G.committed_sess, pub->session_of[seq]);
        ints_push(&G.committed_off, offset);
        if (s->count[offset] >= s->full) {
            publisher_close(pub, seq);
        } else {
            s->pending_pub[offset] = (int32_t)(pub - G.links);
            s->pending_seq[offset] = seq;
        }
    }
}

/* --- the subscribers' tally ------------------------------------------------------------------ */

static void mark_seen(Link *link, int64_t offset) {
    if (offset <= link->base_offset || offset >= MAX_OFFSET) return;
    size_t bit = (size_t)(offset - link->base_offset);
    if (bit / 8 >= link->seen_bytes) {
        size_t bytes = link->seen_bytes ? link->seen_bytes : 64;
        while (bytes <= bit / 8) bytes *= 2;
        link->seen = grow(link->seen, link->seen_bytes, bytes, 1);
        link->seen_bytes = bytes;
    }
    uint8_t mask = (uint8_t)(1u << (bit % 8));
    if (link->seen[bit / 8] & mask) link->duplicates++;
    link->seen[bit / 8] |= mask;
}

static void on_event(Link *link, int64_t offset, double t) {
    if (offset >= MAX_OFFSET) return;
    Session *s = &G.sessions[link->session];
    session_ensure(s, offset);
    int32_t count = ++s->count[offset];
    ints_push(&G.rx_sess, link->session);
    ints_push(&G.rx_off, offset);
    doubles_push(&G.rx_t, t);
    if (offset != link->last_offset + 1 && link->last_offset >= 0) link->gaps++;
    link->last_offset = offset;
    mark_seen(link, offset);
    if (count == s->full && s->pending_seq[offset]) {
        int64_t seq = s->pending_seq[offset];
        s->pending_seq[offset] = 0;
        publisher_close(&G.links[s->pending_pub[offset]], seq);
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
        if (link->publisher) {
            publisher_ack(link, ack_id, &body, arg, arg_len, t);
        } else if (ack_id == SUBSCRIBE_ACK_ID) {
            if (body.is_object && !body.ok_false) {
                link->last_offset = body.offset_present ? body.offset : 0;
                link->base_offset = link->last_offset;
                settle(link, 1);
            } else {
                link_fail(link, "ConnectionError('subscribe refused: %s')", arg, arg_len);
            }
        }
    } else if (kind == SIO_CONNECT) {
        if (link->publisher) {
            settle(link, 1);
        } else {
            Bytes packet = {0};
            bytes_puts(&packet, "421[\"subscribe_on_session\",{\"session_id\":");
            const char *id = G.sessions[link->session].id;
            bytes_put_json_string(&packet, id, strlen(id));
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
            link_send(link, WS_TEXT, "3", 1);
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

static size_t feed(Link *link, const char *data, size_t size, double t) {
    size_t pos = 0;
    WsFrame frame;
    while (link->fd >= 0 && ws_next_frame(data + pos, size - pos, &frame)) {
        int64_t offset = (!link->publisher && frame.opcode == WS_TEXT) ? sio_event_offset(frame.payload, frame.len) : -1;
        if (offset >= 0) {
            on_event(link, offset, t);
        } else {
            on_frame(link, &frame, t);
        }
        pos += frame.frame_len;
    }
    return pos;
}

static const char *upgrade(Link *link, const char *data, size_t *size) {
    bytes_put(&link->head, data, *size);
    char *end = memmem(link->head.data, link->head.len, "\r\n\r\n", 4);
    if (!end) return NULL;
    link->head_done = 1;
    if (strncmp(link->head.data, "HTTP/1.1 101", 12) != 0) {
        link_fail(link, "ConnectionError('upgrade refused: %s')", link->head.data,
                  link->head.len < 80 ? link->head.len : 80);
        return NULL;
    }
    size_t skip = (size_t)(end + 4 - link->head.data);
    *size = link->head.len - skip;
    memmove(recv_buffer, link->head.data + skip, *size);
    bytes_free(&link->head);
    return recv_buffer;
}

static void link_read(Link *link) {
    ssize_t got = recv(link->fd, recv_buffer, sizeof recv_buffer, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (got <= 0) {
        const char *why = got ? strerror(errno) : "EOF";
        link_fail(link, "ConnectionError('connection lost: %s')", why, strlen(why));
        return;
    }
    double t = now_s();
    size_t size = (size_t)got;
    const char *data = recv_buffer;
    if (!link->head_done) {
        data = upgrade(link, data, &size);
        if (!data || size == 0) return;
    }
    if (link->rx.len) {
        bytes_put(&link->rx, data, size);
        bytes_consume(&link->rx, feed(link, link->rx.data, link->rx.len, t));
        return;
    }
    size_t used = feed(link, data, size, t);
    if (used < size && link->fd >= 0) bytes_put(&link->rx, data + used, size - used);
}

static void link_event(int index, uint32_t events) {
    Link *link = &G.links[index];
    if (link->fd < 0) return;
    if (link->connecting) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) connected(link);
        return;
    }
    if ((events & EPOLLOUT) && link->tx.len) flush(link);
    if (link->fd >= 0 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) link_read(link);
}

/* --- the loop ------------------------------------------------------------------------------ */

static void loop_once(double timeout_s) {
    double now = now_s();
    if (now > G.deadline_s) result_error("TimeoutError()");
    if (G.expire_end_s > 0 && G.expire_next_s - now < timeout_s) timeout_s = G.expire_next_s - now;
    int timeout_ms = timeout_s <= 0 ? 0 : (int)ceil(timeout_s * 1000.0);
    struct epoll_event events[1024];
    int ready = epoll_wait(G.epfd, events, 1024, timeout_ms);
    for (int i = 0; i < ready; i++) link_event((int)events[i].data.u32, events[i].events);
    if (G.expire_end_s > 0 && now_s() >= G.expire_next_s) {
        publishers_expire(now_s());
        G.expire_next_s += 0.25;
        if (G.expire_next_s > G.expire_end_s + 0.25) G.expire_end_s = 0;
    }
}

static void run_until(double until_s) {
    for (double now = now_s(); now < until_s; now = now_s()) loop_once(until_s - now);
}

static void fail_stale(int from, int to, double now) {
    for (int i = from; i < to; i++) {
        Link *link = &G.links[i];
        if (link->ready == 0 && now - link->started_s > G.opt.handshake_timeout_s) {
            snprintf(link->reason, sizeof link->reason, "TimeoutError()");
            settle(link, -1);
            link->closed = 1;
            link_close(link);
        }
    }
}

/* Open links [from, to), --concurrency handshakes at a time; the number that are ready. */
static int open_links(int from, int to) {
    long settled_before = G.settled;
    int launched = from;
    while (G.settled - settled_before < to - from) {
        while (launched < to && (launched - from) - (G.settled - settled_before) < G.opt.concurrency) {
            link_open(launched++);
        }
        loop_once(0.05);
        fail_stale(from, launched, now_s());
    }
    int ready = 0;
    for (int i = from; i < to; i++) ready += G.links[i].ready == 1;
    return ready;
}

static void connect_phase(Bytes *out) {
    int P = G.opt.publishers;
    int publishers = open_links(0, P);
    if (publishers < P) result_error(G.links[0].reason[0] ? G.links[0].reason : "a publisher did not connect");
    run_until(now_s() + 0.3);
    long rss_before = rss_kib(G.opt.server_pid);
    double started = now_s();
    int subscribed = open_links(P, G.n_links);
    double connect_s = now_s() - started;
    int failed = 0;
    Bytes failures = {0};
    for (int i = P; i < G.n_links; i++) {
        Link *link = &G.links[i];
        if (link->ready == 1) {
            G.sessions[link->session].full++;
        } else if (failed++ < 5) {
            bytes_puts(&failures, failures.len ? ", " : "");
            bytes_put_json_string(&failures, link->reason, strlen(link->reason));
        }
    }
    run_until(now_s() + 0.2);
    long rss_after = rss_kib(G.opt.server_pid);
    log_line("%d publishers, %d/%d subscribers in %.3f s; server RSS %ld -> %ld KiB", publishers, subscribed,
             G.n_links - P, connect_s, rss_before, rss_after);
    bytes_printf(out,
                 "\"connect\": {\"connect_s\": %.3f, \"publishers\": %d, \"subscribed\": %d, \"failures\": [%s], "
                 "\"failed\": %d, \"rss_before_kib\": %ld, \"rss_after_kib\": %ld, \"rss_per_client_kib\": %.2f}",
                 connect_s, publishers, subscribed, failures.data ? failures.data : "", failed, rss_before, rss_after,
                 (double)(rss_after - rss_before) / (subscribed > 1 ? subscribed : 1));
    bytes_free(&failures);
}

/* --- measuring ----------------------------------------------------------------------------- */

typedef struct {
    CpuSample gen, server, redis, machine;
} CpuSet;

static CpuSet cpu_now(double now) {
    CpuSet set = {own_cpu_sample(now), cpu_sample(G.opt.server_pid, now), {0, now, 0}, machine_cpu_sample(now)};
    if (G.opt.redis_pid) set.redis = cpu_sample(G.opt.redis_pid, now);
    return set;
}

typedef struct {
    size_t committed;
    long noop, errors, stalled, acks_out_of_order, offsets_out_of_order;
} Marks;

static Marks marks_now(void) {
    return (Marks){G.committed_off.len, G.noop, G.errors, G.stalled, G.acks_out_of_order, G.offsets_out_of_order};
}

static int64_t open_total(void) {
    int64_t open = 0;
    for (int p = 0; p < G.opt.publishers; p++) open += G.links[p].n_open;
    return open;
}

static void drain(Bytes *out) {
    G.filling = 0;
    double started = now_s(), deadline = started + G.opt.drain_s;
    size_t seen = G.rx_t.len;
    double seen_at = started;
    while (open_total() && now_s() < deadline) {
        run_until(now_s() + 0.05);
        if (G.rx_t.len != seen) {
            seen = G.rx_t.len;
            seen_at = now_s();
        } else if (now_s() - seen_at > G.opt.idle_s) {
            break;
        }
    }
    int64_t unfinished = open_total();
    for (int p = 0; p < G.opt.publishers; p++) {
        Link *pub = &G.links[p];
        if (pub->is_open) memset(pub->is_open, 0, pub->seq_cap);
        pub->n_open = 0;
        pub->low_open = 0;
    }
    bytes_printf(out, ", \"drain_s\": %.2f, \"unfinished_events\": %lld, \"drain_cut\": %s", now_s() - started,
                 (long long)unfinished, unfinished && now_s() >= deadline ? "true" : "false");
}

// t0_s and t1_s are CLOCK_MONOTONIC seconds, the clock of Python's time.monotonic(): bench/sessions.py
// lines its own samples of Redis and the server up with the window by them.
static void figures(Bytes *out, double t0, double t1, CpuSet c0, CpuSet c1) {
    size_t deliveries = 0, events = 0;
    for (size_t i = 0; i < G.rx_t.len; i++) deliveries += G.rx_t.v[i] >= t0 && G.rx_t.v[i] < t1;
    for (size_t i = 0; i < G.committed_off.len; i++) {
        double sent = G.sessions[G.committed_sess.v[i]].sent_s[G.committed_off.v[i]];
        events += sent >= t0 && sent < t1;
    }
    Doubles delivery = {0}, acks = {0};
    for (size_t i = 0; i < G.rx_off.len; i++) {
        Session *s = &G.sessions[G.rx_sess.v[i]];
        double sent = s->sent_s[G.rx_off.v[i]];
        if (sent >= t0 && sent < t1) doubles_push(&delivery, G.rx_t.v[i] - sent);
    }
    for (size_t i = 0; i < G.ack_sent_s.len; i++) {
        if (G.ack_sent_s.v[i] >= t0 && G.ack_sent_s.v[i] < t1) doubles_push(&acks, G.ack_lat_s.v[i]);
    }
    double window_s = t1 - t0;
    bytes_printf(out,
                 "\"window_s\": %.3f, \"t0_s\": %.6f, \"t1_s\": %.6f, \"deliveries\": %zu, "
                 "\"deliveries_per_s\": %.1f, \"events\": %zu, \"events_per_s\": %.1f, \"ack\": ",
                 window_s, t0, t1, deliveries, (double)deliveries / window_s, events, (double)events / window_s);
    put_percentiles_ms(out, &acks);
    bytes_puts(out, ", \"delivery\": ");
    put_percentiles_ms(out, &delivery);
    bytes_printf(out, ", \"gen_cpu_pct\": %.1f, \"server_cpu_pct\": %.1f", cpu_percent(c0.gen, c1.gen),
                 cpu_percent(c0.server, c1.server));
    if (G.opt.redis_pid) bytes_printf(out, ", \"redis_cpu_pct\": %.1f", cpu_percent(c0.redis, c1.redis));
    bytes_printf(out, ", \"machine_cpu_pct\": %.1f", cpu_percent(c0.machine, c1.machine));
    doubles_free(&delivery);
    doubles_free(&acks);
}

static void loss(Bytes *out, Marks m) {
    long missing = 0, gaps = 0, duplicates = 0, closed = 0;
    for (size_t i = m.committed; i < G.committed_off.len; i++) {
        Session *s = &G.sessions[G.committed_sess.v[i]];
        long short_by = s->full - s->count[G.committed_off.v[i]];
        missing += short_by > 0 ? short_by : 0;
    }
    for (int i = G.opt.publishers; i < G.n_links; i++) {
        Link *link = &G.links[i];
        if (link->ready != 1) continue;
        gaps += link->gaps;
        duplicates += link->duplicates;
        closed += link->closed;
    }
    bytes_printf(out,
                 ", \"committed\": %zu, \"missing\": %ld, \"gaps\": %ld, \"duplicates\": %ld, "
                 "\"closed_subscribers\": %ld, \"noop_acks\": %ld, \"error_acks\": %ld, \"first_errors\": [",
                 G.committed_off.len - m.committed, missing, gaps, duplicates, closed, G.noop - m.noop,
                 G.errors - m.errors);
    long kept = (long)(sizeof G.error_text / sizeof G.error_text[0]);
    for (long i = m.errors; i < G.errors && i < m.errors + 3 && i < kept; i++) {
        if (i > m.errors) bytes_puts(out, ", ");
        bytes_put_json_string(out, G.error_text[i].data ? G.error_text[i].data : "", G.error_text[i].len);
    }
    bytes_printf(out, "], \"stalled\": %ld, \"acks_out_of_order\": %ld, \"offsets_out_of_order\": %ld",
                 G.stalled - m.stalled, G.acks_out_of_order - m.acks_out_of_order,
                 G.offsets_out_of_order - m.offsets_out_of_order);
}

static void clear_samples(void) {
    G.rx_sess.len = 0;
    G.rx_off.len = 0;
    G.rx_t.len = 0;
}

static void saturation(Bytes *out) {
    Options *o = &G.opt;
    Marks m = marks_now();
    clear_samples();
    double end = now_s() + o->warmup_s + o->sat_s;
    G.filling = 1;
    G.fill_end_s = end;
    G.expire_next_s = now_s() + 0.25;
    G.expire_end_s = end;
    for (int p = 0; p < o->publishers; p++) publisher_fill(&G.links[p]);
    run_until(now_s() + o->warmup_s);
    double t0 = now_s();
    CpuSet c0 = cpu_now(t0);
    run_until(t0 + o->sat_s);
    double t1 = now_s();
    CpuSet c1 = cpu_now(t1);
    G.expire_end_s = 0;
    Bytes tail = {0};
    drain(&tail);
    bytes_puts(out, "\"saturation\": {");
    size_t start = out->len;
    figures(out, t0, t1, c0, c1);
    bytes_printf(out, ", \"outstanding\": %d", o->outstanding);
    loss(out, m);
    bytes_put(out, tail.data, tail.len);
    bytes_puts(out, "}");
    bytes_free(&tail);
    const char *at = strstr(out->data + start, "\"events_per_s\": ");
    log_line("saturation: %.0f events/s, gen CPU %.1f%%", at ? strtod(at + 16, NULL) : 0.0,
             cpu_percent(c0.gen, c1.gen));
}

static void fixed_rate(Bytes *out) {
    Options *o = &G.opt;
    Marks m = marks_now();
    clear_samples();
    long total = (long)(o->rate * o->fixed_s);
    double t0 = now_s() + 0.05;
    CpuSet c0 = cpu_now(now_s());
    double slip_max = 0.0;
    for (long k = 0; k < total; k++) {
        double target = t0 + (double)k / o->rate;
        run_until(target);
        double slip = now_s() - target;
        slip_max = slip > slip_max ? slip : slip_max;
        publisher_send(&G.links[k % o->publishers]);
    }
    run_until(t0 + o->fixed_s);
    double t1 = now_s();
    CpuSet c1 = cpu_now(t1);
    Bytes tail = {0};
    drain(&tail);
    bytes_puts(out, "\"fixed\": {");
    figures(out, t0, t1, c0, c1);
    bytes_printf(out, ", \"rate\": %g, \"sent\": %ld, \"send_slip_max_ms\": %.2f", o->rate, total, 1000.0 * slip_max);
    loss(out, m);
    bytes_put(out, tail.data, tail.len);
    bytes_puts(out, "}");
    bytes_free(&tail);
    log_line("fixed %g/s done, gen CPU %.1f%%", o->rate, cpu_percent(c0.gen, c1.gen));
}

/* --- options and main ---------------------------------------------------------------------- */

static void usage(const char *program) {
    fprintf(stderr,
            "usage: %s --port P --token T --sessions-file F --server-pid PID [--redis-pid PID] [--host H]\n"
            "       [--subscribers 10] [--publishers 64] [--concurrency 64] [--outstanding 8] [--warmup-s 1]\n"
            "       [--sat-s 5] [--rate 250] [--fixed-s 10] [--stall-s 3] [--drain-s 20] [--idle-s 2]\n"
            "       [--handshake-timeout-s 20] [--deadline-s 180]\n",
            program);
    exit(2);
}

static void parse_options(int argc, char **argv) {
    Options *o = &G.opt;
    *o = (Options){.host = "127.0.0.1", .subscribers = 10, .publishers = 64, .concurrency = 64, .outstanding = 8,
                   .warmup_s = 1.0, .sat_s = 5.0, .rate = 250.0, .fixed_s = 10.0, .stall_s = 3.0, .drain_s = 20.0,
                   .idle_s = 2.0, .handshake_timeout_s = 20.0, .deadline_s = 180.0};
    static const struct option long_options[] = {
        {"host", 1, 0, 'h'},       {"port", 1, 0, 'p'},        {"token", 1, 0, 't'},
        {"sessions-file", 1, 0, 's'}, {"server-pid", 1, 0, 'S'}, {"redis-pid", 1, 0, 'R'},
        {"subscribers", 1, 0, 'm'}, {"publishers", 1, 0, 'P'}, {"concurrency", 1, 0, 'c'},
        {"outstanding", 1, 0, 'o'}, {"warmup-s", 1, 0, 'w'},   {"sat-s", 1, 0, 'a'},
        {"rate", 1, 0, 'r'},       {"fixed-s", 1, 0, 'f'},     {"stall-s", 1, 0, 'l'},
        {"drain-s", 1, 0, 'd'},    {"idle-s", 1, 0, 'i'},      {"handshake-timeout-s", 1, 0, 'H'},
        {"deadline-s", 1, 0, 'D'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long_only(argc, argv, "", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': o->host = optarg; break;
        case 'p': o->port = atoi(optarg); break;
        case 't': o->token = optarg; break;
        case 's': o->sessions_file = optarg; break;
        case 'S': o->server_pid = atoi(optarg); break;
        case 'R': o->redis_pid = atoi(optarg); break;
        case 'm': o->subscribers = atoi(optarg); break;
        case 'P': o->publishers = atoi(optarg); break;
        case 'c': o->concurrency = atoi(optarg); break;
        case 'o': o->outstanding = atoi(optarg); break;
        case 'w': o->warmup_s = atof(optarg); break;
        case 'a': o->sat_s = atof(optarg); break;
        case 'r': o->rate = atof(optarg); break;
        case 'f': o->fixed_s = atof(optarg); break;
        case 'l': o->stall_s = atof(optarg); break;
        case 'd': o->drain_s = atof(optarg); break;
        case 'i': o->idle_s = atof(optarg); break;
        case 'H': o->handshake_timeout_s = atof(optarg); break;
        case 'D': o->deadline_s = atof(optarg); break;
        default: usage(argv[0]);
        }
    }
    if (!o->port || !o->token || !o->sessions_file || !o->server_pid || o->subscribers < 1 || o->publishers < 1 ||
        o->concurrency < 1 || o->outstanding < 1 || o->rate <= 0)
        usage(argv[0]);
}

static void read_sessions(void) {
    FILE *f = fopen(G.opt.sessions_file, "r");
    if (!f) result_error("OSError('cannot read --sessions-file')");
    char line[128];
    int cap = 0;
    while (fgets(line, sizeof line, f) && G.n_sessions < MAX_SESSIONS) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        if (G.n_sessions == cap) {
            int bigger = cap ? cap * 2 : 256;
            G.sessions = grow(G.sessions, (size_t)cap, (size_t)bigger, sizeof *G.sessions);
            cap = bigger;
        }
        snprintf(G.sessions[G.n_sessions++].id, sizeof G.sessions[0].id, "%s", line);
    }
    fclose(f);
    if (G.n_sessions == 0) result_error("ValueError('no sessions in --sessions-file')");
}

int main(int argc, char **argv) {
    parse_options(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    alarm((unsigned)G.opt.deadline_s + 15);
    G.deadline_s = now_s() + G.opt.deadline_s;
    read_sessions();
    int P = G.opt.publishers, K = G.n_sessions, M = G.opt.subscribers;
    if (P > K) P = G.opt.publishers = K; /* a publisher without a session would idle */
    G.epfd = epoll_create1(EPOLL_CLOEXEC);
    G.n_links = P + K * M;
    G.links = calloc((size_t)G.n_links, sizeof *G.links);
    if (G.epfd < 0 || !G.links) result_error("OSError(setup)");
    for (int i = 0; i < G.n_links; i++) G.links[i].fd = -1;
    for (int p = 0; p < P; p++) {
        G.links[p].publisher = 1;
        G.links[p].sessions = calloc((size_t)(K / P + 1), sizeof(int));
    }
    for (int s = 0; s < K; s++) {
        Link *pub = &G.links[s % P];
        G.sessions[s].publisher = s % P;
        pub->sessions[pub->n_sessions++] = s;
        for (int j = 0; j < M; j++) G.links[P + s * M + j].session = s;
    }

    Bytes out = {0};
    bytes_printf(&out, "{\"sessions\": %d, \"subscribers\": %d, \"publishers\": %d, \"generator\": \"c\", ", K, M, P);
    connect_phase(&out);
    if (G.opt.sat_s > 0) {
        bytes_puts(&out, ", ");
        saturation(&out);
        run_until(now_s() + 0.5);
    }
    if (G.opt.fixed_s > 0) {
        bytes_puts(&out, ", ");
        fixed_rate(&out);
    }
    /* the last status sent to a sample of sessions: the harness reads them back */
    bytes_puts(&out, ", \"last_status_sent\": {");
    for (int s = 0, shown = 0; s < K && shown < STATUS_SAMPLE; s += (K / STATUS_SAMPLE > 1 ? K / STATUS_SAMPLE : 1)) {
        if (!G.sessions[s].changes) continue;
        bytes_printf(&out, "%s\"%s\": \"%s\"", shown++ ? ", " : "", G.sessions[s].id,
                     STATUSES[(G.sessions[s].changes - 1) % 2]);
    }
    bytes_puts(&out, "}}");
    for (int i = 0; i < G.n_links; i++) link_close(&G.links[i]);
    printf("RESULT %s\n", out.data);
    fflush(stdout);
    return 0;
}
