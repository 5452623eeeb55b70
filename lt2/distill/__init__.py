"""Pretrained looped Transformer (Ouro) -> LT2 hybrid, by distillation.

ouro.py        Ouro checkpoints as a LoopedLM (strict name/shape mapping; Hub snapshot download)
student.py     the student built from the teacher (q/k/v/o copied into the linear mixers)
select.py      which layers stay full attention (config, or KL-guided after stage 1)
losses.py      chunked full-vocabulary KL, attention-output alignment MSE
objectives.py  what stages 1 and 2 minimise, as modules the training loop drives
args.py        the distillation config (teacher, student layout, three stages)
stages.py      `lt2 distill stage1|stage2|stage3` on the training engine
bench.py       decode cost of teacher and student (`lt2 distill bench`)
"""
