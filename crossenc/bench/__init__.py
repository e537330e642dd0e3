"""Benchmark harness: workloads, measurements, results, autotune, regression check."""
