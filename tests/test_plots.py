"""Plots (``manual_bp.plots``): ``train ... --plot``, ``manual-bp depth`` and the vanishing plot.

Each --plot writes the file type of its suffix, says where in the text and in --json's ``plot`` (null
without it), and is refused before any work (exit 2, one line, no file) for a bad suffix, an unwritable path,
or a missing matplotlib. ``depth``'s numbers are the model's own ``loss_and_grad`` bias gradients.
"""

import inspect
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from manual_bp import MLP, SGD, datasets, fit, plots, tasks
from manual_bp import mlp as mlp_module
from manual_bp.cli import build_parser, main
from tests.test_cli import ROOT
from tests.test_tasks import refused, run_json, xor_npz

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")  # the digits of `manual-bp depth`


def assert_format(path):
    """The file at ``path`` is a complete image of the type its suffix names."""
    data = path.read_bytes()
    suffix = path.suffix
    if suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[-8:-4] == b"IEND", data[:16]
    elif suffix == ".pdf":
        assert data.startswith(b"%PDF-") and b"%%EOF" in data[-32:], data[:16]
    else:
        assert ET.fromstring(data).tag == "{http://www.w3.org/2000/svg}svg"


def digits_for_depth(seed=0):
    X, y, X_test, y_test = datasets.load_digits(seed=seed)
    return X[: tasks.DEPTH_TRAIN], np.eye(10)[y[: tasks.DEPTH_TRAIN]]


def bias_norms(net, X, Y):
    _, grads = net.loss_and_grad(X, Y)
    return [float(np.linalg.norm(grads[f"b{l}"])) for l in range(1, net.L + 1)]


# ---------------------------------------------------------------------------------------------- train --plot
TINY = {
    "lm": ["train", "lm", "--model", "rnn", "--max-chars", "2000", "--epochs", "2", "--hidden", "4",
           "--sample-length", "0"],
    "adding": ["train", "adding", "--T", "4", "--steps", "3", "--hidden", "3", "--test-size", "8"],
}


@pytest.mark.parametrize("task, suffix, as_json", [("mlp", ".png", True), ("lm", ".pdf", False),
                                                  ("adding", ".svg", True)])
def test_train_plot_writes_its_suffix_and_says_where(task, suffix, as_json, tmp_path, capsys):
    argv = TINY.get(task) or ["train", "mlp", "--data", xor_npz(tmp_path / "xor.npz"), "--epochs", "3"]
    target = tmp_path / f"curves{suffix}"
    if as_json:
        assert run_json(argv + ["--plot", str(target)], capsys)["plot"] == str(target)
    else:
        assert main(argv + ["--plot", str(target)]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == f"plot written to {target}"
    assert_format(target)
    (tmp_path / "plain").write_bytes(b"")
    assert target.stat().st_mode == (tmp_path / "plain").stat().st_mode  # the umask's, like any new file


def test_train_without_plot_writes_none_and_records_the_curves(tmp_path, capsys):
    data = xor_npz(tmp_path / "xor.npz")
    result = run_json(["train", "mlp", "--data", data, "--epochs", "3"], capsys)
    assert result["plot"] is None and sorted(p.name for p in tmp_path.iterdir()) == ["xor.npz"]
    for r in result["results"]:
        h = r["history"]
        assert [e["epoch"] for e in h] == [1, 2, 3]
        assert h[0]["loss"] == r["first_loss"] and h[-1]["loss"] == r["final_loss"]
        assert h[-1]["test_accuracy"] == r["test_accuracy"] and np.isfinite(h[-1]["test_loss"])
    result = run_json(TINY["adding"] + ["--model", "gru"], capsys)
    assert result["plot"] is None
    (curve,) = [r["curve"] for r in result["results"]]
    assert [p["step"] for p in curve] == [1, 2, 3] and all(p["train_mse"] > 0 for p in curve)
    assert main(TINY["adding"] + ["--model", "rnn"]) == 0
    assert "plot written" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--plot", "{d}/curves.txt"], "--plot {d}/curves.txt: the file name must end in .png, .pdf, .svg"),
        (["--plot", "{d}/no/curves.png"], "--plot {d}/no/curves.png: directory {d}/no does not exist"),
        (["--plot", ""], "--plot: an empty file name"),
        (["--plot", "{d}"], "--plot {d}: is a directory; give a file name"),
        (["--plot", "{d}/s.png", "--save", "{d}/s.png"], "--plot {d}/s.png: is also the --save file"),
    ],
)
def test_bad_plot_paths_are_refused_before_training(flags, message, tmp_path, capsys):
    data = xor_npz(tmp_path / "xor.npz")
    flags = [f.format(d=tmp_path) for f in flags]
    line = refused(["train", "mlp", "--data", data] + flags, capsys)  # no header printed: nothing ran
    assert message.format(d=tmp_path) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xor.npz"]


def block_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_missing_matplotlib_is_a_clear_refusal(tmp_path, capsys, monkeypatch):
    block_matplotlib(monkeypatch)
    target = tmp_path / "c.png"
    for argv in (TINY["adding"], ["depth", "--epochs", "0"]):
        line = refused(argv + ["--plot", str(target)], capsys)
        assert line == 'manual-bp: error: --plot: plots need matplotlib, which is not installed: ' \
                       'pip install "manual-bp[plot]"'
    # the vanishing plot is drawn by default: without matplotlib the table alone, and a warning
    assert main(["vanishing", "--T", "3", "--plot", str(target)]) == 0
    out, err = capsys.readouterr()
    assert "RNN h_k" in out and "plot written" not in out
    assert err == 'manual-bp: warning: no plot: matplotlib is not installed (pip install "manual-bp[plot]")\n'
    assert not target.exists()
    result = {"task": "vanishing", "T": 1, "hidden": 1, "curves": {"rnn": {"h": [1.0, 2.0]}}}
    with pytest.raises(ValueError, match="must end in"):  # the suffix is checked before the import
        plots.plot_vanishing(result, tmp_path / "v.jpg")
    with pytest.raises(datasets.MissingDependency, match=r'pip install "manual-bp\[plot\]"'):
        plots.plot_vanishing(result, target)


def test_no_file_is_left_by_a_failed_plot(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    result = {"task": "vanishing", "T": 1, "hidden": 1, "curves": {"rnn": {"h": [1.0, 2.0]}}}
    old = tmp_path / "v.png"
    old.write_bytes(b"old figure")

    def half_written(self, f, **kwargs):
        f.write(b"\x89PNG partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="No space left"):
        plots.plot_vanishing(result, old)
    with pytest.raises(OSError, match="No space left"):
        plots.plot_vanishing(result, tmp_path / "new.svg")
    assert [p.name for p in tmp_path.iterdir()] == ["v.png"] and old.read_bytes() == b"old figure"
    with pytest.raises(ValueError, match="needs the result of depth; got 'vanishing'"):
        plots.plot_depth(result, tmp_path / "d.png")


def test_plotting_imports_matplotlib_only_when_drawing():
    code = ("import sys, manual_bp, manual_bp.plots, manual_bp.tasks, manual_bp.cli as c; c.build_parser(); "
            "print([m for m in sys.modules if m.split('.')[0] == 'matplotlib'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------- depth
@pytest.mark.parametrize(
    "flags, sizes, activation, seed",
    [([], [64, 30, 30, 30, 30, 10], "sigmoid", 0),
     (["--hidden-sizes", "5,6,7", "--activation", "relu", "--seed", "3"], [64, 5, 6, 7, 10], "relu", 3)],
)
def test_depth_numbers_are_the_models_own_bias_gradients(flags, sizes, activation, seed, capsys):
    result = run_json(["depth", "--epochs", "0"] + flags, capsys)
    assert (result["sizes"], result["activation"], result["seed"]) == (sizes, activation, seed)
    X, Y = digits_for_depth(seed)
    expected = bias_norms(MLP(sizes, activation, "sigmoid", "squared_error", seed=seed), X, Y)
    assert [r["grad_norm"] for r in result["layers"]] == expected
    assert [r["ratio"] for r in result["layers"]] == [x / expected[-1] for x in expected]
    assert [r["width"] for r in result["layers"]] == sizes[1:] and result["n_train"] == len(X) == 1000
    assert [h["epoch"] for h in result["history"]] == [0] and result["history"][0]["grad_norms"] == expected


def test_depth_over_training_follows_sgd_with_the_given_lr(capsys):
    result = run_json(["depth", "--epochs", "2", "--lr", "0.5", "--hidden-sizes", "8,8"], capsys)
    X, Y = digits_for_depth()
    net = MLP([64, 8, 8, 10], "sigmoid", "sigmoid", "squared_error", seed=0)
    seen = [bias_norms(net, X, Y)]
    fit(net, SGD(net.params, lr=0.5), X, Y, epochs=2, batch_size=10, seed=0,
        callbacks=[lambda record, run: seen.append(bias_norms(net, X, Y))])
    assert [h["grad_norms"] for h in result["history"]] == seen
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2] and result["lr"] == 0.5
    assert result["history"][-1]["loss"] == net.loss(X, Y)


def test_depth_reads_a_planted_change_of_the_gradient(monkeypatch, capsys):
    before = run_json(["depth", "--epochs", "0", "--hidden-sizes", "4,4"], capsys)["layers"]
    original = mlp_module.MLP.loss_and_grad

    def planted(self, X, Y, input_grad=False, workspace=None):
        E, g = original(self, X, Y, input_grad, workspace)
        g["b1"] = 2 * g["b1"]
        return E, g

    monkeypatch.setattr(mlp_module.MLP, "loss_and_grad", planted)
    after = run_json(["depth", "--epochs", "0", "--hidden-sizes", "4,4"], capsys)["layers"]
    assert after[0]["grad_norm"] == 2 * before[0]["grad_norm"] and after[1:] == before[1:]


def test_depth_defaults_are_what_the_help_says(capsys):
    args = build_parser().parse_args(["depth"])
    assert (args.hidden_sizes, args.activation, args.epochs, args.lr, args.seed, args.plot) == (
        [30, 30, 30, 30], "sigmoid", 10, 3.0, 0, None)
    signature = inspect.signature(tasks.plan_depth).parameters
    assert {k: signature[k].default for k in ("hidden_sizes", "activation", "epochs", "lr")} == {
        "hidden_sizes": (30, 30, 30, 30), "activation": "sigmoid", "epochs": 10, "lr": 3.0}
    with pytest.raises(SystemExit):
        main(["depth", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for said in ("(default 30,30,30,30: the net [64, 30, 30, 30, 30, 10])", "(default sigmoid)",
                 "(default 10; 0: at initialisation only)", "(default 3, the seed's;", "(default 0)",
                 "first 1000 training digits", "batches of 10", "default: no plot"):
        assert said in text, said


def test_depth_table_and_plot(tmp_path, capsys):
    target = tmp_path / "depth.svg"
    assert main(["depth", "--epochs", "1", "--hidden-sizes", "6,6,6", "--plot", str(target)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:4] == ["layer", "width", "||dE/db||", "at"] and "after epoch 1" in out[1]
    rows = [line.split() for line in out[3:7]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"] and rows[3][1] == "(output)"
    result = run_json(["depth", "--epochs", "1", "--hidden-sizes", "6,6,6"], capsys)
    assert result["plot"] is None
    for row, layer in zip(rows, result["layers"]):
        assert float(row[-4]) == pytest.approx(layer["grad_norm"], rel=1e-3)
        last = result["history"][-1]["grad_norms"]
        assert float(row[-2]) == pytest.approx(last[layer["layer"] - 1], rel=1e-3)
    assert out[-1] == f"plot written to {target}" and "test accuracy" in out[-2]
    assert_format(target)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["depth", "--hidden-sizes", "30,0"], "argument --hidden-sizes: expected comma-separated positive"),
        (["depth", "--hidden-sizes", ""], "argument --hidden-sizes: expected comma-separated positive"),
        (["depth", "--activation", "softmax"], "invalid choice: 'softmax'"),
        (["depth", "--epochs", "-1"], "expected a non-negative integer; got -1"),
        (["depth", "--lr", "0"], "argument --lr: expected a number > 0; got '0'"),
        (["depth", "--plot", "d.jpg"], "--plot d.jpg: the file name must end in .png, .pdf, .svg"),
    ],
)
def test_depth_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    assert message in refused(argv, capsys)


# ---------------------------------------------------------------------------------------------- long BPTT
def long_bptt_report():
    """A report shaped like ``python -m benchmarks.long_bptt --quick --json``'s: its plan, each row made by
    the benchmark's own ``measured_row``/``sweep_row`` and ``report``, with made-up numbers (no measuring)."""
    from benchmarks import long_bptt as bench

    rows = []
    for i, spec in enumerate(bench.plan(quick=True)):
        if spec["method"] == "revolve sweep":
            row = bench.sweep_row(spec, {s: 1.0 + s / 1000 for s in spec["budgets"]})
        else:
            traced = (i + 1) * 2**20 if spec.get("trace") else None
            row = bench.measured_row(spec, 10.0, 1e-4 * spec["T"] * (1 + i % 3), (i + 2) * 2**19, traced)
        rows.append({**row, "load": 0.5 + i / 100, "wall_s": 1.0})
    rows[1] = {**rows[1], "error": "timed out after 240 s"}  # a failed row is left out of the figure
    return bench.report(rows, 60.0, quick=True)


def test_plot_long_bptt_draws_the_reports_numbers(tmp_path, monkeypatch):
    rep = long_bptt_report()
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("fig", fig) and str(path))
    assert plots.plot_long_bptt(rep, tmp_path / "l.png") == str(tmp_path / "l.png")
    ax_mem, ax_time, ax_sweep, ax_lstm, ax_rt_mem, ax_rt_h = drawn["fig"].axes
    lines = {(id(ax), line.get_label()): line for ax in drawn["fig"].axes for line in ax.get_lines()}
    ok = [r for r in rep["results"] if "error" not in r and "group" not in r]
    for ax, cell in ((ax_mem, "RNN"), (ax_lstm, "LSTM")):
        for method in {r["method"] for r in ok if r["cell"] == cell}:
            rows = sorted((r for r in ok if (r["cell"], r["method"]) == (cell, method)), key=lambda r: r["T"])
            line = lines[id(ax), method]
            assert list(line.get_xdata()) == [r["T"] for r in rows], (cell, method)
            mb = [(r.get("traced_peak") or r["rss_peak"]) / 2**20 for r in rows]  # tracemalloc, else RSS
            assert np.allclose(line.get_ydata(), mb), (cell, method)
    rnn_full = sorted((r for r in ok if r["cell"] == "RNN" and r["method"] == "full"), key=lambda r: r["T"])
    assert rep["results"][1]["method"] == "sqrt" and list(lines[id(ax_time), "sqrt"].get_xdata()) == [1000]
    assert np.allclose(lines[id(ax_time), "full"].get_ydata(), [r["us_per_step"] for r in rnn_full])
    (sweep,) = [r for r in rep["results"] if r.get("group") == "revolve-sweep"]
    measured = lines[id(ax_sweep), "revolve, measured (best of 3)"]
    assert sorted(measured.get_xdata()) == sorted(p["forward_steps"] for p in sweep["points"])
    rt_h = [r for r in rep["results"] if r.get("group") == "rtrl-H"]
    (rtrl,) = [line for line in ax_rt_h.get_lines() if line.get_label().startswith("RTRL")]
    assert list(rtrl.get_xdata()) == [r["H"] for r in rt_h]
    assert ax_rt_mem.get_xscale() == ax_mem.get_yscale() == ax_time.get_xscale() == "log"
    for ax in drawn["fig"].axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    loads = [r["load"] for r in rep["results"]]
    assert f"load average {min(loads):.1f}-{max(loads):.1f} on {rep['cpu_count']} cores" in \
        drawn["fig"].get_suptitle()


#: a 6-panel figure takes ~2 s a format to render on 2 cores: each format in the thorough profile only
THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"


@pytest.mark.skipif(not THOROUGH, reason="~2 s a format: HYPOTHESIS_PROFILE=thorough")
@pytest.mark.parametrize("suffix", plots.PLOT_FORMATS)
def test_plot_long_bptt_writes_each_format(suffix, tmp_path):
    target = tmp_path / f"l{suffix}"
    assert plots.plot_long_bptt(long_bptt_report(), target) == str(target)
    assert_format(target)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


def test_long_bptt_replot_prints_the_files_tables_and_draws_its_report(tmp_path, capsys, monkeypatch):
    from benchmarks import long_bptt as bench

    rep = long_bptt_report()
    (tmp_path / "r.json").write_text(json.dumps(rep))
    drawn = []
    monkeypatch.setattr(plots, "plot_long_bptt", lambda report, path: drawn.append((report, path)) or path)
    assert bench.main(["--replot", str(tmp_path / "r.json"), "--plot", str(tmp_path / "l.svg")]) == 0
    out = capsys.readouterr().out
    assert bench.tables(rep["results"]) in out and bench.summary(rep["results"]) in out
    assert "whole run 60 s; load average at the end" in out and f"on {rep['cpu_count']} cores" in out
    assert out.splitlines()[-1] == f"plot: {tmp_path / 'l.svg'}" and "results:" not in out
    assert drawn == [(rep, str(tmp_path / "l.svg"))]
    assert bench.main(["--replot", str(tmp_path / "r.json"), "--no-plot"]) == 0
    assert "plot:" not in capsys.readouterr().out and len(drawn) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # --replot writes no results


def test_plot_long_bptt_refuses_a_bad_suffix_or_report_before_any_work(tmp_path, monkeypatch):
    rep = long_bptt_report()

    def no_work(*args):
        raise AssertionError("drew before checking")

    monkeypatch.setattr(plots, "_figure", no_work)
    with pytest.raises(ValueError, match=r"l\.jpg: the file name must end in \.png, \.pdf, \.svg"):
        plots.plot_long_bptt(rep, tmp_path / "l.jpg")
    with pytest.raises(ValueError, match="needs the result of long_bptt; got 'vanishing'"):
        plots.plot_long_bptt({**rep, "task": "vanishing"}, tmp_path / "l.png")
    row = {k: v for k, v in rep["results"][0].items() if k != "us_per_step"}
    with pytest.raises(ValueError, match=r"results\[0\] \(full\) lacks \['us_per_step'\]"):
        plots.plot_long_bptt({**rep, "results": [row]}, tmp_path / "l.png")
    with pytest.raises(ValueError, match="'setup' must give the integers D, H, K, N"):
        plots.plot_long_bptt({**rep, "setup": {"H": 128}}, tmp_path / "l.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "--replot {f}: no such file (write one with --json PATH)"),
        ("{", "--replot {f}: not JSON (Expecting property name enclosed in double quotes at line 1)"),
        ("[1, 2]", "--replot {f}: not a long_bptt --json file: plot_long_bptt needs the result of long_bptt; "
                   "got 'list'"),
        ('{"task": "long_bptt", "setup": {"D": 16, "H": 128, "K": 16, "N": 8}, "results": []}',
         "--replot {f}: not a long_bptt --json file: plot_long_bptt: 'results' must be a non-empty list of "
         "measurements; got an empty list"),
    ],
)
def test_long_bptt_replot_refuses_a_missing_or_invalid_json(content, message, tmp_path, capsys):
    from benchmarks import long_bptt as bench

    f = tmp_path / "r.json"
    if content is not None:
        f.write_text(content)
    assert bench.main(["--replot", str(f), "--plot", str(tmp_path / "l.png")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"python -m benchmarks.long_bptt: error: {message.format(f=f)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["r.json"])
