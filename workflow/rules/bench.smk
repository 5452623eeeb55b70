# GPU benchmarks. One job measures every configured recipe side by side (ratios come from one run on one
# device); it writes its own provenance (lt2 bench records the GPU, the measured copy bandwidth and the
# recipes' resolved configs).


rule bench_throughput:
    input:
        recipes=bench_recipes,
    output:
        csv=result_path("bench/{scale}/throughput.csv"),
        json=result_path("bench/{scale}/throughput.json"),
    log:
        log_path("bench/{scale}/throughput.log"),
    params:
        args=bench_args,
    message:
        "decode/prefill throughput at {wildcards.scale} ({input.recipes})"
    shell:
        "lt2 bench throughput {input.recipes} {params.args} --out {output.csv} > {log} 2>&1"
