"""The tasks behind ``manual-bp train`` and ``manual-bp vanishing``: real data, no download.

Each task returns a plain dict (what ``--json`` prints) and reports progress through ``log`` (a print-like
callable). ``quick=True`` shrinks every budget to seconds (the tests use it) without changing the code path.
"""

from __future__ import annotations

import time

import numpy as np

from . import checkpoint, datasets
from .gru import GRU
from .lstm import LSTM
from .mlp import MLP
from .optim import SGD, Adam, ExponentialLR
from .recurrent import vanishing_gradients
from .rnn import RNN
from .training import evaluate, evaluate_stream, fit, fit_stream

RECURRENT = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
LN2 = float(np.log(2.0))


def _silent(*args, **kwargs):
    pass


def make_recurrent(name, input_size, hidden_size, output_size, loss="cross_entropy", seed=0):
    """``rnn`` (tanh), ``lstm`` or ``gru`` with the library's default initialisation."""
    if name not in RECURRENT:
        raise ValueError(f"model must be one of {sorted(RECURRENT)}; got {name!r}")
    return RECURRENT[name](input_size, hidden_size, output_size, loss=loss, seed=seed)


# ---------------------------------------------------------------------------------------------- digits
#: the configurations ``train mlp`` runs, in order: the seed's own set-up, then the best one documented
MLP_SETUPS = {
    "seed": dict(
        description="the seed's set-up: [64, 30, 10], sigmoid, squared error, plain SGD (lr 3.0, batch 10)",
        sizes=[64, 30, 10],
        hidden="sigmoid",
        output="sigmoid",
        loss="squared_error",
        optimizer=("sgd", dict(lr=3.0)),
        batch_size=10,
        epochs=60,
    ),
    "best": dict(
        description="[64, 128, 10], tanh, softmax + cross-entropy, SGD with Nesterov momentum 0.9 "
        "(lr 0.05, batch 32, weight decay 1e-4)",
        sizes=[64, 128, 10],
        hidden="tanh",
        output="softmax",
        loss="cross_entropy",
        optimizer=("nesterov", dict(lr=0.05, momentum=0.9, weight_decay=1e-4)),
        batch_size=32,
        epochs=60,
    ),
}


def _optimizer(kind, params, hyper):
    if kind == "sgd":
        return SGD(params, **hyper)
    if kind == "nesterov":
        return SGD(params, nesterov=True, **hyper)
    if kind == "adam":
        return Adam(params, **hyper)
    raise ValueError(f"unknown optimizer {kind!r}")


def train_mlp(
    data=None, epochs=None, quick=False, seed=0, progress=False, log=_silent, setups=None, save=None
):
    """Train the digits classifiers of ``MLP_SETUPS`` and report held-out test accuracy for each.

    data : path of a ``.npz`` (see ``datasets.load_npz``) or None for scikit-learn's 8x8 digits.
    """
    if data is None:
        X_train, y_train, X_test, y_test = datasets.load_digits(seed=seed)
        source = "scikit-learn 8x8 digits"
    else:
        X_train, y_train, X_test, y_test = datasets.load_npz(data, seed=seed)
        source = str(data)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    if quick:  # a small subset and a few epochs: seconds, the same code path
        X_train, y_train = X_train[:300], y_train[:300]
    log(
        f"data: {source}: {len(X_train)} training and {len(X_test)} test samples, "
        f"{X_train.shape[1]} features, {n_classes} classes"
    )
    results = []
    for name in setups or MLP_SETUPS:
        s = MLP_SETUPS[name]
        sizes = [X_train.shape[1]] + s["sizes"][1:-1] + [n_classes]
        net = MLP(sizes, s["hidden"], s["output"], s["loss"], seed=seed)
        if s["loss"] == "cross_entropy":
            Y_train = y_train
        else:
            Y_train = np.eye(n_classes)[y_train]  # one-hot rows for squared error, as the seed
        kind, hyper = s["optimizer"]
        opt = _optimizer(kind, net.params, hyper)
        n_epochs = epochs or (5 if quick else s["epochs"])
        t0 = time.perf_counter()
        history = fit(
            net,
            opt,
            X_train,
            Y_train,
            epochs=n_epochs,
            batch_size=s["batch_size"],
            seed=seed,
            progress=progress,
        )
        seconds = time.perf_counter() - t0
        test_acc = float((net.predict(X_test) == y_test).mean())
        train_acc = float((net.predict(X_train) == y_train).mean())
        log(
            f"{name:5s} {s['description']}: {n_epochs} epochs in {seconds:.1f} s, "
            f"train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}"
        )
        results.append(
            {
                "setup": name,
                "description": s["description"],
                "sizes": sizes,
                "epochs": n_epochs,
                "first_loss": history[0]["loss"],
                "final_loss": history[-1]["loss"],
                "train_accuracy": train_acc,
                "test_accuracy": test_acc,
                "seconds": seconds,
            }
        )
    if save is not None:
        checkpoint.save(save, net, opt, extra={"task": "mlp", "setup": name, "test_accuracy": test_acc})
        log(f"saved the {name!r} set-up's model and optimizer to {save}")
    return {
        "task": "mlp",
        "data": source,
        "n_train": len(X_train),
        "n_test": len(X_test),
        "seed": seed,
        "quick": quick,
        "results": results,
    }


# ------------------------------------------------------------------------------------------- language model
def sample_text(model, vocab, prime: str, length: int, rng, temperature=0.8) -> str:
    """Generate ``length`` characters after ``prime``, feeding each sample back in, state carried along."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    ids = vocab.encode(prime)
    P, S = model.forward(ids.reshape(-1, 1))
    state = tuple(s[-1] for s in S) if isinstance(S, tuple) else S[-1]
    p = P[-1, 0]
    out = []
    for _ in range(length):
        logits = np.log(np.maximum(p, 1e-300)) / temperature
        q = np.exp(logits - logits.max())
        q /= q.sum()
        i = int(rng.choice(len(q), p=q))
        out.append(i)
        P, S = model.forward(np.array([[i]]), h0=state)
        state = tuple(s[-1] for s in S) if isinstance(S, tuple) else S[-1]
        p = P[-1, 0]
    return vocab.decode(out)


def train_lm(
    model="lstm",
    text=None,
    epochs=None,
    hidden=128,
    chunk_length=50,
    n_streams=16,
    lr=1e-2,
    max_chars=None,
    quick=False,
    seed=0,
    sample_length=300,
    progress=False,
    log=_silent,
    save=None,
):
    """A character-level language model on one long text, trained by truncated BPTT with carried state.

    text : path of a UTF-8 text file, or None for the Python documentation topics in ``pydoc_data``.
    Reports bits per character on the held-out last 10% of the text after every epoch, then a sample.
    """
    if text is None:
        corpus, source = datasets.python_docs_text(), "Python documentation (pydoc_data)"
    else:
        with open(text, encoding="utf-8") as f:
            corpus, source = f.read(), str(text)
    if max_chars is None:
        max_chars = 20_000 if quick else 200_000
    corpus = corpus[:max_chars]
    if len(corpus) < 100:
        raise ValueError(f"the text must hold at least 100 characters; {source} has {len(corpus)}")
    if quick:
        hidden, epochs = min(hidden, 32), epochs or 2
    epochs = epochs or 5
    vocab = datasets.CharVocab(corpus)
    ids = vocab.encode(corpus)
    split = int(len(ids) * 0.9)
    train, held = ids[:split], ids[split:]
    n_val_streams = max(1, min(n_streams, (len(held) - 1) // chunk_length))
    net = make_recurrent(model, len(vocab), hidden, len(vocab), seed=seed)
    opt = Adam(net.params, lr=lr, clip_norm=5.0)
    schedule = ExponentialLR(opt, gamma=0.7)  # lr 0.01, 0.007, 0.0049, ...: settles after the fast start
    log(
        f"data: {source}: {len(train)} training and {len(held)} held-out characters, "
        f"vocabulary {len(vocab)}; "
        f"{model.upper()} H={hidden}, chunks of {chunk_length} x {n_streams} streams, Adam lr {lr} "
        "(x0.7 each epoch), clip 5"
    )
    before = evaluate_stream(net, held[:-1], held[1:], chunk_length, n_val_streams)["loss"] / LN2
    log(
        f"epoch 0: held-out {before:.3f} bits per character (untrained; log2({len(vocab)}) = "
        f"{np.log2(len(vocab)):.3f})"
    )
    epochs_out = []

    def report(record):
        bpc = record["val_loss"] / LN2
        epochs_out.append({"epoch": record["epoch"], "train_bpc": record["loss"] / LN2, "val_bpc": bpc})
        log(
            f"epoch {record['epoch']}: train {record['loss'] / LN2:.3f}, "
            f"held-out {bpc:.3f} bits per character"
        )

    t0 = time.perf_counter()
    fit_stream(
        net,
        opt,
        train[:-1],
        train[1:],
        epochs=epochs,
        chunk_length=chunk_length,
        n_streams=n_streams,
        validation=(held[:-1], held[1:]),
        scheduler=schedule,
        progress=progress,
        callback=report,
    )
    seconds = time.perf_counter() - t0
    prime = "The " if set("The ") <= set(vocab.chars) else corpus[:4]
    sample = prime + sample_text(
        net, vocab, prime, 60 if quick else sample_length, np.random.default_rng(seed)
    )
    log(f"sample: {sample}")
    if save is not None:
        extra = {"task": "lm", "vocabulary": "".join(vocab.chars), "val_bpc": epochs_out[-1]["val_bpc"]}
        checkpoint.save(save, net, opt, schedule, extra=extra)
        log(f"saved the model, optimizer and schedule to {save}")
    return {
        "task": "lm",
        "model": model,
        "data": source,
        "n_train": len(train),
        "n_held_out": len(held),
        "vocabulary": len(vocab),
        "hidden": hidden,
        "seed": seed,
        "quick": quick,
        "untrained_bpc": before,
        "epochs": epochs_out,
        "seconds": seconds,
        "sample": sample,
    }


# ------------------------------------------------------------------------------------------- adding problem
ADDING_BASELINE = 1 / 6  # MSE of always predicting 1, the mean of the sum of two U(0, 1)


def train_adding(
    models=("rnn", "lstm", "gru"),
    T=100,
    steps=None,
    hidden=64,
    batch_size=50,
    lr=1e-2,
    quick=False,
    seed=0,
    log=_silent,
):
    """The adding problem at length T: each model trained for the same budget of Adam steps on fresh batches.

    Reports the test MSE (2,000 fresh sequences) against the 0.167 of predicting the mean.
    """
    steps = steps or (60 if quick else 2000)
    if quick:
        T, hidden = min(T, 20), min(hidden, 16)
    results = []
    rng_test = np.random.default_rng([seed, 1])
    X_test, Y_test, m_test = datasets.adding_problem(T, 200 if quick else 2000, rng_test)
    for name in models:
        net = make_recurrent(name, 2, hidden, 1, loss="squared_error", seed=seed)
        if (
            name == "lstm"
        ):  # forget-gate bias 1: remember by default (Gers et al. 2000; Jozefowicz et al. 2015)
            H = hidden
            net.params["b"][H : 2 * H] = 1.0
        opt = Adam(net.params, lr=lr, clip_norm=1.0)
        rng = np.random.default_rng([seed, 2])
        t0 = time.perf_counter()
        curve = []
        for step in range(1, steps + 1):
            X, Y, m = datasets.adding_problem(T, batch_size, rng)
            E, g = net.loss_and_grad(X, Y, mask=m)
            opt.step(g)
            if step % max(1, steps // 10) == 0 or step == steps:
                mse = 2 * evaluate(net, X_test, Y_test, mask=m_test)["loss"]  # E = 1/2 (y - o)^2 per sequence
                curve.append({"step": step, "test_mse": mse})
                log(f"{name.upper():4s} T={T} step {step}: test MSE {mse:.4f}")
        seconds = time.perf_counter() - t0
        results.append({"model": name, "test_mse": curve[-1]["test_mse"], "curve": curve, "seconds": seconds})
    return {
        "task": "adding",
        "T": T,
        "steps": steps,
        "hidden": hidden,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "quick": quick,
        "baseline_mse": ADDING_BASELINE,
        "results": results,
    }


# ---------------------------------------------------------------------------------------------- vanishing
def vanishing(
    T=100, hidden=32, input_size=10, output_size=10, seed=0, forget_bias=1.0, plot=None, log=_silent
):
    """``||dE_T/ds_k||`` against T - k for RNN, LSTM and GRU on the same random sequence, default init.

    ``forget_bias`` (0 to skip) adds one more LSTM whose forget-gate bias is raised by that much: the usual
    remedy. Returns the norms and, when ``plot`` is a path and matplotlib is installed, writes a PNG there.
    """
    rng = np.random.default_rng(seed)
    X = rng.integers(0, input_size, (T, 1))
    Y = rng.integers(0, output_size, (T, 1))
    curves = {}
    for name in RECURRENT:
        net = make_recurrent(name, input_size, hidden, output_size, seed=seed)
        norms = vanishing_gradients(net, X, Y)
        curves[name] = {part: v.tolist() for part, v in norms.items()}
    # The same LSTM with its forget-gate bias raised by `forget_bias`: f = sigmoid(. + 1) ~ 0.73 instead of
    # ~0.5, and the cell-state path dc_{k-1} = dc_k * f decays that much more slowly.
    if forget_bias:
        net = make_recurrent("lstm", input_size, hidden, output_size, seed=seed)
        net.params["b"][hidden : 2 * hidden] += forget_bias
        norms = vanishing_gradients(net, X, Y)
        curves[f"lstm+fb{forget_bias:g}"] = {part: v.tolist() for part, v in norms.items()}
    written = None
    if plot is not None:
        written = _plot_vanishing(curves, T, plot)
    return {
        "task": "vanishing",
        "T": T,
        "hidden": hidden,
        "seed": seed,
        "forget_bias": forget_bias,
        "curves": curves,
        "plot": written,
    }


def _plot_vanishing(curves, T, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    lag = np.arange(T, -1, -1)  # T - k for k = 0..T
    for name, parts in curves.items():
        for part, values in parts.items():
            label = f"{name.upper().replace('+FB', ', forget bias +')}  ||dE_T/d{part}_k||"
            values = np.asarray(values, dtype=float)
            ax.semilogy(
                lag,
                np.where(values > 0, values, np.nan),
                label=label,
                lw=1.6,
                ls="-" if part == "h" else "--",
            )
    ax.set_xlabel("T - k  (steps back from the last one)")
    ax.set_ylabel("gradient norm (log scale)")
    ax.set_title(f"The vanishing gradient: one random sequence, T = {T}, default initialisation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
