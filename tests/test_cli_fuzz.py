"""The command line under generated input: argument lists of any shape and malformed data, text and
checkpoint files. Whatever comes, no traceback: either the input is refused with one line
``manual-bp: error: ...`` on stderr and exit status 2, naming the problem, or validation passes and the work
would start. The work itself is stubbed (``Started`` is raised where it would begin, carrying the validated
plan), so an example takes milliseconds; the runs that do train live in test_tasks.py. Nothing is written
before validation passes.

In-process (``cli.main(argv)`` with capsys); the number of examples follows the hypothesis profile.
"""

import io
import os
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from manual_bp import MLP, checkpoint, cli, datasets, tasks

GiB = 2**30
MEMORY = 8 * GiB  # what the stubbed machine has available, so that refusals do not depend on this one
TEXT = "The quick brown fox jumps over the lazy dog. " * 40  # the default corpus, small for speed
fixtures = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


class Started(Exception):
    """Raised where the work would begin; ``args[0]`` is the validated plan (None for ``check``)."""


def _start(plan=None, *args, **kwargs):
    raise Started(plan if isinstance(plan, tasks.Plan) else None)


def _small_digits(test_fraction=0.2, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (50, 64)).astype(dtype)
    y = np.arange(50) % 10
    return X[:40], y[:40], X[40:], y[40:]


@pytest.fixture
def stubbed(monkeypatch):
    for name in ("run_mlp", "run_lm", "run_adding", "run_vanishing"):
        monkeypatch.setattr(tasks, name, _start)
    monkeypatch.setattr("manual_bp.check.run_check", _start)
    monkeypatch.setattr(tasks, "available_memory", lambda: MEMORY)
    monkeypatch.setattr(datasets, "load_digits", _small_digits)
    monkeypatch.setattr(datasets, "python_docs_text", lambda: TEXT)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Named input files, good and bad, made once."""
    d = tmp_path_factory.mktemp("cli_files")
    X = np.random.default_rng(0).uniform(0, 1, (12, 3))
    y = np.arange(12) % 3
    paths = {
        "good.npz": (np.savez, dict(X_train=X, y_train=y, X_test=X[:3], y_test=y[:3])),
        "whole.npz": (np.savez, dict(X=X, y=y)),
        "lengths.npz": (np.savez, dict(X_train=X, y_train=y[:10], X_test=X, y_test=y)),
        "negative.npz": (np.savez, dict(X=X, y=y - 1)),
        "nan.npz": (np.savez, dict(X=np.where(X > 0.9, np.nan, X), y=y)),
        "single.npz": (np.savez, dict(X=X, y=y * 0)),
    }
    out = {}
    for name, (save, arrays) in paths.items():
        save(d / name, **arrays)
        out[name] = str(d / name)
    good = open(out["good.npz"], "rb").read()
    (d / "truncated.npz").write_bytes(good[: len(good) // 2])
    (d / "text.txt").write_text(TEXT, encoding="utf-8")
    (d / "short.txt").write_text("too short", encoding="utf-8")
    (d / "latin1.txt").write_bytes(("caf\xe9 " * 30).encode("latin-1"))
    (d / "dir").mkdir()
    checkpoint.save(d / "checkpoint.npz", MLP([3, 2]))
    for name in ("truncated.npz", "text.txt", "short.txt", "latin1.txt", "dir", "checkpoint.npz"):
        out[name] = str(d / name)
    out["missing"] = str(d / "missing.npz")
    out["missing dir"] = str(d / "no" / "such" / "out.npz")
    out["new output"] = str(d / "out.npz")
    out["new plot"] = str(d / "plot.png")
    return out


def run(argv, capsys):
    """``(status, stdout, stderr, plan)``; status "started" where validation passed."""
    plan = None
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code
    except Started as exc:
        status, plan = "started", exc.args[0]
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return status, out, err, plan


def refusal(status, out, err) -> str:
    """The one error line of a refused input."""
    lines = err.splitlines()
    assert status == 2, (status, out, err)
    assert out == "" and len(lines) == 1 and lines[0].startswith("manual-bp: error: "), err
    return lines[0]


def check_outcome(argv, status, out, err):
    """The contract for any argument list."""
    if status == "started":
        assert all(line.startswith("manual-bp: warning: ") for line in err.splitlines()), err
    elif status == 0:  # an abbreviation of --help or --version
        assert out.startswith("usage: ") or out.startswith("manual-bp "), out
    else:
        line = refusal(status, out, err)
        said = line[len("manual-bp: error: ") :]
        named = [tok for tok in argv if tok.strip() and tok.strip() in said]
        # it names the flag, value, file or command, or says which positional is missing or wrong
        assert named or "required" in line or "argument COMMAND: invalid choice" in line, line


# ---------------------------------------------------------------------------------------------- argv
COMMANDS = [
    ["check"],
    ["train", "mlp"],
    ["train", "lm"],
    ["train", "adding"],
    ["vanishing"],
    ["train"],
    [],
    ["frobnicate"],
    ["train", "cnn"],
    ["TRAIN", "mlp"],
]
FLAGS = [
    "--n", "--seed", "--models", "--quick", "--json", "--no-progress", "--data", "--save", "--epochs",
    "--train-size", "--model", "--text", "--hidden", "--seq-len", "--max-chars", "--sample-length", "--T",
    "--steps", "--test-size", "--plot", "--forget-bias", "--bogus", "-T",
]  # fmt: skip
FILE_KEYS = [
    "good.npz", "whole.npz", "lengths.npz", "negative.npz", "nan.npz", "single.npz", "truncated.npz",
    "text.txt", "short.txt", "latin1.txt", "dir", "checkpoint.npz", "missing", "missing dir", "new output",
    "new plot",
]  # fmt: skip
junk = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
numbers = st.one_of(
    st.integers(-3, 300).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e3", "0.5", "-0.0", "2**63", "9223372036854775808", " 7 "]),
)
names = st.sampled_from(
    ["rnn", "LSTM", "gru", "all", "mlp", "transformer", "", "lstm,gru", "MLP,logreg", ","]
)


@st.composite
def argument_lists(draw):
    argv = list(draw(st.sampled_from(COMMANDS)))
    for _ in range(draw(st.integers(0, 6))):
        flag = draw(st.sampled_from(FLAGS))
        argv.append(flag)
        if draw(st.integers(0, 9)) > 0:  # mostly with a value; sometimes the value is missing
            argv.append(
                draw(st.one_of(numbers, names, junk, st.sampled_from(FILE_KEYS).map(lambda k: "@" + k)))
            )
    return argv


@fixtures
@given(argv=argument_lists())
@example(argv=["train", "adding", "--T", "1000000"])
@example(argv=["vanishing", "--T", "100000000"])
@example(argv=["train", "mlp", "--data", "@lengths.npz"])
@example(argv=["train", "mlp", "--data", "@truncated.npz"])
@example(argv=["train", "mlp", "--save", "@missing dir"])
@example(argv=["train", "lm", "--text", "@latin1.txt"])
@example(argv=["train", "mlp", "--data", "@text.txt"])
@example(argv=["train", "mlp", "--data", "@dir"])
@example(argv=["train", "lm", "--hidden", "10000000", "--quick"])
def test_any_argument_list_is_refused_in_one_line_or_validated(argv, files, stubbed, capsys):
    argv = [files[a[1:]] if a.startswith("@") else a for a in argv]
    before = sorted(os.listdir(os.path.dirname(files["good.npz"])))
    status, out, err, _ = run(argv, capsys)
    check_outcome(argv, status, out, err)
    assert sorted(os.listdir(os.path.dirname(files["good.npz"]))) == before  # nothing written


@fixtures
@given(
    quick=st.booleans(),
    T=st.none() | st.integers(2, 500),
    hidden=st.none() | st.integers(1, 200),
    steps=st.none() | st.integers(1, 10**6),
    test_size=st.none() | st.integers(1, 3000),
)
def test_explicit_flags_always_win_over_quick(quick, T, hidden, steps, test_size, stubbed, capsys):
    given_ = dict(T=T, hidden=hidden, steps=steps, test_size=test_size)
    argv = ["train", "adding"] + (["--quick"] if quick else [])
    for key, value in given_.items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    status, out, err, plan = run(argv, capsys)
    assert status == "started", err
    for key, value in given_.items():
        expected = value if value is not None else tasks.PRESETS["adding"][key][quick]
        assert plan.settings[key] == expected
    assert (
        f"T={plan.settings['T']}, H={plan.settings['hidden']}, {plan.settings['steps']} Adam steps"
        in (plan.header[0])
    )


# ---------------------------------------------------------------------------------------------- data files
_CHECKPOINT = []


def _checkpoint_bytes() -> bytes:
    """The bytes of a small real checkpoint (made once)."""
    if not _CHECKPOINT:
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "ck.npz")
            checkpoint.save(path, MLP([3, 2]))
            _CHECKPOINT.append(open(path, "rb").read())
    return _CHECKPOINT[0]


def _arrays(draw, n, d, classes=3):
    X = draw(st.sampled_from([np.float64, np.float32, np.int64]))
    X = np.random.default_rng(draw(st.integers(0, 99))).uniform(-1, 1, (n, d)).astype(X)
    y = np.arange(n) % classes
    return X, y


@st.composite
def bad_data(draw):
    """``(write(path), expected fragments of the message; None: it validates, warning if "warn")``."""
    n, d = draw(st.integers(2, 12)), draw(st.integers(1, 4))
    X, y = _arrays(draw, n, d)
    Xt, yt = X[: max(1, n // 3)], y[: max(1, n // 3)]
    kind = draw(
        st.sampled_from(
            [
                "truncated", "bytes", "text", "wrong keys", "lengths", "nonfinite", "negative",
                "single class", "unseen", "all unseen", "label dtype", "feature dtype", "ndim", "features",
                "no samples", "huge label", "one sample", "objects", "checkpoint", "truncated checkpoint",
                "npy",
            ]
        )
    )  # fmt: skip

    def savez(**arrays):
        return lambda path: np.savez(path, **arrays)

    def raw(content):
        return lambda path: open(path, "wb").write(content)

    not_npz = ["not a NumPy .npz archive", "a damaged or truncated .npz archive", "a single .npy array"]
    if kind in ("truncated", "truncated checkpoint"):
        if kind == "truncated":
            buf = io.BytesIO()
            np.savez(buf, X_train=X, y_train=y, X_test=Xt, y_test=yt)
            content = buf.getvalue()
        else:
            content = _checkpoint_bytes()
        return raw(content[: draw(st.integers(0, len(content) - 1))]), not_npz
    if kind == "bytes":
        return raw(draw(st.binary(max_size=64))), not_npz
    if kind == "text":
        return raw(draw(st.text(max_size=64)).encode("utf-8")), not_npz
    if kind == "npy":
        return lambda path: np.save(open(path, "wb"), X), ["a single .npy array, not an .npz archive"]
    if kind == "wrong keys":
        keys = draw(st.sets(st.sampled_from(["x", "Y", "X_train", "y_train", "X_test", "data", "X_val"])))
        assume(not {"X_train", "y_train", "X_test", "y_test"} <= keys)
        arrays = {k: X for k in keys}
        return savez(**arrays), ["must hold arrays X_train, y_train, X_test, y_test (or X, y)", "but not"]
    if kind == "lengths":
        m = draw(st.integers(0, 14).filter(lambda m: m != n))
        return savez(X_train=X, y_train=np.arange(m) % 3, X_test=Xt, y_test=yt), [
            f"X_train has {n} samples (rows) but y_train has {m} labels"
        ]
    if kind == "nonfinite":
        X = X.astype(np.float64)
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))
        X[i, j] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return savez(X=X, y=y), [f"X must be finite; X[{i}, {j}] is {X[i, j]}"]
    if kind == "negative":
        i = draw(st.integers(0, n - 1))
        y = y.copy()
        y[i] = draw(st.integers(-(2**31), -1))
        return savez(X_train=X, y_train=y, X_test=Xt, y_test=yt), [
            f"y_train[{i}] = {y[i]}: labels must be class indices 0, 1, 2, ..."
        ]
    if kind == "single class":
        c = draw(st.integers(0, 5))
        return savez(X_train=X, y_train=np.full(n, c), X_test=Xt, y_test=yt), [f"a single class ({c})"]
    if kind == "unseen":  # the last test label never occurs in training: a warning, or, alone, a refusal
        yt = yt.copy()
        yt[-1] = 7
        expected = "warn" if len(yt) > 1 else ["none of the test labels (7) occurs in the training labels"]
        return savez(X_train=X, y_train=y, X_test=Xt, y_test=yt), expected
    if kind == "all unseen":
        return savez(X_train=X, y_train=y, X_test=Xt, y_test=yt + 5), ["none of the test labels"]
    if kind == "label dtype":
        dtype = draw(st.sampled_from([np.float64, np.bool_, np.complex128, "U2"]))
        return savez(X=X, y=y.astype(dtype)), ["y must hold integer class labels 0, 1, 2, ...; got dtype"]
    if kind == "feature dtype":
        dtype = draw(st.sampled_from([np.complex128, "U2", "datetime64[s]"]))
        return savez(X=X.astype(dtype), y=y), ["X must hold real numbers; got dtype"]
    if kind == "ndim":
        which = draw(st.sampled_from(["X1", "X3", "y2"]))
        if which == "X1":
            return savez(X=X[:, 0], y=y), [f"X must be 2-D, (N samples, D features); got shape ({n},)"]
        if which == "X3":
            return savez(X=X[:, :, None], y=y), ["X must be 2-D, (N samples, D features); got shape"]
        return savez(X=X, y=y[:, None]), [f"y must be 1-D, one label per sample; got shape ({n}, 1)"]
    if kind == "features":
        return savez(X_train=X, y_train=y, X_test=np.ones((2, d + 1)), y_test=y[:2]), [
            f"X_train has {d} features but X_test has {d + 1}"
        ]
    if kind == "no samples":
        return savez(X_train=X[:0], y_train=y[:0], X_test=Xt, y_test=yt), ["X_train has no samples"]
    if kind == "huge label":
        y = y.copy()
        y[0] = 2**40
        return savez(X=X, y=y), [
            "y[0] = 1099511627776: labels must be class indices 0, 1, 2, ... below 2**31"
        ]
    if kind == "one sample":
        return savez(X=X[:1], y=y[:1]), ["X and y hold 1 sample; at least 2 are needed"]
    if kind == "objects":
        return savez(X=X.astype(object), y=y), ["array 'X' holds Python objects"]
    assert kind == "checkpoint"
    return lambda path: checkpoint.save(path, MLP([d, 2])), ["a manual-bp checkpoint, not a data set"]


@fixtures
@given(case=bad_data())
def test_malformed_data_files_are_refused_naming_the_problem(case, tmp_path, stubbed, capsys):
    write, expected = case
    data, save = str(tmp_path / "data.npz"), str(tmp_path / "model.npz")
    for path in (data, save):
        if os.path.exists(path):
            os.remove(path)
    write(data)
    status, out, err, plan = run(["train", "mlp", "--data", data, "--save", save], capsys)
    assert not os.path.exists(save)
    if expected == "warn":
        assert status == "started"
        (line,) = err.splitlines()
        assert line.startswith(f"manual-bp: warning: --data {data}: ") and "never seen in training" in line
        for name in plan.settings["setups"]:  # the header names the sizes that will run
            assert str(plan.settings["sizes"][name]) in "\n".join(plan.header)
        return
    line = refusal(status, out, err)
    assert line.startswith(f"manual-bp: error: --data {data}: ") and "allow_pickle" not in line
    assert any(fragment in line for fragment in expected), (line, expected)


# ---------------------------------------------------------------------------------------------- text files
@st.composite
def text_files(draw):
    text = draw(st.one_of(st.text(max_size=40), st.text(alphabet="abc \n", min_size=90, max_size=200)))
    content = text.encode("utf-8")
    if draw(st.booleans()):  # corrupt it: a byte that cannot start or continue a UTF-8 character there
        at = draw(st.integers(0, len(content)))
        content = (
            content[:at] + bytes([draw(st.sampled_from([0x80, 0xBF, 0xC0, 0xE9, 0xF5, 0xFF]))]) + content[at:]
        )
    return content


@fixtures
@given(content=text_files())
def test_text_files_are_refused_naming_file_and_offset(content, tmp_path, stubbed, capsys):
    path = str(tmp_path / "corpus.txt")
    with open(path, "wb") as f:
        f.write(content)
    status, out, err, plan = run(["train", "lm", "--text", path, "--hidden", "4"], capsys)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = refusal(status, out, err)
        bad = content[exc.start : exc.start + 1].hex()
        assert line.startswith(
            f"manual-bp: error: --text {path}: not UTF-8 text: byte 0x{bad} at offset {exc.start}"
        )
        return
    if len(text) < 100:
        assert f"must hold at least 100 characters; got {len(text)}" in refusal(status, out, err)
    elif len(set(text)) < 2:
        assert "a single distinct character" in refusal(status, out, err)
    else:
        assert status == "started" and plan.settings["vocabulary"] == len(set(text))


# ---------------------------------------------------------------------------------------------- checkpoints
@st.composite
def existing_outputs(draw):
    """``(content of the file already at --save, may it be replaced)``."""
    kind = draw(st.sampled_from(["checkpoint", "truncated checkpoint", "bytes", "text", "empty", "data"]))
    if kind == "empty":
        return b"", True
    if kind in ("bytes", "text"):
        content = draw(
            st.binary(min_size=1, max_size=64) if kind == "bytes" else st.text(min_size=1).map(str.encode)
        )
        return content, False
    buf = io.BytesIO()
    if kind == "data":
        np.savez(buf, X=np.zeros((3, 2)), y=np.arange(3))
        return buf.getvalue(), False
    with zipfile.ZipFile(
        buf, "w"
    ) as z:  # stands in for a checkpoint: what the check reads is the member list
        z.writestr("meta.npy", b"\x93NUMPY")
        z.writestr("params/W1.npy", b"\x93NUMPY")
    content = buf.getvalue()
    if kind == "checkpoint":
        return content, True
    return content[: draw(st.integers(1, len(content) - 1))], False


@fixtures
@given(case=existing_outputs(), task=st.sampled_from(["mlp", "lm"]))
def test_save_replaces_only_a_checkpoint(case, task, tmp_path, stubbed, capsys):
    content, replaceable = case
    target = str(tmp_path / "model.npz")
    with open(target, "wb") as f:
        f.write(content)
    status, out, err, _ = run(["train", task, "--quick", "--save", target], capsys)
    if replaceable:
        assert status == "started", err
    else:
        assert f"--save {target}: exists and is not a manual-bp checkpoint" in refusal(status, out, err)
    assert open(target, "rb").read() == content  # validation writes nothing
