"""DeltaNet (Schlag et al., 2021; Yang et al., 2024): the delta rule without decay.

    S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T,   o_t = S_t^T q_t

As fla 0.6's DeltaNet with its defaults (silu + L2-normalised q/k, sigmoid beta, short convolutions);
value head dim = expand_v * head_dim. Output: per-head RMSNorm times silu(W_g x) when use_gate (fla's
DeltaNet defaults to no gate; LinearArgs defaults to one), else the plain norm. Everything lives in the
shared base, lt2/mixers/delta.py, which is this recurrence with the decay hook left empty.
"""

from __future__ import annotations

from lt2.mixers.delta import DeltaRuleMixer


class DeltaNet(DeltaRuleMixer):
    """The plain delta rule: DeltaRuleMixer with no decay and the silu output gate."""
