# One training run per recipe. Checkpoints go to runs/<name>/<scale>/<recipe>/, outside the declared
# outputs: Snakemake deletes the outputs of a failed or interrupted job, but a retried or re-run job must
# find its checkpoints to resume from. A job the profile gives several GPUs runs one rank per GPU, started
# by `lt2 train --nproc-per-node` (it forwards SIGUSR1/SIGTERM to every rank and exits 75 to be requeued).


rule train:
    priority: CRITICAL_PATH
    input:
        recipe=recipe_file,
        bases=recipe_bases,
        chunks=corpus_chunks,
        val=corpus_val,
        tokenizer=TOKENIZER_DIR,
    output:
        model=result_path("train/{scale}/{recipe}/model.safetensors"),
        config=result_path("train/{scale}/{recipe}/config.json"),
        metrics=result_path("train/{scale}/{recipe}/metrics.jsonl"),
        recipe=result_path("train/{scale}/{recipe}/recipe.yaml"),
    log:
        log_path("train/{scale}/{recipe}.log"),
    params:
        out=subpath(output.model, parent=True),
        dump=run_path("{scale}/{recipe}"),
        overrides=train_overrides,
        nproc=train_nproc,
    conda:
        conda_env
    message:
        "train {wildcards.scale}/{wildcards.recipe} (recipe files: {input.bases} {input.recipe})"
    shell:
        "lt2 train {input.recipe} {params.overrides} --dump-dir {params.dump} --out {params.out}"
        " --nproc-per-node {params.nproc} > {log} 2>&1"
