"""Benchmarks of manual_bp against torch on the CPU: ``python -m benchmarks --suite all``.

Method (see ``harness.py``): a warm-up, then at least 7 rounds; each round times our step and torch's step
back to back (the order alternating), the ratio ours/torch is taken round by round and its median reported.
Two thread policies, because NumPy's OpenBLAS and torch's OpenMP threads spin and steal cores from each other
when both live in one process:

- ``1thread``: both sides pinned to one thread (threadpoolctl for every BLAS/OpenMP pool, and
  ``torch.set_num_threads(1)``), interleaved in one process;
- ``2proc``: each side in its own worker process with its library's default threads (2 here), rounds
  alternating between the two processes, so neither side's threads ever run beside the other's.

Before timing, every case checks in float64 that both sides compute the same gradients from the same
parameters and data (so that the timing compares equal work).

Suites: mlp, rnn, gru, lstm (training steps), jvp (forward against reverse mode), memory (peak RSS and import
time), scaling (time against T and N, memory held for backward against T).
"""
