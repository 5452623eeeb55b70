# Distillation: a pretrained looped Transformer (Ouro-1.4B at paper scale; the tiny run's own looped_pure_full
# model in the default) -> an LT2 Full+GDN hybrid, in three training stages on the training engine, then
# export, evaluation and decode cost of teacher and student side by side (the `distill` table).
#   distill_stage1 -> distill_stage2 -> distill_stage3 -> distill_export
#     -> distill_zeroshot / distill_eval (PPL) / distill_longctx -> distill_bench
# Checkpoints go to runs/<name>/distill/<scale>/<stage>/ (outside the outputs, so that a retried job resumes).


rule distill_teacher:
    output:
        model=result_path("distill/{scale}/teacher/model.safetensors"),
        config=result_path("distill/{scale}/teacher/config.json"),
    log:
        log_path("distill/{scale}/teacher.log"),
    params:
        out=subpath(output.model, parent=True),
        hub=distill_hub_id,
        revision=distill_revision,
    conda:
        "../envs/cpu.yaml"
    message:
        "convert the Ouro teacher {params.hub}@{params.revision}"
    shell:
        "lt2 convert ouro --hub {params.hub} --revision {params.revision} {params.out} > {log} 2>&1"


rule distill_tokenizer:
    output:
        directory(result_path("distill/{scale}/tokenizer")),
    log:
        log_path("distill/{scale}/tokenizer.log"),
    params:
        hub=distill_hub_id,
        revision=distill_revision,
    conda:
        "../envs/cpu.yaml"
    message:
        "tokenizer of the Ouro teacher {params.hub}"
    shell:
        "lt2 data tokenizer --kind hf --name {params.hub} --revision {params.revision} --out {output} > {log} 2>&1"


rule distill_stage1:
    input:
        config=DISTILL.get("config", []),
        teacher=distill_teacher_files,
        chunks=distill_chunks,
        val=distill_val,
        tokenizer=distill_tokenizer_input,
    output:
        model=result_path("distill/{scale}/stage1/model.safetensors"),
        metrics=result_path("distill/{scale}/stage1/metrics.jsonl"),
    log:
        log_path("distill/{scale}/stage1.log"),
    params:
        out=subpath(output.model, parent=True),
        dump=run_path("distill/{scale}/stage1"),
        teacher=distill_teacher_param,
        overrides=distill_overrides("stage1"),
        nproc=train_nproc,
    conda:
        conda_env
    message:
        "distillation stage 1 (attention-output alignment) at {wildcards.scale}"
    shell:
        "lt2 distill stage1 {input.config} {params.overrides} --teacher {params.teacher} --dump-dir {params.dump}"
        " --out {params.out} --nproc-per-node {params.nproc} > {log} 2>&1"


rule distill_stage2:
    input:
        config=DISTILL.get("config", []),
        teacher=distill_teacher_files,
        init=rules.distill_stage1.output.model,
        chunks=distill_chunks,
        val=distill_val,
        tokenizer=distill_tokenizer_input,
    output:
        model=result_path("distill/{scale}/stage2/model.safetensors"),
        metrics=result_path("distill/{scale}/stage2/metrics.jsonl"),
    log:
        log_path("distill/{scale}/stage2.log"),
    params:
        out=subpath(output.model, parent=True),
        init=subpath(input.init, parent=True),
        dump=run_path("distill/{scale}/stage2"),
        teacher=distill_teacher_param,
        overrides=distill_overrides("stage2"),
        nproc=train_nproc,
    conda:
        conda_env
    message:
        "distillation stage 2 (full-vocabulary KL) at {wildcards.scale}"
    shell:
        "lt2 distill stage2 {input.config} {params.overrides} --teacher {params.teacher} --init {params.init}"
        " --dump-dir {params.dump} --out {params.out} --nproc-per-node {params.nproc} > {log} 2>&1"


rule distill_stage3:
    input:
        config=DISTILL.get("config", []),
        init=rules.distill_stage2.output.model,
        chunks=distill_chunks,
        val=distill_val,
        tokenizer=distill_tokenizer_input,
    output:
        model=result_path("distill/{scale}/stage3/model.safetensors"),
        metrics=result_path("distill/{scale}/stage3/metrics.jsonl"),
    log:
        log_path("distill/{scale}/stage3.log"),
    params:
        out=subpath(output.model, parent=True),
        init=subpath(input.init, parent=True),
        dump=run_path("distill/{scale}/stage3"),
        overrides=distill_overrides("stage3"),
        nproc=train_nproc,
    conda:
        conda_env
    message:
        "distillation stage 3 (cross-entropy fine-tune) at {wildcards.scale}"
    shell:
        "lt2 distill stage3 {input.config} {params.overrides} --init {params.init}"
        " --dump-dir {params.dump} --out {params.out} --nproc-per-node {params.nproc} > {log} 2>&1"


rule distill_export:
    input:
        rules.distill_stage3.output.model,
    output:
        model=result_path("distill/{scale}/student/model.safetensors"),
        config=result_path("distill/{scale}/student/config.json"),
    log:
        log_path("distill/{scale}/export.log"),
    params:
        run=run_path("distill/{scale}/stage3"),
        out=subpath(output.model, parent=True),
    conda:
        "../envs/cpu.yaml"
    message:
        "export the distilled student at {wildcards.scale}"
    shell:
        "lt2 export {params.run} {params.out} > {log} 2>&1"


rule distill_zeroshot:
    input:
        model=distill_role_files,
        tokenizer=distill_tokenizer_input,
    output:
        result_path("distill/{scale}/zeroshot/{role}.json"),
    log:
        log_path("distill/{scale}/zeroshot/{role}.log"),
    params:
        model_dir=distill_role_dir,
        args=zeroshot_args,
    conda:
        conda_env
    message:
        "zero-shot tasks of the distillation {wildcards.role} at {wildcards.scale}"
    shell:
        "lt2 eval zeroshot {params.model_dir} --tokenizer {input.tokenizer} --out {output} {params.args} > {log} 2>&1"


rule distill_eval:
    input:
        model=distill_role_files,
        val=distill_val,
        tokenizer=distill_tokenizer_input,
    output:
        result_path("distill/{scale}/eval/{role}.json"),
    log:
        log_path("distill/{scale}/eval/{role}.log"),
    params:
        model_dir=distill_role_dir,
        args=ppl_args,
    conda:
        conda_env
    message:
        "validation perplexity of the distillation {wildcards.role} at {wildcards.scale}"
    shell:
        "lt2 eval ppl {params.model_dir} --data {input.val} --tokenizer {input.tokenizer} --out {output}"
        " {params.args} > {log} 2>&1"


rule distill_longctx:
    input:
        model=distill_role_files,
        haystack=distill_val,
        tokenizer=distill_tokenizer_input,
    output:
        result_path("distill/{scale}/longctx/{role}.json"),
    log:
        log_path("distill/{scale}/longctx/{role}.log"),
    params:
        model_dir=distill_role_dir,
        args=longctx_args,
    conda:
        conda_env
    message:
        "long-context evaluation (NIAH, recall suite) of the distillation {wildcards.role} at {wildcards.scale}"
    shell:
        "lt2 eval longctx {params.model_dir} --tokenizer {input.tokenizer} --haystack {input.haystack}"
        " --out {output} {params.args} > {log} 2>&1"


rule distill_bench:
    input:
        model=distill_role_files,
    output:
        result_path("distill/{scale}/bench/{role}.json"),
    log:
        log_path("distill/{scale}/bench/{role}.log"),
    params:
        model_dir=distill_role_dir,
        args=distill_bench_args,
    conda:
        conda_env
    message:
        "decode cost of the distillation {wildcards.role} at {wildcards.scale}"
    shell:
        "lt2 distill bench {params.model_dir} {params.args} --out {output} > {log} 2>&1"
