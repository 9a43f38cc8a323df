"""What machine and libraries a run measured: CPU, cores, load, versions, BLAS, threads, environment."""

from __future__ import annotations

import os
import platform
import time

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OMP_WAIT_POLICY",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe() -> dict:
    """Everything but the per-process thread pools (the workers report those)."""
    import numpy
    import torch
    from threadpoolctl import threadpool_info

    import manual_bp

    torch_config = torch.__config__.show()
    blas_line = next((ln.strip() for ln in torch_config.splitlines() if "BLAS_INFO" in ln), "")
    torch_blas = ""
    for part in blas_line.split(","):
        if "BLAS_INFO" in part:
            torch_blas = part.split("=", 1)[1].strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "manual_bp": manual_bp.__version__,
        "numpy_blas": [
            {
                k: p.get(k)
                for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads")
            }
            for p in threadpool_info()
            if p["user_api"] == "blas"
        ],
        "torch_blas": torch_blas,
        "torch_parallel_info": torch.__config__.parallel_info(),
        "torch_config": torch_config,
        "torch_threads": torch.get_num_threads(),
        "env": {k: os.environ.get(k) for k in THREAD_ENV},
        "load_average_start": load_average(),
    }
