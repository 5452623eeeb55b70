# The synthetic state tracking + recall curriculum (the paper's Figure 9): one job per (arm, loop count).
# Checkpoints go to runs/<name>/synthetic/..., outside the declared outputs, so a retried or re-run job
# resumes at its stage and step (exit 75 on preemption, as training).


rule synthetic:
    input:
        config=synthetic_config_file,
    output:
        result_path("synthetic/{arm}/T{loop_count}.json"),
    log:
        log_path("synthetic/{arm}/T{loop_count}.log"),
    params:
        dump=run_path("synthetic/{arm}/T{loop_count}"),
        overrides=synthetic_overrides,
    conda:
        conda_env
    message:
        "synthetic {wildcards.arm} loop_count={wildcards.loop_count}"
    shell:
        "lt2 synth run {input.config} {params.overrides} --arm {wildcards.arm} --loop-count {wildcards.loop_count}"
        " --dump-dir {params.dump} --out {output} > {log} 2>&1"
