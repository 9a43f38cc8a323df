"""The ``manual-bp`` command: the check job, its table and JSON, and clear messages for bad arguments."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from manual_bp.check import format_table, run_check
from manual_bp.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_check_passes_and_prints_table(capsys):
    assert main(["check", "--n", "3", "--models", "mlp,logreg"]) == 0
    out = capsys.readouterr().out
    assert "vs torch" in out and "vs finite diff" in out
    assert "logreg" in out and "FAIL" not in out
    assert out.strip().splitlines()[-1].endswith("passed, 0 failed")


def test_check_json(capsys):
    assert main(["check", "--n", "2", "--seed", "5", "--models", "mlp", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["seed"] == 5 and data["torch"] is True and data["failed"] == 0
    assert all(r["torch_error"] < 1e-4 and r["fd_error"] < 1e-6 for r in data["rows"])


def test_check_is_seeded(capsys):
    main(["check", "--n", "2", "--seed", "1", "--models", "mlp", "--json"])
    a = json.loads(capsys.readouterr().out)
    main(["check", "--n", "2", "--seed", "1", "--models", "mlp", "--json"])
    b = json.loads(capsys.readouterr().out)
    assert [r["arch"] for r in a["rows"]] == [r["arch"] for r in b["rows"]]


def test_check_fails_loudly_on_a_wrong_gradient(monkeypatch, capsys):
    """The check can fail: break BP4 and it must exit 1 with FAIL rows."""
    from manual_bp import mlp as mlp_module

    original = mlp_module.MLP.loss_and_grad

    def broken(self, X, Y, input_grad=False):
        E, g = original(self, X, Y, input_grad)
        g["b1"] = g["b1"] * 1.01
        return E, g

    monkeypatch.setattr(mlp_module.MLP, "loss_and_grad", broken)
    assert run_check(n=2, seed=0, families=["mlp"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_check_without_torch_runs_finite_differences(monkeypatch, capsys):
    import manual_bp.check as check

    monkeypatch.setattr(check.harness, "oracle", lambda: (None, "No module named 'torch'"))
    assert run_check(n=2, seed=0, families=["logreg"]) == 0
    out, err = capsys.readouterr()
    assert "torch is not installed" in err and "pip install" in err and "n/a" in out
    assert "torch is not installed" not in out  # results on stdout, the note on stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["check", "--n", "0"], "expected a positive integer; got 0"),
        (["check", "--n", "x"], "expected a positive integer; got 'x'"),
        (["check", "--seed", "-3"], "expected a non-negative integer"),
        (["check", "--models", "transformer"], "unknown family"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_python_dash_m_is_the_same_command():
    proc = subprocess.run(
        [sys.executable, "-m", "manual_bp", "--version"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("manual-bp ")


def test_format_table_handles_missing_torch_column():
    rows = [
        {
            "model": "MLP",
            "arch": "[1, 1]",
            "dtype": "float64",
            "torch_error": None,
            "fd_error": 1e-9,
            "ok": True,
        }
    ]
    assert "n/a" in format_table(rows, torch=False)


def _parsers(parser):
    yield parser
    for action in parser._actions:
        for sub in getattr(action, "choices", None) or {}:
            if isinstance(action.choices, dict):
                yield from _parsers(action.choices[sub])


def test_help_describes_every_default():
    from manual_bp.cli import build_parser

    seen = 0
    for parser in _parsers(build_parser()):
        for action in parser._actions:
            if action.option_strings and action.dest not in ("help", "version"):
                assert "default" in (action.help or ""), (parser.prog, action.option_strings, action.help)
                seen += 1
    assert seen > 30


def test_errors_are_one_line_and_abbreviations_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "mlp", "--n", "0"])  # not --no-progress
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert (
        err == "manual-bp: error: train mlp: unrecognized arguments: --n 0 (see manual-bp train mlp --help)\n"
    )


def test_check_reports_progress_per_case_and_no_progress_flag_is_accepted(capsys):
    events = []

    class Recorder:
        def start(self, epoch, epochs, total):
            events.append(("start", total))

        def update(self, done, loss):
            events.append(("update", done))

        def end(self, record):
            events.append(("end",))

    assert run_check(n=4, seed=0, families=["logreg", "rnn"], progress=Recorder()) == 0
    assert events == [("start", 5)] + [("update", i) for i in range(1, 6)] + [("end",)]
    capsys.readouterr()
    assert main(["check", "--n", "1", "--models", "logreg", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "1 passed, 0 failed" in out and err == ""


def test_gradcheck_is_a_manual_bp_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n"
        "def loss(p): return float((p['w'] ** 3).sum())\n"
        "def grad(p): return {'w': 3 * p['w'] ** 2}\n"
        "def wrong(p): return {'w': 3 * p['w'] ** 2 + 0.01 * p['w']}\n"
    )
    np.savez(tmp_path / "p.npz", w=np.array([0.3, -1.2, 2.0]))
    monkeypatch.chdir(tmp_path)
    assert main(["gradcheck", "mine:loss", "mine:grad", "--params", "p.npz"]) == 0
    assert "PASS w (3,)" in capsys.readouterr().out
    assert main(["gradcheck", "mine:loss", "mine:wrong", "--params", "p.npz"]) == 1
    assert "FAIL w (3,)" in capsys.readouterr().out
    assert main(["gradcheck", "mine:loss", "mine:nope", "--params", "p.npz"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "has no function 'nope'" in err


@pytest.mark.parametrize("family, method", [("hvp", "hvp"), ("snapshots", "loss_and_grad"), ("rtrl", "rtrl")])
def test_check_rows_for_hessian_products_snapshots_and_rtrl_fail_on_a_planted_bug(family, method, monkeypatch,
                                                                                  capsys):
    """Each new family's rows pass, and a 1% error in what they check fails both columns and exit 1."""
    from manual_bp.models import MODELS

    assert run_check(n=4, seed=1, families=[family]) == 0
    out = capsys.readouterr().out
    assert sum(line.endswith(" pass") for line in out.splitlines()) == 4 and "4 passed, 0 failed" in out
    label = {"hvp": " Hv", "snapshots": " snapshots=", "rtrl": " RTRL"}[family]
    assert out.count(label) == 4
    for cls in MODELS.values():
        if hasattr(cls, method):
            original = getattr(cls, method)

            def broken(self, *args, _original=original, **kwargs):
                out = _original(self, *args, **kwargs)
                if family == "snapshots" and kwargs.get("snapshots") is None:
                    return out  # only the checkpointed route is broken
                i = 2 if family == "hvp" else 1
                wrong = dict(out[i])
                wrong = {k: v * 1.01 for k, v in wrong.items()}
                return out[:i] + (wrong,) + out[i + 1:]

            monkeypatch.setattr(cls, method, broken)
    assert run_check(n=2, seed=1, families=[family]) == 1
    out = capsys.readouterr().out
    assert sum(line.endswith(" FAIL") for line in out.splitlines()) == 2 and "0 passed, 2 failed" in out
