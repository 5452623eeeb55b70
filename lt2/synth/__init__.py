"""Synthetic state tracking + recall (the paper's Figure 9): generator, arms, curriculum runner.

task.py        the pointer-swap program: vocabulary, vectorised sampler with exact ground truth, tokens
args.py        configuration (task, curriculum, training, backbone)
arms.py        the mixer layouts compared (pure and 1:1 hybrids) on the synthetic backbone
curriculum.py  train stage by stage until accuracy >= threshold; resumable; n_max per run
entry.py       `lt2 synth run`: one (arm, loop_count) run with provenance
"""
