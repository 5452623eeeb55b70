"""lm-eval model `lt2`: an exported LoopedLM behind lm-eval's LM interface.

    python -m lt2.eval.harness run --model lt2 --model_args pretrained=<model dir>,tokenizer=<dir> --tasks piqa
    lm_eval.simple_evaluate(model="lt2", model_args={"pretrained": ..., "tokenizer": ...}, tasks=[...])

(lm-eval's CLI has no plugin hook, so `python -m lt2.eval.harness` is that CLI with `lt2` registered; in
Python, importing this module registers it.)

Scoring (`loglikelihood`, `loglikelihood_rolling`): every sequence is `[bos] context continuation`, as
documents start in training. Requests are sorted by length (lm-eval's Collator) and batched with the
padding on the RIGHT of one full forward: every mixer is causal, so the padding after a row's last token
cannot reach its real positions, and each row keeps positions 0..n-1 and its chunk boundaries, exactly as
when scored alone (tested to 1e-5 in fp32). A batch holds at most `batch_size` rows and, with
`max_batch_tokens`, at most that many padded positions, so short requests share one forward. The output
head and the fp32 log-softmax run only at the positions that predict continuation tokens (about a tenth
of the positions on the paper's tasks), and each batch's scores reach the host in one transfer.
`scoring_stats()` counts the work (positions run, padding, scored tokens, head rows). A random layout
scores with its `vote_k`-placement logit average, as `LoopedLM.forward` does in eval mode. A sequence
longer than `max_length` + 1 tokens loses tokens on the LEFT (the context's start), as lm-eval's HF model
does; the continuation is always kept.

Generation (`generate_until`): greedy, on the static-cache decoder (`lt2.infer.generate.generate_ids`, the
path of `lt2 generate`), requests grouped by their generation arguments; stops at EOS, at any `until`
string (the text is cut before it) or after `max_gen_toks`. The prompt keeps its last
`max_length - max_gen_toks` tokens, so prompt and answer fit the decoder's cache of `max_length` slots.

`max_length` defaults to the training sequence length (the `recipe.yaml` beside the weights, else the
model's max_seqlen) and may be larger: positions are computed (RoPE), never looked up, and every cache is
sized from the request, so a model trained at 2048 can be evaluated at 4096.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

STAT_KEYS = ("batches", "sequences", "positions", "real_tokens", "scored_tokens", "head_rows", "max_width",
             "contexts", "prefix_shared_tokens")  # fmt: skip
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_model_dir(pretrained: str | Path) -> Path:
    """The model directory, after checking it holds an exported model (before anything is loaded)."""
    from lt2.model.looped import CONFIG_NAME, WEIGHTS_NAME

    path = Path(pretrained)
    if not path.is_dir():
        raise ValueError(f"pretrained={pretrained!r} is not a directory (expected an exported lt2 model)")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise ValueError(f"pretrained={pretrained!r} is not an lt2 model directory: {name} is missing")
    return path


def load_tokenizer(tokenizer: str | Path | None, model_dir: Path):
    """The tokenizer in `tokenizer` (default: <model dir>/tokenizer), checked against the model's vocabulary.

    Mismatch rule: the tokenizer may not have more ids than the embedding has rows (ids would fall off
    it), nor fewer than half (an embedding padded to a multiple is fine; half unused means another
    tokenizer than the one the model was trained with).
    """
    from lt2.data.tokenizer import Tokenizer

    tok_dir = Path(tokenizer) if tokenizer else model_dir / "tokenizer"
    if not tok_dir.is_dir():
        raise ValueError(f"tokenizer={str(tok_dir)!r} is not a directory: pass tokenizer=<dir> (tokenizer.json)")
    tok = Tokenizer.load(tok_dir)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    if not vocab // 2 < tok.vocab_size <= vocab:
        raise ValueError(
            f"tokenizer {tok_dir} has {tok.vocab_size} tokens but the model in {model_dir} was built for a "
            f"vocabulary of {vocab}: they do not belong together"
        )
    return tok


def training_seq_len(model_dir: Path, max_seqlen: int) -> int:
    from lt2.eval.perplexity import training_data_args

    return int(training_data_args(model_dir).get("seq_len") or max_seqlen)


def batch_time_fit(log: list[tuple[int, int, float]]) -> dict[str, float]:
    """Least-squares seconds = fixed + per_position x (rows x width) over the scoring forwards after the
    first (which pays compilation and autotuning): a large `fixed_s_per_forward` says the forwards are
    bound by per-call overhead (launches, syncs) rather than by the positions they run."""
    if not log:
        return {}
    out = {"first_forward_s": log[0][2], "scoring_s": sum(sec for _, _, sec in log)}
    rest = [(rows * width, sec) for rows, width, sec in log[1:]]
    if len(rest) >= 2:
        n = len(rest)
        mx, my = sum(x for x, _ in rest) / n, sum(y for _, y in rest) / n
        sxx = sum((x - mx) ** 2 for x, _ in rest)
        slope = sum((x - mx) * (y - my) for x, y in rest) / sxx if sxx > 0 else 0.0
        out.update(fixed_s_per_forward=my - slope * mx, s_per_1k_positions=1000 * slope)
    return out


@register_model("lt2")
class LT2LM(TemplateLM):
    """An exported lt2 model as an lm-eval LM (model_args: pretrained, tokenizer, dtype, batch_size, device,
    max_length, max_gen_toks, cuda_graph, progress, max_batch_tokens)."""

    def __init__(
        self,
        pretrained: str,
        tokenizer: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 8,
        device: str | None = None,
        max_length: int | None = None,
        max_gen_toks: int = 256,
        cuda_graph: bool | None = None,
        progress: bool = True,
        max_batch_tokens: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__()
        from lt2.eval.perplexity import resolve_device
        from lt2.model.looped import LoopedLM

        kwargs.pop("max_batch_size", None)  # simple_evaluate passes it; only a fixed batch size is supported
        if kwargs:
            raise ValueError(f"unknown lt2 model_args {sorted(kwargs)}; valid: pretrained, tokenizer, dtype, "
                             "batch_size, max_batch_tokens, device, max_length, max_gen_toks, cuda_graph, "
                             "progress")  # fmt: skip
        if str(batch_size).startswith("auto"):
            raise ValueError(f"batch_size={batch_size!r}: lt2 needs a fixed batch size (an integer >= 1)")
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if dtype not in ("auto", *DTYPES):
            raise ValueError(f"dtype={dtype!r}; valid: auto, {', '.join(DTYPES)}")
        model_dir = check_model_dir(pretrained)
        self.tok = load_tokenizer(tokenizer, model_dir)  # before the weights: a mismatch costs no loading
        self.device_ = resolve_device(device or "auto")
        # Weights stay fp32; a lower dtype runs under autocast, as in training and `lt2 eval ppl`.
        if dtype == "auto":
            dtype = "bfloat16" if self.device_.type == "cuda" else "float32"
        self.dtype = DTYPES[dtype]
        self.model = LoopedLM.from_pretrained(model_dir, device=self.device_).eval()
        self.max_length = int(max_length) if max_length else training_seq_len(model_dir, self.model.args.max_seqlen)
        self.max_gen_toks = int(max_gen_toks)
        if self.max_length < 2 or self.max_gen_toks < 1:
            raise ValueError(f"need max_length >= 2 and max_gen_toks >= 1, got {self.max_length}, {self.max_gen_toks}")
        self.cuda_graph = None if cuda_graph is None else str(cuda_graph).lower() in ("1", "true", "yes")
        self.progress = str(progress).lower() not in ("0", "false", "no")
        self.requests_done = 0  # lm-eval requests answered (scored or generated): the speed benchmark's count
        self.max_batch_tokens = int(max_batch_tokens) if max_batch_tokens else None
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        self.batch_log: list[tuple[int, int, float]] = []  # (rows, padded width, seconds) per scoring forward

    # ---------------------------------------------------------------- lm-eval plumbing
    @property
    def eot_token_id(self) -> int:
        return self.tok.eos_id

    @property
    def prefix_token_id(self) -> int:
        """An empty context conditions on BOS (every training document starts with it)."""
        return self.tok.bos_id

    @property
    def device(self) -> torch.device:
        return self.device_

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """Plain text ids; BOS is prepended once per sequence in `_loglikelihood_tokens`, not per piece."""
        return self.tok.encode(string)

    def tok_decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def _autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device_.type, dtype=self.dtype)

    # ---------------------------------------------------------------- scoring
    def _sequence(self, context: list[int], continuation: list[int]) -> tuple[list[int], int]:
        """(input ids, number of scored positions at its end): [bos] + context + continuation, left-truncated
        to max_length + 1 tokens, minus the last token (the inputs predict the next token)."""
        if not continuation:
            raise ValueError("an lm-eval request with an empty continuation cannot be scored")
        if context[:1] != [self.tok.bos_id]:
            context = [self.tok.bos_id, *context]
        whole = (context + continuation)[-(self.max_length + 1) :]
        return whole[:-1], min(len(continuation), len(whole) - 1)

    @torch.no_grad()
    def score_batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(context ids, continuation ids) pairs -> (sum of log p(continuation), greedy?) in one right-padded
        forward [B, T].

        The head and the fp32 log-softmax run only at the N positions that predict a continuation token
        (`LoopedLM.forward(at=...)`: logits [N, V], not [B, T, V]); the per-request sums and greedy flags are
        reduced on the device and reach the host in one transfer per batch.
        """
        start = time.perf_counter()
        rows = [self._sequence(ctx, cont) for ctx, cont in pairs]
        width = max(len(ids) for ids, _ in rows)
        tokens = torch.full((len(rows), width), self.tok.pad_id, dtype=torch.long)
        row_of, col_of, target = [], [], []
        for r, ((ids, n), (_, cont)) in enumerate(zip(rows, pairs, strict=True)):
            tokens[r, : len(ids)] = torch.tensor(ids)
            row_of += [r] * n
            col_of += range(len(ids) - n, len(ids))
            target += cont[-n:]
        row_t, col_t, target_t = torch.tensor([row_of, col_of, target]).to(self.device_)
        with self._autocast():
            logits = self.model(tokens.to(self.device_), at=(row_t, col_t))  # [N, V]
        logp = F.log_softmax(logits.float(), dim=-1)
        token_logp = logp.gather(1, target_t[:, None])[:, 0]
        misses = (logp.argmax(-1) != target_t).float()
        per_row = torch.zeros(2, len(rows), dtype=torch.float32, device=logp.device)
        per_row[0].index_add_(0, row_t, token_logp)
        per_row[1].index_add_(0, row_t, misses)
        sums, missed = per_row.cpu().tolist()  # the batch's one host sync
        stats = self.stats
        stats["batches"] += 1
        stats["sequences"] += len(rows)
        stats["positions"] += len(rows) * width
        stats["real_tokens"] += sum(len(ids) for ids, _ in rows)
        stats["scored_tokens"] += len(row_of)
        stats["head_rows"] += logits.shape[0]
        stats["max_width"] = max(stats["max_width"], width)
        self.batch_log.append((len(rows), width, time.perf_counter() - start))  # wall time, ends at the sync
        return [(s, m == 0) for s, m in zip(sums, missed, strict=True)]

    def batches(self, requests: list) -> list[list]:
        """Consecutive (length-sorted) requests grouped into forwards: at most `batch_size` rows, and, with
        `max_batch_tokens`, at most that many padded positions (rows x the longest row; a longer request
        still gets a batch of its own). Short requests then share a forward by the hundred."""
        out, batch, width = [], [], 0
        for req in requests:
            n = len(self._sequence(req[1], req[2])[0])
            wider = max(width, n)
            full = len(batch) == self.batch_size or (
                self.max_batch_tokens is not None and (len(batch) + 1) * wider > self.max_batch_tokens
            )
            if batch and full:
                out.append(batch)
                batch, wider = [], n
            batch.append(req)
            width = wider
        return out + ([batch] if batch else [])

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        from lm_eval.models.utils import Collator

        # Longest first: the first batch shows the memory peak, and similar lengths share a batch.
        collator = Collator(requests, sort_fn=lambda req: (-len(req[1] + req[2]), tuple(req[1] + req[2])))
        ordered = next(collator.get_batched(n=len(requests)), []) if requests else []
        self.count_contexts(ordered)
        results = []
        bar = tqdm(total=len(requests), desc="loglikelihood", disable=disable_tqdm or not self.progress)
        for batch in self.batches(ordered):
            scores = self.score_batch([(ctx, cont) for _, ctx, cont in batch])
            for (key, _, _), score in zip(batch, scores, strict=True):
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, score)
                results.append(score)
            bar.update(len(batch))
        bar.close()
        return collator.get_original(results)

    def count_contexts(self, requests: list) -> None:
        """Distinct contexts and the positions a forward would run if each context ran once and its
        continuations were appended to it (what sharing a context's prefix could save; not done here)."""
        seen = set()
        for _, ctx, cont in requests:
            ids, _ = self._sequence(ctx, cont)
            key = tuple(ctx)
            self.stats["prefix_shared_tokens"] += len(cont) if key in seen else len(ids)
            seen.add(key)
        self.stats["contexts"] += len(seen)

    def scoring_stats(self) -> dict[str, float]:
        """What the scoring forwards did: `positions` the stack ran (rows x padded width) against the
        `real_tokens` of the requests, `scored_tokens` that a loglikelihood reads and `head_rows` the output
        head ran on (equal: logits only where scored), one host sync per batch."""
        s = dict(self.stats)
        s["padding_fraction"] = 1 - s["real_tokens"] / s["positions"] if s["positions"] else 0.0
        s["scored_fraction"] = s["scored_tokens"] / s["positions"] if s["positions"] else 0.0
        s["host_syncs"] = s["batches"]
        s.update(batch_time_fit(self.batch_log))
        s["batch_log"] = [[rows, width, round(sec, 5)] for rows, width, sec in self.batch_log]
        return s

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self.requests_done += len(requests)
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Summed log-likelihood of whole texts: disjoint windows of max_length tokens, lm-eval's rule."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        self.requests_done += len(requests)
        windows, owner = [], []
        for i, (text,) in enumerate(req.args for req in requests):
            for ctx, cont in map(
                make_disjoint_window,
                get_rolling_token_windows(self.tok_encode(text), self.tok.bos_id, self.max_length, context_len=1),
            ):
                windows.append((None, ctx, cont))
                owner.append(i)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for i, (logp, _) in zip(owner, scores, strict=True):
            totals[i] += logp
        for req, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), total)
        return totals

    # ---------------------------------------------------------------- generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import Collator

        self.requests_done += len(requests)
        collator = Collator(
            [req.args for req in requests],
            sort_fn=lambda args: (-len(self.tok_encode(args[0])), args[0]),
            group_fn=lambda args: args[1],
            group_by="gen_kwargs",
        )
        results = []
        bar = tqdm(total=len(requests), desc="generate_until", disable=disable_tqdm or not self.progress)
        for batch in collator.get_batched(n=self.batch_size):
            contexts = [ctx for ctx, _ in batch]
            texts = self.generate_texts(contexts, dict(batch[0][1]))
            for ctx, gen_kwargs, text in ((c, g, t) for (c, g), t in zip(batch, texts, strict=True)):
                self.cache_hook.add_partial("generate_until", (ctx, gen_kwargs), text)
                results.append(text)
            bar.update(len(batch))
        bar.close()
        return collator.get_original(results)

    def generate_texts(self, contexts: list[str], gen_kwargs: dict) -> list[str]:
        """Greedy continuations of `contexts`, each cut before the first `until` string."""
        from lt2.infer.generate import generate_ids
        from lt2.infer.sampling import SamplingArgs

        until = gen_kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_gen = int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))
        if gen_kwargs.pop("do_sample", False) or float(gen_kwargs.pop("temperature", 0.0)) > 0:
            raise ValueError(f"lt2 generates greedily only; got sampling arguments {gen_kwargs}")
        gen_kwargs.pop("top_p", None)
        gen_kwargs.pop("top_k", None)
        if gen_kwargs:
            raise ValueError(f"unsupported generation arguments {sorted(gen_kwargs)}; valid: until, "
                             "max_gen_toks, do_sample=false, temperature=0")  # fmt: skip
        if not 0 < max_gen < self.max_length:
            raise ValueError(f"max_gen_toks={max_gen} must lie in 1..{self.max_length - 1} (max_length)")
        keep = self.max_length - max_gen
        prompts = [[self.tok.bos_id, *self.tok_encode(c)][-keep:] for c in contexts]

        def hit_stop(row: int, out: list[int]) -> bool:
            return any(s in self.tok.decode(out[-64:]) for s in until)

        with self._autocast():
            out_ids = generate_ids(
                self.model, prompts, SamplingArgs(max_new_tokens=max_gen), self.tok.eos_id, self.tok.pad_id,
                hit_stop if until else None, self.cuda_graph,
            )  # fmt: skip
        texts = []
        for ids in out_ids:
            text = self.tok.decode(ids)
            texts.append(text[: min((text.find(s) for s in until if s in text), default=len(text))])
        return texts


if __name__ == "__main__":  # lm-eval's own CLI with `lt2` registered: python -m lt2.eval.harness --model lt2 ...
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
