# The run's one tokenizer: a byte-level BPE trained on the training chunks (tiny), or a published one
# fetched from the Hub (paper scale: Llama-3; HF_TOKEN must be in the environment).


rule tokenizer:
    priority: CRITICAL_PATH
    input:
        tokenizer_inputs,
    output:
        directory(TOKENIZER_DIR),
    log:
        log_path("data/tokenizer.log"),
    params:
        args=tokenizer_args,
    conda:
        "../envs/cpu.yaml"
    message:
        "tokenizer ({params.args})"
    shell:
        "lt2 data tokenizer {params.args} --out {output} > {log} 2>&1"
