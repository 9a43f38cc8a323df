"""``manual-bp train`` and ``manual-bp vanishing``: --quick runs succeed and learn; bad arguments get a
message."""

import json

import numpy as np
import pytest

from manual_bp import datasets, tasks
from manual_bp.cli import main


def run_json(argv, capsys):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_mlp_quick_learns_digits(capsys):
    pytest.importorskip("sklearn")
    result = run_json(["train", "mlp", "--quick"], capsys)
    seed_setup, best = result["results"]
    assert seed_setup["setup"] == "seed" and best["setup"] == "best"
    for r in result["results"]:
        assert r["final_loss"] < r["first_loss"]
    assert best["test_accuracy"] > 0.85  # 300 training images, 5 epochs


def test_train_mlp_on_user_npz_xor(tmp_path, capsys):
    """XOR from a user's file gets solved by the documented best set-up."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 8, dtype=float)
    y = (X[:, 0] != X[:, 1]).astype(np.int64)
    path = tmp_path / "xor.npz"
    np.savez(path, X_train=X, y_train=y, X_test=X[:4], y_test=y[:4])
    result = run_json(["train", "mlp", "--data", str(path), "--epochs", "200"], capsys)
    best = result["results"][1]
    assert best["test_accuracy"] == 1.0 and best["train_accuracy"] == 1.0


def test_train_lm_quick_loss_falls(capsys):
    result = run_json(["train", "lm", "--model", "gru", "--quick", "--max-chars", "6000"], capsys)
    assert result["epochs"][-1]["val_bpc"] < result["untrained_bpc"]
    assert result["epochs"][-1]["train_bpc"] < result["epochs"][0]["train_bpc"] or len(result["epochs"]) == 1
    assert result["sample"].startswith("The ") and len(result["sample"]) == 64


def test_train_saves_checkpoints_that_load(tmp_path, capsys):
    from manual_bp import LSTM, MLP, checkpoint

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 8, dtype=float)
    y = (X[:, 0] != X[:, 1]).astype(np.int64)
    data, mlp_ck, lm_ck = tmp_path / "xor.npz", tmp_path / "mlp.npz", tmp_path / "lm.npz"
    np.savez(data, X=X, y=y)
    run_json(["train", "mlp", "--data", str(data), "--epochs", "3", "--save", str(mlp_ck)], capsys)
    ck = checkpoint.load(mlp_ck)
    assert isinstance(ck.model, MLP) and ck.extra["task"] == "mlp" and ck.optimizer.step_count > 0
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


def test_train_adding_quick(capsys):
    result = run_json(["train", "adding", "--model", "lstm", "--quick", "--steps", "40"], capsys)
    (r,) = result["results"]
    assert r["model"] == "lstm" and np.isfinite(r["test_mse"])
    assert result["baseline_mse"] == pytest.approx(1 / 6)


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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train"], "required"),
        (["train", "cnn"], "invalid choice"),
        (["train", "lm", "--model", "transformer"], "invalid choice"),
        (["train", "adding", "--T", "0"], "expected a positive integer; got 0"),
        (["train", "adding", "--T", "1"], "needs T >= 2"),
        (["train", "mlp", "--epochs", "-1"], "expected a positive integer"),
        (["vanishing", "--T", "abc"], "expected a positive integer"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "mlp", "--data", "/nonexistent/file.npz"], "data file not found"),
        (["train", "lm", "--text", "/nonexistent/file.txt"], "No such file"),
    ],
)
def test_missing_files_get_a_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_npz_gets_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    assert main(["train", "mlp", "--data", str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, A=np.zeros(3))
    assert main(["train", "mlp", "--data", str(wrong)]) == 2
    assert "must hold arrays" in capsys.readouterr().err


def test_missing_scikit_learn_gets_install_hint(monkeypatch, capsys):
    def missing(*a, **k):
        raise datasets.MissingDependency(
            "the digits data ships inside scikit-learn, which is not installed: "
            "pip install 'manual-bp[train]'"
        )

    monkeypatch.setattr(tasks.datasets, "load_digits", missing)
    assert main(["train", "mlp", "--quick"]) == 2
    assert "pip install" in capsys.readouterr().err
