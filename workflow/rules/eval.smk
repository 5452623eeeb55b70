# Per-recipe evaluation records that the report tables read: analytic model costs (no training needed)
# validation perplexity of the trained model on its corpus's held-out file, and lm-eval zero-shot accuracy;
# the long-context suite (Table 5) of the recipes config eval.longctx lists (NIAH haystacks: the held-out file).
# The bigram baseline of each scale (eval_bigram) is the row every trained model must beat.


rule model_info:
    input:
        recipe=recipe_file,
        bases=recipe_bases,
    output:
        result_path("model_info/{scale}/{recipe}.json"),
    log:
        log_path("model_info/{scale}/{recipe}.log"),
    params:
        overrides=recipe_overrides,
    conda:
        "../envs/cpu.yaml"
    message:
        "model costs of {wildcards.scale}/{wildcards.recipe} ({input})"
    shell:
        "lt2 model-info {input.recipe} {params.overrides} --json --out {output} > {log} 2>&1"


rule eval_ppl:
    input:
        model=rules.train.output.model,
        config=rules.train.output.config,
        val=corpus_val,
        tokenizer=TOKENIZER_DIR,
    output:
        result_path("eval/ppl/{scale}/{recipe}.json"),
    log:
        log_path("eval/ppl/{scale}/{recipe}.log"),
    params:
        model_dir=subpath(input.model, parent=True),
        args=ppl_args,
    conda:
        conda_env
    message:
        "validation perplexity of {wildcards.scale}/{wildcards.recipe}"
    shell:
        "lt2 eval ppl {params.model_dir} --data {input.val} --tokenizer {input.tokenizer} --out {output}"
        " {params.args} > {log} 2>&1"


rule eval_zeroshot:
    input:
        model=rules.train.output.model,
        config=rules.train.output.config,
        tokenizer=TOKENIZER_DIR,
    output:
        result_path("eval/zeroshot/{scale}/{recipe}.json"),
    log:
        log_path("eval/zeroshot/{scale}/{recipe}.log"),
    params:
        model_dir=subpath(input.model, parent=True),
        args=zeroshot_args,
    conda:
        conda_env
    message:
        "zero-shot tasks of {wildcards.scale}/{wildcards.recipe}"
    shell:
        "lt2 eval zeroshot {params.model_dir} --tokenizer {input.tokenizer} --out {output} {params.args} > {log} 2>&1"


rule eval_longctx:
    input:
        model=rules.train.output.model,
        config=rules.train.output.config,
        recipe=rules.train.output.recipe,
        haystack=corpus_val,
        tokenizer=TOKENIZER_DIR,
    output:
        result_path("eval/longctx/{scale}/{recipe}.json"),
    log:
        log_path("eval/longctx/{scale}/{recipe}.log"),
    params:
        model_dir=subpath(input.model, parent=True),
        args=longctx_args,
    conda:
        conda_env
    message:
        "long-context evaluation (NIAH, recall suite) of {wildcards.scale}/{wildcards.recipe}"
    shell:
        "lt2 eval longctx {params.model_dir} --tokenizer {input.tokenizer} --haystack {input.haystack}"
        " --out {output} {params.args} > {log} 2>&1"
# The baseline every trained row must beat: a Kneser-Ney bigram of the scale's training chunks, scored on the
# validation tokens that eval_ppl scores (a row of the lm table, a line in the training-curve figure).
rule eval_bigram:
    input:
        train=bigram_train_files,
        val=corpus_val,
        tokenizer=TOKENIZER_DIR,
    output:
        result_path("eval/bigram/{scale}/bigram_baseline.json"),
    log:
        log_path("eval/bigram/{scale}/bigram_baseline.log"),
    params:
        args=bigram_args,
    conda:
        "../envs/cpu.yaml"
    message:
        "bigram baseline of {wildcards.scale}"
    shell:
        "lt2 eval bigram --train {input.train} --data {input.val} --tokenizer {input.tokenizer} --out {output}"
        " {params.args} > {log} 2>&1"
