# download -> shuffle + shard. Outputs under data/<name>/ carry provenance sidecars too (written by the
# commands themselves), so `lt2 audit` can follow a table back to the downloaded documents.


rule download:
    priority: CRITICAL_PATH
    output:
        directory(data_path("raw/{dataset}")),
    log:
        log_path("data/raw/{dataset}.log"),
    params:
        args=download_args,
    resources:
        download=1,  # a global limit (see profiles) keeps parallel downloads from tripping rate limits
    conda:
        "../envs/cpu.yaml"
    message:
        "download {wildcards.dataset}"
    shell:
        "lt2 data download --dataset {wildcards.dataset} --out {output} {params.args} > {log} 2>&1"


rule shuffle:
    priority: CRITICAL_PATH
    input:
        rules.download.output,
    output:
        chunks=expand(data_path("shuffled/{{dataset}}/{{dataset}}.chunk.{i}.jsonl"), i=CHUNK_IDS),
        val=data_path("shuffled/{dataset}/{dataset}.val.jsonl"),
    log:
        log_path("data/shuffled/{dataset}.log"),
    params:
        out=subpath(output.val, parent=True),
        nchunks=config["shuffle"]["nchunks"],
        seed=config["shuffle"]["seed"],
        val_docs=config["shuffle"]["val_docs"],
        memory_mb=config["shuffle"]["memory_mb"],
    conda:
        "../envs/cpu.yaml"
    message:
        "shuffle {wildcards.dataset} into {params.nchunks} chunks + {params.val_docs} validation documents"
    shell:
        "lt2 data shuffle --input {input} --out {params.out} --dataset {wildcards.dataset}"
        " --nchunks {params.nchunks} --seed {params.seed} --memory-mb {params.memory_mb}"
        " --val-docs {params.val_docs} > {log} 2>&1"
