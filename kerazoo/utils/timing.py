"""Median wall time of a call, after warm-up: the one timing loop of export, the benchmark and reports."""

import statistics
import time


def timed_runs(run, runs, warmup=1):
    """Seconds of each of `runs` calls of `run()`, after `warmup` untimed calls (allocation, kernel choice)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def median_ms(run, runs, warmup=1):
    """Median milliseconds of `runs` calls of `run()` after `warmup` calls; None when `runs` <= 0."""
    if runs <= 0:
        return None
    return 1000 * statistics.median(timed_runs(run, runs, warmup))
