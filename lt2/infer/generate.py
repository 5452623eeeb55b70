"""Batched text generation on the static decoder: left-padded prompts, sampling, EOS and stop strings.

`load_for_generation` is what `lt2 generate` needs first: a model (trained, or a recipe with random weights),
on a device and in a dtype, and its tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lt2.infer.decoder import Decoder
from lt2.infer.sampling import SamplingArgs, sample
from lt2.model import LoopedLM


def left_pad(sequences: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists of any lengths -> (tokens [B, T], pad_mask [B, T]) with the padding on the left."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("every prompt must have at least one token")
    width = max(len(s) for s in sequences)
    tokens = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    pad_mask = torch.zeros(len(sequences), width, dtype=torch.bool)
    for row, seq in enumerate(sequences):
        tokens[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        pad_mask[row, width - len(seq) :] = True
    return tokens.to(device), pad_mask.to(device)


@torch.no_grad()
def generate_ids(
    model: LoopedLM,
    prompts: list[list[int]],
    sampling: SamplingArgs,
    eos_id: int | None = None,
    pad_id: int = 0,
    stop=None,
    cuda_graph: bool | None = None,
    check_every: int = 8,
    compile: bool = False,
) -> list[list[int]]:
    """Generate up to sampling.max_new_tokens per prompt; `stop(row, ids) -> bool` ends a row early.

    Finished rows keep stepping (the batch shape is static) but their outputs are cut at the end.
    The host looks at the new tokens every `check_every` steps, not every step, to keep the GPU busy.
    """
    device = model.embed.weight.device
    tokens, pad_mask = left_pad(prompts, pad_id, device)
    decoder = Decoder(
        model, len(prompts), tokens.shape[1] + sampling.max_new_tokens, sampling, cuda_graph, compile=compile
    )
    logits = decoder.prefill(tokens, pad_mask, last_only=True)
    token = sample(logits[:, -1], sampling, decoder.generator)
    new = torch.empty(len(prompts), sampling.max_new_tokens, dtype=torch.long, device=device)
    outputs: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for i in range(sampling.max_new_tokens):
        new[:, i] = token
        last = i == sampling.max_new_tokens - 1
        if (i + 1) % check_every == 0 or last:
            block = new[:, i + 1 - ((i % check_every) + 1) : i + 1].tolist()
            for row, ids in enumerate(block):
                for tok in ids:
                    if done[row]:
                        break
                    if eos_id is not None and tok == eos_id:
                        done[row] = True
                        break
                    outputs[row].append(tok)
                    if stop is not None and stop(row, outputs[row]):
                        done[row] = True
            if all(done) or last:
                break
        _, token = decoder.step(token)
    return outputs


def generate(
    model: LoopedLM,
    tokenizer,
    prompts: list[str],
    sampling: SamplingArgs,
    stop_strings: tuple[str, ...] = (),
    cuda_graph: bool | None = None,
    compile: bool = False,
) -> list[str]:
    """Text in, text out. Output stops at EOS or before the first stop string."""
    ids = [tokenizer.encode(p, bos=True) for p in prompts]

    def hit_stop(row: int, out: list[int]) -> bool:
        return any(s in tokenizer.decode(out[-64:]) for s in stop_strings)

    stop = hit_stop if stop_strings else None
    out_ids = generate_ids(model, ids, sampling, tokenizer.eos_id, tokenizer.pad_id, stop, cuda_graph, compile=compile)
    texts = []
    for out in out_ids:
        text = tokenizer.decode(out)
        cut = min((text.find(s) for s in stop_strings if s in text), default=len(text))
        texts.append(text[:cut])
    return texts


DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def load_for_generation(
    source: str | Path, tokenizer_dir: str | Path | None = None, device: str | None = None, dtype: str = "fp32"
):
    """(model in eval mode, tokenizer) for `generate`.

    source: a model directory (`lt2 export` / `lt2 train --out`), or a recipe YAML (random weights: smoke tests
    and speed). tokenizer_dir: default `<source>/tokenizer` for a model directory. device: default cuda when
    available. dtype: bf16 | fp32.
    """
    from lt2.data.tokenizer import Tokenizer

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    source = Path(source)
    tokenizer_dir = tokenizer_dir or (source / "tokenizer" if source.is_dir() else None)
    if tokenizer_dir is None or not Path(tokenizer_dir).is_dir():
        raise ValueError("generation needs a tokenizer: pass --tokenizer DIR (or a model dir with a tokenizer/)")
    if source.is_dir():
        model = LoopedLM.from_pretrained(source, device=device)
    else:
        from lt2.recipe import load_recipe

        model = LoopedLM(load_recipe(source).model).to(device)
        model.init_weights()
    return model.to(DTYPES[dtype]).eval(), Tokenizer.load(tokenizer_dir)
