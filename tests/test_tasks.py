"""``manual-bp train`` and ``manual-bp vanishing``: --quick runs succeed and learn; every bad input is refused
before any work with one line naming what is wrong; results on stdout, progress and warnings on stderr."""

import json
import re

import numpy as np
import pytest

from manual_bp import datasets, tasks
from manual_bp.cli import main

GiB = 2**30


def run_json(argv, capsys):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def refused(argv, capsys, status=2):
    """Run ``argv``, expect ``status`` with one error line on stderr; the line. A refused input (status 2)
    prints nothing on stdout; a run that fails (status 1) has printed its header."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code == status, (code, out, err)
    assert (out == "") == (status == 2) and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("manual-bp: error: "), err
    return lines[0]


def xor_npz(path, **overrides):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 8, dtype=float)
    y = (X[:, 0] != X[:, 1]).astype(np.int64)
    arrays = dict(X_train=X, y_train=y, X_test=X[:4], y_test=y[:4])
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


# ---------------------------------------------------------------------------------------------- runs
def test_train_mlp_quick_learns_digits(capsys):
    pytest.importorskip("sklearn")
    result = run_json(["train", "mlp", "--quick"], capsys)
    seed_setup, best = result["results"]
    assert seed_setup["setup"] == "seed" and best["setup"] == "best"
    assert seed_setup["sizes"] == [64, 30, 10] and best["sizes"] == [64, 128, 10]
    assert result["n_train"] == 300 and seed_setup["epochs"] == 5  # --quick's defaults
    for r in result["results"]:
        assert r["final_loss"] < r["first_loss"]
    assert best["test_accuracy"] > 0.85  # 300 training images, 5 epochs


def test_train_mlp_on_user_npz_xor_describes_the_actual_sizes(tmp_path, capsys):
    """XOR from a user's file gets solved by the documented best set-up; every line names [2, ., 2]."""
    data = xor_npz(tmp_path / "xor.npz")
    assert main(["train", "mlp", "--data", data, "--epochs", "200"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # nothing to warn about, no terminal: no progress
    assert "[2, 30, 2]" in out and "[2, 128, 2]" in out and "[64" not in out
    assert "32 training samples, 4 test samples, 2 features, 2 classes" in out
    best = [line for line in out.splitlines() if line.startswith("best ")][-1].split()
    assert best[-3:-1] == ["1.0000", "1.0000"]  # train and test accuracy


def test_train_lm_quick_reports_bits_only(capsys):
    result = run_json(["train", "lm", "--model", "gru", "--quick", "--max-chars", "6000"], capsys)
    assert result["epochs"][-1]["val_bpc"] < result["untrained_bpc"]
    assert result["hidden"] == 32 and len(result["epochs"]) == 2  # --quick's defaults
    assert result["sample"].startswith("The ") and len(result["sample"]) == 64
    assert (
        main(["train", "lm", "--model", "RNN", "--max-chars", "3000", "--epochs", "1", "--hidden", "8"]) == 0
    )
    out, err = capsys.readouterr()
    assert err == "" and "nats" not in out and out.count("bits") >= 2
    assert "RNN H=8" in out and "1 epoch," in out


def test_train_saves_checkpoints_that_load(tmp_path, capsys):
    from manual_bp import LSTM, MLP, checkpoint

    data, mlp_ck, lm_ck = tmp_path / "xor.npz", tmp_path / "mlp.npz", tmp_path / "lm.npz"
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 8, dtype=float)
    np.savez(data, X=X, y=(X[:, 0] != X[:, 1]).astype(np.int64))
    result = run_json(["train", "mlp", "--data", str(data), "--epochs", "3", "--save", str(mlp_ck)], capsys)
    ck = checkpoint.load(mlp_ck)
    assert isinstance(ck.model, MLP) and ck.extra["task"] == "mlp" and ck.optimizer.step_count > 0
    assert result["saved"] == str(mlp_ck)
    # a second run may replace its own checkpoint
    run_json(["train", "mlp", "--data", str(data), "--epochs", "1", "--save", str(mlp_ck)], capsys)
    result = run_json(["train", "lm", "--quick", "--max-chars", "3000", "--save", str(lm_ck)], capsys)
    ck = checkpoint.load(lm_ck)
    assert isinstance(ck.model, LSTM) and len(ck.extra["vocabulary"]) == result["vocabulary"]
    assert ck.scheduler is not None


def test_train_lm_on_user_text(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text("abcabcabd " * 60, encoding="utf-8")
    result = run_json(
        ["train", "lm", "--model", "rnn", "--text", str(path), "--quick", "--seq-len", "10"], capsys
    )
    assert result["vocabulary"] == 5 and result["epochs"][-1]["val_bpc"] < result["untrained_bpc"]
    path.write_text("ab" * 50, encoding="utf-8")  # the shortest text: 10 held-out characters, 9 streams
    argv = ["train", "lm", "--text", str(path), "--hidden", "4", "--epochs", "1", "--seq-len", "200"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "chunks of 10 x 9 streams" in out and "1 epoch," in out
    assert (
        err == "manual-bp: warning: --seq-len 200 is longer than each of the 9 training streams "
        "(10 characters); the chunks are 10 long\n"
    )


def test_train_adding_quick(capsys):
    result = run_json(["train", "adding", "--model", "lstm", "--quick", "--steps", "10"], capsys)
    (r,) = result["results"]
    assert r["model"] == "lstm" and np.isfinite(r["test_mse"])
    assert result["baseline_mse"] == pytest.approx(1 / 6)
    assert (result["T"], result["hidden"], result["test_size"], result["steps"]) == (20, 16, 200, 10)


def test_explicit_flags_win_over_quick(capsys):
    result = run_json(
        ["train", "adding", "--model", "gru", "--quick", "--T", "7", "--hidden", "5", "--steps", "2"], capsys
    )
    assert (result["T"], result["hidden"], result["steps"], result["test_size"]) == (7, 5, 2, 200)
    assert main(["train", "adding", "--model", "rnn", "--T", "6", "--steps", "2", "--test-size", "9"]) == 0
    out = capsys.readouterr().out
    assert "T=6, H=64, 2 Adam steps" in out and "9 fresh sequences" in out


def test_train_is_deterministic(capsys):
    a = run_json(["train", "adding", "--model", "rnn", "--quick", "--steps", "10", "--seed", "3"], capsys)
    b = run_json(["train", "adding", "--model", "rnn", "--quick", "--steps", "10", "--seed", "3"], capsys)
    assert a["results"][0]["curve"] == b["results"][0]["curve"]


def test_vanishing_table_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "v.png"
    assert main(["vanishing", "--T", "30", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "RNN h_k" in out and "LSTM c_k" in out and "GRU h_k" in out and "plot written" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = run_json(["vanishing", "--T", "30", "--plot", ""], capsys)
    rnn = np.array(result["curves"]["rnn"]["h"])
    assert rnn.shape == (31,) and rnn[0] < rnn[-1]  # the gradient shrinks going back from k = T


def test_adding_problem_data():
    X, Y, m = datasets.adding_problem(10, 5, np.random.default_rng(0))
    assert X.shape == (10, 5, 2) and Y.shape == (10, 5, 1) and m.shape == (10, 5)
    assert (X[:, :, 1].sum(axis=0) == 2).all() and m[-1].all() and not m[:-1].any()
    np.testing.assert_allclose(Y[-1, :, 0], (X[:, :, 0] * X[:, :, 1]).sum(axis=0))


def test_recurrent_models_come_from_the_registry():
    assert not hasattr(tasks, "RECURRENT")
    assert type(tasks.make_recurrent("LSTM", 3, 4, 3)).__name__ == "LSTM"
    with pytest.raises(ValueError, match="rnn, lstm, gru"):
        tasks.plan_adding(models=["mlp"])


# ---------------------------------------------------------------------------------------------- streams
def test_progress_and_summaries_go_to_stderr_results_to_stdout(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(tasks, "_stderr_is_terminal", lambda: True)
    assert main(["train", "adding", "--model", "rnn", "--T", "4", "--steps", "3", "--test-size", "5"]) == 0
    out, err = capsys.readouterr()
    assert "step/s" in err and "RNN T=4: test MSE" in err  # tqdm's rate, then the summary line
    assert "step/s" not in out and "test MSE" in out and out.startswith("the adding problem: T=4")
    assert main(["train", "adding", "--model", "rnn", "--T", "4", "--steps", "3", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_numbers_are_printed_with_sensible_digits():
    assert tasks.format_number(2.5) == "2.5000" and tasks.format_number(0.00063) == "0.00063"
    assert tasks.format_number(1e300) == "1e+300" and tasks.format_number(float("nan")) == "nan"
    assert tasks.format_number(0) == "0.0000" and tasks.format_number(-12345.678) == "-1.23e+04"


def test_a_diverging_run_stops_with_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(tasks, "ADDING_LR", 1e200)
    line = refused(["train", "adding", "--model", "rnn", "--T", "4", "--steps", "5"], capsys, status=1)
    assert line.startswith("manual-bp: error: training diverged: RNN step ")


def test_a_diverging_fit_stops_with_exit_1(tmp_path, monkeypatch, capsys):
    """fit's own divergence error, raised once training began, becomes exit 1 naming the set-up."""

    class Diverging(tasks.MLP):
        def loss_and_grad(self, X, Y, input_grad=False):
            E, grads = super().loss_and_grad(X, Y, input_grad)
            return float("nan"), grads

    monkeypatch.setattr(tasks, "MLP", Diverging)
    data = xor_npz(tmp_path / "xor.npz")
    line = refused(["train", "mlp", "--data", data, "--epochs", "3"], capsys, status=1)
    assert line.startswith("manual-bp: error: training diverged: set-up 'seed' [2, 30, 2]: epoch 1")


def test_unscaled_features_are_warned_about(tmp_path, capsys):
    data = xor_npz(tmp_path / "xor.npz", X_train=np.full((32, 2), 1e5))
    assert main(["train", "mlp", "--data", data, "--epochs", "1", "--json"]) == 0
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning.startswith("manual-bp: warning: --data") and "features reach 1e+05" in warning


# ---------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "argv, message",
    [
        (["train"], "required"),
        (["train", "cnn"], "invalid choice"),
        (["train", "lm", "--model", "transformer"], "invalid choice: 'transformer'"),
        (["train", "adding", "--T", "0"], "argument --T: expected an integer >= 2"),
        (["train", "adding", "--T", "1"], "expected an integer >= 2"),
        (["train", "mlp", "--epochs", "-1"], "argument --epochs: expected a positive integer; got -1"),
        (["train", "mlp", "--epochs", "9" * 30], "below 2**63"),
        (["train", "lm", "--hidden", "1e3"], "expected a positive integer; got '1e3'"),
        (["vanishing", "--T", "abc"], "expected a positive integer"),
        (["vanishing", "--forget-bias", "nan"], "expected a finite number; got 'nan'"),
        (["vanishing", "--plot", "v.txt"], "--plot v.txt: the file name must end in .png, .pdf, .svg"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    assert message in refused(argv, capsys)


def test_missing_files_and_directories_are_told_apart(tmp_path, capsys):
    missing = str(tmp_path / "nope.npz")
    assert refused(["train", "mlp", "--data", missing], capsys).endswith(f"--data {missing}: no such file")
    line = refused(["train", "mlp", "--data", str(tmp_path)], capsys)
    assert line.endswith(f"--data {tmp_path}: is a directory, not a file")
    line = refused(["train", "lm", "--text", str(tmp_path)], capsys)
    assert line.endswith(f"--text {tmp_path}: is a directory, not a file")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"x,y\n1,2\n", "not a NumPy .npz archive (a text file)"),
        (b"", "not a NumPy .npz archive (an empty file)"),
        (b"\x93NUMPY\x01\x00", "a single .npy array, not an .npz archive"),
    ],
)
def test_non_npz_files_are_named_for_what_they_are(tmp_path, content, message, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    line = refused(["train", "mlp", "--data", str(bad)], capsys)
    assert message in line and "allow_pickle" not in line and "np.savez" in line


def test_truncated_npz_and_checkpoint_as_data(tmp_path, capsys):
    good = xor_npz(tmp_path / "good.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(open(good, "rb").read()[:300])
    assert f"--data {cut}: a damaged or truncated .npz archive" in refused(
        ["train", "mlp", "--data", str(cut)], capsys
    )
    from manual_bp import MLP, checkpoint

    ck = tmp_path / "ck.npz"
    checkpoint.save(ck, MLP([2, 2]))
    assert "a manual-bp checkpoint, not a data set" in refused(["train", "mlp", "--data", str(ck)], capsys)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(y_train=np.zeros(30, np.int64)), "X_train has 32 samples (rows) but y_train has 30 labels"),
        (dict(X_test=np.ones((4, 3))), "X_train has 2 features but X_test has 3"),
        (dict(y_test=np.array([0, 1, -1, 0])), "y_test[2] = -1: labels must be class indices 0, 1, 2, ..."),
        (
            dict(y_train=np.arange(32) * 0.0),
            "must hold integer class labels 0, 1, 2, ...; got dtype float64 "
            "(whole numbers stored as floats: save y.astype(int))",
        ),
        (
            dict(X_train=np.where(np.eye(32, 2) > 0, np.nan, 0.0)),
            "X_train must be finite; X_train[0, 0] is nan",
        ),
        (dict(X_test=np.ones(4)), "X_test must be 2-D, (N samples, D features); got shape (4,)"),
        (dict(y_train=np.ones((32, 2), np.int64)), "one-hot rows? save the class indices y.argmax(axis=1)"),
        (dict(X_train=np.array(["a"] * 32)), "X_train must hold real numbers; got dtype <U1"),
        (
            dict(y_train=np.zeros(32, np.int64)),
            "the training labels hold a single class (0): nothing to learn",
        ),
        (dict(y_test=np.full(4, 7)), "none of the test labels (7) occurs in the training labels"),
        (dict(X_test=None), "has X_train, y_train, y_test but not X_test"),
    ],
)
def test_bad_data_is_refused_naming_array_and_index(tmp_path, overrides, message, capsys):
    data = xor_npz(tmp_path / "d.npz", **overrides)
    save = tmp_path / "m.npz"
    line = refused(["train", "mlp", "--data", data, "--save", str(save)], capsys)
    assert f"--data {data}" in line and message in line
    assert not save.exists()


def test_test_labels_unseen_in_training_are_warned_about(tmp_path, capsys):
    data = xor_npz(tmp_path / "d.npz", y_test=np.array([0, 1, 2, 2]))
    assert main(["train", "mlp", "--data", data, "--epochs", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["classes"] == 3 and result["results"][0]["sizes"] == [2, 30, 3]
    assert err.startswith("manual-bp: warning: ") and len(err.splitlines()) == 1
    assert "2 of 4 test samples have labels never seen in training (2)" in err
    assert "test accuracy is at most 0.5000" in err


def test_bad_text_is_refused(tmp_path, capsys):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes(("abc " * 40 + "caf\xe9 au lait").encode("latin-1"))
    line = refused(["train", "lm", "--text", str(latin)], capsys)
    assert line.endswith(
        f"--text {latin}: not UTF-8 text: byte 0xe9 at offset 163 (invalid continuation byte)"
    )
    short = tmp_path / "short.txt"
    short.write_text("abc", encoding="utf-8")
    assert "must hold at least 100 characters; got 3" in refused(
        ["train", "lm", "--text", str(short)], capsys
    )
    same = tmp_path / "same.txt"
    same.write_text("a" * 200, encoding="utf-8")
    assert "a single distinct character ('a')" in refused(["train", "lm", "--text", str(same)], capsys)
    long = tmp_path / "long.txt"
    long.write_text("abcd" * 100, encoding="utf-8")
    assert "got 50 (--max-chars 50)" in refused(
        ["train", "lm", "--text", str(long), "--max-chars", "50"], capsys
    )


def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    data = xor_npz(tmp_path / "d.npz")
    target = str(tmp_path / "missing" / "m.npz")
    line = refused(["train", "mlp", "--data", data, "--save", target], capsys)
    assert line == f"manual-bp: error: --save {target}: directory {tmp_path / 'missing'} does not exist"
    line = refused(["train", "lm", "--save", str(tmp_path)], capsys)
    assert line.endswith(f"--save {tmp_path}: is a directory; give a file name")
    assert "is the --data file" in refused(["train", "mlp", "--data", data, "--save", data], capsys)
    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    assert "exists and is not a manual-bp checkpoint; not overwriting it" in refused(
        ["train", "mlp", "--data", data, "--save", str(notes)], capsys
    )
    plot = str(tmp_path / "missing" / "v.png")
    assert f"--plot {plot}: directory" in refused(["vanishing", "--plot", plot], capsys)
    assert notes.read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == [
        "d.npz",
        "notes.txt",
    ]


def test_every_problem_is_reported_in_one_line(tmp_path, capsys):
    line = refused(
        ["train", "lm", "--text", str(tmp_path / "t.txt"), "--save", str(tmp_path / "no" / "m.npz")], capsys
    )
    assert "--save" in line and "directory" in line and "--text" in line and "no such file" in line


def test_runs_too_big_for_memory_are_refused_with_a_way_out(monkeypatch, capsys):
    monkeypatch.setattr(tasks, "available_memory", lambda: 4 * GiB)
    line = refused(["train", "adding", "--T", "1000000"], capsys)
    assert "the adding problem with --T 1000000" in line and "this machine has 4 GiB available" in line
    T = int(re.search(r"; it would fit with --T (\d+) or less$", line).group(1))
    settings = dict(T=T, hidden=64, test_size=2000, models=["RNN", "LSTM", "GRU"])
    assert tasks._adding_bytes(**settings) <= 4 * GiB < tasks._adding_bytes(**dict(settings, T=T + 1))
    assert (
        main(
            [
                "train",
                "adding",
                "--T",
                str(T),
                "--steps",
                "1",
                "--test-size",
                "1",
                "--model",
                "rnn",
                "--hidden",
                "1",
                "--json",
            ]
        )
        == 0
    )  # the smaller value is accepted
    capsys.readouterr()
    line = refused(["vanishing", "--T", "100000000", "--plot", ""], capsys)
    assert "needs about" in line and re.search(r"it would fit with --T \d+ or less$", line)
    assert "--hidden" in refused(["train", "lm", "--hidden", "100000"], capsys)


def test_available_memory_is_known_here():
    avail = tasks.available_memory()
    assert avail is None or avail > 0


def test_missing_scikit_learn_gets_install_hint(monkeypatch, capsys):
    def missing(*a, **k):
        raise datasets.MissingDependency(
            "the digits data ships inside scikit-learn, which is not installed: "
            "pip install 'manual-bp[train]'"
        )

    monkeypatch.setattr(tasks.datasets, "load_digits", missing)
    assert "pip install" in refused(["train", "mlp", "--quick"], capsys)


def test_train_adding_with_hessian_free(capsys):
    """--optimizer hf trains with structurally damped Hessian-free steps, and says so in the header."""
    result = run_json(["train", "adding", "--model", "rnn", "--optimizer", "hf", "--T", "6", "--steps", "3",
                       "--hidden", "8", "--test-size", "50"], capsys)
    assert result["optimizer"] == "hf" and result["batch_size"] == 250 and result["lr"] is None
    (r,) = result["results"]
    assert [p["step"] for p in r["curve"]] == [1, 2, 3] and np.isfinite(r["test_mse"])
    assert r["curve"][-1]["test_mse"] < r["curve"][0]["test_mse"]
    assert main(["train", "adding", "--model", "rnn", "--optimizer", "hf", "--T", "6", "--steps", "1",
                 "--hidden", "4", "--test-size", "9", "--no-progress"]) == 0
    assert "1 Hessian-free steps (at most 50 CG iterations" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "adding", "--optimizer", "sgd"])
    assert "invalid choice: 'sgd'" in capsys.readouterr().err
