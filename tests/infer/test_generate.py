"""Generation on the static decoder: greedy output equals recomputing the full forward each step, rows
are independent of their batch, EOS/stop strings cut rows, sampling is seeded and honours top-p.

Run: pytest tests/infer/test_generate.py
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from lt2.infer.decoder import Decoder
from lt2.infer.generate import generate_ids, left_pad
from lt2.infer.sampling import SamplingArgs, sample
from lt2.mixers.base import cache_tensors
from lt2.testing import assert_close, tiny_model


def greedy_by_recomputation(model, prompt: list[int], n: int) -> list[int]:
    seq = torch.tensor([prompt])
    for _ in range(n):
        seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    return seq[0, len(prompt) :].tolist()


@pytest.mark.parametrize("pattern", ["full", "swa=4->swa=8"])
def test_greedy_batch_equals_each_prompt_recomputed(pattern):
    model = tiny_model(pattern, 2)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [3], [40, 41, 42]]
    out = generate_ids(model, prompts, SamplingArgs(max_new_tokens=12), check_every=5)
    for prompt, got in zip(prompts, out, strict=True):
        assert got == greedy_by_recomputation(model, prompt, 12)


def test_eos_and_stop_cut_rows():
    model = tiny_model("full", 1)
    prompts = [[1, 2, 3], [4, 5]]
    free = generate_ids(model, prompts, SamplingArgs(max_new_tokens=10))
    eos = free[0][3]
    cut = generate_ids(model, prompts, SamplingArgs(max_new_tokens=10), eos_id=eos)
    assert cut[0] == free[0][: free[0].index(eos)]
    stopped = generate_ids(model, prompts, SamplingArgs(max_new_tokens=10), stop=lambda row, ids: len(ids) >= 4)
    assert [len(s) for s in stopped] == [4, 4]


def test_decoder_step_matches_forward_and_counts_room():
    model = tiny_model("full", 2)
    tokens = torch.randint(0, 97, (2, 9))
    decoder = Decoder(model, batch=2, max_len=10)
    decoder.prefill(tokens[:, :8])
    logits, _ = decoder.step(tokens[:, 8])
    torch.testing.assert_close(logits, model(tokens)[:, -1], rtol=1e-9, atol=1e-9)
    decoder.step(tokens[:, 8])
    with pytest.raises(ValueError, match="max_len=10"):
        decoder.step(tokens[:, 8])


def test_sampling_is_seeded_and_respects_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(2000, 4)
    args = SamplingArgs(temperature=1.0, top_p=0.7)
    draws = sample(logits, args, torch.Generator().manual_seed(1))
    assert torch.equal(draws, sample(logits, args, torch.Generator().manual_seed(1)))
    assert set(draws.tolist()) == {0, 1}  # 0.5 + 0.3 reaches 0.7: tokens 2 and 3 are cut
    share = (draws == 0).float().mean().item()
    assert abs(share - 0.5 / 0.8) < 0.05
    full = sample(logits, SamplingArgs(temperature=1.0), torch.Generator().manual_seed(2))
    assert abs((full == 3).float().mean().item() - 0.05) < 0.02


def test_bad_sampling_arguments():
    with pytest.raises(ValueError, match="top_p"):
        SamplingArgs(top_p=0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingArgs(temperature=-1)
    with pytest.raises(ValueError, match="at least one token"):
        left_pad([[1], []], 0)


@pytest.mark.parametrize("pattern", ["full", "window", "gdn", "mamba2", "dsa", "random:1:1"])
def test_reset_decoder_reproduces_a_fresh_one(pattern):
    model = tiny_model(pattern, 2, window=4)
    tokens = torch.randint(0, 97, (2, 6))
    decoder = Decoder(model, batch=2, max_len=16)
    decoder.prefill(torch.randint(0, 97, (2, 9)))  # dirty every cache (and fill the window rings) first
    decoder.step(tokens[:, 0])
    decoder.reset()
    logits = [decoder.prefill(tokens[:, :2])]  # shorter than the ring: stale entries would be visible
    for t in range(2, 6):
        step_logits, _ = decoder.step(tokens[:, t])
        logits.append(step_logits[:, None])
    torch.testing.assert_close(torch.cat(logits, 1), model(tokens), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pattern", ["interleave:1:1:gdn:window", "random:1:1"])
def test_compiled_decode_step_equals_eager(pattern):
    """torch.compile'd steps (Inductor's fused CPU kernels) give the eager steps' logits and caches."""
    torch.manual_seed(0)
    model = tiny_model(pattern, 2, window=4).eval()
    tokens = torch.randint(0, 97, (2, 12))
    results = []
    counters.clear()
    for compile in (False, True):
        decoder = Decoder(model, batch=2, max_len=16, compile=compile)
        logits = [decoder.prefill(tokens[:, :5])]
        for t in range(5, 12):  # past the window: ring slots are overwritten under the compiled step
            logits.append(decoder.step(tokens[:, t])[0][:, None].clone())
        results.append((torch.cat(logits, 1), decoder.state.caches))
    # exactly one graph for all seven steps: nothing step-dependent (a Python int) is baked in and recompiled
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    (eager, eager_caches), (compiled, compiled_caches) = results
    assert_close("compiled logits", compiled, eager)  # fp32: fused kernels only reorder the sums
    for i, (a, e) in enumerate(zip(cache_tensors(compiled_caches), cache_tensors(eager_caches), strict=True)):
        assert_close(f"cache tensor {i}", a.float(), e.float())
    assert_close("compiled vs forward", compiled, model(tokens))


def test_generation_setup_rejects_bad_input_before_loading(tmp_path):
    from pathlib import Path

    from lt2.infer.generate import load_for_generation

    recipe = Path(__file__).parents[2] / "config" / "recipes" / "tiny" / "looped_pure_full.yaml"
    with pytest.raises(ValueError, match="needs a tokenizer"):
        load_for_generation(recipe)  # a recipe has no tokenizer/ beside it
    with pytest.raises(ValueError, match="dtype 'fp8'; valid: bf16, fp32"):
        load_for_generation(recipe, tmp_path, dtype="fp8")
