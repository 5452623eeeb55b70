"""Parse the one string that declares which mixer runs at every (loop, layer).

Grammar (case-insensitive, spaces ignored)::

    pattern  := layers ("->" layers)*        one `layers` for all loops, or exactly one per loop
              | "random:" w ":" f            random full/window placement (see below)
    layers   := mixer                         the same mixer in every layer
              | mixer ("," mixer)+            an explicit unit, tiled over depth
              | "interleave:" a ":" b ":" m1 ":" m2
                                              a layers of m1 then b layers of m2, tiled over depth
              | "bookend:" m_outer ":" m_inner [":" n [":" m]]
                                              the first n (default 1) and last m (default n) layers
                                              m_outer (n != m keeps an odd count, e.g. 3 of 15)
              | "front:" n ":" m_rare ":" m_base    the first n layers m_rare (front-loaded)
              | "back:" n ":" m_rare ":" m_base     the last n layers m_rare (back-loaded)
    mixer    := name ["=" window]             e.g. full, gdn, swa=128, window=512

Examples: ``full``; ``interleave:4:1:gdn:full`` (the Full+GDN flagship: 4 GDN then 1 full, tiled);
``SWA=128->SWA=256->SWA=512->full`` (a loop-level schedule: loop 0 uses a 128-token window, the last
loop full attention, all with the same weights).

``random:w:f`` is the paper's random placement: of the n_layers * loop_count attention slots,
int(slots * f / (w + f)) run full attention and the rest a sliding window (ModelArgs.window); which ones
is drawn afresh for every training forward pass (seeded by a step counter, so runs are reproducible).
At inference the model averages the logits of `vote_k` fixed draws (the K-sample vote).

Weights are shared across loops, so a layer must use one weight family in every loop: `full` and
`window` share the attention projections; every other mixer is its own family.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Every mixer the paper uses, with the family whose weights it needs.
MIXER_FAMILIES: dict[str, str] = {
    "full": "attention",
    "window": "attention",
    "gdn": "gdn",
    "kda": "kda",
    "mamba2": "mamba2",
    "hgrn2": "hgrn2",
    "deltanet": "deltanet",
    "retnet": "retnet",
    "nsa": "nsa",
    "dsa": "dsa",
}
ALIASES = {"swa": "window", "sliding_window": "window", "attn": "full", "softmax": "full", "gated_deltanet": "gdn"}
LAYOUT_KINDS = ("interleave", "interleaved", "bookend", "front", "back", "random")

Specs = tuple[tuple["MixerSpec", ...], ...]


@dataclass(frozen=True)
class MixerSpec:
    """What one (loop, layer) runs: the mixer name and, for `window`, its size in tokens."""

    name: str
    window: int | None = None

    @property
    def family(self) -> str:
        return MIXER_FAMILIES[self.name]

    def __str__(self) -> str:
        return f"{self.name}={self.window}" if self.window is not None else self.name


@dataclass(frozen=True)
class Layout:
    """specs[loop][layer]: the mixer each physical layer runs in each loop.

    For a random layout (`n_random_full` set), `specs` is draw 0 and `draw(seed)` gives any other.
    """

    specs: Specs
    n_random_full: int | None = None  # full-attention slots of a random layout
    random_window: int | None = None  # window of its other slots

    @property
    def loop_count(self) -> int:
        return len(self.specs)

    @property
    def n_layers(self) -> int:
        return len(self.specs[0])

    @property
    def is_random(self) -> bool:
        return self.n_random_full is not None

    def family(self, layer: int) -> str:
        return self.specs[0][layer].family

    def draw(self, seed: int) -> Specs:
        """A placement of the random layout (the fixed specs otherwise), deterministic in `seed`."""
        if not self.is_random:
            return self.specs
        slots = self.loop_count * self.n_layers
        kinds = [MixerSpec("full")] * self.n_random_full + [MixerSpec("window", self.random_window)] * (
            slots - self.n_random_full
        )
        random.Random(seed).shuffle(kinds)
        return tuple(tuple(kinds[loop * self.n_layers : (loop + 1) * self.n_layers]) for loop in range(self.loop_count))

    def table(self) -> list[list[str]]:
        """Rows per loop of mixer names, for printing and golden tests."""
        if self.is_random:
            full = self.n_random_full
            return [[f"random({full} full of {self.loop_count * self.n_layers}, window={self.random_window})"]]
        return [[str(s) for s in row] for row in self.specs]


def parse_mixer(token: str, default_window: int | None = None) -> MixerSpec:
    """`gdn` -> MixerSpec('gdn'); `swa=128` -> MixerSpec('window', 128)."""
    name, _, arg = token.strip().lower().partition("=")
    name = ALIASES.get(name, name)
    if name not in MIXER_FAMILIES:
        raise ValueError(
            f"unknown mixer {token!r}; valid mixers: {', '.join(MIXER_FAMILIES)} (aliases: {', '.join(ALIASES)})"
        )
    if name != "window":
        if arg:
            raise ValueError(f"mixer {name!r} takes no argument, got {token!r}")
        return MixerSpec(name)
    if not arg:
        if default_window is None:
            raise ValueError(f"mixer {token!r} needs a window size, e.g. 'window=512'")
        return MixerSpec("window", default_window)
    if not arg.isdigit() or int(arg) <= 0:
        raise ValueError(f"window size in {token!r} must be a positive integer")
    return MixerSpec("window", int(arg))


def _int_field(value: str, what: str, text: str, minimum: int = 0) -> int:
    if not value.isdigit() or int(value) < minimum:
        raise ValueError(f"{what} in pattern {text!r} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _parse_layers(text: str, n_layers: int, default_window: int | None) -> tuple[MixerSpec, ...]:
    kind, sep, rest = text.partition(":")
    if not sep:
        unit = [parse_mixer(tok, default_window) for tok in text.split(",")]
        return tuple(unit[i % len(unit)] for i in range(n_layers))
    fields = rest.split(":")
    if kind in ("interleave", "interleaved"):
        if len(fields) != 4:
            raise ValueError(f"{text!r}: expected 'interleave:a:b:mixer_a:mixer_b'")
        a = _int_field(fields[0], "a", text)
        b = _int_field(fields[1], "b", text)
        if a + b == 0:
            raise ValueError(f"{text!r}: a + b must be positive")
        m1, m2 = parse_mixer(fields[2], default_window), parse_mixer(fields[3], default_window)
        return tuple(m1 if i % (a + b) < a else m2 for i in range(n_layers))
    if kind == "bookend":
        if len(fields) not in (2, 3, 4):
            raise ValueError(f"{text!r}: expected 'bookend:outer:inner[:n[:m]]'")
        outer, inner = parse_mixer(fields[0], default_window), parse_mixer(fields[1], default_window)
        n = _int_field(fields[2], "n", text, minimum=1) if len(fields) >= 3 else 1
        m = _int_field(fields[3], "m", text, minimum=1) if len(fields) == 4 else n
        if n + m > n_layers:
            raise ValueError(f"{text!r}: n + m = {n + m} outer layers exceed n_layers = {n_layers}")
        return tuple(outer if i < n or i >= n_layers - m else inner for i in range(n_layers))
    if kind in ("front", "back"):
        if len(fields) != 3:
            raise ValueError(f"{text!r}: expected '{kind}:n:rare:base'")
        n = _int_field(fields[0], "n", text)
        if n > n_layers:
            raise ValueError(f"{text!r}: n = {n} exceeds n_layers = {n_layers}")
        rare, base = parse_mixer(fields[1], default_window), parse_mixer(fields[2], default_window)
        chosen = range(n) if kind == "front" else range(n_layers - n, n_layers)
        return tuple(rare if i in chosen else base for i in range(n_layers))
    if kind == "random":
        raise ValueError(f"{text!r}: 'random:w:f' is a whole pattern and cannot be one loop of a '->' schedule")
    raise ValueError(f"unknown layout {kind!r} in pattern {text!r}; valid layouts: {', '.join(LAYOUT_KINDS)}")


def _parse_random(text: str, n_layers: int, loop_count: int, default_window: int | None) -> Layout:
    fields = text.split(":")[1:]
    if len(fields) != 2:
        raise ValueError(f"{text!r}: expected 'random:w:f' (w window slots : f full slots)")
    w, f = _int_field(fields[0], "w", text), _int_field(fields[1], "f", text)
    if w + f == 0:
        raise ValueError(f"{text!r}: w + f must be positive")
    if default_window is None:
        raise ValueError(f"{text!r}: random placement needs a window size (ModelArgs.window)")
    n_full = int(n_layers * loop_count * f / (w + f))
    layout = Layout(((MixerSpec("full"),) * n_layers,) * loop_count, n_full, default_window)
    return Layout(layout.draw(0), n_full, default_window)


def parse_pattern(pattern: str, n_layers: int, loop_count: int, default_window: int | None = None) -> Layout:
    """Expand a pattern string into the full (loop, layer) table and check that weights can be shared."""
    if n_layers < 1 or loop_count < 1:
        raise ValueError(f"n_layers and loop_count must be >= 1, got {n_layers} and {loop_count}")
    text = "".join(pattern.split()).lower()
    if not text:
        raise ValueError("empty mixer pattern")
    if text.startswith("random:") and "->" not in text:
        return _parse_random(text, n_layers, loop_count, default_window)
    segments = text.split("->")
    if len(segments) not in (1, loop_count):
        raise ValueError(
            f"pattern {pattern!r} has {len(segments)} loop segments but loop_count = {loop_count}; "
            "give one segment for all loops or exactly one per loop"
        )
    rows = [_parse_layers(seg, n_layers, default_window) for seg in segments]
    specs = tuple(rows[loop if len(rows) > 1 else 0] for loop in range(loop_count))
    for layer in range(n_layers):
        families = {specs[loop][layer].family for loop in range(loop_count)}
        if len(families) > 1:
            raise ValueError(
                f"pattern {pattern!r}: layer {layer} mixes weight families {sorted(families)} across loops; "
                "weights are shared across loops, so only full/window may alternate in one layer"
            )
    return Layout(specs)
