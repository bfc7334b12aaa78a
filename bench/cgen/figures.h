/* Clocks, CPU and memory of processes, growable sample arrays and percentiles.
 * The C twin of bench/procstat.py and of lean_client.py's percentiles_ms. */
#ifndef CGEN_FIGURES_H
#define CGEN_FIGURES_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* Seconds on the monotonic clock (the generator's one clock, like time.perf_counter). */
double now_s(void);

/* A process's user+system CPU seconds at a wall-clock instant. */
typedef struct {
    double cpu_s;
    double wall_s;
    int valid;
} CpuSample;

CpuSample cpu_sample(int pid, double wall_s); /* from /proc/<pid>/stat */
CpuSample own_cpu_sample(double wall_s);      /* from getrusage(RUSAGE_SELF) */
CpuSample machine_cpu_sample(double wall_s);  /* every process: the busy columns of /proc/stat */
double cpu_percent(CpuSample earlier, CpuSample later);
long rss_kib(int pid); /* VmRSS of /proc/<pid>/status, -1 when unreadable */

/* A growable array of doubles. */
typedef struct {
    double *v;
    size_t len;
    size_t cap;
} Doubles;

void doubles_push(Doubles *d, double value);
void doubles_free(Doubles *d);

/* {"p50_ms":..,"p99_ms":..,"max_ms":..} of durations in seconds (sorted in place), as
 * lean_client.percentiles_ms computes them; nulls when there is none. */
void put_percentiles_ms(Bytes *out, Doubles *values_s);

#endif
