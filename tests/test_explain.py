"""``manual-bp explain``: the worked example's numbers are the trace's, torch's column is the oracle's, and
every flag and --json field does what its help says."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from manual_bp.reference import trace as torch_trace

from manual_bp import cli, explain, harness

MLP_TAGS = ["input", "F1", "F2", "F1", "F2", "loss", "BP1", "BP3", "BP4", "BP2", "BP3", "BP4"]


def run(capsys, *argv):
    code = cli.main(["explain", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_numbers_are_trace_and_torch(result, name, sizes=None, T=None, seed=0):
    """Every number of the example: ours = the model's trace, torch = the oracle, diff = |ours - torch|."""
    model, X, Y, kwargs, _ = explain.example(name, sizes, T, seed)
    tr = model.trace(X, Y, **kwargs)
    ref = torch_trace.trace(model, X, Y, **kwargs)
    seen = set()
    for group in result["equations"]:
        for entry in group["entries"]:
            key = entry["name"]
            seen.add(key)
            assert tr.equation(key) == group["tag"]
            ours, theirs = np.asarray(tr[key], float).ravel(), np.asarray(ref[key], float).ravel()
            assert [n["ours"] for n in entry["numbers"]] == ours.tolist()
            assert [n["torch"] for n in entry["numbers"]] == theirs.tolist()
            assert [n["diff"] for n in entry["numbers"]] == np.abs(ours - theirs).tolist()
            assert entry["shape"] == list(np.shape(tr[key])) and entry["meaning"] == tr.meaning(key)
    assert seen == set(tr) - {"window"}
    assert result["loss"] == tr.loss
    assert result["max_abs_diff"] <= harness.allowance(np.float64).torch
    return model, X, Y, kwargs


def test_mlp_default_is_the_seeds_net_with_bp1_to_bp4(capsys):
    code, out, err = run(capsys, "mlp")
    assert code == 0 and err == ""
    assert out.startswith("manual-bp explain mlp: the seed's net [2, 3, 2]: sigmoid layers, squared error")
    heads = [line.split()[0] for line in out.splitlines() if re.match(r"^\((F|BP)\d\)", line)]
    assert heads == ["(F1)", "(F2)", "(F1)", "(F2)", "(BP1)", "(BP3)", "(BP4)", "(BP2)", "(BP3)", "(BP4)"]
    assert "(BP2)  delta^(l) = (W^(l+1)^T delta^(l+1)) ⊙ f'(z^(l))" in out  # the docstring's own line
    model, X, Y, kwargs, _ = explain.example("mlp")
    tr = model.trace(X, Y)
    for i, value in enumerate(tr["delta^(1)"][0], start=1):  # the printed row: ours, torch's, the difference
        row = re.search(rf"delta\^\(1\)\[{i}\]\s+(\S+)\s+torch\s+(\S+)\s+diff\s+(\S+)", out)
        assert float(row.group(1)) == pytest.approx(value, abs=1e-10)
        assert float(row.group(2)) == pytest.approx(value, abs=1e-10) and float(row.group(3)) < 1e-12
    assert f"E = {tr.loss:.10f}" in out
    assert "  W1 = [[" in out and "  b2 = [" in out


def test_mlp_json_fields(capsys):
    result = run_json(capsys, "mlp")
    assert list(result) == ["model", "description", "sizes", "T", "seed", "inputs", "params", "loss", "torch",
                            "max_abs_diff", "equations"]
    assert (result["model"], result["sizes"], result["T"], result["seed"], result["torch"]) == (
        "mlp", [2, 3, 2], None, 0, True)
    assert [g["tag"] for g in result["equations"]] == MLP_TAGS
    assert all(g["equation"] == explain.equation_text(g["tag"]) for g in result["equations"])
    model, X, Y, _ = assert_numbers_are_trace_and_torch(result, "mlp")
    assert result["inputs"] == {"X": X.tolist(), "Y": Y.tolist()}
    assert result["params"] == {k: v.tolist() for k, v in model.params.items()}
    assert model.config()["hidden_activation"] == "sigmoid" and model.loss_name == "squared_error"


@pytest.mark.parametrize(
    "name, sizes, T", [("logreg", None, None), ("rnn", None, None), ("lstm", [2, 2, 3], 2), ("gru", None, 4)]
)
def test_every_model_matches_torch(capsys, name, sizes, T):
    argv = [name] + (["--sizes", ",".join(map(str, sizes))] if sizes else []) + (["--T", str(T)] if T else [])
    result = run_json(capsys, *argv)
    model, X, Y, kwargs = assert_numbers_are_trace_and_torch(result, name, sizes, T)
    if name == "logreg":
        assert model.sizes == [2, 1] and model.loss_name == "binary_cross_entropy" and result["T"] is None
    else:
        assert result["T"] == (T or 3) and np.shape(X) == ((T or 3), 1, model.input_size)
        assert model.loss_name == "cross_entropy"
        h0 = model.state_parts(kwargs["h0"], 1)
        assert all(np.abs(p).min() > 0 for p in h0)  # a non-zero initial state
        assert result["inputs"]["h0"] == [p.tolist() for p in h0]


def test_sizes_and_seed_change_the_example(capsys):
    wide = run_json(capsys, "mlp", "--sizes", "3,4,5,2", "--seed", "7")
    assert wide["sizes"] == [3, 4, 5, 2] and wide["seed"] == 7
    assert_numbers_are_trace_and_torch(wide, "mlp", [3, 4, 5, 2], seed=7)
    other = run_json(capsys, "mlp", "--seed", "1")
    assert other["params"] != run_json(capsys, "mlp")["params"]
    rnn = run_json(capsys, "rnn", "--sizes", "2,4,3", "--T", "2")
    shapes = {e["name"]: e["shape"] for g in rnn["equations"] for e in g["entries"]}
    assert shapes["s_t"] == [3, 1, 4] and shapes["q_t"] == [2, 1, 3]
    assert run_json(capsys, "logreg", "--sizes", "5")["sizes"] == [5, 1]


def test_markdown_is_one_table_per_equation(capsys):
    code, out, _ = run(capsys, "mlp", "--markdown")
    result = run_json(capsys, "mlp")
    assert code == 0 and out.startswith("**manual-bp explain mlp**")
    assert out.count("| quantity | ours | torch | difference |") == len(result["equations"])
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert len(rows) == sum(len(e["numbers"]) for g in result["equations"] for e in g["entries"])
    first = result["equations"][1]["entries"][0]["numbers"][0]
    assert f"| `z^(1)[1]` | {first['ours']:.10f} | {first['torch']:.10f} | {first['diff']:.1e} |" in out


def test_without_torch_our_numbers_alone(capsys, monkeypatch):
    monkeypatch.setattr(harness, "oracle", lambda: (None, "No module named 'torch'"))
    code, out, err = run(capsys, "gru")
    assert code == 0 and "torch is not installed" in err and "No module named 'torch'" in err
    assert "torch " not in out.split("\n\n", 3)[-1] and "only our numbers are shown" in out
    result = run_json(capsys, "gru")
    assert result["torch"] is False and result["max_abs_diff"] is None
    assert all(n["torch"] is None and n["diff"] is None
               for g in result["equations"] for e in g["entries"] for n in e["numbers"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["mlp", "--T", "3"], "--T applies to rnn, lstm and gru; got --T 3 for mlp"),
        (["rnn", "--sizes", "2,3"], "--sizes for rnn is D,H,K (input, hidden, classes; K >= 2); got [2, 3]"),
        (["lstm", "--sizes", "2,3,1"], "K >= 2); got [2, 3, 1]"),
        (["logreg", "--sizes", "2,2"], "for logreg is the number of features n0 (or n0,1); got [2, 2]"),
        (["mlp", "--sizes", "3"], "--sizes for mlp lists the layer widths n0,...,nL (at least 2); got [3]"),
        (["mlp", "--sizes", "2,0"], "expected sizes in 1..4096 separated by commas; got '2,0'"),
        (["mlp", "--sizes", "2,x"], "expected positive integers separated by commas; got '2,x'"),
        (["mlp", "--json", "--markdown"], "not allowed with argument"),
        (["cnn"], "invalid choice: 'cnn'"),
        (["mlp", "--seed", "-1"], "expected a non-negative integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    try:
        code = cli.main(["explain", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_readme_excerpt_is_what_the_command_prints(capsys):
    """The README's excerpt of ``manual-bp explain mlp``: every line is the command's (the last column, the
    difference, may vary with the machine's floating-point paths, so it is left out)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    excerpt = re.search(r"```text\n(\(BP2\).*?)```", readme, re.S).group(1).splitlines()
    _, out, _ = run(capsys, "mlp")
    printed = [re.sub(r"\s+diff \S+$", "", line) for line in out.splitlines()]
    start = printed.index(excerpt[0])
    assert printed[start : start + len(excerpt)] == [re.sub(r"\s+diff \S+$", "", line) for line in excerpt]
