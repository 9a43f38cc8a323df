"""manual_bp.checkpoint: round trips, exact resume, atomic writes, no pickle, clear errors for bad files."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

import manual_bp
from manual_bp import MLP, checkpoint
from manual_bp.optim import SGD, Adam, AdamW, ExponentialLR, StepLR
from manual_bp.training import fit, fit_stream


def equal(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def same_optimizer(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return (
        type(a) is type(b)
        and sa["config"] == sb["config"]
        and sa["step_count"] == sb["step_count"]
        and set(sa["state"]) == set(sb["state"])
        and all(equal(sa["state"][k], sb["state"][k]) for k in sa["state"])
    )


def data(seed=0, N=40):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, N)
    X = rng.standard_normal((N, 4)) + 2.0 * np.eye(3, 4)[y]
    return X, y


def trained(dtype=np.float64, opt_cls=Adam, sched=True):
    X, y = data()
    net = MLP([4, 6, 3], "tanh", "softmax", "cross_entropy", dtype=dtype, seed=1)
    opt = opt_cls(net.params, lr=0.05)
    scheduler = StepLR(opt, step_size=1, gamma=0.5) if sched else None
    fit(net, opt, X, y, epochs=2, batch_size=8, scheduler=scheduler, progress=False)
    return net, opt, scheduler


# ---------------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("opt_cls", [SGD, Adam, AdamW])
def test_round_trip(tmp_path, dtype, opt_cls):
    net, opt, sched = trained(dtype, opt_cls)
    if opt_cls is SGD:  # a momentum buffer to save as well
        opt = SGD(net.params, lr=0.1, momentum=0.9, nesterov=True, clip_norm=1.0)
        opt.step(net.loss_and_grad(*data())[1])
        sched = ExponentialLR(opt, gamma=0.9)
        sched.step()
    extra = {"epoch": 2, "note": "résumé", "nested": {"a": [1, 2.5, None]}, "counts": np.arange(3)}
    path = tmp_path / "ck.npz"
    checkpoint.save(path, net, opt, sched, extra=extra)
    ck = checkpoint.load(path)
    assert type(ck.model) is MLP and ck.model.config() == net.config()
    assert equal(ck.model.params, net.params)
    assert ck.optimizer.params is ck.model.params
    assert same_optimizer(ck.optimizer, opt)
    assert ck.scheduler.state_dict() == sched.state_dict() and ck.scheduler.optimizer is ck.optimizer
    assert (
        ck.extra["epoch"] == 2
        and ck.extra["note"] == "résumé"
        and ck.extra["nested"] == {"a": [1, 2.5, None]}
    )
    assert np.array_equal(ck.extra["counts"], np.arange(3))
    with np.load(path, allow_pickle=False) as z:  # a plain npz anyone can read
        assert np.array_equal(z["params/W1"], net.params["W1"])


def test_model_alone_and_every_recurrent_class(tmp_path):
    net = MLP([3, 2], "identity", "identity", "squared_error", seed=None)
    checkpoint.save(tmp_path / "m.npz", net)
    ck = checkpoint.load(tmp_path / "m.npz")
    assert (
        ck.optimizer is None
        and ck.scheduler is None
        and ck.extra == {}
        and equal(ck.model.params, net.params)
    )
    for name in ("RNN", "LSTM", "GRU"):
        if not hasattr(manual_bp, name):
            continue
        m = getattr(manual_bp, name)(5, 3, 4, loss="squared_error", dtype=np.float32, seed=2)
        opt = Adam(m.params, lr=0.01)
        checkpoint.save(tmp_path / f"{name}.npz", m, opt)
        ck = checkpoint.load(tmp_path / f"{name}.npz")
        assert (
            type(ck.model) is type(m) and ck.model.config() == m.config() and equal(ck.model.params, m.params)
        )
        assert same_optimizer(ck.optimizer, opt)


# ---------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_resume_continues_exactly(tmp_path, dtype):
    """3 epochs straight == 1 epoch, save, load into fresh objects, 2 more epochs: equal bits, not close."""
    X, y = data(N=37)
    Xv, yv = data(seed=1, N=10)

    def fresh():
        net = MLP([4, 6, 3], "relu", "softmax", "cross_entropy", dtype=dtype, seed=3)
        opt = Adam(net.params, lr=0.02, amsgrad=True, weight_decay=1e-3, clip_norm=2.0)
        return net, opt, StepLR(opt, step_size=1, gamma=0.7)

    kw = dict(batch_size=6, seed=11, validation=(Xv, yv), progress=False)
    net, opt, sched = fresh()
    straight = fit(net, opt, X, y, epochs=3, scheduler=sched, **kw)

    net1, opt1, sched1 = fresh()
    path = tmp_path / "run.npz"
    fit(net1, opt1, X, y, epochs=1, scheduler=sched1, callbacks=[checkpoint.EveryEpoch(path)], **kw)
    del net1, opt1, sched1
    ck = checkpoint.load(path)
    resume = ck.extra["fit"]
    assert resume["initial_epoch"] == 1 and resume["seed"] == 11
    resumed = fit(
        ck.model,
        ck.optimizer,
        X,
        y,
        epochs=3,
        scheduler=ck.scheduler,
        validation=(Xv, yv),
        progress=False,
        **resume,
    )
    assert equal(ck.model.params, net.params)
    assert same_optimizer(ck.optimizer, opt)
    assert ck.scheduler.state_dict() == sched.state_dict()
    assert resumed == straight


def test_stream_resume_continues_exactly(tmp_path):
    rng = np.random.default_rng(0)
    text = rng.integers(0, 6, 90)

    def fresh():
        m = manual_bp.RNN(6, 5, 6, seed=4)
        return m, SGD(m.params, lr=0.3, momentum=0.9)

    kw = dict(chunk_length=7, n_streams=2, progress=False)
    m, opt = fresh()
    straight = fit_stream(m, opt, text[:-1], text[1:], epochs=2, **kw)
    m1, opt1 = fresh()
    saver = checkpoint.EveryEpoch(tmp_path / "lm.npz")
    fit_stream(m1, opt1, text[:-1], text[1:], epochs=1, callbacks=[saver], **kw)
    ck = checkpoint.load(tmp_path / "lm.npz")
    resumed = fit_stream(
        ck.model, ck.optimizer, text[:-1], text[1:], epochs=2, progress=False, **ck.extra["fit_stream"]
    )
    assert equal(ck.model.params, m.params) and same_optimizer(ck.optimizer, opt) and resumed == straight


# ---------------------------------------------------------------------------------------------- atomic writes
def test_crash_mid_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    net, opt, sched = trained()
    path = tmp_path / "ck.npz"
    checkpoint.save(path, net, opt, sched, extra={"epoch": 1})
    good = path.read_bytes()

    def crash(f, arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    net.params["W1"] += 1.0  # a newer state that never gets written
    monkeypatch.setattr(checkpoint, "_write_npz", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, net, opt, sched, extra={"epoch": 2})
    monkeypatch.undo()

    def no_rename(src, dst):
        raise KeyboardInterrupt  # killed between write and rename

    monkeypatch.setattr(checkpoint.os, "replace", no_rename)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, net, opt, sched, extra={"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert checkpoint.load(path).extra["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]  # no temp files left behind


# ---------------------------------------------------------------------------------------------- bad files
@pytest.fixture()
def saved(tmp_path):
    net, opt, sched = trained()
    path = tmp_path / "ck.npz"
    checkpoint.save(path, net, opt, sched, extra={"epoch": 2})
    return path


def rewrite(path, change):
    """Read every array, let ``change(arrays, meta)`` edit them, write a new npz (meta re-serialised)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    change(arrays, meta)
    out = path.with_name("bad.npz")
    np.savez(out, meta=np.array(json.dumps(meta)), **arrays)
    return out


def test_truncated_and_empty_files(saved):
    raw = saved.read_bytes()
    for n in (0, 10, len(raw) // 2, len(raw) - 30):
        saved.write_bytes(raw[:n])
        with pytest.raises(ValueError, match="not a (readable )?manual-bp checkpoint|cannot be read"):
            checkpoint.load(saved)


def test_a_file_that_is_not_an_npz_says_so_plainly(tmp_path):
    """A text file (or one array saved with np.save) gets no pickle advice: it is plainly not a checkpoint."""
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    expected = (r"notes\.txt is not a manual-bp checkpoint: checkpoints are \.npz \(zip\) archives, and this "
                r"is a file starting with b'hell'")
    with pytest.raises(ValueError, match=expected) as info:
        checkpoint.load(text)
    assert "pickle" not in str(info.value)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="this is an empty file"):
        checkpoint.load(empty)


def test_save_checks_the_path_before_any_work_and_names_it(tmp_path):
    net, opt, sched = trained()
    missing = tmp_path / "missing" / "m.npz"
    with pytest.raises(FileNotFoundError, match=f"cannot write {missing}: the directory .* does not exist"):
        checkpoint.save(missing, net, opt)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.EveryEpoch(missing)
    with pytest.raises(IsADirectoryError, match=f"cannot write {tmp_path}: it is a directory"):
        checkpoint.save(tmp_path, net)
    with pytest.raises(TypeError, match="path must be a str or os.PathLike; got int 3"):
        checkpoint.save(3, net)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_fit_with_a_checkpoint_in_a_missing_directory_changes_nothing(tmp_path):
    """The callback is made (and fails) before fit starts: no parameter moves, nothing is written."""
    X, y = data(N=12)
    net = MLP([4, 6, 3], "relu", "softmax", "cross_entropy", seed=3)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(FileNotFoundError, match="missing"):
        saver = checkpoint.EveryEpoch(tmp_path / "missing" / "r.npz")
        fit(net, SGD(net.params, lr=0.1), X, y, epochs=2, callbacks=[saver])
    assert equal(net.params, before)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoints_honour_the_umask(tmp_path, umask):
    net, _, _ = trained()
    old = os.umask(umask)
    try:
        checkpoint.save(tmp_path / "ck.npz", net)
    finally:
        os.umask(old)
    assert (tmp_path / "ck.npz").stat().st_mode & 0o777 == 0o666 & ~umask


def test_every_epoch_saves_what_resumes_the_run(tmp_path):
    X, y = data(N=12)
    net = MLP([4, 6, 3], "relu", "softmax", "cross_entropy", seed=3)
    opt = SGD(net.params, lr=0.1)
    seen = []
    fit(net, opt, X, y, epochs=2, batch_size=5, seed=4, callbacks=[checkpoint.EveryEpoch(tmp_path / "r.npz"),
                                                                    lambda record, run: seen.append(run)])
    ck = checkpoint.load(tmp_path / "r.npz")
    assert ck.extra["fit"] == {"seed": 4, "batch_size": 5, "shuffle": True, "initial_epoch": 2,
                               "history": seen[-1].history}
    assert seen[0].resume["fit"]["initial_epoch"] == 1 and len(seen[0].resume["fit"]["history"]) == 1
    assert seen[0].model is net and seen[0].optimizer is opt and seen[0].scheduler is None


def test_corrupted_bytes_never_load_silently(saved):
    """Flip bytes all over the file: each load either raises ValueError or returns exactly the saved contents
    (a flip in a zip field nobody reads, such as a local header's timestamp, changes nothing)."""
    raw = bytearray(saved.read_bytes())
    ref = checkpoint.load(saved)
    caught = 0
    for pos in np.linspace(0, len(raw) - 1, 60).astype(int):
        bad = bytearray(raw)
        bad[pos] ^= 0x5A
        saved.write_bytes(bytes(bad))
        try:
            ck = checkpoint.load(saved)
        except ValueError:
            caught += 1
            continue
        assert equal(ck.model.params, ref.model.params) and same_optimizer(ck.optimizer, ref.optimizer), pos
        assert ck.extra == ref.extra, pos
    assert caught >= 50, caught  # 56 of 60 with numpy 2.4


def test_corrupted_array_bytes_caught_by_checksum(saved):
    """A consistent npz (valid zip CRCs) whose array no longer matches the SHA-256 saved with it."""

    def flip(arrays, meta):
        arrays["params/W1"] = arrays["params/W1"].copy()
        arrays["params/W1"][0, 0] += 1e-9

    with pytest.raises(ValueError, match=re.escape("'params/W1' is corrupted (its SHA-256 does not match")):
        checkpoint.load(rewrite(saved, flip))


def _set(path, value):
    def change(arrays, meta):
        node = meta
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return change


def _drop_param(arrays, meta):
    del arrays["params/b2"], meta["arrays"]["params/b2"]


def _wrong_shape(arrays, meta):
    arrays["params/W2"] = np.zeros((3, 7))
    meta["arrays"]["params/W2"] = checkpoint._describe(arrays["params/W2"])


def _wrong_dtype(arrays, meta):
    arrays["params/W2"] = arrays["params/W2"].astype(np.float32)
    meta["arrays"]["params/W2"] = checkpoint._describe(arrays["params/W2"])


def _stray_array(arrays, meta):
    arrays["params/W9"] = np.zeros(2)
    meta["arrays"]["params/W9"] = checkpoint._describe(arrays["params/W9"])


def _unlisted_array(arrays, meta):
    arrays["params/W9"] = np.zeros(2)


def _wrong_buffer(arrays, meta):
    arrays["optimizer/exp_avg/W1"] = np.zeros((6, 3))
    meta["arrays"]["optimizer/exp_avg/W1"] = checkpoint._describe(arrays["optimizer/exp_avg/W1"])


@pytest.mark.parametrize(
    "change, message",
    [
        (
            _set(["model", "config", "sizes"], [4, 7, 3]),
            r"params/W1 must have shape \(7, 4\) and dtype float64",
        ),
        (
            _set(["model", "config", "hidden_activation"], "swish"),
            r"cannot be built from the saved config: "
            r"hidden_activation must be one of",
        ),
        (_set(["model", "config", "depth"], 3), "cannot be built from the saved config"),
        (_set(["model", "class"], "Sequential"), "model class 'Sequential' is not a manual_bp model"),
        (_set(["model", "class"], "compare_grads"), "model class 'compare_grads' is not a manual_bp model"),
        (_set(["format"], "something-else"), "format must be 'manual-bp-checkpoint'; got 'something-else'"),
        (_set(["version"], 99), "checkpoint version must be 1; got 99"),
        (_set(["optimizer", "class"], "LBFGS"), "optimizer class must be one of"),
        (_set(["optimizer", "config", "lr"], -1.0), "lr must be >= 0.0; got -1.0"),
        (_set(["optimizer", "step_count"], -2), "step_count'] must be >= 0; got -2"),
        (_set(["scheduler", "state", "last_epoch"], "x"), "last_epoch'] must be an integer"),
        (_drop_param, re.escape("has parameters ['W1', 'W2', 'b1', 'b2']; the file has ['W1', 'W2', 'b1']")),
        (_wrong_shape, r"params/W2 must have shape \(3, 6\) and dtype float64 .*; got shape \(3, 7\)"),
        (
            _wrong_dtype,
            r"params/W2 must have shape \(3, 6\) and dtype float64 .*; got shape \(3, 6\), dtype float32",
        ),
        (_stray_array, re.escape("the file has ['W1', 'W2', 'W9', 'b1', 'b2']")),
        (
            _unlisted_array,
            re.escape("arrays do not match the metadata; missing [], unexpected ['params/W9']"),
        ),
        (
            _wrong_buffer,
            re.escape("must have shape (6, 4) and dtype float64 like params['W1']; got shape (6, 3)"),
        ),
    ],
)
def test_mismatched_contents_give_clear_errors(saved, change, message):
    with pytest.raises(ValueError, match=message):
        checkpoint.load(rewrite(saved, change))


def test_not_a_checkpoint(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="holds one array, not an .npz archive"):
        checkpoint.load(tmp_path / "one.npy")
    np.savez(tmp_path / "plain.npz", W1=np.zeros(3))
    with pytest.raises(ValueError, match="it has no 'meta' entry"):
        checkpoint.load(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="text.npz is not a manual-bp checkpoint"):
        checkpoint.load(tmp_path / "text.npz")
    np.savez(tmp_path / "badjson.npz", meta=np.array("{not json"))
    with pytest.raises(ValueError, match="'meta' is not valid JSON"):
        checkpoint.load(tmp_path / "badjson.npz")
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "missing.npz")


class _Tripwire:
    """Unpickling one of these sets ``fired``: proof that a load never ran pickle."""

    fired = False

    def __reduce__(self):
        return (_fire, ())


def _fire():
    _Tripwire.fired = True
    return "unpickled"


def test_pickle_is_never_used(saved):
    def smuggle(arrays, meta):
        arrays["extra/payload"] = np.array([_Tripwire()], dtype=object)
        meta["extra_arrays"].append("payload")
        meta["arrays"]["extra/payload"] = {"shape": [1], "dtype": "|O", "sha256": "0" * 64}

    with pytest.raises(ValueError, match="allow_pickle=False"):
        checkpoint.load(rewrite(saved, smuggle))
    assert not _Tripwire.fired
    net = MLP([2, 1], "identity", "identity", "squared_error", seed=0)
    with pytest.raises(
        TypeError, match="must be a numeric array to be saved without pickle; got dtype object"
    ):
        checkpoint.save(saved, net, extra={"payload": np.array([_Tripwire()], dtype=object)})
    with pytest.raises(TypeError, match=r"extra\['obj'\] must hold only JSON values"):
        checkpoint.save(saved, net, extra={"obj": _Tripwire()})
    assert checkpoint.load(saved).extra == {"epoch": 2}  # the failed saves left it alone


def test_bad_save_arguments(tmp_path):
    net, opt, sched = trained()
    other = MLP([4, 6, 3], "tanh", "softmax", "cross_entropy", seed=1)

    class MyMLP(MLP):
        pass

    with pytest.raises(TypeError, match="must be a manual_bp model class"):
        checkpoint.save(tmp_path / "x.npz", MyMLP([2, 1]))
    with pytest.raises(ValueError, match="optimizer was built on a different params dict"):
        checkpoint.save(tmp_path / "x.npz", other, opt)
    with pytest.raises(ValueError, match="scheduler must be saved together with the optimizer"):
        checkpoint.save(tmp_path / "x.npz", net, None, sched)
    with pytest.raises(TypeError, match="extra must be a dict with str keys"):
        checkpoint.save(tmp_path / "x.npz", net, extra={1: 2})
    assert os.listdir(tmp_path) == []


def test_hessian_free_checkpoints_and_resumes_like_the_others(tmp_path):
    """The registry holds HessianFree: it saves, rebuilds on the loaded model and continues bit for bit."""
    from manual_bp import HessianFree

    X, y = data(N=24)

    def fresh():
        net = MLP([4, 5, 3], "tanh", "softmax", "cross_entropy", seed=2)
        return net, HessianFree(net, damping=0.5, max_cg=8)

    net, opt = fresh()
    straight = fit(net, opt, X, y, epochs=3, batch_size=12, seed=5)
    net1, opt1 = fresh()
    saver = checkpoint.EveryEpoch(tmp_path / "hf.npz")
    fit(net1, opt1, X, y, epochs=1, batch_size=12, seed=5, callbacks=[saver])
    ck = checkpoint.load(tmp_path / "hf.npz")
    assert type(ck.optimizer) is HessianFree and ck.optimizer.model is ck.model
    assert ck.optimizer.state_dict()["config"] == opt1.state_dict()["config"]
    resumed = fit(ck.model, ck.optimizer, X, y, epochs=3, **ck.extra["fit"])
    assert resumed == straight and equal(ck.model.params, net.params)
    assert all(r["lr"] is None for r in straight)
