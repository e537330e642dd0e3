"""Benchmark harness: measurements, results, autotune (writes the profiles backend="auto" reads), baselines and the regression check, GPU and host checks."""
