"""Test helpers shared by the test suite, `lt2 verify-kernels` and the kernel benchmarks: one closeness check,
tiny model presets and random kernel inputs."""

from __future__ import annotations

import itertools

import torch

from lt2.config import ModelArgs, resolve
from lt2.kernels.gdn_decode import GDNDecodeStep


def error_stats(actual: torch.Tensor, expected: torch.Tensor) -> dict[str, float]:
    """max |a - e| and the relative RMS error ||a - e|| / ||e||, computed in fp64."""
    a, e = actual.detach().double(), expected.detach().double()
    diff = a - e
    return {
        "max_abs": diff.abs().max().item() if diff.numel() else 0.0,
        "rel_rms": (diff.norm() / e.norm().clamp_min(1e-30)).item(),
    }


def assert_close(
    name: str, actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6
) -> None:
    """Fail with both error measures unless rel-RMS <= rtol or max-abs <= atol; shapes must match."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    if not torch.isfinite(actual).all():
        raise AssertionError(f"{name}: non-finite values")
    stats = error_stats(actual, expected)
    if stats["rel_rms"] > rtol and stats["max_abs"] > atol:
        raise AssertionError(
            f"{name}: max_abs={stats['max_abs']:.3e} rel_rms={stats['rel_rms']:.3e} (rtol={rtol}, atol={atol})"
        )


def tiny_args(pattern: str = "full", loop_count: int = 2, **overrides) -> ModelArgs:
    """A model small enough for exhaustive CPU checks; every mixer family gets sensible tiny dims."""
    base = dict(
        vocab_size=97,
        dim=32,
        n_layers=2,
        loop_count=loop_count,
        pattern=pattern,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=64,
        max_seqlen=512,
        window=16,
        vote_k=2,  # random layouts: two placements keep the vote real and the tests fast
        use_residual=True,
        gated_attn=True,
        linear={"n_heads": 2, "head_dim": 8, "expand_v": 2.0},
        mamba2={"head_dim": 8, "d_state": 8, "expand": 2},
        nsa={"n_kv_heads": 1, "block_size": 8, "block_count": 4, "window": 16},  # 4 > the 3 forced blocks
        dsa={"index_n_heads": 2, "index_head_dim": 8, "topk": 12},
    )
    base.update(overrides)
    return resolve(ModelArgs, base)


def tiny_model(pattern: str = "full", loop_count: int = 2, seed: int = 0, **overrides):
    """A tiny fp64 model whose zero-initialised gates are perturbed, so every path matters in a test."""
    from lt2.model import LoopedLM

    model = LoopedLM(tiny_args(pattern, loop_count, **overrides))
    model.init_weights()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "residual_gate" or name.endswith("wg.weight"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return model.double().eval()


def incremental_logits(model, tokens: torch.Tensor, splits: list[int]) -> torch.Tensor:
    """Prefill the chunks tokens[:, a:b] for consecutive split points, decode the rest one by one, and return
    all logits [B, T, V]: what `model(tokens)` must equal."""
    state, outs, start = None, [], 0
    for end in splits:
        logits, state = model.prefill(tokens[:, start:end], state, max_len=tokens.shape[1] + 4)
        outs.append(logits)
        start = end
    for t in range(start, tokens.shape[1]):
        logits, state = model.step(tokens[:, t], state)
        outs.append(logits[:, None])
    return torch.cat(outs, dim=1)


def padded_rows_and_alone(model, lengths: list[int], steps: int, seed: int = 0):
    """Prompts of `lengths` decoded as one left-padded batch, then `steps` tokens each; yields
    (name, batched logits, logits of the row alone) for every prompt and its decode steps."""
    from lt2.model import left_align

    gen = torch.Generator().manual_seed(seed)
    vocab = model.args.vocab_size
    prompts = [torch.randint(1, vocab, (n,), generator=gen) for n in lengths]
    right = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, p in enumerate(prompts):
        right[i, : len(p)] = p
    tokens, pad_mask = left_align(right, torch.tensor(lengths))
    logits, state = model.prefill(tokens, pad_mask=pad_mask, max_len=max(lengths) + steps)
    nxt = torch.randint(1, vocab, (len(lengths), steps), generator=gen)
    decoded = torch.stack([model.step(nxt[:, t], state)[0] for t in range(steps)], 1)
    for i, p in enumerate(prompts):
        alone = model(torch.cat([p, nxt[i]])[None])[0]
        n = len(p)
        yield f"row {i} prompt", logits[i, -n:], alone[:n]
        yield f"row {i} decode", decoded[i], alone[n:]


def packed_and_alone(model, tokens: torch.Tensor, starts: dict[int, list[int]]):
    """Rows of `tokens` packed with documents starting at `starts[row]`; yields (name, packed logits, logits
    of the document alone) for every document."""
    doc_start = torch.zeros(tokens.shape, dtype=torch.bool)
    for row, s in starts.items():
        doc_start[row, s] = True
    packed = model(tokens, doc_start=doc_start)
    for row, s in starts.items():
        bounds = [*s, tokens.shape[1]]
        for a, b in itertools.pairwise(bounds):
            yield f"row {row} doc {a}:{b}", packed[row, a:b], model(tokens[row : row + 1, a:b])[0]


def random_gdn_decode_step(
    B: int,
    H: int,
    Dk: int,
    Dv: int,
    K: int,
    *,
    gate: bool = True,
    decay: float = 1.0,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> GDNDecodeStep:
    """A random GDNDecodeStep: one token's projections, conv caches and state of a running
    sequence, standard normal (o_norm_weight near 1), drawn in fp32 from `generator` (the global one if None).

    exp(A_log) ~ U(0, 16 * decay) as the mixer initialises it (a small `decay` gives weak decays); A_log,
    dt_bias and the state are fp32, every other tensor `dtype`; gate=False gives an ungated norm.
    """

    def randn(*shape: int, dtype: torch.dtype = dtype) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=device, dtype=torch.float32).to(dtype)

    return GDNDecodeStep(
        q_in=randn(B, H * Dk),
        k_in=randn(B, H * Dk),
        v_in=randn(B, H * Dv),
        conv_q=randn(B, K - 1, H * Dk),
        conv_k=randn(B, K - 1, H * Dk),
        conv_v=randn(B, K - 1, H * Dv),
        w_q=randn(H * Dk, K),
        w_k=randn(H * Dk, K),
        w_v=randn(H * Dv, K),
        a=randn(B, H),
        b=randn(B, H),
        A_log=(decay * 16 * torch.rand(H, generator=generator, device=device)).clamp(min=1e-3).log(),
        dt_bias=randn(H, dtype=torch.float32),
        gate=randn(B, H * Dv) if gate else None,
        o_norm_weight=(1 + 0.1 * randn(Dv, dtype=torch.float32)).to(dtype),
        eps=1e-5,
        state=randn(B, H, Dk, Dv, dtype=torch.float32),
    )
