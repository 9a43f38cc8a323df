"""Smoke test of the benchmark entry point: it runs, checks equal work and writes its files.

No timing is asserted: the timing belongs to ``python -m benchmarks``, not to the tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("threadpoolctl")

ROOT = Path(__file__).resolve().parent.parent


#: the two-process policy (worker processes that import torch), the GEMM peaks and the jvp suite only in the
#: thorough profile: they add ~30 s to a suite that must stay under a minute, and test plumbing, not math
THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
POLICIES = ("1thread", "2proc") if THOROUGH else ("1thread",)


def test_quick_run_writes_results(tmp_path, capsys, monkeypatch):
    if THOROUGH:  # the MLP case with the GEMM-peak rows, the jvp suite and both thread policies
        suites, case = ["--suite", "mlp", "--suite", "jvp", "--policy", "both"], "[784, 30, 10]"
    else:  # one small recurrent case at one thread: the entry point, the equal-work check, the files
        suites, case = ["--suite", "rnn", "--policy", "1thread"], "T=25 N=32 D=65 H=128 "
    argv = ["--quick", *suites, "--out", str(tmp_path), "--case", case]
    if THOROUGH:  # worker processes: the real entry point in a fresh interpreter
        cmd = [sys.executable, "-m", "benchmarks", *argv]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
        code, out = proc.returncode, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    else:  # in this process, which has torch imported already (a subprocess re-imports it: ~5 s);
        # the entry point itself runs as a subprocess in test_run_py_as_a_script_shows_help
        from benchmarks import harness
        from benchmarks import suites as bench_suites
        from benchmarks.run import main

        sample = harness.external_load  # the load is still read from /proc/stat, over 20 ms, not 0.5 s

        def short(seconds=0.5):
            return sample(0.02)

        monkeypatch.setattr(harness, "external_load", short)
        monkeypatch.setattr(bench_suites, "external_load", short)
        code, out = main(argv), capsys.readouterr().out
    assert code == 0, f"benchmark exited {code}\n{out}"
    results = json.loads((tmp_path / "results.json").read_text())
    md = (tmp_path / "RESULTS.md").read_text()
    rows = [r for r in results["rows"] if r["suite"] == ("mlp" if THOROUGH else "rnn")]
    assert len(rows) == 1, f"expected the one case asked for; got {[r['name'] for r in rows]}"
    for row in rows:
        assert row["check"]["ok"], (
            f"{row['name']}: both sides must compute the same gradients: {row['check']}"
        )
        for policy in POLICIES:
            res = row[policy]
            assert res["rounds"] == 3 and res["ours_s"] > 0 and res["torch_s"] > 0, (
                f"{row['name']} {policy}: {res}"
            )
            loads = res["external_load"]  # before and after, each None off Linux
            assert len(loads) == 2 and all(x is None or x >= 0 for x in loads), loads
    jvp = [r for r in results["rows"] if r["suite"] == "jvp" and "skipped" not in r]
    assert bool(jvp) == THOROUGH, "the jvp suite ran where it should not, or produced no row"
    for row in jvp:
        assert row["max_rel_err_fwd_vs_rev"] < 1e-8, (
            f"{row['name']}: P JVPs differ from the reverse pass: {row}"
        )
    name = "MLP [784, 30, 10] N=10 float64" if THOROUGH else "RNN T=25 N=32 D=65 H=128 float64"
    assert f"| {name} |" in md, md[:2000]
    assert results["machine"]["numpy_blas"], "the BLAS of numpy must be recorded"


@pytest.mark.parametrize("entry", [["benchmarks/run.py"], ["-m", "benchmarks"]])
def test_run_py_as_a_script_shows_help(entry):
    """Both entry points start in a fresh interpreter (the quick run above calls ``main`` in this one)."""
    cmd = [sys.executable, *entry, "--help"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "--suite" in proc.stdout and "--quick" in proc.stdout
