"""Micro-benchmark of the decode kernels on one GPU: split-KV attention and the fused gated-DeltaNet step.

Regime. One decode step of one 1.3B layer at batch 1-8, as the CUDA-graph decoder runs it. Attention
reads every visible key and value row once and does ~4 FLOPs per element per query head of the group:
~2 FLOP/byte in bf16 with G = 1. The GDN step reads and writes its fp32 state [Dk, Dv] per head and does
~6 FLOPs per state element: under 1 FLOP/byte. Both are far below the H100's ridge (~300 FLOP/byte), so
they are bound by memory, and each point is reported as achieved bandwidth over the *ideal* bytes (what
the op must move: visible K/V rows, the state read and written, caches, inputs, outputs) next to the
fraction of a measured device copy bandwidth: the roofline of that point.

Timing. Each op is captured in a CUDA graph (no launch overhead, as in the decoder) over enough
independent copies of its buffers that their touched bytes exceed twice the L2 cache, so every call
streams from HBM as in a real step (where ~84 other layers run between two visits of one layer); the
graph is replayed `repeats` times, each timed with CUDA events, and the median per-call time reported.
Warm-up, compilation and capture are excluded. Every kernel is first checked against its oracle.

Points: batch x valid length in a static buffer of `max_len` slots (left padding on the last row):

    attention  split_kv     ours; reads the visible slots only, graph-capturable at any length
               sdpa_static  the attention mixer's current decode branch: mask over the static buffer + SDPA
               sdpa_slice   SDPA on the valid slice [:L] without a mask: dense lower bound for torch, but not
                            capturable across lengths (the slice length is a host value)
    gdn        fused        ours: conv, activations, norms, gates, delta rule and gated RMSNorm in one kernel
               unfused      the same step as a PyTorch op sequence (lt2.kernels.gdn_decode.naive)
               fla          PyTorch conv/activations + fla's fused_recurrent kernel + PyTorch norm and gate
                            (the mixer's CUDA path), when flash-linear-attention is installed

Run: python -m lt2.bench.decode_kernels --out results/bench/decode_kernels.json [--sweep]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lt2.bench.throughput import copy_bandwidth, parse_sizes
from lt2.kernels.decode_attention import naive_decode_attention
from lt2.kernels.decode_attention.split_kv import decode_attention_fwd, default_num_splits
from lt2.kernels.gdn_decode import GDNDecodeStep, naive_gdn_decode_step
from lt2.kernels.gdn_decode.fused import fused_gdn_decode_fwd
from lt2.kernels.gdn_decode.naive import conv_step
from lt2.mixers.attention import masked_attention, visibility
from lt2.testing import assert_close, random_gdn_decode_step

MEMORY_BUDGET = 24e9  # bytes for the buffer copies of one point


@dataclass
class Point:
    kernel: str  # attention | gdn
    method: str
    batch: int
    length: int | None  # valid slots (attention)
    us: float  # median microseconds per call
    bytes: float  # ideal bytes moved per call
    gbps: float
    roofline_fraction: float  # gbps / measured copy bandwidth
    config: str = ""  # launch configuration (sweep)


def time_calls(calls: list[Callable[[], object]], repeats: int) -> float:
    """Median seconds per call of `calls` run back to back inside one CUDA graph (see the module doc)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # compile / autotune / allocate outside the capture
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / len(calls))
    del graph
    return statistics.median(times)


def n_copies(touched: float, allocated: float, l2_bytes: int) -> int:
    """Buffer copies so that one graph touches > 2x L2 of distinct memory, within MEMORY_BUDGET."""
    return max(1, min(math.ceil(2 * l2_bytes / touched), int(MEMORY_BUDGET // allocated), 64))


# ------------------------------------------------------------------------------------------------ attention
def attention_buffers(batch: int, max_len: int, length: int, heads: int, kv_heads: int, dim: int, dtype) -> dict:
    """q [B, H, D], a static cache [B, max_len, Hkv, D] holding `length` slots, the last row left-padded."""
    key_mask = torch.zeros(batch, max_len, dtype=torch.bool, device="cuda")
    key_mask[:, :length] = True
    if batch > 1:
        key_mask[-1, : length // 4] = False
    return dict(
        q=torch.randn(batch, heads, dim, device="cuda", dtype=dtype),
        k=torch.randn(batch, max_len, kv_heads, dim, device="cuda", dtype=dtype),
        v=torch.randn(batch, max_len, kv_heads, dim, device="cuda", dtype=dtype),
        slots=torch.tensor([length - 1], device="cuda"),  # the decoder's device index of the new token
        key_mask=key_mask,
    )


def attention_methods(buf: dict, length: int, **config) -> dict[str, Callable[[], torch.Tensor]]:
    q, k, v, slots, key_mask = buf["q"], buf["k"], buf["v"], buf["slots"], buf["key_mask"]
    gqa = q.shape[1] != k.shape[2]

    def split_kv():
        return decode_attention_fwd(q, k, v, slots + 1, key_mask, None, None, **config)

    def sdpa_static():  # lt2.mixers.attention.Attention._attend_full_cache at decode, after the cache write
        mask = visibility(slots, torch.arange(k.shape[1], device="cuda"), None, key_mask)
        return masked_attention(q[:, None], k, v, mask)[:, 0]

    def sdpa_slice():
        qh, kh, vh = q[:, :, None], k[:, :length].transpose(1, 2), v[:, :length].transpose(1, 2)
        return F.scaled_dot_product_attention(qh, kh, vh, enable_gqa=gqa)[:, :, 0]

    return {"split_kv": split_kv, "sdpa_static": sdpa_static, "sdpa_slice": sdpa_slice}


def attention_bytes(batch: int, length: int, heads: int, kv_heads: int, dim: int, elt: int) -> float:
    """K and V rows of the valid slots, q and o (padding ignored: an upper bound on what must be read)."""
    return (2 * batch * length * kv_heads * dim + 2 * batch * heads * dim) * elt


def bench_attention(args, bandwidth: float, l2_bytes: int, dtype) -> list[Point]:
    points = []
    elt = torch.finfo(dtype).bits // 8
    for batch in args.batch:
        for length in args.lengths:
            shape = (batch, args.max_len, length, args.heads, args.kv_heads, args.head_dim)
            ideal = attention_bytes(batch, length, args.heads, args.kv_heads, args.head_dim, elt)
            allocated = 2 * batch * args.max_len * args.kv_heads * args.head_dim * elt
            bufs = [attention_buffers(*shape, dtype) for _ in range(n_copies(ideal, allocated, l2_bytes))]
            b0 = bufs[0]
            expected = naive_decode_attention(b0["q"], b0["k"], b0["v"], b0["slots"] + 1, b0["key_mask"])
            assert_close("split_kv vs oracle", attention_methods(b0, length)["split_kv"](), expected, rtol=1e-2)
            configs = [{}]
            if args.sweep:
                ns = default_num_splits(batch * args.kv_heads, args.max_len, b0["q"].device)
                configs += [
                    dict(block_s=bs, num_warps=nw, n_splits=max(1, min(64, int(ns * f))))
                    for bs, nw in ((32, 4), (64, 4), (64, 8), (128, 8))
                    for f in (0.5, 1, 2)
                ]
            for config in configs:
                methods = [m for m in attention_methods(b0, length) if m == "split_kv" or not config]
                for method in methods:
                    calls = [attention_methods(b, length, **config)[method] for b in bufs]
                    seconds = time_calls(calls, args.repeats)
                    gbps = ideal / seconds / 1e9
                    label = ",".join(f"{key}={val}" for key, val in config.items())
                    point = Point(
                        "attention", method, batch, length, seconds * 1e6, ideal, gbps, gbps * 1e9 / bandwidth, label
                    )
                    points.append(point)
                    print(format_point(point), flush=True)
            del bufs
            torch.cuda.empty_cache()
    return points


# ------------------------------------------------------------------------------------------------------ gdn
def fla_gdn_step(step: GDNDecodeStep) -> torch.Tensor:
    """The mixer's CUDA decode path: PyTorch convs and gates, fla's recurrent kernel, PyTorch norm and gate."""
    from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule

    B, H, Dk, Dv = step.state.shape
    dtype = step.q_in.dtype
    q = conv_step(step.q_in, step.conv_q, step.w_q).to(dtype).view(B, 1, H, Dk)
    k = conv_step(step.k_in, step.conv_k, step.w_k).to(dtype).view(B, 1, H, Dk)
    v = conv_step(step.v_in, step.conv_v, step.w_v).to(dtype).view(B, 1, H, Dv)
    beta = torch.sigmoid(step.b.float()).to(dtype)[:, None]
    g = -step.A_log.float().exp() * F.softplus(step.a.float() + step.dt_bias.float())
    o, state = fused_recurrent_gated_delta_rule(
        q,
        k,
        v,
        g=g[:, None],
        beta=beta,
        initial_state=step.state,
        output_final_state=True,
        use_qk_l2norm_in_kernel=True,
    )
    step.state.copy_(state)
    y = F.rms_norm(o[:, 0].float(), (Dv,), step.o_norm_weight.float(), step.eps)
    return (y * F.silu(step.gate.float().view(B, H, Dv))).reshape(B, H * Dv).to(dtype)


def gdn_bytes(batch: int, heads: int, dk: int, dv: int, conv: int, elt: int) -> float:
    """State read + write (fp32), conv caches read + write, the token's inputs, conv weights, y."""
    channels = heads * (2 * dk + dv)
    state = 2 * batch * heads * dk * dv * 4
    caches = 2 * batch * (conv - 1) * channels * elt
    inputs = batch * (channels + heads * dv + 2 * heads) * elt  # q, k, v, gate, a, b
    weights = channels * conv * elt + dv * elt + 2 * heads * 4
    return state + caches + inputs + weights + batch * heads * dv * elt


def bench_gdn(args, bandwidth: float, l2_bytes: int, dtype) -> list[Point]:
    points = []
    elt = torch.finfo(dtype).bits // 8
    dims = (args.gdn_heads, args.gdn_dk, args.gdn_dv, args.conv)
    have_fla = importlib.util.find_spec("fla") is not None
    for batch in args.batch:
        ideal = gdn_bytes(batch, *dims, elt)
        copies = n_copies(ideal, ideal, l2_bytes)
        bufs = [random_gdn_decode_step(batch, *dims, device="cuda", dtype=dtype) for _ in range(copies)]
        check = bufs[0].clone_in_place()
        assert_close("fused vs oracle", fused_gdn_decode_fwd(bufs[0]), naive_gdn_decode_step(check), rtol=1e-2)
        methods: dict[str, Callable[[GDNDecodeStep], Callable[[], torch.Tensor]]] = {
            "fused": lambda b: lambda: fused_gdn_decode_fwd(b),
            "unfused": lambda b: lambda: naive_gdn_decode_step(b),
        }
        if have_fla:
            methods["fla"] = lambda b: lambda: fla_gdn_step(b)
        runs = [(name, make, "") for name, make in methods.items()]
        if args.sweep:
            for bv, nw in ((64, 4), (64, 8), (128, 4), (128, 8), (256, 8), (256, 16)):
                runs.append(
                    (
                        "fused",
                        lambda b, bv=bv, nw=nw: lambda: fused_gdn_decode_fwd(b, block_v=bv, num_warps=nw),
                        f"block_v={bv},num_warps={nw}",
                    )
                )
        for name, make, label in runs:
            seconds = time_calls([make(b) for b in bufs], args.repeats)
            gbps = ideal / seconds / 1e9
            point = Point("gdn", name, batch, None, seconds * 1e6, ideal, gbps, gbps * 1e9 / bandwidth, label)
            points.append(point)
            print(format_point(point), flush=True)
        del bufs
        torch.cuda.empty_cache()
    return points


# --------------------------------------------------------------------------------------------------- report
def format_point(p: Point) -> str:
    length = f"{p.length:>6}" if p.length is not None else "     -"
    return (
        f"{p.kernel:<9} {p.method:<12} B={p.batch:<2} L={length} {p.us:>9.1f} us {p.bytes / 1e6:>9.2f} MB "
        f"{p.gbps:>7.0f} GB/s {100 * p.roofline_fraction:>5.1f}% {p.config}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lt2.bench.decode_kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON record, e.g. results/bench/decode_kernels.json (+ .prov.json)")
    p.add_argument("--batch", type=parse_sizes, default=[1, 8], help="batch sizes, e.g. 1,8")
    p.add_argument("--lengths", type=parse_sizes, default=[1024, 8192, 32768], help="valid slots, e.g. 1k,8k,32k")
    p.add_argument("--max-len", type=int, default=None, help="static cache slots (default: the largest length)")
    p.add_argument("--heads", type=int, default=16, help="attention query heads (1.3B: 16)")
    p.add_argument("--kv-heads", type=int, default=16, help="attention KV heads (1.3B: 16)")
    p.add_argument("--head-dim", type=int, default=128, help="attention head dim (1.3B: 128)")
    p.add_argument("--gdn-heads", type=int, default=16, help="GDN heads (1.3B: 16)")
    p.add_argument("--gdn-dk", type=int, default=96, help="GDN key head dim (1.3B: 96)")
    p.add_argument("--gdn-dv", type=int, default=192, help="GDN value head dim (1.3B: 192)")
    p.add_argument("--conv", type=int, default=4, help="short convolution size")
    p.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    p.add_argument("--repeats", type=int, default=50, help="timed graph replays per point")
    p.add_argument("--sweep", action="store_true", help="also time other block sizes, warps and split counts")
    args = p.parse_args(argv)
    args.max_len = args.max_len or max(args.lengths)
    if max(args.lengths) > args.max_len:
        raise ValueError(f"lengths {args.lengths} exceed --max-len {args.max_len}")
    return args


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    from lt2.report import provenance

    args = parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("lt2.bench.decode_kernels needs a CUDA device")
    import triton

    out = Path(args.out)
    command = [
        sys.executable.rsplit("/", 1)[-1],
        "-m",
        "lt2.bench.decode_kernels",
        *(argv if argv is not None else sys.argv[1:]),
    ]
    with provenance.record([out], config=vars(args), command=command):  # opened before the measurements
        device = torch.device("cuda")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
        props = torch.cuda.get_device_properties(device)
        bandwidth = copy_bandwidth(device)
        facts = {
            "device": props.name,
            "sm_count": props.multi_processor_count,
            "l2_bytes": props.L2_cache_size,
            "copy_bandwidth_GBps": bandwidth / 1e9,
            "torch": torch.__version__,
            "triton": triton.__version__,
            "fla": importlib.util.find_spec("fla") is not None,
            "dtype": args.dtype,
            "max_len": args.max_len,
            "attention": {"heads": args.heads, "kv_heads": args.kv_heads, "head_dim": args.head_dim},
            "gdn": {"heads": args.gdn_heads, "dk": args.gdn_dk, "dv": args.gdn_dv, "conv": args.conv},
        }
        l2_mib = props.L2_cache_size / 2**20
        print(f"{props.name}: copy bandwidth {bandwidth / 1e9:.0f} GB/s (read + write), L2 {l2_mib:.0f} MiB")
        print(
            f"{'kernel':<9} {'method':<12} {'batch':<4} {'length':>8} {'time':>12} {'ideal':>12} "
            f"{'achieved':>12} roofline"
        )
        points = bench_attention(args, bandwidth, props.L2_cache_size, dtype)
        points += bench_gdn(args, bandwidth, props.L2_cache_size, dtype)
        record = {"facts": facts, "points": [asdict(p) for p in points]}
        provenance.atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
