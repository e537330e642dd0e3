"""Prometheus metrics of one server, in a registry of its own (two apps in a process never clash)."""

from __future__ import annotations

import time
from collections.abc import Callable

from crossenc.optional import require
from crossenc.serve.scheduler import GroupStats

prometheus = require("prometheus_client", "serve", "crossenc serve")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
PAIR_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
TOKEN_BUCKETS = tuple(64 * 4**power for power in range(9))  # 64 .. 4M


class ServeMetrics:
    def __init__(self, queued_pairs: Callable[[], float], queued_requests: Callable[[], float]) -> None:
        self.registry = registry = prometheus.CollectorRegistry()
        self.requests = prometheus.Counter(
            "crossenc_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=registry
        )
        self.latency = prometheus.Histogram(
            "crossenc_request_duration_seconds", "HTTP request latency", ["route"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.in_progress = prometheus.Gauge(
            "crossenc_requests_in_progress", "HTTP requests being handled", registry=registry
        )
        queue_pairs = prometheus.Gauge("crossenc_queue_pairs", "pairs admitted, not yet answered", registry=registry)
        queue_pairs.set_function(queued_pairs)
        queue_requests = prometheus.Gauge(
            "crossenc_queue_requests", "requests admitted, not yet answered", registry=registry
        )
        queue_requests.set_function(queued_requests)
        self.rejected = prometheus.Counter(
            "crossenc_rejected_requests", "requests refused before scoring, by reason", ["reason"], registry=registry
        )
        self.batch_requests = prometheus.Histogram(
            "crossenc_batch_requests", "requests merged into one pipeline call", buckets=PAIR_BUCKETS, registry=registry
        )
        self.batch_pairs = prometheus.Histogram(
            "crossenc_batch_pairs", "pairs per merged pipeline call", buckets=PAIR_BUCKETS, registry=registry
        )
        self.batch_tokens = prometheus.Histogram(
            "crossenc_batch_tokens", "real tokens per merged pipeline call", buckets=TOKEN_BUCKETS, registry=registry
        )
        self.batch_seconds = prometheus.Histogram(
            "crossenc_batch_seconds", "time of one merged pipeline call", buckets=LATENCY_BUCKETS, registry=registry
        )
        self.real_tokens = prometheus.Counter("crossenc_real_tokens", "tokens scored", registry=registry)
        self.padded_tokens = prometheus.Counter(
            "crossenc_padded_tokens", "tokens computed, padding included", registry=registry
        )
        self.padding_efficiency = prometheus.Gauge(
            "crossenc_padding_efficiency", "real / padded tokens of the last merged call", registry=registry
        )
        self.merged_failures = prometheus.Counter(
            "crossenc_merged_failures", "merged calls that failed and were retried request by request",
            registry=registry,
        )

    def observe_group(self, stats: GroupStats) -> None:
        self.batch_requests.observe(stats.requests)
        self.batch_pairs.observe(stats.pairs)
        self.batch_tokens.observe(stats.real_tokens)
        self.batch_seconds.observe(stats.seconds)
        if stats.merged_failed:
            self.merged_failures.inc()
            return
        self.real_tokens.inc(stats.real_tokens)
        self.padded_tokens.inc(stats.padded_tokens)
        if stats.padded_tokens:
            self.padding_efficiency.set(stats.real_tokens / stats.padded_tokens)

    def observe_request(self, route: str, status: int, started: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)

    def exposition(self) -> tuple[bytes, str]:
        return prometheus.generate_latest(self.registry), prometheus.CONTENT_TYPE_LATEST
