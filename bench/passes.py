"""The load of bench/verify.py, shared by its django-otp side (bench/django_otp_verify.py), which
runs in the bench's own environment: the standard library only, nothing of mfactl's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def passes(
    threads: int,
    seconds: float,
    next_pass: Callable[[], list[tuple[Any, ...]]],
    verify: Callable[..., bool],
    thread_done: Callable[[], None] = lambda: None,
) -> tuple[int, float, list[float], int]:
    """Pass after pass, ``next_pass()`` (which moves the clock one step) gives the work: each
    item is verified once, by one of ``threads`` threads that keep their connection throughout,
    for ``seconds``. (How many, the seconds taken, each one's latency, how many were not ok.)"""
    latencies: list[float] = []
    failed = 0
    guard = threading.Lock()
    began = time.perf_counter()
    deadline = began + seconds
    state: dict[str, Any] = {}

    def refill() -> None:  # run by the last thread to arrive, before any goes on
        state["stop"] = time.perf_counter() >= deadline
        state["work"] = iter(next_pass())

    barrier = threading.Barrier(threads, action=refill)

    def run() -> None:
        nonlocal failed
        mine: list[float] = []
        bad = 0
        while True:
            barrier.wait()
            if state["stop"]:
                break
            while time.perf_counter() < deadline:
                with guard:
                    item = next(state["work"], None)
                if item is None:
                    break
                start = time.perf_counter()
                ok = verify(*item)
                mine.append(time.perf_counter() - start)
                bad += not ok
        with guard:
            latencies.extend(mine)
            failed += bad
        thread_done()

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return len(latencies), time.perf_counter() - began, latencies, failed
