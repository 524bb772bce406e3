/*
 * bench_util.h - what the fleet benchmark's tools share (docs/BENCH.md): the clock, argument
 * parsing, percentiles and what /proc says about a process.
 *
 * Functions that can fail return 0 or -1 after one line on stderr naming the subject.
 */
#ifndef VEND_BENCH_UTIL_H
#define VEND_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in microseconds: comparable between processes on this machine. */
uint64_t bu_now_us(void);

/* Decimal digits only, min..max; tool and what name the option in the error. */
int bu_parse_u64(const char *tool, const char *what, const char *s, uint64_t min, uint64_t max,
                 uint64_t *out);

/* Sort ascending, then the p-quantile (0..1) of n sorted values, nearest rank; 0 if n == 0. */
void bu_sort_u64(uint64_t *v, size_t n);
uint64_t bu_pct(const uint64_t *sorted, size_t n, double p);

/* utime + stime of pid (0: this process) in microseconds, from /proc; -1 if unreadable. */
int64_t bu_proc_cpu_us(pid_t pid);

/* Raise RLIMIT_NOFILE's soft limit to want (or the hard limit); -1 if it stays below want. */
int bu_raise_nofile(const char *tool, unsigned long want);

#endif
