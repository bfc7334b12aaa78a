/* Clocks, /proc readings, sample arrays and percentiles (see figures.h). */
#include "figures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

CpuSample cpu_sample(int pid, double wall_s) {
    CpuSample sample = {0.0, wall_s, 0};
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return sample;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    /* the command name (field 2) may hold spaces: count fields after its closing parenthesis */
    char *p = strrchr(text, ')');
    if (!p) return sample;
    unsigned long long utime = 0, stime = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return sample;
    sample.cpu_s = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    sample.valid = 1;
    return sample;
}

CpuSample own_cpu_sample(double wall_s) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double user = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec * 1e-6;
    double sys = (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec * 1e-6;
    return (CpuSample){user + sys, wall_s, 1};
}

CpuSample machine_cpu_sample(double wall_s) {
    CpuSample sample = {0.0, wall_s, 0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return sample;
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait, &irq, &softirq) == 7) {
        /* irq and softirq are busy: tick accounting charges them to the interrupted process too */
        sample.cpu_s = (double)(user + nice + system + irq + softirq) / (double)sysconf(_SC_CLK_TCK);
        sample.valid = 1;
    }
    fclose(f);
    return sample;
}

double cpu_percent(CpuSample earlier, CpuSample later) {
    double wall = later.wall_s - earlier.wall_s;
    return wall > 0 ? 100.0 * (later.cpu_s - earlier.cpu_s) / wall : 0.0;
}

long rss_kib(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

void doubles_push(Doubles *d, double value) {
    if (d->len == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4096;
        double *v = realloc(d->v, cap * sizeof *v);
        if (!v) {
            fputs("[cgen] out of memory\n", stderr);
            exit(3);
        }
        d->v = v;
        d->cap = cap;
    }
    d->v[d->len++] = value;
}

void doubles_free(Doubles *d) {
    free(d->v);
    d->v = NULL;
    d->len = d->cap = 0;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void put_percentiles_ms(Bytes *out, Doubles *values_s) {
    if (values_s->len == 0) {
        bytes_puts(out, "{\"p50_ms\": null, \"p99_ms\": null, \"max_ms\": null}");
        return;
    }
    qsort(values_s->v, values_s->len, sizeof(double), compare_doubles);
    size_t last = values_s->len - 1;
    size_t i50 = (size_t)(0.50 * (double)values_s->len), i99 = (size_t)(0.99 * (double)values_s->len);
    double p50 = values_s->v[i50 < last ? i50 : last], p99 = values_s->v[i99 < last ? i99 : last];
    bytes_printf(out, "{\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}", 1000.0 * p50, 1000.0 * p99,
                 1000.0 * values_s->v[last]);
}
