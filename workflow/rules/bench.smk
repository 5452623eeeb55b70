# GPU benchmarks and the kernels' numerics check. One job measures every configured recipe side by side (ratios come from one run on one
# device); it writes its own provenance (lt2 bench records the GPU, the measured copy bandwidth and the
# recipes' resolved configs).
# Their outputs are committed (results/paper/...), so the tables rebuild from them on a machine without a
# GPU: the recipes are `ancient` inputs, and a fresh checkout's file times never ask for a new measurement.
# Re-measure on purpose with `snakemake -R <rule>` (or `gpu_results`, on a GPU node).


rule bench_throughput:
    input:
        recipes=ancient(bench_recipes),
    output:
        csv=result_path("bench/{scale}/throughput.csv"),
        json=result_path("bench/{scale}/throughput.json"),
    log:
        log_path("bench/{scale}/throughput.log"),
    params:
        args=bench_args,
    conda:
        "../envs/gpu.yaml"
    message:
        "decode/prefill throughput at {wildcards.scale} ({input.recipes})"
    shell:
        "lt2 bench throughput {input.recipes} {params.args} --out {output.csv} > {log} 2>&1"


# Training speed (tokens/s, MFU, peak memory) of one recipe on one GPU, random tokens: a job per recipe, run
# one after another on the same kind of GPU (the slurm profile asks for one).
rule bench_train:
    input:
        recipe=ancient(recipe_file),
        bases=ancient(recipe_bases),
    output:
        result_path("bench/train/{scale}/{recipe}.json"),
    log:
        log_path("bench/train/{scale}/{recipe}.log"),
    params:
        args=bench_train_args,
    conda:
        "../envs/gpu.yaml"
    message:
        "training throughput of {wildcards.scale}/{wildcards.recipe}"
    shell:
        "lt2 bench train {input.recipe} {params.args} --out {output} > {log} 2>&1"


# The CUDA fast paths against the pure-PyTorch references at realistic shapes (every mixer, two hybrids).
# A check out of tolerance (more than 2x the bf16 reference's own error vs fp64) fails the job; the table says which.
rule verify_kernels:
    input:
        recipes=ancient(verify_recipes),
    output:
        result_path("numerics/kernels.csv"),
    log:
        log_path("numerics/kernels.log"),
    params:
        recipes_dir=config["recipes"]["dir"],
    conda:
        "../envs/gpu.yaml"
    message:
        "kernel numerics (lt2 verify-kernels)"
    shell:
        "lt2 verify-kernels --recipes {params.recipes_dir} --jobs 4 --out {output} > {log} 2>&1"


# Everything that needs a GPU and is committed for audit, in one target.
rule gpu_results:
    input:
        gpu_outputs,
