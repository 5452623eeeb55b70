"""Configuration: the model's dataclasses and their checks, and the one function that resolves any dataclass.

Resolution order (lowest to highest): dataclass defaults -> YAML files or dicts -> dot-list overrides, merged
by OmegaConf in struct mode so that an unknown key or a value of the wrong type fails and names itself.

This module sits below every stage: the settings of a stage live beside it (lt2.data.args, lt2.train.args,
lt2.distill.args, ...), and a recipe, which composes the model's with the data's and the training's, is
loaded by lt2.recipe.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


@dataclass
class LinearArgs:
    """Heads of the linear-attention mixers (gdn, kda, deltanet, retnet, hgrn2)."""

    n_heads: int | None = None  # None: the model's n_heads
    head_dim: int = 96  # key/query dim per head (GDN 96 in the 1.3B flagship)
    expand_v: float = 2.0  # value dim = expand_v * head_dim (GDN, KDA, RetNet)
    conv_size: int = 4  # depthwise causal short convolution on q/k/v; 0 disables it
    use_gate: bool = True  # output gate: o = norm(o) * silu(W_g x)
    norm_eps: float = 1e-5
    # Delta-rule mixers (gdn, deltanet, kda): beta = 2 sigmoid(W_b x) in (0, 2), so the transition
    # I - beta k k^T may have a negative eigenvalue (fla's allow_neg_eigval; off in the reference code).
    allow_neg_eigval: bool = False

    def check(self) -> None:
        """Raise ValueError unless the heads are usable (part of validate_model)."""
        if self.n_heads < 1 or self.head_dim < 1:
            raise ValueError(f"linear n_heads and head_dim must be >= 1, got {self.n_heads} and {self.head_dim}")
        if self.conv_size < 0:
            raise ValueError(f"linear.conv_size must be >= 0 (0 disables the short convolution), got {self.conv_size}")

    @property
    def head_v_dim(self) -> int:
        """Value dim per head, expand_v * head_dim (GDN, KDA, DeltaNet, RetNet); it must be a positive integer."""
        value_dim = self.head_dim * self.expand_v
        if value_dim != int(value_dim) or value_dim < 1:
            raise ValueError(
                f"linear.expand_v = {self.expand_v} times head_dim = {self.head_dim} gives value head dim "
                f"{value_dim}, which is not a positive integer"
            )
        return int(value_dim)


@dataclass
class Mamba2Args:
    head_dim: int = 64  # channels per SSM head
    d_state: int = 128  # state (B/C) size per group
    expand: int = 2  # inner dim = expand * dim
    n_groups: int = 1  # B/C groups shared by the heads
    conv_size: int = 4
    dt_min: float = 0.001
    dt_max: float = 0.1


@dataclass
class NSAArgs:
    """Native Sparse Attention: compressed, selected and sliding-window branches."""

    n_kv_heads: int = 1  # GQA groups; fla 0.6's kernel wants n_heads / n_kv_heads a power of two >= 16
    block_size: int = 64  # compression / selection block length in tokens (paper code: 64)
    block_count: int = 16  # selected blocks per query, the first and the two latest always among them (16)
    window: int = 512  # sliding-window branch in tokens (512)


@dataclass
class DSAArgs:
    """DeepSeek Sparse Attention: lightning indexer -> top-k keys -> softmax attention on them."""

    n_kv_heads: int | None = 1  # key/value heads of the main attention (paper code: 1, MQA); None: the model's
    index_n_heads: int = 16  # lightning-indexer query heads (paper code: one per attention head, 16)
    index_head_dim: int = 64  # indexer head dim (paper code: 64); RoPE on its first half, as in DeepSeek-V3.2
    topk: int = 2048  # keys each query attends to (paper code: 2048)
    # Weight of the indexer's objective, mean over tokens of KL(detached attention over the selected keys ||
    # softmax of their indexer scores); its gradient is injected into the indexer only, so under Adam it
    # mostly matters relative to gradient clipping.
    index_loss_coef: float = 1.0


@dataclass
class ModelArgs:
    """A looped LM: `n_layers` physical blocks applied `loop_count` times."""

    DERIVED: ClassVar[tuple[str, ...]] = ("n_kv_heads", "head_dim", "linear.n_heads")  # set in __post_init__

    vocab_size: int = 128256
    dim: int = 2048
    n_layers: int = 21
    loop_count: int = 4  # the paper's T: times the layer stack is applied
    pattern: str = "full"  # mixer per (loop, layer); grammar in lt2/model/pattern.py
    n_heads: int = 16  # softmax-attention heads (also the default for linear mixers)
    n_kv_heads: int | None = None  # GQA for softmax attention; None: n_heads
    head_dim: int | None = None  # softmax-attention head dim; None: dim // n_heads
    ffn_dim: int = 5632  # SwiGLU hidden size
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seqlen: int = 4096  # longest training context; windows may not exceed it
    window: int = 512  # size of `window` layers that the pattern does not size
    tie_embeddings: bool = True
    use_residual: bool = False  # h_{t+1} = Stack(h_t) + r_t * h_t, r zero-initialised, shape [loop_count, dim]
    gated_attn: bool = False  # softmax-attention output * sigmoid(W_g x), W_g zero-initialised
    vote_k: int = 5  # random layouts: inference averages the logits of this many fixed placements
    init_seed: int = 42
    init_std: float | None = None  # None: fan_in ** -0.5 for every projection (Lingua's init)
    # Init std multiplier of the projections that write into the residual stream (each mixer's output
    # projection, the FFN's down projection); 0 starts every block as the identity, which lets a deep, narrow
    # stack leave the unigram plateau within a CPU-sized budget. 1.0 is the reference init.
    out_init_scale: float = 1.0
    linear: LinearArgs = field(default_factory=LinearArgs)
    mamba2: Mamba2Args = field(default_factory=Mamba2Args)
    nsa: NSAArgs = field(default_factory=NSAArgs)
    dsa: DSAArgs = field(default_factory=DSAArgs)
    # Block options of pretrained looped Transformers converted by lt2/distill (Ouro: all three on,
    # tie_embeddings and use_residual off). Defaults keep the LT2 block.
    sandwich_norm: bool = False  # h = x + RMSNorm(Mixer(RMSNorm(x))), the same around the FFN
    loop_norm: bool = False  # the final norm ends every loop and its output feeds the next loop
    exit_gate: bool = False  # Ouro's early-exit gate (Linear dim -> 1) is kept; unused: the last loop decides

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.head_dim is None:
            if self.dim % self.n_heads:
                raise ValueError(f"dim {self.dim} does not divide into n_heads {self.n_heads}; set head_dim explicitly")
            self.head_dim = self.dim // self.n_heads
        if self.linear.n_heads is None:
            self.linear.n_heads = self.n_heads
        validate_model(self)

    @property
    def layout(self):
        from lt2.model.pattern import parse_pattern  # lt2.model imports this module

        return parse_pattern(self.pattern, self.n_layers, self.loop_count, self.window)


LINEAR_FAMILIES = ("gdn", "kda", "deltanet", "hgrn2", "retnet")  # the mixers sized by `linear`


def validate_model(m: ModelArgs) -> None:
    """Cross-field checks of a model, for the mixer families its pattern uses; ValueError naming the key and
    the numbers. One place for every check of the model's settings: ModelArgs runs it when it is built (so a
    recipe is checked when it is loaded, before any weight exists), the mixers trust their arguments."""
    if m.n_heads % m.n_kv_heads:
        raise ValueError(f"n_heads {m.n_heads} is not a multiple of n_kv_heads {m.n_kv_heads}")
    if m.out_init_scale < 0:
        raise ValueError(f"out_init_scale must be >= 0, got {m.out_init_scale}")
    layout = m.layout
    for row in layout.specs:
        for spec in row:
            if spec.window is not None and spec.window > m.max_seqlen:
                raise ValueError(f"window {spec.window} in pattern {m.pattern!r} exceeds max_seqlen {m.max_seqlen}")
    families = {layout.family(layer) for layer in range(layout.n_layers)}
    if "attention" in families and m.head_dim % 2:
        raise ValueError(f"attention head_dim must be even for RoPE, got {m.head_dim}")
    lin = m.linear
    if families & set(LINEAR_FAMILIES):
        lin.check()
    if "hgrn2" in families and m.dim % lin.n_heads:
        raise ValueError(f"hgrn2: model dim {m.dim} does not divide into linear.n_heads {lin.n_heads}")
    if "retnet" in families and lin.head_dim % 2:
        raise ValueError(f"retnet: linear.head_dim must be even for the rotary embedding, got {lin.head_dim}")
    if families & {"gdn", "kda", "deltanet", "retnet"}:
        lin.head_v_dim  # noqa: B018 (the property raises unless expand_v * head_dim is a positive integer)
    if "mamba2" in families:
        _validate_mamba2(m)
    if "nsa" in families:
        nsa = m.nsa
        if nsa.n_kv_heads < 1 or m.n_heads % nsa.n_kv_heads:
            raise ValueError(f"nsa: n_heads {m.n_heads} is not a multiple of nsa.n_kv_heads {nsa.n_kv_heads}")
        if m.head_dim % 2:
            raise ValueError(f"nsa: head_dim must be even for RoPE, got {m.head_dim}")
        if min(nsa.block_size, nsa.block_count, nsa.window) < 1:
            raise ValueError(
                f"nsa.block_size, nsa.block_count and nsa.window must be >= 1, got "
                f"{nsa.block_size}, {nsa.block_count}, {nsa.window}"
            )
    if "dsa" in families:
        dsa = m.dsa
        n_kv_heads = dsa.n_kv_heads or m.n_kv_heads
        if m.n_heads % n_kv_heads:
            raise ValueError(f"dsa: n_heads {m.n_heads} is not a multiple of dsa.n_kv_heads {n_kv_heads}")
        if m.head_dim % 2:
            raise ValueError(f"dsa: head_dim must be even for RoPE, got {m.head_dim}")
        if dsa.index_head_dim % 4:
            raise ValueError(
                f"dsa.index_head_dim must be a multiple of 4 (RoPE on an even first half), got {dsa.index_head_dim}"
            )
        if dsa.topk < 1 or dsa.index_n_heads < 1:
            raise ValueError(f"dsa.topk and dsa.index_n_heads must be >= 1, got {dsa.topk}, {dsa.index_n_heads}")


def _validate_mamba2(m: ModelArgs) -> None:
    mamba = m.mamba2
    d_inner = mamba.expand * m.dim
    if mamba.head_dim < 1 or d_inner % mamba.head_dim:
        raise ValueError(f"mamba2 inner dim {d_inner} (expand * dim) does not divide into head_dim {mamba.head_dim}")
    heads = d_inner // mamba.head_dim
    if mamba.n_groups < 1 or heads % mamba.n_groups:
        raise ValueError(f"mamba2 heads {heads} (inner dim / head_dim) do not divide into n_groups {mamba.n_groups}")
    if mamba.d_state < 1 or mamba.conv_size < 1:
        raise ValueError(f"mamba2 d_state and conv_size must be >= 1, got {mamba.d_state} and {mamba.conv_size}")
    if not 0 < mamba.dt_min <= mamba.dt_max:
        raise ValueError(f"mamba2 needs 0 < dt_min <= dt_max, got dt_min={mamba.dt_min}, dt_max={mamba.dt_max}")


T = TypeVar("T")


def _clear_derived(node, cls: type, prefix: str = "") -> None:
    """Reset fields that __post_init__ derives (listed in a class's DERIVED) to None in a structured config.

    Nested defaults are built by default_factory, which runs __post_init__ with the *default* sizes; left
    in place, e.g. the 2048-dim head_dim would survive a recipe that sets dim 1024.
    """
    for key in getattr(cls, "DERIVED", ()):
        OmegaConf.update(node, prefix + key, None, merge=False)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            _clear_derived(node, kind, f"{prefix}{f.name}.")


def resolve(cls: type[T], *sources: dict | str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Build `cls` from its defaults, then each YAML file or dict in `sources`, then dot-list overrides.

    >>> resolve(ModelArgs, {"dim": 64, "n_layers": 2}, overrides=["loop_count=2"]).loop_count
    2
    """
    base = OmegaConf.structured(cls)
    _clear_derived(base, cls)
    OmegaConf.set_struct(base, True)
    layers = []
    for src in sources:
        if src is None:
            continue
        if isinstance(src, (str, Path)):
            path = Path(src)
            if not path.is_file():
                raise ValueError(f"config file {str(path)!r} does not exist")
            layers.append(OmegaConf.load(path))
        else:
            layers.append(OmegaConf.create(src))
    try:
        if overrides:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(base, *layers)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        # OmegaConf's message names the full key; keep it, drop the internal traceback noise.
        raise ValueError(f"invalid {cls.__name__} configuration: {err.msg if hasattr(err, 'msg') else err}") from None


def to_dict(obj: Any) -> dict:
    """A dataclass (nested) as a plain dict, for YAML/JSON dumps and provenance."""
    return dataclasses.asdict(obj)
