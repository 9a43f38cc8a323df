"""``manual-bp explain``: a worked example in the seed's style, every number beside torch's.

One small model and one sample: the seed's net ``[2, 3, 2]`` (sigmoid, squared error) for ``mlp``,
logistic regression as a one-layer net (sigmoid, binary cross-entropy) for ``logreg``, and
``D, H, K = 2, 3, 2`` over T = 3 steps (softmax, cross-entropy, a non-zero initial state) for ``rnn``,
``lstm`` and ``gru``. The example's numbers come from ``model.trace`` (``manual_bp.trace``), grouped by the
equation that computes them, each equation printed as its module's docstring states it (one source: the
docstring line tagged with it). Beside every number stand torch's value for it
(``manual_bp.reference.trace``: retain_grad on torch's own modules) and the difference.

``example`` builds the model and its data; ``explain`` returns the whole worked example as plain data (what
``--json`` prints); ``format_text`` and ``format_markdown`` lay it out. Nothing here imports torch: the caller
passes torch's values (``torch_values``) or None.
"""

from __future__ import annotations

import importlib

import numpy as np

from ._validation import check_int, check_seed

#: what ``explain`` can show, and each one's default sizes
EXAMPLES = {
    "mlp": [2, 3, 2],
    "logreg": [2, 1],
    "rnn": [2, 3, 2],
    "lstm": [2, 3, 2],
    "gru": [2, 3, 2],
}
DEFAULT_T = 3
#: the modules whose docstrings state the equations a trace names (``equation_text``)
_SOURCES = ("mlp", "losses", "recurrent", "rnn", "lstm", "gru")


def check_sizes(name: str, sizes) -> list:
    """The example's layer sizes, validated: ``mlp`` at least [n0, nL]; ``logreg`` [n0] or [n0, 1];
    recurrent ``[D, H, K]`` with K >= 2 (softmax over K classes)."""
    if name not in EXAMPLES:
        raise ValueError(f"explain shows one of {', '.join(EXAMPLES)}; got {name!r}")
    if sizes is None:
        return list(EXAMPLES[name])
    sizes = [check_int(f"sizes[{i}]", n, minimum=1) for i, n in enumerate(sizes)]
    if name == "mlp" and len(sizes) < 2:
        raise ValueError(f"--sizes for mlp lists the layer widths n0,...,nL (at least 2); got {sizes}")
    if name == "logreg":
        if len(sizes) == 1:
            sizes = sizes + [1]
        if len(sizes) != 2 or sizes[1] != 1:
            raise ValueError(f"--sizes for logreg is the number of features n0 (or n0,1); got {sizes}")
    if name in ("rnn", "lstm", "gru") and (len(sizes) != 3 or sizes[2] < 2):
        raise ValueError(f"--sizes for {name} is D,H,K (input, hidden, classes; K >= 2); got {sizes}")
    return sizes


def example(name: str, sizes=None, T=None, seed=0):
    """``(model, X, Y, kwargs, description)``: the worked example's model (seeded), one sample, and the
    keyword arguments of its ``trace`` (the recurrent nets' non-zero h0)."""
    from .models import model_class

    sizes = check_sizes(name, sizes)
    seed = check_seed(seed)
    recurrent = name in ("rnn", "lstm", "gru")
    if T is not None and not recurrent:
        raise ValueError(f"--T applies to rnn, lstm and gru; got --T {T} for {name}")
    rng = np.random.default_rng(seed)
    if name == "mlp":
        model = model_class("MLP")(sizes, "sigmoid", "sigmoid", "squared_error", seed=seed)
        X, Y = rng.uniform(-1, 1, (1, sizes[0])), rng.uniform(0, 1, (1, sizes[-1]))
        text = f"the seed's net {sizes}: sigmoid layers, squared error E = 1/2 ||y - a^(L)||^2, one sample"
        return model, X, Y, {}, text
    if name == "logreg":
        model = model_class("MLP")(sizes, "sigmoid", "sigmoid", "binary_cross_entropy", seed=seed)
        X, Y = rng.uniform(-1, 1, (1, sizes[0])), rng.integers(0, 2, (1, 1)).astype(float)
        text = (f"logistic regression as a one-layer net {sizes}: a = sigmoid(w x + b), binary "
                "cross-entropy, one sample")
        return model, X, Y, {}, text
    T = DEFAULT_T if T is None else check_int("T", T, minimum=1)
    D, H, K = sizes
    model = model_class(name.upper())(D, H, K, seed=seed)
    X, Y = rng.uniform(-1, 1, (T, 1, D)), rng.integers(0, K, (T, 1))
    h0 = model.public_state(tuple(rng.uniform(-0.5, 0.5, (1, model._part_size(p))) for p in model.STATES))
    text = (f"a {name.upper()} with D={D} inputs, H={H} hidden units, K={K} classes over T={T} steps: "
            "softmax output, cross-entropy E = sum_t E_t, one sequence, a non-zero initial state")
    return model, X, Y, {"h0": h0}, text


def equation_text(tag: str) -> str:
    """The docstring line that states equation ``tag`` (its first line), from the module that implements it;
    ``""`` for the entries without an equation (the input)."""
    if tag in ("input",):
        return ""
    if tag == "loss":
        return "E = the batch mean of each sample's loss (losses.py)"
    for module in _SOURCES:
        doc = importlib.import_module(f"{__package__}.{module}").__doc__ or ""
        for line in doc.splitlines():
            if line.strip().startswith(f"({tag})"):
                return line.strip()
    return f"({tag})"


def _index_labels(shape, T, per_sample):
    """A label for each element, in the seed's style: units 1-based (as w_ij), the one sample's index dropped,
    and for recurrent arrays the step first (t = 0..T for states, 1..T for steps)."""
    labels = []
    for idx in np.ndindex(*shape):
        if per_sample and T is not None:  # time-major (T or T+1, 1, ...) or (T, 1)
            t = idx[0] if shape[0] == T + 1 else idx[0] + 1
            labels.append(",".join([f"t={t}"] + [str(i + 1) for i in idx[2:]]))
        elif per_sample:  # (1, n)
            labels.append(",".join(str(i + 1) for i in idx[1:]))
        else:
            labels.append(",".join(str(i + 1) for i in idx))
    return labels


def explain(name: str, sizes=None, T=None, seed=0, torch_values=None) -> dict:
    """The worked example as plain data (JSON-ready).

    ``torch_values``: None, or a function ``(model, X, Y, **kwargs) -> {name: array}`` giving torch's value
    of every trace entry (``manual_bp.reference.trace.trace``). Returns ``{"model", "description", "sizes",
    "T", "seed", "inputs", "params", "loss", "torch", "max_abs_diff", "equations": [{"tag", "equation",
    "entries": [{"name", "meaning", "shape", "numbers": [{"index", "ours", "torch", "diff"}]}]}]}``; torch,
    diff and max_abs_diff are None without torch values.
    """
    model, X, Y, kwargs, description = example(name, sizes, T, seed)
    tr = model.trace(X, Y, **kwargs)
    ref = None if torch_values is None else torch_values(model, X, Y, **kwargs)
    recurrent = model.BATCH_AXIS == 1
    steps = (DEFAULT_T if T is None else T) if recurrent else None
    grads = {f"dE/d{k}" for k in model.params} | {f"dE/d{k[0]}^({k[1:]})" for k in model.params}
    groups, worst = [], 0.0
    for key in tr:
        if key.startswith("dropout_mask") or key == "window":
            continue
        tag = tr.equation(key)
        if not groups or groups[-1]["tag"] != tag:
            groups.append({"tag": tag, "equation": equation_text(tag), "entries": []})
        ours = np.asarray(tr[key], dtype=np.float64)
        theirs = None if ref is None or key not in ref else np.asarray(ref[key], dtype=np.float64)
        numbers = []
        per_sample = ours.ndim > 0 and key not in grads
        for label, idx in zip(_index_labels(ours.shape, steps, per_sample), np.ndindex(*ours.shape)):
            o = float(ours[idx])
            t = None if theirs is None else float(theirs[idx])
            d = None if t is None else abs(o - t)
            if d is not None:
                worst = max(worst, d)
            numbers.append({"index": label, "ours": o, "torch": t, "diff": d})
        groups[-1]["entries"].append(
            {"name": key, "meaning": tr.meaning(key), "shape": list(ours.shape), "numbers": numbers}
        )
    return {
        "model": name,
        "description": description,
        "sizes": check_sizes(name, sizes),
        "T": steps,
        "seed": seed,
        "inputs": {"X": np.asarray(X).tolist(), "Y": np.asarray(Y).tolist(),
                   **({"h0": [np.asarray(p).tolist() for p in model.state_parts(kwargs["h0"], 1)]}
                      if "h0" in kwargs else {})},
        "params": {k: v.tolist() for k, v in model.params.items()},
        "loss": tr.loss,
        "torch": ref is not None,
        "max_abs_diff": worst if ref is not None else None,
        "equations": groups,
    }


def _num(x) -> str:
    return "" if x is None else f"{x: .10f}"


def _diff(x) -> str:
    return "" if x is None else f"{x:.1e}"


def format_text(result: dict) -> str:
    """The worked example as text: each equation, then one line per number: ours, torch's, |difference|."""
    lines = [f"manual-bp explain {result['model']}: {result['description']} (seed {result['seed']})."]
    if result["torch"]:
        lines.append("Each number is ours (NumPy, by hand), then torch's (autograd on its own modules), then "
                     f"|ours - torch|; the largest difference is {result['max_abs_diff']:.1e}.")
    else:
        lines.append("torch is not installed, so only our numbers are shown "
                     "(pip install 'manual-bp[torch]' for torch's beside them).")
    lines.append("")
    lines.append("The parameters (seeded; torch's modules hold copies):")
    for k, v in result["params"].items():
        prefix = f"  {k} = "
        text = np.array2string(np.asarray(v), precision=6, separator=", ", max_line_width=100, prefix=prefix)
        lines.append(prefix + text)
    lines.append("")
    for group in result["equations"]:
        head = group["equation"] or "the input"
        lines.append(head if head.startswith("(") else head[0].upper() + head[1:])
        for entry in group["entries"]:
            lines.append(f"  {entry['name']}: {entry['meaning']}")
            width = max(len(n["index"]) for n in entry["numbers"]) if entry["numbers"] else 0
            for n in entry["numbers"]:
                label = f"{entry['name']}[{n['index']}]" if n["index"] else entry["name"]
                row = f"    {label:<{len(entry['name']) + width + 2}}  {_num(n['ours'])}"
                if result["torch"]:
                    row += f"   torch {_num(n['torch'])}   diff {_diff(n['diff'])}"
                lines.append(row)
        lines.append("")
    lines.append(f"E = {result['loss']:.10f}")
    return "\n".join(lines)


def format_markdown(result: dict) -> str:
    """The worked example as one Markdown table per equation (for a teacher's notes)."""
    lines = [f"**manual-bp explain {result['model']}**: {result['description']} (seed {result['seed']}).", ""]
    for group in result["equations"]:
        head = group["equation"] or "the input"
        lines.append(f"`{head}`" if head.startswith("(") else head[0].upper() + head[1:])
        lines.append("")
        lines.append("| quantity | ours | torch | difference |")
        lines.append("|---|---:|---:|---:|")
        for entry in group["entries"]:
            for n in entry["numbers"]:
                label = f"{entry['name']}[{n['index']}]" if n["index"] else entry["name"]
                lines.append(f"| `{label}` | {_num(n['ours']).strip()} | {_num(n['torch']).strip()} | "
                             f"{_diff(n['diff'])} |")
        lines.append("")
    lines.append(f"E = {result['loss']:.10f}")
    return "\n".join(lines)
