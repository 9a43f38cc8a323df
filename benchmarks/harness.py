"""Timing: warm-up, rounds interleaved ours/torch, ratio per round, medians; the two thread policies.

``Settings`` holds the knobs (``--quick`` shrinks them). A "block" is ``inner`` back-to-back calls, with
``inner`` chosen in the warm-up so that a block lasts about ``block_s``; its time / inner is one sample.

Policy ``1thread`` (``compare_1thread``): one process, every BLAS and OpenMP pool limited to one thread
(threadpoolctl) and ``torch.set_num_threads(1)``; each round times one block of each side, the first side
alternating.

Policy ``2proc`` (``compare_2proc``): two worker processes (``worker.py``), one per side, each with its
library's default thread count; the parent asks them in turn for one block, sleeping ``gap_s`` between the
two so that the other process's idle BLAS/OpenMP threads have stopped spinning.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Settings:
    rounds: int = 9  # medians of at least 7 rounds
    warmup_s: float = 0.3
    block_s: float = 0.1
    gap_s: float = 0.15
    quick: bool = False
    quiet_below: float | None = None  # --wait-quiet: wait before each measurement for less external load
    wait_max_s: float = 300.0

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(rounds=3, warmup_s=0.01, block_s=0.002, gap_s=0.1, quick=True)
        return cls()


def external_load(seconds: float = 0.5) -> float:
    """Runnable processes besides this one, averaged over ``seconds`` (``procs_running`` of /proc/stat).

    Other work on the 2 cores distorts timings (the 2proc policy most: a 2-thread GEMM stalls when one of its
    threads is descheduled), so every measurement records this before and after it; None off Linux.
    """
    samples = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        try:
            with open("/proc/stat") as f:
                line = next(ln for ln in f if ln.startswith("procs_running"))
        except (OSError, StopIteration):
            return None
        samples.append(int(line.split()[1]) - 1)
        time.sleep(seconds / 20)
    return round(max(0.0, statistics.fmean(samples)), 2)


def wait_quiet(st) -> float:
    """Wait (at most ``st.wait_max_s``) until ``external_load()`` is below ``st.quiet_below``; return it."""
    load = external_load()
    if st.quiet_below is None or load is None:
        return load
    t_end = time.perf_counter() + st.wait_max_s
    while load >= st.quiet_below and time.perf_counter() < t_end:
        time.sleep(2.0)
        load = external_load()
    return load


def time_block(fn, inner: int) -> float:
    """Seconds per call of ``inner`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def warm_up(fn, seconds: float, block_s: float) -> int:
    """Call ``fn`` at least twice and for ``seconds``; return the calls per ~block_s timed block."""
    t_end = time.perf_counter() + seconds
    calls, t_first = 0, None
    while calls < 2 or time.perf_counter() < t_end:
        t = time_block(fn, 1)
        t_first = t if t_first is None else min(t_first, t)
        calls += 1
    return max(1, int(round(block_s / max(t_first, 1e-9))))


def summarize(ours: list, theirs: list) -> dict:
    """Medians of both sides' samples and of the per-round ratios."""
    ratios = [a / b for a, b in zip(ours, theirs)]
    return {
        "ours_s": statistics.median(ours),
        "torch_s": statistics.median(theirs),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "rounds": len(ratios),
        "ours_samples": ours,
        "torch_samples": theirs,
    }


# ---------------------------------------------------------------------------------------------- 1 thread
class OneThread:
    """Context: every thread pool of this process at one thread (numpy's BLAS, torch's OpenMP, intra-op)."""

    def __enter__(self):
        import torch
        from threadpoolctl import threadpool_limits

        self._torch = torch
        self._saved = torch.get_num_threads()
        self._limits = threadpool_limits(limits=1)
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        self._torch.set_num_threads(self._saved)
        self._limits.restore_original_limits()


def compare_fns(ours_fn, torch_fn, st: Settings) -> dict:
    """Interleaved rounds in this process (the caller sets the threads)."""
    inner_o = warm_up(ours_fn, st.warmup_s, st.block_s)
    inner_t = warm_up(torch_fn, st.warmup_s, st.block_s)
    ours, theirs = [], []
    for r in range(st.rounds):
        if r % 2 == 0:
            ours.append(time_block(ours_fn, inner_o))
            theirs.append(time_block(torch_fn, inner_t))
        else:
            theirs.append(time_block(torch_fn, inner_t))
            ours.append(time_block(ours_fn, inner_o))
    out = summarize(ours, theirs)
    out["inner"] = {"ours": inner_o, "torch": inner_t}
    return out


def compare_1thread(spec, st: Settings) -> dict:
    from .cases import make_side

    with OneThread():
        ours = make_side(spec, "ours")
        theirs = make_side(spec, "torch")
        out = compare_fns(ours.step, theirs.step, st)
    out["threads"] = {"ours": 1, "torch": 1}
    return out


# ---------------------------------------------------------------------------------------------- 2 processes
class Worker:
    """A ``python -m benchmarks.worker SIDE`` process speaking one JSON line per request."""

    def __init__(self, side: str):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.side = side
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", side],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
            env=env,
        )

    def ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.side} worker died (exit code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.side} worker: {reply['error']}")
        return reply

    def close(self):
        try:
            self.ask(op="quit")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.proc.wait(timeout=30)


class WorkerPair:
    """One worker per side, reused across cases (torch's import is paid once).

    A second "ours" worker (``ours2``, started on first use) times numpy's GEMM in the same alternating rounds
    as our training step, for the fraction of GEMM peak.
    """

    def __init__(self):
        self.ours = Worker("ours")
        self.torch = Worker("torch")
        self._ours2 = None

    @property
    def ours2(self):
        if self._ours2 is None:
            self._ours2 = Worker("ours")
        return self._ours2

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for w in (self.ours, self.torch, self._ours2):
            if w is not None:
                w.close()

    def info(self) -> dict:
        return {"ours": self.ours.ask(op="info"), "torch": self.torch.ask(op="info")}

    def compare(self, build: dict, st: Settings, build_b=None, b=None) -> dict:
        """``build`` is the request that makes each worker's callable (a case, or a GEMM); ``build_b`` and
        ``b`` replace the second side's request and worker (default: the same request, the torch worker)."""
        a, b = self.ours, (b or self.torch)
        a.ask(**build)
        b.ask(**(build_b or build))
        inner_o = a.ask(op="warm", seconds=st.warmup_s, block_s=st.block_s)["inner"]
        time.sleep(st.gap_s)
        inner_t = b.ask(op="warm", seconds=st.warmup_s, block_s=st.block_s)["inner"]
        ours, theirs = [], []
        for r in range(st.rounds):
            first, second = (
                ((a, inner_o, ours), (b, inner_t, theirs))
                if r % 2 == 0
                else ((b, inner_t, theirs), (a, inner_o, ours))
            )
            for w, inner, sink in (first, second):
                time.sleep(st.gap_s)
                sink.append(w.ask(op="run", inner=inner)["t"])
        out = summarize(ours, theirs)
        out["inner"] = {"ours": inner_o, "torch": inner_t}
        out["threads"] = {"ours": a.ask(op="threads")["threads"], "torch": b.ask(op="threads")["threads"]}
        return out


# ---------------------------------------------------------------------------------------------- GEMM peak
def gemm_fn(lib: str, shape, dtype: str):
    """A callable doing one ``(m, k) @ (k, n)`` product with ``lib`` ("numpy" or "torch")."""
    import numpy as np

    m, k, n = shape
    rng = np.random.default_rng(0)
    A = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    if lib == "numpy":
        out = np.empty((m, n), dtype)
        return lambda: np.matmul(A, B, out=out)
    import torch

    At, Bt = torch.from_numpy(A), torch.from_numpy(B)
    out_t = torch.empty((m, n), dtype=At.dtype)
    return lambda: torch.matmul(At, Bt, out=out_t)
