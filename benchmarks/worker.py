"""A worker process for the ``2proc`` policy: ``python -m benchmarks.worker ours|torch``.

It runs one side with its library's default threads and answers JSON requests, one per line on stdin:

    {"op": "build", "spec": {...}}            make that side of a case (cases.make_side)
    {"op": "gemm", "shape": [m, k, n], ...}   make an (m, k) @ (k, n) GEMM with this side's library (the peak)
    {"op": "warm", "seconds": s, "block_s": b} warm up; reply {"inner": calls per timed block}
    {"op": "run", "inner": k}                 reply {"t": seconds per call over k calls}
    {"op": "threads"} / {"op": "info"}        the thread counts / BLAS and thread pools of this process
    {"op": "quit"}

The "ours" worker never imports torch, so manual_bp runs exactly as a user's process would.
"""

from __future__ import annotations

import json
import sys
import traceback

from benchmarks.harness import gemm_fn, time_block, warm_up


def _threads(side):
    import numpy  # noqa: F401 - load numpy's BLAS so that threadpoolctl can see it

    if side == "torch":
        import torch

        return torch.get_num_threads()
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1)


def _info(side):
    import numpy  # noqa: F401 - load numpy's BLAS so that threadpoolctl can see it
    from threadpoolctl import threadpool_info

    if side == "torch":
        import torch  # noqa: F401 - and torch's OpenMP

    out = {"threadpools": threadpool_info()}
    if side == "torch":
        import torch

        out["torch_threads"] = torch.get_num_threads()
        out["torch_interop_threads"] = torch.get_num_interop_threads()
    return out


def main(side: str) -> None:
    fn = None
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "build":
                from benchmarks.cases import make_side

                fn = make_side(req["spec"], side).step
                reply = {"ok": True}
            elif op == "gemm":
                fn = gemm_fn("numpy" if side == "ours" else "torch", req["shape"], req["dtype"])
                reply = {"ok": True}
            elif op == "warm":
                reply = {"inner": warm_up(fn, req["seconds"], req["block_s"])}
            elif op == "run":
                reply = {"t": time_block(fn, req["inner"])}
            elif op == "threads":
                reply = {"threads": _threads(side)}
            elif op == "info":
                reply = _info(side)
            elif op == "quit":
                print(json.dumps({"ok": True}), flush=True)
                return
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception:  # noqa: BLE001 - reported to the parent, which raises
            reply = {"error": traceback.format_exc()}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
