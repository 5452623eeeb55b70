"""The arms of the synthetic study: one mixer layout per paper label, built on the synthetic backbone.

Pure mixers repeat one mixer in all four layers; hybrids interleave two mixers 1:1 in the 4-layer block
(the paper's 4:1 ratio does not fit four layers), the linear or sparse mixer first and attention last, as
in the Full+GDN flagship. `gdn_negeig` is pure GDN with allow_neg_eigval (beta in (0, 2), so the state
transition I - beta k k^T can have a negative eigenvalue; theory says this decides state tracking).

NSA layers can run their own head count (`nsa_heads`, one KV head, head_dim = dim / nsa_heads): fla's NSA
kernel needs n_heads / n_kv_heads to be a power of two >= 16, so the paper budget gives NSA arms 16 query
heads of 16 channels (width 256 as the others), where the paper's 4 heads of 64 cannot run on the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lt2.config import ModelArgs, resolve, to_dict


@dataclass(frozen=True)
class Arm:
    label: str  # the paper's name
    pattern: str  # lt2.model.pattern grammar
    hybrid: bool  # drawn below the line in the figure
    model: dict[str, Any] = field(default_factory=dict)  # further ModelArgs settings of this arm

    @property
    def has_nsa(self) -> bool:
        return "nsa" in self.pattern


ARMS: dict[str, Arm] = {
    "transformer": Arm("Looped Transformer", "full", hybrid=False),
    "nsa": Arm("Looped NSA", "nsa", hybrid=False),
    "gdn": Arm("Looped GDN", "gdn", hybrid=False),
    "gdn_negeig": Arm("Looped GDN (neg. eigval)", "gdn", hybrid=False, model={"linear": {"allow_neg_eigval": True}}),
    "full_window": Arm("Looped Full+Window", "interleave:1:1:window:full", hybrid=True),
    "gdn_window": Arm("Looped GDN+Window", "interleave:1:1:gdn:window", hybrid=True),
    "gdn_nsa": Arm("Looped GDN+NSA", "interleave:1:1:gdn:nsa", hybrid=True),
    "full_gdn": Arm("Looped Full+GDN", "interleave:1:1:gdn:full", hybrid=True),
}
LOOP_COUNTS = (1, 2, 4, 8)  # the paper's sweep


def get_arm(name: str) -> Arm:
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; valid arms: {', '.join(ARMS)}")
    return ARMS[name]


def arm_model(base: ModelArgs, arm: str, loop_count: int, nsa_heads: int = 0) -> ModelArgs:
    """The backbone `base` with the arm's layout (and settings) and `loop_count` loops; arms with NSA layers
    get `nsa_heads` query heads over one KV head (0: the backbone's heads)."""
    if loop_count < 1:
        raise ValueError(f"loop_count must be >= 1, got {loop_count}")
    spec = get_arm(arm)
    heads = {}
    if spec.has_nsa and nsa_heads:
        if base.dim % nsa_heads:
            raise ValueError(f"nsa_heads={nsa_heads} does not divide the width {base.dim}")
        heads = {"n_heads": nsa_heads, "n_kv_heads": nsa_heads, "head_dim": base.dim // nsa_heads,
                 "nsa": {"n_kv_heads": 1}}  # fmt: skip
    return resolve(ModelArgs, to_dict(base), spec.model, heads, {"pattern": spec.pattern, "loop_count": loop_count})
