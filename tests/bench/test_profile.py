"""`lt2 bench profile`: the kernel classifier on real kernel names (cuBLAS, cutlass, flash, fla, Inductor, our
Triton kernels, CPU aten ops), the per-step summary on a synthetic profile, and one CPU run of
`profile decode` and `profile train` on a tiny recipe whose record must add up (classes to the kernel total,
kernel time within the step time) and carry its provenance. The CUDA path is checked on a GPU node (see
results/paper/bench/README.md).

Run: pytest tests/bench/test_profile.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lt2.bench.profile import CLASSES, RULES, TOP, kernel_class, summarise
from lt2.cli import main

TINY = Path(__file__).parents[2] / "config" / "recipes" / "tiny"

# (name as the profiler reports it, class): CUDA names from H100 profiles of our 1.3B / 600M models and from
# the libraries' kernels, then our own Triton kernels (lt2/kernels), then CPU aten ops.
NAMES = [
    # matmul: cuBLAS GEMV / GEMM, cutlass, nvjet, split-K reduce
    ("void gemv2T_kernel_val<int, int, __nv_bfloat16, __nv_bfloat16, float, float, 128, 16, 4, 4, false, false, "
     "cublasGemvParamsEx<int, cublasGemvTensorStridedBatched<__nv_bfloat16 const>, cublasGemvTensorStridedBatched"
     "<__nv_bfloat16 const>, cublasGemvTensorStridedBatched<__nv_bfloat16>, float> >(cublasGemvParamsEx<int, "
     "cublasGemvTensorStridedBatched<__nv_bfloat16 const>, cublasGemvTensorStridedBatched<__nv_bfloat16 const>, "
     "cublasGemvTensorStridedBatched<__nv_bfloat16>, float>, float, float)", "matmul"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel"
     "__5x_cublas", "matmul"),
    ("void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn_align8>("
     "cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn_align8::Params)", "matmul"),
    ("void splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, true, false, false>("
     "cublasSplitKParams<float>, float const*, __nv_bfloat16 const*, __nv_bfloat16*, float const*, float const*, "
     "__nv_bfloat16 const*, float const*, __nv_bfloat16*, void*, long, float*, int*)", "matmul"),
    ("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NNT", "matmul"),
    ("ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_64x3_tn", "matmul"),
    ("triton_tem_fused_mm_3", "matmul"),
    # attention: flash / memory-efficient SDPA (a cutlass template), cuDNN, flex, our split-KV and DSA kernels
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4, false, false, "
     "cutlass::bfloat16_t, Flash_kernel_traits<128, 128, 64, 4, cutlass::bfloat16_t> >, false, true, false, false, "
     "true, true, false, false>(pytorch_flash::Flash_fwd_params)", "attention"),
    ("fmha_cutlassF_bf16_aligned_64x128_rf_sm80(PyTorchMemEffAttention::AttentionKernel<cutlass::bfloat16_t, "
     "cutlass::arch::Sm80, true, 64, 128, 128, true, true>::Params)", "attention"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x128_4x1x1_kernel0_0", "attention"),
    ("triton_tem_fused_0", "attention"),
    ("decode_attn_split_kernel", "attention"),
    ("decode_attn_combine_kernel", "attention"),
    ("sparse_attn_fwd_kernel", "attention"),
    ("sparse_attn_bwd_kernel", "attention"),
    ("parallel_nsa_fwd_kernel", "attention"),
    # linear mixer: fla's chunk / recurrent / WY / conv kernels, our fused GDN decode step, tilelang
    ("chunk_gated_delta_rule_fwd_kernel_h_blockdim64", "linear_mixer"),
    ("chunk_gated_delta_rule_bwd_kernel_dhu_blockdim64", "linear_mixer"),
    ("chunk_fwd_kernel_o", "linear_mixer"),
    ("chunk_bwd_kernel_dqkwg", "linear_mixer"),
    ("chunk_local_cumsum_scalar_kernel", "linear_mixer"),
    ("chunk_scaled_dot_kkt_fwd_kernel", "linear_mixer"),
    ("recompute_w_u_fwd_kernel", "linear_mixer"),
    ("prepare_wy_repr_bwd_kernel", "linear_mixer"),
    ("solve_tril_16x16_kernel", "linear_mixer"),
    ("merge_16x16_to_64x64_inverse_kernel", "linear_mixer"),
    ("fused_recurrent_gated_delta_rule_fwd_kernel", "linear_mixer"),
    ("chunk_gla_fwd_kernel_o", "linear_mixer"),
    ("causal_conv1d_fwd_kernel", "linear_mixer"),
    ("fused_gdn_decode_kernel", "linear_mixer"),
    ("kernel_kernel", "linear_mixer"),
    # sparse selection: torch.topk's kernels, DSA's selected probabilities, NSA's block top-k
    ("void at::native::sbtopk::gatherTopK<float, unsigned int, 2, false>(at::cuda::detail::TensorInfo<float, "
     "unsigned int>, unsigned int, unsigned int, bool, unsigned int, unsigned int, at::cuda::detail::TensorInfo"
     "<float, unsigned int>, unsigned int, at::cuda::detail::TensorInfo<long, unsigned int>, unsigned int, float*)",
     "sparse_selection"),
    ("void at::native::mbtopk::radixFindKthValues<long, unsigned int, unsigned int, 2>(at::cuda::detail::TensorInfo"
     "<long const, unsigned int>, unsigned int, unsigned int*, unsigned int, unsigned int, unsigned int, int, "
     "unsigned int, unsigned int, unsigned int*, short*, unsigned int*, unsigned int*)", "sparse_selection"),
    ("selected_probs_kernel", "sparse_selection"),
    ("parallel_nsa_kernel_topk", "sparse_selection"),
    # norm: ATen's layer norm, fla's norms, Inductor's fused RMSNorm (its rsqrt)
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float, false>(int, float, "
     "float const*, float const*, float const*, float*, float*, float*)", "norm"),
    ("l2norm_fwd_kernel", "norm"),
    ("layer_norm_gated_fwd_kernel", "norm"),
    ("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_0", "norm"),
    ("triton_per_fused__to_copy_add_embedding_mean_mul_pow_rsqrt_1", "norm"),
    # elementwise: ATen's binary / unary kernels (RoPE's cos and sin among them), Inductor pointwise
    ("void at::native::vectorized_elementwise_kernel<4, at::native::BinaryFunctor<c10::BFloat16, c10::BFloat16, "
     "c10::BFloat16, at::native::binary_internal::MulFunctor<float> >, std::array<char*, 3ul> >(int, "
     "at::native::BinaryFunctor<c10::BFloat16, c10::BFloat16, c10::BFloat16, at::native::binary_internal::"
     "MulFunctor<float> >, std::array<char*, 3ul>)", "elementwise"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, std::array"
     "<char*, 3ul> >(int, at::native::CUDAFunctor_add<c10::BFloat16>, std::array<char*, 3ul>)", "elementwise"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::cos_kernel_cuda(at::TensorIteratorBase&)::"
     "{lambda()#2}::operator()() const::{lambda()#10}::operator()() const::{lambda(float)#1}, std::array<char*, "
     "2ul> >(int, at::native::cos_kernel_cuda(at::TensorIteratorBase&)::{lambda()#2}::operator()() const::"
     "{lambda()#10}::operator()() const::{lambda(float)#1}, std::array<char*, 2ul>)", "elementwise"),
    ("void at::native::unrolled_elementwise_kernel<at::native::AUnaryFunctor<float, float, float, "
     "at::native::binary_internal::MulFunctor<float> >, std::array<char*, 2ul>, 4, TrivialOffsetCalculator<1, "
     "unsigned int>, TrivialOffsetCalculator<1, unsigned int>, at::native::memory::LoadWithCast<1>, "
     "at::native::memory::StoreWithCast<1> >(int, ...)", "elementwise"),
    ("triton_poi_fused_add_mul_silu_2", "elementwise"),
    ("triton_poi_fused_cat_4", "elementwise"),
    # reduction: ATen's reduce kernels (a norm's sum of squares too), softmax / NLL of the loss, Inductor
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::NormTwoOps<float, float, float>"
     ", unsigned int, float, 4, 4> >(at::native::ReduceOp<float, at::native::NormTwoOps<float, float, float>, "
     "unsigned int, float, 4, 4>)", "reduction"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float, float, float, at::native::(anonymous "
     "namespace)::LogSoftMaxForwardEpilogue>(float*, float const*, int)", "reduction"),
    ("void at::native::(anonymous namespace)::nll_loss_forward_reduce_cuda_kernel_2d<float, float, long>(float*, "
     "float*, float const*, long const*, float const*, bool, long, long, long, long)", "reduction"),
    ("triton_red_fused_sum_3", "reduction"),
    # copy: memcpy / memset, copy and cast kernels, cat, index, embedding backward, fill
    ("Memcpy DtoD (Device -> Device)", "copy"),
    ("Memset (Device)", "copy"),
    ("void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::native::"
     "direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda()#7}::operator()"
     "() const::{lambda(c10::BFloat16)#1}> >(at::TensorIteratorBase&, at::native::direct_copy_kernel_cuda(at::"
     "TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda()#7}::operator()() const::{lambda(c10::"
     "BFloat16)#1} const&)::{lambda(int)#1}>(int, ...)", "copy"),
    ("void at::native::(anonymous namespace)::CatArrayBatchedCopy_aligned16_contig<at::native::(anonymous "
     "namespace)::OpaqueType<2u>, unsigned int, 3, 128, 1>(...)", "copy"),
    ("void at::native::index_elementwise_kernel<128, 4, at::native::gpu_index_kernel<at::native::index_kernel_impl"
     "<at::native::OpaqueType<2> >(at::TensorIteratorBase&, c10::ArrayRef<long>, c10::ArrayRef<long>)::{lambda"
     "(char*, char const*, long)#1}>(...)::{lambda(int)#1}>(long, ...)", "copy"),
    ("void at::native::(anonymous namespace)::embedding_backward_feature_kernel<c10::BFloat16, float, long>(long "
     "const*, c10::BFloat16 const*, c10::BFloat16*, int, long, int)", "copy"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, std::array<char*, 1ul> >"
     "(int, at::native::FillFunctor<float>, std::array<char*, 1ul>)", "copy"),
    # optimizer: fused AdamW and the foreach grad-norm of the clipping
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::(anonymous namespace)::"
     "FusedOptimizerTensorListMetadata<4>, at::native::(anonymous namespace)::FusedAdamMathFunctor<float, 4, "
     "(at::native::ADAM_MODE)1, false>, double*, double, double, double, double, double, bool, float*, float*>(...)",
     "optimizer"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::(anonymous namespace)::"
     "TensorListMetadata<1>, at::native::(anonymous namespace)::LpNormFunctor<float, (at::native::NormType)1, "
     "float, float>, float*, int>(...)", "optimizer"),
    ("void at::native::lpnorm_cleanup<float, (at::native::NormType)1, float, float>(float const*, at::native::"
     "TensorListAddresses, int)", "optimizer"),
    # communication: FSDP's collectives
    ("ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "communication"),
    ("ncclDevKernel_ReduceScatter_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "communication"),
    # CPU: outermost aten ops
    ("aten::linear", "matmul"),
    ("aten::mm", "matmul"),
    ("aten::einsum", "matmul"),
    ("aten::scaled_dot_product_attention", "attention"),
    ("aten::linalg_solve_triangular", "linear_mixer"),
    ("aten::topk", "sparse_selection"),
    ("aten::rms_norm", "norm"),
    ("aten::mul", "elementwise"),
    ("aten::silu", "elementwise"),
    ("aten::sum", "reduction"),
    ("aten::_log_softmax", "reduction"),
    ("aten::cumsum", "reduction"),
    ("aten::copy_", "copy"),
    ("aten::cat", "copy"),
    ("aten::embedding", "copy"),
    ("aten::_foreach_lerp_", "optimizer"),
    ("aten::_foreach_norm", "optimizer"),
    ("aten::view", "other"),
    ("aten::as_strided", "other"),
    ("aten::empty", "other"),
    ("some_unknown_kernel", "other"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "cls"), NAMES, ids=[n[:60] for n, _ in NAMES])
def test_kernel_class(name, cls):
    assert kernel_class(name) == cls


def test_every_class_has_examples_and_a_rule():
    assert {cls for _, cls in NAMES} == set(CLASSES)
    assert {cls for _, cls in RULES} == set(CLASSES)  # every class is reachable by a rule


def test_summarise_divides_per_step_and_ranks():
    # two steps: 4 GEMVs of 100 us, 2 adds of 10 us, 1 copy of 30 us, 1 unknown of 5 us
    kernels = [("void gemv2T_kernel_val<...>(...)", 100.0)] * 4 + [("aten::add", 10.0)] * 2
    kernels += [("Memset (Device)", 30.0), ("mystery", 5.0)]
    classes, top = summarise(kernels, steps=2, step_ms=0.5)
    rows = {r.cls: r for r in classes}
    assert [r.cls for r in classes] == list(CLASSES)
    assert rows["matmul"].kernels_per_step == 2 and rows["matmul"].ms_per_step == pytest.approx(0.2)
    assert rows["elementwise"].ms_per_step == pytest.approx(0.01)
    assert rows["copy"].ms_per_step == pytest.approx(0.015) and rows["other"].ms_per_step == pytest.approx(0.0025)
    kernel_ms = 0.2 + 0.01 + 0.015 + 0.0025
    assert sum(r.share_of_kernel_time for r in classes) == pytest.approx(1.0)
    assert rows["matmul"].share_of_kernel_time == pytest.approx(0.2 / kernel_ms)
    assert rows["matmul"].share_of_step == pytest.approx(0.2 / 0.5)
    assert [k.cls for k in top] == ["matmul", "copy", "elementwise", "other"]
    assert top[0].calls_per_step == 2 and top[0].ms_per_step == pytest.approx(0.2)
    assert len(summarise([(f"k{i}", 1.0) for i in range(40)], 1, 1.0)[1]) == TOP


def test_summarise_refuses_an_empty_profile():
    with pytest.raises(RuntimeError, match="no kernels"):
        summarise([], steps=1, step_ms=1.0)


def _check_record(out: Path, mode: str, steps: int) -> dict:
    rec = json.loads(out.read_text())
    assert rec["mode"] == mode and rec["device"] == "cpu" and rec["steps"] == steps
    assert rec["kernel_source"] == "outermost aten ops (CPU)"
    classes = {row["cls"]: row for row in rec["classes"]}
    assert list(classes) == list(CLASSES)
    assert sum(r["ms_per_step"] for r in classes.values()) == pytest.approx(rec["kernel_ms"])
    assert sum(r["kernels_per_step"] for r in classes.values()) == pytest.approx(rec["kernels_per_step"])
    assert 0 < rec["kernel_ms"] * steps <= rec["step_ms"] * steps
    assert rec["step_ms"] == rec["profiled_step_ms"]  # the CPU's step time is the profiled one
    assert rec["idle_share"] == pytest.approx(1 - rec["kernel_ms"] / rec["step_ms"])
    assert classes["matmul"]["kernels_per_step"] > 0 and classes["matmul"]["ms_per_step"] > 0
    top_ms = [k["ms_per_step"] for k in rec["top"]]
    assert len(top_ms) == TOP and top_ms == sorted(top_ms, reverse=True)
    prov = json.loads(Path(f"{out}.prov.json").read_text())
    assert [Path(i["path"]).name for i in prov["inputs"]] == ["_base.yaml", "looped_hybrid_gdn_4to1.yaml"]
    assert prov["config"]["profile"]["mode"] == mode
    assert prov["extra"]["device"] == "cpu" and prov["extra"]["torch"] == rec["torch"]
    return rec


def test_profile_decode_on_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # provenance paths are relative to the working directory
    out = tmp_path / "decode.json"
    argv = ["bench", "profile", "decode", str(TINY / "looped_hybrid_gdn_4to1.yaml"), "model.n_layers=5",
            "--batch", "2", "--ctx", "32", "--steps", "2", "--warmup", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "matmul" in printed and "idle" in printed and "top 15 kernels" in printed
    rec = _check_record(out, "decode", steps=2)
    assert rec["shape"] == {"batch": 2, "ctx": 32}
    classes = {row["cls"]: row for row in rec["classes"]}
    assert classes["attention"]["kernels_per_step"] > 0  # the full-attention layer's SDPA
    assert classes["optimizer"]["kernels_per_step"] == 0


def test_profile_train_on_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out, trace = tmp_path / "train.json", tmp_path / "train.trace.json"
    argv = ["bench", "profile", "train", str(TINY / "looped_hybrid_gdn_4to1.yaml"), "model.n_layers=5",
            "data.batch_size=1", "data.seq_len=32", "--steps", "1", "--warmup", "1", "--out", str(out),
            "--trace", str(trace)]  # fmt: skip
    assert main(argv) == 0
    rec = _check_record(out, "train", steps=1)
    assert rec["engine"] == "eager" and rec["shape"]["seq_len"] == 32
    classes = {row["cls"]: row for row in rec["classes"]}
    assert classes["optimizer"]["kernels_per_step"] > 0  # foreach AdamW and the grad-norm clipping
    assert json.loads(trace.read_text())["traceEvents"]
    assert Path(f"{trace}.prov.json").is_file()


def test_cli_lists_profile_and_refuses_bad_counts(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "profile" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "profile", "--help"])
    assert "{decode,train}" in capsys.readouterr().out
    assert main(["bench", "profile", "train", str(TINY / "looped_pure_full.yaml"), "--steps", "0"]) == 2
    assert "--steps and --warmup must be >= 1" in capsys.readouterr().err
