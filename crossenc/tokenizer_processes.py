"""Tokenize in worker processes, so the scoring process keeps its GIL for feeding the GPU.

The Rust tokenizer runs outside the GIL, but turning its output into arrays (one Python list
per text, then numpy) holds it: ~6.3 us per Debian pair here with ``tokenizers``, ~2 us with the
compiled engine (:mod:`crossenc.fast_tokenization`, which returns arrays directly). Worker processes (``spawn``, each
with its own copy of the :class:`~crossenc.pair_encoding.PairEncoder` and a one-thread Rust
pool) do all of it; the scoring process only pickles the texts out and the arrays back.
Used through :class:`~crossenc.tokenize_ahead.TokenizeAhead` for calls of more than one chunk.
Workers are spawned, so a script that uses them needs the usual ``if __name__ == "__main__":``
guard (a spawned worker imports the main module).

Measured: on a 2-core EPYC 2 workers come within 5% of in-process tokenizing; on a 16-core Xeon (H100 host)
14 workers fed 13,700-18,800 pairs/s against 32,500-40,300 in-process, with or without a GPU,
whatever the chunk size (results/nvidia-h100-80gb-hbm3/host.md, feed_probe.md). The cause is not
known, so ``CrossEncoder`` keeps this off unless asked.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from crossenc.pair_encoding import EncodedPairs, PairEncoder

_WORKER_ENCODER: PairEncoder | None = None


def _start_worker(encoder_state: bytes) -> None:
    # One Rust thread per worker (the workers are the parallelism); read when the pool first starts.
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    global _WORKER_ENCODER
    _WORKER_ENCODER = pickle.loads(encoder_state)


def _encode_in_worker(pairs: Sequence[tuple[str, str]], use_token_type_ids: bool) -> EncodedPairs:
    if _WORKER_ENCODER is None:
        raise RuntimeError("tokenizer worker was not initialised")
    return _WORKER_ENCODER.encode(pairs, use_token_type_ids)


def timed_encode_in_worker(pairs: Sequence[tuple[str, str]], use_token_type_ids: bool) -> tuple[EncodedPairs, dict]:
    """``_encode_in_worker`` plus facts for diagnosis: worker pid, start and end on the system-wide monotonic
    clock (``time.monotonic``, comparable across processes on Linux), the encoding thread's CPU seconds, and how
    many CPUs the worker may run on. Unpickling the texts and pickling the arrays back are outside the timing."""
    start, cpu = time.monotonic(), time.thread_time()
    encoded = _encode_in_worker(pairs, use_token_type_ids)
    end = time.monotonic()
    affinity = getattr(os, "sched_getaffinity", None)
    return encoded, {
        "pid": os.getpid(),
        "start": start,
        "end": end,
        "cpu_s": time.thread_time() - cpu,
        "cpus_allowed": len(affinity(0)) if affinity else None,
    }


def process_chunk_pairs(num_pairs: int, processes: int, batch_size: int, largest: int) -> int:
    """Pairs per worker chunk: about two chunks per worker, whole batches, between one batch and ``largest``.

    One worker encodes a chunk on one core, so the first chunk is pure start-up delay: 2048
    Debian pairs take ~0.2 s there, longer than a 10,000-pair call should take on an H100.
    """
    per_worker = -(-num_pairs // (2 * processes))
    whole_batches = -(-per_worker // batch_size) * batch_size
    return max(batch_size, min(largest, whole_batches))


def check_processes(processes: int | None) -> int | None:
    """``None`` (the default: tokenize in this process) or a non-negative process count."""
    if processes is None:
        return None
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 0:
        raise ValueError(f"tokenizer_processes must be None or an integer >= 0, got {processes!r}")
    return processes


class TokenizerProcesses:
    """A pool of ``processes`` tokenizer workers; :attr:`encode` is the picklable chunk function to submit.

    Calls that use it hold a lease (:meth:`acquire` / :meth:`release`); :meth:`retire` stops new
    leases and closes the pool when the last one is released, so replacing or closing a pool
    never pulls it from under a call in progress.
    """

    def __init__(self, encoder: PairEncoder, processes: int, use_token_type_ids: bool) -> None:
        if processes <= 0:
            raise ValueError(f"processes must be positive, got {processes}")
        self.processes = processes
        self.executor = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a process that may hold CUDA
            initializer=_start_worker,
            initargs=(pickle.dumps(encoder),),
        )
        self.encode = functools.partial(_encode_in_worker, use_token_type_ids=use_token_type_ids)
        self.closed = False
        self._users = 0
        self._retired = False
        self._lease_lock = threading.Lock()

    @property
    def usable(self) -> bool:
        """False once retired or closed, or once a worker died (killed, out of memory): the executor
        then refuses all work."""
        return not self._retired and not self.closed and not getattr(self.executor, "_broken", False)

    def acquire(self) -> None:
        """Lease the pool for one call; RuntimeError if it was retired or closed meanwhile."""
        with self._lease_lock:
            if self._retired or self.closed:
                raise RuntimeError("tokenizer pool was retired")
            self._users += 1

    def release(self) -> None:
        """End a lease; the last one of a retired pool closes it."""
        with self._lease_lock:
            self._users -= 1
            last = self._retired and self._users == 0
        if last:
            self.close()

    def retire(self) -> None:
        """No new leases; close now if nobody holds one, else when the last lease ends."""
        with self._lease_lock:
            self._retired = True
            idle = self._users == 0
        if idle:
            self.close()

    def warm_up(self) -> None:
        """Start every worker now (spawning costs ~1 s each) instead of on the first call."""
        for future in [self.executor.submit(self.encode, [("", "")]) for _ in range(self.processes)]:
            future.result()

    def close(self) -> None:
        """Stop the workers; queued chunks are dropped, a chunk being encoded finishes first."""
        broken = bool(getattr(self.executor, "_broken", False))
        self.closed = True
        # A broken pool's workers are gone: waiting is instant and lets its manager thread exit cleanly.
        self.executor.shutdown(wait=broken, cancel_futures=True)
