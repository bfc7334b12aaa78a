/* The compiled load generator: N subscribers and one publisher in one epoll loop, one thread.
 *
 * It does what bench/lean_client.py does, with the same options and the same `RESULT {json}`
 * line on stdout, so bench/fanout.py can run either: connect and subscribe N clients
 * (--concurrency handshakes at a time); saturation (the publisher keeps --outstanding events
 * in flight, an event leaving the window once it is acked *and* every subscriber has it, or
 * after --stall-s); fixed rate (one event every 1/--rate s on an absolute schedule, whatever
 * the acks); after each phase a drain. Every wait is bounded; --deadline-s ends the run.
 *
 *   build/loadgen --port P --token T --session S --server-pid PID [--redis-pid PID] [--n 1000] ... */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"

Gen G;

static void log_line(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("[gen] ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
}

static void result_error(const char *reason) {
    Bytes text = {0};
    bytes_put_json_string(&text, reason, strlen(reason));
    printf("RESULT {\"n\": %d, \"generator\": \"c\", \"error\": %s}\n", G.opt.n, text.data);
    fflush(stdout);
    exit(1);
}

/* --- the loop ------------------------------------------------------------------------------ */

/* One epoll round, waiting at most timeout_s (and never past the stall watcher's next tick). */
static void loop_once(double timeout_s) {
    double now = now_s();
    if (now > G.deadline_s) result_error("TimeoutError()");
    if (G.expire_end_s > 0 && G.expire_next_s - now < timeout_s) timeout_s = G.expire_next_s - now;
    int timeout_ms = timeout_s <= 0 ? 0 : (int)ceil(timeout_s * 1000.0);
    struct epoll_event events[1024];
    int ready = epoll_wait(G.epfd, events, 1024, timeout_ms);
    for (int i = 0; i < ready; i++) link_event((int)events[i].data.u32, events[i].events);
    if (G.expire_end_s > 0 && now_s() >= G.expire_next_s) {
        publisher_expire(now_s()); /* a lost delivery cannot jam the window */
        G.expire_next_s += 0.25;
        if (G.expire_next_s > G.expire_end_s + 0.25) G.expire_end_s = 0;
    }
}

static void run_until(double until_s) {
    for (double now = now_s(); now < until_s; now = now_s()) loop_once(until_s - now);
}

/* --- connect + subscribe ------------------------------------------------------------------- */

static void fail_stale_handshakes(int from, int to, double now) {
    for (int i = from; i < to; i++) {
        Link *link = &G.links[i];
        if (link->ready == 0 && now - link->started_s > G.opt.handshake_timeout_s) {
            snprintf(link->reason, sizeof link->reason, "TimeoutError()");
            link->ready = -1;
            link->closed = 1;
            if (link->subscriber) G.subscribed_settled++;
            link_close(link);
        }
    }
}

static void open_publisher(void) {
    link_open(0, 0);
    while (G.links[0].ready == 0) {
        loop_once(0.05);
        fail_stale_handshakes(0, 1, now_s());
    }
    if (G.links[0].ready < 0) result_error(G.links[0].reason);
}

static void connect_phase(Bytes *out) {
    Options *o = &G.opt;
    open_publisher();
    run_until(now_s() + 0.5);
    long rss_before = rss_kib(o->server_pid);
    double started = now_s();
    int launched = 0;
    while (G.subscribed_settled < (uint64_t)o->n) {
        while (launched < o->n && (uint64_t)launched - G.subscribed_settled < (uint64_t)o->concurrency) {
            launched++;
            link_open(launched, 1);
        }
        loop_once(0.05);
        fail_stale_handshakes(1, launched + 1, now_s());
    }
    double connect_s = now_s() - started;
    int subscribed = 0, failed = 0;
    Bytes failures = {0};
    for (int i = 1; i <= o->n; i++) {
        if (G.links[i].ready == 1) {
            subscribed++;
        } else if (failed++ < 5) {
            bytes_puts(&failures, failures.len ? ", " : "");
            bytes_put_json_string(&failures, G.links[i].reason, strlen(G.links[i].reason));
        }
    }
    G.full = subscribed; /* "every subscriber" is every one that subscribed */
    run_until(now_s() + 0.2);
    long rss_after = rss_kib(o->server_pid);
    log_line("%d/%d subscribed in %.3f s; server RSS %ld -> %ld KiB", subscribed, o->n, connect_s, rss_before,
             rss_after);
    bytes_printf(out,
                 "\"connect\": {\"connect_s\": %.3f, \"subscribed\": %d, \"failures\": [%s], \"failed\": %d, "
                 "\"rss_before_kib\": %ld, \"rss_after_kib\": %ld, \"rss_per_client_kib\": %.2f}",
                 connect_s, subscribed, failures.data ? failures.data : "", failed, rss_before, rss_after,
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
    return (Marks){G.committed.len, G.noop, G.errors, G.stalled, G.acks_out_of_order, G.offsets_out_of_order};
}

static void clear_samples(void) {
    G.rx_off.len = 0;
    G.rx_t.len = 0;
}

/* Stop sending; wait until every sent event is acked and delivered, or deliveries stop.
 * Bounded by --drain-s; --idle-s without a single delivery ends it early. */
static void drain(Bytes *out) {
    G.filling = 0;
    double started = now_s(), deadline = started + G.opt.drain_s;
    size_t seen = G.rx_t.len;
    double seen_at = started;
    while (G.n_open && now_s() < deadline) {
        run_until(now_s() + 0.05);
        if (G.rx_t.len != seen) {
            seen = G.rx_t.len;
            seen_at = now_s();
        } else if (now_s() - seen_at > G.opt.idle_s) {
            break;
        }
    }
    int64_t unfinished = G.n_open;
    memset(G.is_open, 0, G.is_open_cap);
    G.n_open = 0;
    G.low_open = 0;
    bytes_printf(out, ", \"drain_s\": %.2f, \"unfinished_events\": %lld, \"drain_cut\": %s", now_s() - started,
                 (long long)unfinished, unfinished && now_s() >= deadline ? "true" : "false");
}

/* Deliveries in [t0, t1); latencies of the events *sent* in [t0, t1). */
static void figures(Bytes *out, double t0, double t1, CpuSet c0, CpuSet c1) {
    size_t deliveries = 0, events = 0;
    for (size_t i = 0; i < G.rx_t.len; i++) deliveries += G.rx_t.v[i] >= t0 && G.rx_t.v[i] < t1;
    for (int64_t off = 0; off < G.off.size; off++) events += G.off.sent_s[off] >= t0 && G.off.sent_s[off] < t1;
    Doubles delivery = {0}, acks = {0};
    for (size_t i = 0; i < G.rx_off.len; i++) {
        double sent = G.off.sent_s[G.rx_off.v[i]];
        if (sent >= t0 && sent < t1) doubles_push(&delivery, G.rx_t.v[i] - sent);
    }
    for (size_t i = 0; i < G.ack_sent_s.len; i++) {
        if (G.ack_sent_s.v[i] >= t0 && G.ack_sent_s.v[i] < t1) doubles_push(&acks, G.ack_lat_s.v[i]);
    }
    double window_s = t1 - t0;
    bytes_printf(out,
                 "\"window_s\": %.3f, \"deliveries\": %zu, \"deliveries_per_s\": %.1f, \"events\": %zu, "
                 "\"events_per_s\": %.1f, \"ack\": ",
                 window_s, deliveries, (double)deliveries / window_s, events, (double)events / window_s);
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
    for (size_t i = m.committed; i < G.committed.len; i++) {
        long short_by = G.full - G.off.count[G.committed.v[i]];
        missing += short_by > 0 ? short_by : 0;
    }
    for (int i = 1; i < G.n_links; i++) {
        Link *link = &G.links[i];
        if (link->ready != 1) continue;
        gaps += link->gaps;
        duplicates += link->duplicates;
        closed += link->closed;
    }
    bytes_printf(out,
                 ", \"committed\": %zu, \"missing\": %ld, \"gaps\": %ld, \"duplicates\": %ld, "
                 "\"closed_subscribers\": %ld, \"noop_acks\": %ld, \"error_acks\": %ld, \"first_errors\": [",
                 G.committed.len - m.committed, missing, gaps, duplicates, closed, G.noop - m.noop, G.errors - m.errors);
    long kept = (long)(sizeof G.error_text / sizeof G.error_text[0]);
    for (long i = m.errors; i < G.errors && i < m.errors + 3 && i < kept; i++) {
        if (i > m.errors) bytes_puts(out, ", ");
        bytes_put_json_string(out, G.error_text[i].data ? G.error_text[i].data : "", G.error_text[i].len);
    }
    bytes_printf(out, "], \"stalled\": %ld, \"acks_out_of_order\": %ld, \"offsets_out_of_order\": %ld",
                 G.stalled - m.stalled, G.acks_out_of_order - m.acks_out_of_order,
                 G.offsets_out_of_order - m.offsets_out_of_order);
}

/* --- phases -------------------------------------------------------------------------------- */

/* The first status change goes alone: "paused" is refused while the session is "ready". */
static void prime(void) {
    if (G.seq != 0) return;
    publisher_send();
    double deadline = now_s() + G.opt.stall_s;
    while (G.n_open && now_s() < deadline) run_until(now_s() + 0.01);
}

static double find_delivery_rate(const char *block) {
    const char *at = strstr(block, "\"deliveries_per_s\": ");
    return at ? strtod(at + 20, NULL) : 0.0;
}

static void saturation(Bytes *out) {
    Options *o = &G.opt;
    Marks m = marks_now();
    clear_samples();
    prime();
    double end = now_s() + o->warmup_s + o->sat_s;
    G.filling = 1;
    G.fill_end_s = end;
    G.expire_next_s = now_s() + 0.25;
    G.expire_end_s = end;
    publisher_fill(); /* from here on, each event leaving the window sends the next */
    run_until(now_s() + o->warmup_s);
    double t0 = now_s();
    CpuSet c0 = cpu_now(t0);
    run_until(t0 + o->sat_s);
    double t1 = now_s();
    CpuSet c1 = cpu_now(t1);
    G.expire_end_s = 0;
    Bytes tail = {0};
    drain(&tail);
    size_t start = out->len;
    bytes_puts(out, "\"saturation\": {");
    figures(out, t0, t1, c0, c1);
    bytes_printf(out, ", \"outstanding\": %d", o->outstanding);
    loss(out, m);
    bytes_put(out, tail.data, tail.len);
    bytes_puts(out, "}");
    bytes_free(&tail);
    double gen_pct = cpu_percent(c0.gen, c1.gen);
    log_line("saturation: %.0f deliveries/s, gen CPU %.1f%%", find_delivery_rate(out->data + start), gen_pct);
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
        publisher_send();
    }
    run_until(t0 + o->fixed_s);
    double t1 = now_s();
    CpuSet c1 = cpu_now(t1);
    Bytes tail = {0};
    drain(&tail);
    size_t start = out->len;
    bytes_puts(out, "\"fixed\": {");
    figures(out, t0, t1, c0, c1);
    bytes_printf(out, ", \"rate\": %g, \"sent\": %ld, \"send_slip_max_ms\": %.2f", o->rate, total, 1000.0 * slip_max);
    loss(out, m);
    bytes_put(out, tail.data, tail.len);
    bytes_puts(out, "}");
    bytes_free(&tail);
    const char *p99 = strstr(out->data + start, "\"delivery\": {\"p50_ms\": ");
    p99 = p99 ? strstr(p99, "\"p99_ms\": ") : NULL;
    log_line("fixed %g/s: delivery p99 %.*s ms, gen CPU %.1f%%", o->rate, p99 ? (int)strcspn(p99 + 10, ",}") : 1,
             p99 ? p99 + 10 : "-", cpu_percent(c0.gen, c1.gen));
}

/* --- options and main ---------------------------------------------------------------------- */

static void usage(const char *program) {
    fprintf(stderr,
            "usage: %s --port P --token T --session S --server-pid PID [--redis-pid PID] [--host H] [--n N]\n"
            "       [--concurrency 64] [--outstanding 8] [--warmup-s 1] [--sat-s 5] [--rate 50] [--fixed-s 10]\n"
            "       [--stall-s 3] [--drain-s 20] [--idle-s 2] [--handshake-timeout-s 20] [--deadline-s 120]\n"
            "       [--hold-s 0]\n",
            program);
    exit(2);
}

static void parse_options(int argc, char **argv) {
    Options *o = &G.opt;
    *o = (Options){.host = "127.0.0.1", .n = 1000, .concurrency = 64, .outstanding = 8, .warmup_s = 1.0,
                   .sat_s = 5.0, .rate = 50.0, .fixed_s = 10.0, .stall_s = 3.0, .drain_s = 20.0, .idle_s = 2.0,
                   .handshake_timeout_s = 20.0, .deadline_s = 120.0};
    static const struct option long_options[] = {
        {"host", 1, 0, 'h'},        {"port", 1, 0, 'p'},          {"token", 1, 0, 't'},
        {"session", 1, 0, 's'},     {"server-pid", 1, 0, 'S'},    {"redis-pid", 1, 0, 'R'},
        {"n", 1, 0, 'n'},           {"concurrency", 1, 0, 'c'},   {"outstanding", 1, 0, 'o'},
        {"warmup-s", 1, 0, 'w'},    {"sat-s", 1, 0, 'a'},         {"rate", 1, 0, 'r'},
        {"fixed-s", 1, 0, 'f'},     {"stall-s", 1, 0, 'l'},       {"drain-s", 1, 0, 'd'},
        {"idle-s", 1, 0, 'i'},      {"handshake-timeout-s", 1, 0, 'H'}, {"deadline-s", 1, 0, 'D'},
        {"plain-asyncio", 0, 0, 'P'}, {"hold-s", 1, 0, 'k'},  {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long_only(argc, argv, "", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': o->host = optarg; break;
        case 'p': o->port = atoi(optarg); break;
        case 't': o->token = optarg; break;
        case 's': o->session = optarg; break;
        case 'S': o->server_pid = atoi(optarg); break;
        case 'R': o->redis_pid = atoi(optarg); break;
        case 'n': o->n = atoi(optarg); break;
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
        case 'k': o->hold_s = atof(optarg); break;
        case 'P': break; /* lean_client's reader switch; nothing to switch here */
        default: usage(argv[0]);
        }
    }
    if (!o->port || !o->token || !o->session || !o->server_pid || o->n < 0 || o->concurrency < 1 ||
        o->outstanding < 1 || o->rate <= 0)
        usage(argv[0]);
}

int main(int argc, char **argv) {
    parse_options(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit files; /* one descriptor per subscriber: N may exceed the default soft limit */
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    alarm((unsigned)G.opt.deadline_s + 15); /* a backstop: the loop's own deadline check comes first */
    G.deadline_s = now_s() + G.opt.deadline_s;
    G.epfd = epoll_create1(EPOLL_CLOEXEC);
    G.n_links = G.opt.n + 1;
    G.links = calloc((size_t)G.n_links, sizeof *G.links);
    if (G.epfd < 0 || !G.links) result_error("OSError(setup)");
    for (int i = 0; i < G.n_links; i++) G.links[i].fd = -1;
    G.full = G.opt.n;

    Bytes out = {0};
    bytes_printf(&out, "{\"n\": %d, \"generator\": \"c\", ", G.opt.n);
    connect_phase(&out);
    if (G.opt.hold_s > 0) run_until(now_s() + G.opt.hold_s);
    if (G.opt.sat_s > 0) {
        bytes_puts(&out, ", ");
        saturation(&out);
        run_until(now_s() + 0.5);
    }
    if (G.opt.fixed_s > 0) {
        bytes_puts(&out, ", ");
        fixed_rate(&out);
    }
    if (G.seq > 0) bytes_printf(&out, ", \"last_status_sent\": \"%s\"", publisher_status(G.seq));
    bytes_puts(&out, "}");
    for (int i = 0; i < G.n_links; i++) link_close(&G.links[i]);
    printf("RESULT %s\n", out.data);
    fflush(stdout);
    return 0;
}
