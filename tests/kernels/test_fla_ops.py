"""fla's decode kernels behind registered ops (`lt2::fla_recurrent_delta_rule`, `lt2::fla_recurrent_gla`), on CPU
with the kernel launch replaced by our recurrent references (fla needs CUDA): what is checked is the
registration, not fla's arithmetic (tests/gpu checks that):

- torch.library.opcheck: schema and fake implementation agree with what the op returns;
- torch.compile(fullgraph=True) of a decode step through the public wrappers traces the op as one node
  (fla's launch code broke the graph once per mixer call) and equals the eager call, for every gate form;
- with gradients wanted, or with cu_seqlens, the wrappers keep calling fla directly (the op has no backward).

Run: pytest tests/kernels/test_fla_ops.py
"""

from __future__ import annotations

import pytest
import torch

from lt2.kernels.delta_rule import fla as delta_fla
from lt2.kernels.delta_rule.naive import naive_recurrent_delta_rule
from lt2.kernels.gla import fla as gla_fla
from lt2.kernels.gla.naive import naive_recurrent_gla
from lt2.testing import assert_close

B, H, K, V = 2, 3, 8, 16


@pytest.fixture
def cpu_launch(monkeypatch):
    """fla's launches replaced by the references (same arguments); the CUDA-only checks switched off."""
    calls = []

    def delta(chunked, q, k, v, beta, g, scale, initial_state, output_final_state, use_qk_l2norm, cu_seqlens):
        calls.append("delta")
        return naive_recurrent_delta_rule(q, k, v, beta, g, scale, initial_state, output_final_state, use_qk_l2norm)

    def gla(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens):
        calls.append("gla")
        g = g.expand(q.shape[:3]) if g.ndim == 1 else g
        return naive_recurrent_gla(q, k, v, g, scale, initial_state, output_final_state)

    monkeypatch.setattr(delta_fla, "_launch_fla", delta)
    monkeypatch.setattr(delta_fla, "_check_fla", lambda *a: None)
    monkeypatch.setattr(gla_fla, "_launch_recurrent", gla)
    monkeypatch.setattr(gla_fla, "_check_cuda", lambda *a: None)
    return calls


def step_inputs(gate: str):
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, B, 1, H, K, generator=gen)
    k = torch.nn.functional.normalize(k, dim=-1)
    v = torch.randn(B, 1, H, V, generator=gen)
    beta = torch.rand(B, 1, H, generator=gen)
    state = torch.randn(B, H, K, V, generator=gen)
    g = {"none": None, "head": -torch.rand(B, 1, H, generator=gen), "key": -torch.rand(B, 1, H, K, generator=gen)}
    return q, k, v, beta, g[gate], state


@pytest.mark.parametrize("gate", ["none", "head", "key"])
def test_delta_rule_op_compiles_as_one_graph(cpu_launch, gate):
    q, k, v, beta, g, state = step_inputs(gate)
    torch.library.opcheck(delta_fla.fla_recurrent_delta_rule_op, (q, k, v, beta, g, None, state, True))

    def step(q, k, v, beta, g, state):
        o, new = delta_fla.fla_fused_recurrent_delta_rule(
            q, k, v, beta, g, initial_state=state, output_final_state=True, use_qk_l2norm=True
        )
        return o * 2.0, new

    with torch.no_grad():
        eager = step(q, k, v, beta, g, state)
        compiled = torch.compile(step, fullgraph=True, dynamic=False)(q, k, v, beta, g, state)
    for name, a, e in zip(("o", "state"), compiled, eager, strict=True):
        assert_close(name, a, e, rtol=1e-6)


@pytest.mark.parametrize("gate", ["head", "key", "const"])
def test_gla_op_compiles_as_one_graph(cpu_launch, gate):
    q, k, v, _, g, state = step_inputs("key" if gate == "key" else "head")
    g = -torch.rand(H) if gate == "const" else g
    torch.library.opcheck(gla_fla.fla_recurrent_gla_op, (q, k, v, g, 0.5, state))

    def step(q, k, v, g, state):
        o, new = gla_fla.fla_fused_recurrent_gla(q, k, v, g, scale=0.5, initial_state=state, output_final_state=True)
        return o * 2.0, new

    with torch.no_grad():
        eager = step(q, k, v, g, state)
        compiled = torch.compile(step, fullgraph=True, dynamic=False)(q, k, v, g, state)
    for name, a, e in zip(("o", "state"), compiled, eager, strict=True):
        assert_close(name, a, e, rtol=1e-6)


def test_gradients_bypass_the_op(cpu_launch, monkeypatch):
    q, k, v, beta, g, state = step_inputs("head")
    monkeypatch.setattr(delta_fla, "fla_recurrent_delta_rule_op", None)  # would fail if called
    monkeypatch.setattr(gla_fla, "fla_recurrent_gla_op", None)
    q.requires_grad_(True)
    delta_fla.fla_fused_recurrent_delta_rule(q, k, v, beta, g, initial_state=state, output_final_state=True)
    gla_fla.fla_fused_recurrent_gla(q, k, v, g, initial_state=state, output_final_state=True)
    assert cpu_launch == ["delta", "gla"]
