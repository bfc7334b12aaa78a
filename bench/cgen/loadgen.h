/* The load generator's shared state: options, connections, what subscribers received, and
 * the publisher's window. loadgen.c runs the phases; link.c owns the connections. */
#ifndef CGEN_LOADGEN_H
#define CGEN_LOADGEN_H

#include <stdint.h>

#include "figures.h"
#include "wire.h"

/* The same options as bench/lean_client.py, with the same defaults. */
typedef struct {
    const char *host;
    int port;
    const char *token;
    const char *session;
    int server_pid;
    int redis_pid;
    int n;
    int concurrency;
    int outstanding;
    double warmup_s, sat_s, rate, fixed_s, stall_s, drain_s, idle_s, handshake_timeout_s, deadline_s;
    double hold_s; /* after connecting, keep every connection open this long (memory reports) */
} Options;

/* One client connection: WebSocket upgrade, Engine.IO/Socket.IO handshake, then frames. */
typedef struct {
    int fd;             /* -1 once closed here */
    int subscriber;     /* 0 for the publisher */
    int connecting;     /* TCP connect in progress */
    int head_done;      /* the HTTP 101 response has been read */
    int ready;          /* 0 pending, 1 connected (and subscribed), -1 failed */
    int closed;         /* the server closed it, or it failed */
    int want_out;       /* EPOLLOUT is registered */
    double started_s;   /* handshake start */
    Bytes head, rx, tx; /* response head, a partial frame, unsent bytes */
    int64_t last_offset;
    int64_t base_offset; /* the offset its subscription started from */
    long gaps;           /* offsets not one above the previous (a loss or a reordering) */
    long duplicates;     /* offsets it received more than once */
    uint8_t *seen;       /* bit (offset - base_offset): received */
    size_t seen_bytes;
    char reason[240]; /* why it failed */
} Link;

/* Per committed offset: deliveries so far, when its request was sent, the request waiting
 * for it to be everywhere. Indexed by offset (offsets are small, dense counters). */
typedef struct {
    int32_t *count;
    double *sent_s; /* NAN until acked */
    int64_t *pending_seq;
    int64_t size;
} Offsets;

/* A growable array of int64. */
typedef struct {
    int64_t *v;
    size_t len, cap;
} Ints;

void ints_push(Ints *a, int64_t value);

typedef struct {
    Options opt;
    int epfd;
    Link *links; /* [0] the publisher, [1..n] subscribers */
    int n_links;
    int full; /* subscribers that must get every offset */
    Offsets off;
    Ints rx_off;  /* arrivals in this phase: offset ... */
    Doubles rx_t; /* ... and time */
    /* the publisher */
    int64_t seq;
    Doubles sent_s;   /* by seq - 1 */
    uint8_t *is_open; /* by seq: acked and fully delivered not yet, nor stalled */
    size_t is_open_cap;
    int64_t n_open, low_open;
    Doubles ack_sent_s, ack_lat_s;
    Ints committed; /* offsets, in ack order */
    long noop, errors, stalled;
    /* Per-connection order: acks come back in send order, and a change sent later commits
     * later (a higher offset). Counted against the highest ack id / offset seen so far. */
    int64_t last_ack_seq, last_changed_offset;
    long acks_out_of_order, offsets_out_of_order;
    Bytes error_text[64]; /* the first error acks' bodies */
    int filling;          /* an event leaving the window sends the next one */
    double fill_end_s;
    double expire_next_s, expire_end_s; /* the stall watcher, while active */
    double deadline_s;                  /* hard limit on the whole run */
    uint64_t subscribed_settled;        /* subscriber handshakes over (ready or failed) */
} Gen;

extern Gen G;

/* link.c */
void link_open(int index, int subscriber);
void link_event(int index, uint32_t events);
void link_close(Link *link);
void link_send(Link *link, int opcode, const char *payload, size_t len);
void publisher_send(void);
const char *publisher_status(int64_t seq); /* the status the seq-th change asks for */
void publisher_fill(void);
void publisher_expire(double now);
void offsets_ensure(int64_t offset);

#endif
