"""LoopedLM: embeddings, `n_layers` physical blocks applied `loop_count` times, a final norm and the head.

    h_0 = embed(tokens)
    h_{t+1} = Stack(h_t) [+ r_t * h_t when use_residual]        t = 0 .. loop_count-1
    logits = head(RMSNorm(h_T))

With `loop_norm` (Ouro) the final norm ends every loop instead, h_{t+1} = RMSNorm(Stack(h_t)), and the
head reads h_T as it is. Ouro's early-exit gate (`exit_gate`) is kept as weights only: at exit threshold
1.0, the only mode supported here, the last loop's logits are the output whatever the gate says.

No recurrent state crosses loops: each loop starts every mixer from a fresh state (training) or from
its own (loop, layer) cache (decoding).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lt2.config import ModelArgs, resolve, to_dict
from lt2.files import atomic_path, atomic_write_text
from lt2.mixers.base import SeqInfo, cu_seqlens_from_doc_starts
from lt2.model.block import Block
from lt2.model.cache import DecodeState
from lt2.model.init import init_weights
from lt2.model.layers import RMSNorm
from lt2.model.vote import VoteState

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def left_align(tokens: torch.Tensor, lengths: torch.Tensor, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens [B, T] with per-row `lengths` [B] -> (left-padded tokens, pad_mask [B, T]).

    Decoding continues every row at the same cache slot, so prompts are left padded; this converts
    the other common layout.
    """
    T = tokens.shape[1]
    if (lengths < 1).any() or (lengths > T).any():
        raise ValueError(f"lengths must lie in [1, {T}], got {lengths.tolist()}")
    index = torch.arange(T, device=tokens.device)
    shift = (T - lengths)[:, None]  # move row b right by T - length_b
    source = (index[None, :] - shift) % T
    pad_mask = index[None, :] >= shift
    aligned = torch.where(pad_mask, tokens.gather(1, source), torch.full_like(tokens, pad_id))
    return aligned, pad_mask


def doc_positions(doc_start: torch.Tensor) -> torch.Tensor:
    """[B, T] position of each token inside its document (documents start where doc_start is True)."""
    B, T = doc_start.shape
    index = torch.arange(T, device=doc_start.device).expand(B, T)
    starts = torch.where(doc_start, index, torch.zeros_like(index))
    return index - torch.cummax(starts, dim=1).values


class LoopedLM(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.layout = args.layout
        self.embed = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args, i, self.layout.family(i)) for i in range(args.n_layers))
        self.residual_gate = nn.Parameter(torch.zeros(args.loop_count, args.dim)) if args.use_residual else None
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.head = None if args.tie_embeddings else nn.Linear(args.dim, args.vocab_size, bias=False)
        self.exit_gate = nn.Linear(args.dim, 1, bias=True) if args.exit_gate else None
        if self.layout.is_random:  # training forwards seen so far: seeds the next placement, saved for resume
            self.register_buffer("layout_step", torch.zeros((), dtype=torch.long))

    def init_weights(self) -> None:
        init_weights(self, self.args.init_seed, self.args.init_std)

    # ---------------------------------------------------------------- forward
    def vote_draws(self) -> list:
        """The fixed placements whose logits a random layout averages at inference (draw 0 comes first)."""
        if not self.layout.is_random:
            return [self.layout.specs]
        return [self.layout.draw(0)] + [self.layout.draw(2**31 + k) for k in range(1, self.args.vote_k)]

    def _forward_specs(self):
        if self.layout.is_random and self.training:
            step = int(self.layout_step)
            self.layout_step += 1
            return self.layout.draw(self.args.init_seed + step)
        return self.layout.specs

    def hidden_states(
        self, tokens: torch.Tensor, seq: SeqInfo, state: DecodeState | None = None, specs=None
    ) -> torch.Tensor:
        """tokens [B, T] -> final normed hidden states [B, T, C]; the loop over loops and layers lives here.

        The mixers come from the decode state, else `specs`, else the layout (a fresh random placement per
        training forward for random layouts).
        """
        if state is not None:
            specs = state.specs
        elif specs is None:
            specs = self._forward_specs()
        B, T = tokens.shape
        h = self.embed(tokens)
        if seq.cu_seqlens is not None:  # packed documents: the varlen layout [1, B*T, C] that kernels expect
            h = h.view(1, B * T, -1)
        for loop in range(self.args.loop_count):
            h_loop_in = h
            for layer, block in enumerate(self.layers):
                cache = state.caches[loop][layer] if state is not None else None
                h = block(h, seq, cache, specs[loop][layer])
            if self.residual_gate is not None:
                h = h + self.residual_gate[loop] * h_loop_in
            if self.args.loop_norm:
                h = self.norm(h)
        return (h if self.args.loop_norm else self.norm(h)).view(B, T, -1)

    def output(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., C] -> logits [..., V] (tied to the embedding unless tie_embeddings is off)."""
        weight = self.embed.weight if self.head is None else self.head.weight
        return h @ weight.t().to(h.dtype)

    def forward(
        self,
        tokens: torch.Tensor,
        doc_start: torch.Tensor | None = None,
        at: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Training / scoring forward: tokens [B, T] -> logits [B, T, V].

        doc_start [B, T] bool marks the first token of each packed document; when given, no attention,
        recurrent state or convolution crosses a document boundary and positions restart per document.
        A random layout in eval mode averages the logits of its `vote_k` placements.
        at = (rows, cols), two [N] long tensors: logits [N, V] of those positions only, the head applied
        to their hidden states alone (scoring needs the continuation's positions, a fraction of B x T).
        """
        seq = self.seq_info(tokens, doc_start)

        def logits(h: torch.Tensor) -> torch.Tensor:
            return self.output(h if at is None else h[at[0], at[1]])

        if self.layout.is_random and not self.training:
            draws = self.vote_draws()
            return sum(logits(self.hidden_states(tokens, seq, specs=d)) for d in draws) / len(draws)
        return logits(self.hidden_states(tokens, seq))

    def seq_info(self, tokens: torch.Tensor, doc_start: torch.Tensor | None = None) -> SeqInfo:
        B, T = tokens.shape
        if doc_start is None:
            return SeqInfo.for_training(torch.arange(T, device=tokens.device).expand(B, T))
        if doc_start.shape != tokens.shape or doc_start.dtype != torch.bool:
            raise ValueError(
                f"doc_start must be a bool tensor of shape {tuple(tokens.shape)}, "
                f"got {doc_start.dtype} {tuple(doc_start.shape)}"
            )
        positions = doc_positions(doc_start).reshape(1, B * T)  # varlen layout, like the hidden states
        return SeqInfo.for_training(positions, cu_seqlens_from_doc_starts(doc_start))

    # --------------------------------------------------------------- decoding
    def allocate_state(self, batch: int, max_len: int, device=None, dtype=None) -> DecodeState | VoteState:
        """Static caches for `batch` sequences of up to `max_len` slots (prompt, padding and new tokens): one
        decode state, or for a random layout one per placement of its vote (lt2.model.vote)."""
        device = device or self.embed.weight.device
        dtype = dtype or self.embed.weight.dtype
        states = [self._allocate(batch, max_len, device, dtype, specs) for specs in self.vote_draws()]
        return VoteState(states) if self.layout.is_random else states[0]

    def _allocate(self, batch: int, max_len: int, device, dtype, specs) -> DecodeState:
        caches = [
            [
                block.mixer.init_cache(batch, max_len, device, dtype, specs[loop][i])
                for i, block in enumerate(self.layers)
            ]
            for loop in range(self.args.loop_count)
        ]
        return DecodeState(
            caches=caches,
            key_mask=torch.zeros(batch, max_len, dtype=torch.bool, device=device),
            positions=torch.zeros(batch, dtype=torch.long, device=device),
            index=torch.zeros(1, dtype=torch.long, device=device),
            max_len=max_len,
            specs=specs,
        )

    @torch.no_grad()
    def prefill(
        self,
        tokens: torch.Tensor,
        state: DecodeState | VoteState | None = None,
        pad_mask: torch.Tensor | None = None,
        max_len: int | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, DecodeState | VoteState]:
        """Run a (left-padded) prompt chunk tokens [B, T]; returns logits [B, T, V] and the updated state.

        A new state is allocated when none is given (max_len defaults to args.max_seqlen). Calling prefill
        again on a state appends the chunk; pad_mask [B, T] (True = real) is only allowed on the first chunk.
        last_only returns logits [B, 1, V] of the last position only (long prompts: [B, T, V] is huge).
        """
        B, T = tokens.shape
        if state is None:
            state = self.allocate_state(B, max(max_len or self.args.max_seqlen, T))
        if state.batch_size != B:
            raise ValueError(f"tokens have batch {B} but the decode state was allocated for {state.batch_size}")
        state.check_room(T)
        if pad_mask is not None:
            if state.length:
                raise ValueError("pad_mask is only allowed on the first prefill chunk (left padding)")
            if pad_mask.shape != tokens.shape:
                raise ValueError(f"pad_mask shape {tuple(pad_mask.shape)} != tokens shape {tuple(tokens.shape)}")
            if (pad_mask[:, 1:].int() < pad_mask[:, :-1].int()).any():
                raise ValueError("pad_mask must be left padding (no pad after a real token); use left_align()")
        real = pad_mask if pad_mask is not None else torch.ones_like(tokens, dtype=torch.bool)

        def prefill_one(member: DecodeState) -> torch.Tensor:
            h = self.hidden_states(tokens, member.seq_info(real, pad_mask), member)
            member.advance(T, real)
            return self.output(h[:, -1:] if last_only else h)

        logits = state.mean(prefill_one) if isinstance(state, VoteState) else prefill_one(state)
        state.count(T)
        return logits, state

    @torch.no_grad()
    def step(self, token: torch.Tensor, state: DecodeState | VoteState) -> tuple[torch.Tensor, DecodeState | VoteState]:
        """One decode step: token [B] (or [B, 1]) -> logits [B, V]. Uses tensors only (graph-capturable)."""
        state.check_room(1)
        logits = self.decode_step(token.reshape(-1), state)
        state.count(1)
        return logits, state

    def decode_step(self, token: torch.Tensor, state: DecodeState | VoteState) -> torch.Tensor:
        """The device-side part of `step`, token [B] -> logits [B, V]: no host syncs, fixed shapes; what CUDA
        graphs capture. The host's copy of the write position is the caller's to count (`state.count(1)`)."""
        if isinstance(state, VoteState):
            return state.mean(lambda member: self.decode_step(token, member))
        h = self.hidden_states(token[:, None], state.seq_info(), state)
        state.advance(1)
        return self.output(h)[:, -1]

    # ------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors (atomically: temp files, then rename)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if self.head is None:
            tensors.pop("head.weight", None)
        # One metadata key only: safetensors writes its metadata map in arbitrary order, and the file's
        # hash must be reproducible for provenance (the architecture lives in config.json).
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        atomic_write_text(directory / CONFIG_NAME, json.dumps(to_dict(self.args), indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, overrides: list[str] | tuple[str, ...] = (), device=None
    ) -> LoopedLM:
        """Load a directory written by `save_pretrained` (or `lt2 export`)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise ValueError(f"{directory} is not an lt2 model directory: {name} is missing")
        args = resolve(ModelArgs, json.loads((directory / CONFIG_NAME).read_text()), overrides=overrides)
        with torch.device("meta"):
            model = cls(args)
        model.to_empty(device=device or "cpu")
        model.init_weights()  # non-persistent buffers (RoPE) and anything the file lacks is checked below
        load_checked(model, load_file(str(directory / WEIGHTS_NAME), device=str(device or "cpu")))
        return model


def load_checked(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """load_state_dict that explains an architecture mismatch instead of dumping a traceback."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:

        def show(keys):
            return ", ".join(keys[:6]) + (f" ... (+{len(keys) - 6})" if len(keys) > 6 else "")

        details = []
        if missing:
            details.append(f"missing: {show(missing)}")
        if unexpected:
            details.append(f"unexpected: {show(unexpected)}")
        if wrong:
            details.append(
                "shape mismatch: " + show([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong])
            )
        raise ValueError(f"checkpoint does not match this architecture ({'; '.join(details)})")
    model.load_state_dict(state, strict=True)
