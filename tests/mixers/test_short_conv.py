"""The short causal convolution in front of the linear mixers keeps its input's dtype: under bf16 autocast its
fp32 weight must not turn q/k/v into fp32 for the kernels downstream (fla's conv does the same).

Run: pytest tests/mixers/test_short_conv.py
"""

from __future__ import annotations

import torch

from lt2.mixers.base import ShortConv


def _conv(channels: int = 24, size: int = 4) -> ShortConv:
    torch.manual_seed(0)
    conv = ShortConv(channels, size)
    conv.reset_parameters()
    return conv


def test_bf16_input_with_fp32_weight_stays_bf16_and_close_to_fp32():
    conv = _conv()  # fp32 weight, as under autocast
    x = torch.randn(3, 17, 24).to(torch.bfloat16)
    y = conv(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), conv(x.float()), rtol=2e-2, atol=2e-2)


def test_cached_steps_keep_the_dtype_and_equal_the_whole_sequence():
    conv = _conv()
    x = torch.randn(2, 9, 24).to(torch.bfloat16)
    cache = conv.init_cache(2, x.device, torch.bfloat16)
    steps = torch.cat([conv(x[:, t : t + 1], cache=cache) for t in range(9)], dim=1)
    assert steps.dtype == torch.bfloat16
    torch.testing.assert_close(steps, conv(x), rtol=0, atol=0)
