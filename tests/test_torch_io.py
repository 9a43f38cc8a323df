"""Weights both ways between manual_bp and torch: ``from_torch``, ``to_torch``, ``torch_grads`` for RNN, LSTM,
GRU (and the MLP's functions in ``manual_bp.torch_io``), against torch's own modules and their ``.grad``."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from manual_bp import GRU, LSTM, MLP, RNN
from manual_bp.torch_io import mlp_from_torch, mlp_to_torch, mlp_torch_grads

ROOT = Path(__file__).resolve().parent.parent


def test_the_round_trip_in_the_docs_runs():
    """docs/guides/torch_round_trip.md's code block, as a user would paste it (it needs torch, which the
    site's build does not)."""
    text = (ROOT / "docs" / "guides" / "torch_round_trip.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/guides/torch_round_trip.md", "exec"), {"__name__": "round_trip"})


MODULES = {
    "RNN relu, 2 layers, both directions": (RNN, lambda: nn.RNN(3, 4, num_layers=2, nonlinearity="relu",
                                                                 bidirectional=True, dtype=torch.float64)),
    "LSTM projected, batch-first, 3 layers": (LSTM, lambda: nn.LSTM(3, 5, num_layers=3, proj_size=2,
                                                                     batch_first=True, dtype=torch.float64)),
    "GRU without bias, both directions": (GRU, lambda: nn.GRU(3, 4, bias=False, bidirectional=True,
                                                               dtype=torch.float64)),
}


def _loss(out, head, Y, lengths):
    """manual-bp's loss in torch: cross-entropy summed over the steps inside each sequence, mean over N."""
    q = head(out)
    A, B, K = q.shape
    E = F.cross_entropy(q.reshape(A * B, K), Y.reshape(A * B), reduction="none").reshape(A, B)
    live = torch.arange(A)[:, None] < lengths[None, :] if B == len(lengths) else (
        torch.arange(B)[None, :] < lengths[:, None])
    return (E * live).sum() / len(lengths)


@pytest.mark.parametrize("name", list(MODULES))
def test_from_torch_grads_equal_the_modules_grads_for_every_parameter(name):
    """torch's default initialisation has both biases non-zero; after ``from_torch`` our gradients, renamed
    by ``torch_grads``, equal ``p.grad`` of every parameter of the module and the head."""
    cls, make = MODULES[name]
    torch.manual_seed(0)
    module = make()
    F_out = module.hidden_size if not module.proj_size else module.proj_size
    head = nn.Linear(F_out * (2 if module.bidirectional else 1), 3, dtype=torch.float64)
    model = cls.from_torch(module, head)
    assert model.training and model.dtype == np.float64 and model.batch_first == module.batch_first
    N, T = 3, 5
    X = torch.randn((N, T, 3) if module.batch_first else (T, N, 3), dtype=torch.float64)
    Y = torch.randint(0, 3, (N, T) if module.batch_first else (T, N))
    lengths = torch.tensor([5, 2, 4])
    packed = torch.nn.utils.rnn.pack_padded_sequence(X, lengths, batch_first=module.batch_first,
                                                     enforce_sorted=False)
    out, _ = module(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=module.batch_first, total_length=T)
    loss = _loss(out, head, Y, lengths)
    loss.backward()
    E, grads = model.loss_and_grad(X.numpy(), Y.numpy(), lengths=lengths.numpy())
    assert abs(E - loss.item()) <= 1e-12 * abs(E)
    ours = model.torch_grads(grads)
    theirs = dict(module.named_parameters())
    theirs.update({f"head.{k}": v for k, v in head.named_parameters()})
    assert set(ours) == set(theirs) | {"h0"} | ({"c0"} if cls is LSTM else set())
    for key, p in theirs.items():
        np.testing.assert_allclose(ours[key], p.grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=key)


@pytest.mark.parametrize("name", list(MODULES))
def test_to_torch_returns_the_same_function_and_from_torch_reads_it_back(name):
    cls, make = MODULES[name]
    torch.manual_seed(1)
    module = make()
    model = cls.from_torch(module, dtype=np.float32)  # no head: the bare module; float32 on request
    assert model.output_size is None and model.dtype == np.float32
    model.eval()
    back = model.to_torch()
    assert isinstance(back, type(module)) and not back.training
    for k, v in back.state_dict().items():  # our b = bias_ih + bias_hh, handed back as (b, 0)
        want = module.state_dict()[k]
        if k.startswith("bias_ih") and cls is not GRU:
            want = want + module.state_dict()[k.replace("bias_ih", "bias_hh")]
        elif k.startswith("bias_hh") and cls is not GRU:
            want = torch.zeros_like(want)
        np.testing.assert_allclose(v.numpy(), want.numpy(), rtol=1e-6, atol=1e-7, err_msg=k)
        assert v.dtype == torch.float32
    again = cls.from_torch(back)
    assert again.config() == model.config() and not again.training
    assert all(np.array_equal(again.params[k], model.params[k]) for k in model.params)
    X = np.random.default_rng(0).standard_normal((5, 3, 3) if model.batch_first else (3, 5, 3))
    out, h_n = model.forward(X.astype(np.float32))
    out_t, h_t = module(torch.as_tensor(X))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_a_model_with_a_head_goes_to_torch_as_module_and_linear():
    model = LSTM(3, 4, 2, num_layers=2, bidirectional=True, seed=0)
    module, head = model.to_torch()
    assert isinstance(module, nn.LSTM) and isinstance(head, nn.Linear)
    assert head.in_features == 8 and head.out_features == 2
    X = np.random.default_rng(0).standard_normal((4, 2, 3))
    P, _ = model.forward(X)
    out, _ = module(torch.as_tensor(X))
    np.testing.assert_allclose(P, torch.softmax(head(out), -1).detach().numpy(), rtol=1e-12, atol=1e-14)


def test_states_convert_to_torch_layout_and_back():
    one = LSTM(3, 4, 2)
    h, c = np.ones((2, 4)), np.zeros((2, 4))
    th, tc = one.to_torch_state((h, c))
    assert th.shape == tc.shape == (1, 2, 4)
    back = one.from_torch_state((th, tc))
    assert back[0].shape == (2, 4) and np.array_equal(back[0], h)
    stack = GRU(3, 4, 2, num_layers=2, bidirectional=True)
    s = np.arange(4 * 2 * 4.0).reshape(4, 2, 4)
    assert np.array_equal(stack.to_torch_state(s), s) and np.array_equal(stack.from_torch_state(s), s)


def test_bad_torch_input_is_refused_with_a_clear_message():
    with pytest.raises(TypeError, match="module must be a torch nn.LSTM; got GRU"):
        LSTM.from_torch(nn.GRU(3, 4))
    with pytest.raises(TypeError, match="module must be a torch nn.RNN; got LSTM"):
        RNN.from_torch(nn.LSTM(3, 4))
    with pytest.raises(TypeError, match="head must be a torch nn.Linear with a bias"):
        GRU.from_torch(nn.GRU(3, 4), nn.Linear(4, 2, bias=False))
    with pytest.raises(ValueError, match=r"head.weight must have shape \(K, D\*H_out=8\)"):
        GRU.from_torch(nn.GRU(3, 4, bidirectional=True), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="grads has keys that are not LSTM parameters or states"):
        LSTM(3, 4, 2).torch_grads({"Q": np.zeros(1)})
    with pytest.raises(TypeError, match="weights are float16"):
        GRU.from_torch(nn.GRU(3, 4, dtype=torch.float16))


# ------------------------------------------------------------------------------------------ the MLP
def test_mlp_from_torch_grads_equal_the_sequentials_grads():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 2), nn.Sigmoid())
    seq = seq.to(torch.float64)
    net = mlp_from_torch(seq, loss="squared_error")
    assert isinstance(net, MLP) and net.sizes == [4, 5, 3, 2]
    assert (net.hidden_activation, net.output_activation) == ("tanh", "sigmoid")
    X, Y = torch.randn(6, 4, dtype=torch.float64), torch.rand(6, 2, dtype=torch.float64)
    loss = 0.5 * ((seq(X) - Y) ** 2).sum() / 6  # manual-bp's squared error: 1/2 ||y - a||^2, mean over N
    loss.backward()
    E, grads = net.loss_and_grad(X.numpy(), Y.numpy())
    assert abs(E - loss.item()) <= 1e-12
    ours = mlp_torch_grads(net, grads, module=seq)
    assert set(ours) == {n for n, _ in seq.named_parameters()}
    for n, p in seq.named_parameters():
        np.testing.assert_allclose(ours[n], p.grad.numpy(), rtol=1e-10, atol=1e-14, err_msg=n)


def test_mlp_to_torch_and_back():
    net = MLP([3, 4, 2], "relu", "softmax", "cross_entropy", seed=0)
    seq = mlp_to_torch(net)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]  # the logits, for CrossEntropyLoss
    X = np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_allclose(net.forward(X), torch.softmax(seq(torch.as_tensor(X)), -1).detach().numpy(),
                               rtol=1e-12, atol=1e-14)
    again = mlp_from_torch(seq, loss="cross_entropy")
    assert again.config() == {**net.config(), "seed": None}
    assert all(np.array_equal(again.params[k], net.params[k]) for k in net.params)
    assert set(mlp_torch_grads(net, {k: v for k, v in net.params.items()})) == {
        "0.weight", "0.bias", "2.weight", "2.bias"}
    with pytest.raises(TypeError, match="seq may hold nn.Linear and"):
        mlp_from_torch(nn.Sequential(nn.Linear(2, 2), nn.Dropout()))
    with pytest.raises(ValueError, match="one hidden activation"):
        mlp_from_torch(nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)))


def test_torch_io_imports_torch_only_inside_its_functions():
    """``import manual_bp.torch_io`` must not import torch (tests/test_cli.py checks ``import manual_bp``)."""
    tree = ast.parse((ROOT / "manual_bp" / "torch_io.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names]
    names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] == "torch"]
