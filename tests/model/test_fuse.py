"""Fused input projections (lt2.model.fuse) and the rotary tables shared per forward (SeqInfo.rope).

Fusing must not change what a model computes or stores: the fused forward equals the unfused one (fp32, CPU)
for every mixer that declares input projections and for the hybrids, decode with fused projections equals
the full forward, state_dict is the same before and after, load_state_dict reaches the fused weight, and each
fused module runs one input matmul instead of several. A move or cast after fusing is caught; training
(grad enabled) takes the unfused path and gets the same gradients.

Run: pytest tests/model/test_fuse.py
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from lt2.infer.decoder import Decoder
from lt2.model import LoopedLM
from lt2.model.fuse import fuse_projections, unfuse_projections
from lt2.testing import assert_close, incremental_logits, tiny_model

PATTERNS = [
    "full",
    "window",
    "gdn",
    "kda",
    "deltanet",
    "mamba2",
    "hgrn2",
    "retnet",
    "nsa",
    "dsa",
    "interleave:1:1:gdn:full",  # LT2-hybrid Full+GDN at tiny depth
    "interleave:1:1:gdn:dsa",
    "swa=4->swa=8->full",
    "random:3:1",
]
# Fused and unfused matmuls sum the same products per output, possibly in another order: fp32 rounding only,
# grown through the recurrences and loops to ~1e-6 relative (a wrong slice would be off by O(1)).
TOL = dict(rtol=1e-5, atol=1e-6)


class CountCalls(TorchFunctionMode):
    """Counts calls of the given torch functions."""

    def __init__(self, *funcs):
        super().__init__()
        self.funcs, self.calls = funcs, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += func in self.funcs
        return func(*args, **(kwargs or {}))


def fp32_model(pattern: str, loop_count: int = 2, seed: int = 0):
    loop_count = pattern.count("->") + 1 if "->" in pattern else loop_count  # a schedule has one segment per loop
    return tiny_model(pattern, loop_count, seed=seed).float()


def fused_groups(model) -> dict[str, tuple[str, ...]]:
    """{module name: its fused projections} of every fused module."""
    return {name: m._fused_projection.names for name, m in model.named_modules() if hasattr(m, "_fused_projection")}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_fused_forward_equals_unfused(pattern):
    model = fp32_model(pattern)
    tokens = torch.randint(0, 97, (2, 21), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(tokens)
        assert fuse_projections(model) == len(fused_groups(model)) > 0
        assert_close(f"{pattern} fused", model(tokens), expected, **TOL)
        unfuse_projections(model)
        assert not fused_groups(model)
        assert torch.equal(model(tokens), expected)


def test_what_is_fused():
    """Each block's SwiGLU gate-up; attention's q/k/v/gate; GDN's q/k/v/b/gate/a; KDA's q/k/v/b (its low-rank
    decay and gate stay apart); nothing in Mamba2 (already one in_proj)."""
    cases = {
        "interleave:1:1:gdn:full": {
            "layers.0.mixer": ("q_proj", "k_proj", "v_proj", "b_proj", "g_proj", "a_proj"),
            "layers.1.mixer": ("wq", "wk", "wv", "wg"),
        },
        "kda": {f"layers.{i}.mixer": ("q_proj", "k_proj", "v_proj", "b_proj") for i in (0, 1)},
        "mamba2": {},
    }
    for pattern, mixers in cases.items():
        model = fp32_model(pattern)
        fuse_projections(model)
        ffns = {f"layers.{i}.ffn": ("w1", "w3") for i in range(len(model.layers))}
        assert fused_groups(model) == mixers | ffns, pattern
        for name, names in fused_groups(model).items():  # the fused weight is the stacked parameters
            module = model.get_submodule(name)
            stacked = torch.cat([getattr(module, n).weight for n in names])
            assert torch.equal(module._fused_projection.weight, stacked)


@pytest.mark.parametrize("pattern", ["interleave:1:1:gdn:full", "kda", "retnet", "nsa"])
def test_fused_modules_run_one_input_matmul(pattern):
    """F.linear calls of one decode step: each fused group of n projections saves n - 1 per loop."""
    model = fp32_model(pattern)
    tokens = torch.randint(0, 97, (2, 6))

    def linears_per_step() -> int:
        _, state = model.prefill(tokens, max_len=8)
        with CountCalls(torch.nn.functional.linear) as mode:
            model.step(tokens[:, 0], state)
        return mode.calls

    unfused = linears_per_step()
    fuse_projections(model)
    saved = model.args.loop_count * sum(len(names) - 1 for names in fused_groups(model).values())
    assert saved > 0
    assert linears_per_step() == unfused - saved


@pytest.mark.parametrize("pattern", ["interleave:1:1:gdn:full", "kda", "hgrn2", "swa=4->swa=8->full", "random:3:1"])
def test_fused_decode_equals_forward(pattern):
    model = fp32_model(pattern)
    tokens = torch.randint(0, 97, (2, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(tokens)
    fuse_projections(model)
    for splits in ([1], [13], [5, 17]):
        assert_close(f"{pattern} splits={splits}", incremental_logits(model, tokens, splits), full, **TOL)
    # the Decoder fuses by default (a no-op here: already fused) and its steps equal the forward too
    decoder = Decoder(model, batch=2, max_len=32)
    logits = [decoder.prefill(tokens[:, :9])]
    for t in range(9, 30):
        logits.append(decoder.step(tokens[:, t])[0][:, None].clone())
    assert_close(f"{pattern} decoder", torch.cat(logits, 1), full, **TOL)


def test_decoder_fuses_unless_told_not_to():
    model = fp32_model("interleave:1:1:gdn:full")
    Decoder(model, batch=1, max_len=8, fuse=False)
    assert not fused_groups(model)
    Decoder(model, batch=1, max_len=8)
    assert fused_groups(model)


def test_state_dict_unchanged_and_load_reaches_fused_weight(tmp_path):
    model = fp32_model("interleave:1:1:gdn:full")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fuse_projections(model)
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert after[key].shape == value.shape and torch.equal(after[key], value), key
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in before.values())
    model.save_pretrained(tmp_path)  # the parameters are views of one tensor; the file holds them as before
    saved = LoopedLM.from_pretrained(tmp_path).state_dict()
    assert all(torch.equal(saved[k], v) for k, v in before.items())

    other = fp32_model("interleave:1:1:gdn:full", seed=5)
    other.load_state_dict({k: torch.randn_like(v) for k, v in other.state_dict().items()})
    tokens = torch.randint(0, 97, (2, 11))
    with torch.no_grad():
        expected = other(tokens)
        model.load_state_dict(other.state_dict())  # writes into the parameters, i.e. into the fused tensor
        for name in fused_groups(model):
            module = model.get_submodule(name)
            names = module._fused_projection.names
            stacked = torch.cat([getattr(other.get_submodule(name), n).weight for n in names])
            assert torch.equal(module._fused_projection.weight, stacked), name
        assert_close("after load", model(tokens), expected, **TOL)


def test_cast_after_fusing_is_caught_and_refusing_fixes_it():
    model = fp32_model("interleave:1:1:gdn:full")
    tokens = torch.randint(0, 97, (1, 7))
    fuse_projections(model)
    model.double()  # new storage for every parameter: the fused tensors no longer see them
    with torch.no_grad(), pytest.raises(RuntimeError, match="call fuse_projections"):
        model(tokens)
    fuse_projections(model)
    with torch.no_grad():
        fused = model(tokens)
    unfuse_projections(model)
    with torch.no_grad():
        assert_close("re-fused after cast", fused, model(tokens), **TOL)


def test_training_after_fusing_takes_the_unfused_path():
    """With grad enabled the fused tensor (no autograd link to the parameters) is not used: same gradients."""
    tokens = torch.randint(0, 97, (2, 9))
    grads = []
    for fuse in (False, True):
        model = fp32_model("interleave:1:1:gdn:full")
        if fuse:
            fuse_projections(model)
        model(tokens).logsumexp(-1).mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    unfused, fused = grads
    assert all(g is not None for g in fused.values())
    for name, grad in unfused.items():
        assert torch.equal(fused[name], grad), name
