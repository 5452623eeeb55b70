"""Static-shape decoding: caches allocated once for (batch, max_len), one-token steps replayed from a
CUDA graph on GPU (launch overhead dominates an eager looped decode: n_layers x loop_count mixers per
token), plain eager calls elsewhere. Both paths run the same `LoopedLM.decode_step`.

`compile=True` hands that step to torch.compile first (fixed shapes, so one specialised graph): Inductor
fuses the norms, rotary, gates and residuals between the matmuls, tens of small kernels per layer and
loop, which a CUDA graph replays but cannot merge. The graph then captures the compiled step.

`fuse=True` (the default) first fuses the model's input projections in place (lt2.model.fuse): a decode
step's matmuls are GEMV-shaped and memory-bound, and one matmul over the stacked weights of a layer's q/k/v
(gate) projections, or of SwiGLU's gate and up projections, replaces several small ones. Parameters and
state_dict stay as they are; move or cast the model before building the Decoder, not after.
"""

from __future__ import annotations

import torch

from lt2.infer.sampling import SamplingArgs, sample
from lt2.kernels import backend
from lt2.model import LoopedLM
from lt2.model.fuse import fuse_projections


class Decoder:
    """Prefill a batch, then step it token by token.

    >>> dec = Decoder(model, batch=2, max_len=64)
    >>> logits = dec.prefill(tokens, pad_mask)          # [B, T, V]
    >>> logits, nxt = dec.step(logits[:, -1].argmax(-1))  # [B, V], [B]

    The first `warmup` steps run without a graph (kernels compile and autotune there, and torch.compile
    traces when `compile`); the graph is captured at the next step and replayed afterwards. Capture
    records kernels without running them, so it never disturbs the state.
    """

    def __init__(
        self,
        model: LoopedLM,
        batch: int,
        max_len: int,
        sampling: SamplingArgs | None = None,
        cuda_graph: bool | None = None,
        warmup: int = 2,
        dtype: torch.dtype | None = None,
        compile: bool = False,
        fuse: bool = True,
    ):
        if fuse:
            fuse_projections(model)
        self.model = model
        self.sampling = sampling or SamplingArgs()
        device = model.embed.weight.device
        self.state = model.allocate_state(batch, max_len, device=device, dtype=dtype)
        self.cuda_graph = device.type == "cuda" if cuda_graph is None else cuda_graph
        if self.cuda_graph and device.type != "cuda":
            raise ValueError("cuda_graph=True needs the model on a CUDA device")
        self.warmup = warmup
        # dynamic=False: every step has the same shapes; a dynamic graph would only add guards.
        if compile and device.type == "cuda":
            backend.load_fast_paths()  # lazy look-ups resolved here, not inside the traced step
        self._decode_step = torch.compile(model.decode_step, dynamic=False) if compile else model.decode_step
        self.generator = torch.Generator(device=device).manual_seed(self.sampling.seed)
        self._token = torch.zeros(batch, dtype=torch.long, device=device)  # static graph input
        self._graph: torch.cuda.CUDAGraph | None = None
        self._logits: torch.Tensor | None = None
        self._next: torch.Tensor | None = None
        self.steps = 0

    @torch.no_grad()
    def reset(self) -> None:
        """Empty every cache in place for a new batch (same buffers, so a captured graph stays valid)."""
        self.state.reset()

    @torch.no_grad()
    def prefill(
        self, tokens: torch.Tensor, pad_mask: torch.Tensor | None = None, last_only: bool = False
    ) -> torch.Tensor:
        logits, _ = self.model.prefill(tokens, self.state, pad_mask=pad_mask, last_only=last_only)
        return logits

    def _step_and_sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self._decode_step(self._token, self.state)
        return logits, sample(logits, self.sampling, self.generator)

    @torch.no_grad()
    def step(self, token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """token [B] -> (logits [B, V], sampled next token [B]); the outputs are overwritten by the next step."""
        self.state.check_room(1)
        self._token.copy_(token.reshape(-1))
        if not self.cuda_graph:
            out = self._step_and_sample()
        elif self._graph is not None:
            self._graph.replay()
            out = (self._logits, self._next)
        elif self.steps < self.warmup:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                out = self._step_and_sample()
            torch.cuda.current_stream().wait_stream(stream)
        else:
            self._graph = torch.cuda.CUDAGraph()
            self._graph.register_generator_state(self.generator)  # replays draw fresh noise from it
            with torch.cuda.graph(self._graph):
                self._logits, self._next = self._step_and_sample()
            self._graph.replay()
            out = (self._logits, self._next)
        self.state.count(1)
        self.steps += 1
        return out
