# Tables (md, csv, tex) and figures (png, pdf) from the per-recipe records, each with provenance.
# Adding a table: one function in lt2/report/tables.py, one rule here, one caption in workflow/report/.


rule table_model_size:
    input:
        records=per_recipe(result_path("model_info/{scale}/{recipe}.json")),
        paper=paper_csv("model_size"),
    output:
        md=result_path("tables/model_size.md"),
        csv=report(result_path("tables/model_size.csv"), caption="../report/model_size.rst", category="Tables"),
        tex=result_path("tables/model_size.tex"),
    log:
        log_path("tables/model_size.log"),
    conda:
        "../envs/cpu.yaml"
    message:
        "table model_size ({input.records})"
    shell:
        "lt2 report table model_size --inputs {input.records} --paper {input.paper}"
        " --md {output.md} --csv {output.csv} --tex {output.tex} > {log} 2>&1"


rule table_lm:
    input:
        records=per_recipe(result_path("eval/ppl/{scale}/{recipe}.json")),
        bigram=bigram_records(),
        paper=paper_csv("lm"),
    output:
        md=result_path("tables/lm.md"),
        csv=report(result_path("tables/lm.csv"), caption="../report/lm.rst", category="Tables"),
        tex=result_path("tables/lm.tex"),
    log:
        log_path("tables/lm.log"),
    conda:
        "../envs/cpu.yaml"
    message:
        "table lm ({input.records})"
    shell:
        "lt2 report table lm --inputs {input.records} {input.bigram} --paper {input.paper}"
        " --md {output.md} --csv {output.csv} --tex {output.tex} > {log} 2>&1"


rule figure_training_curve:
    input:
        per_recipe(result_path("train/{scale}/{recipe}/metrics.jsonl")),
        bigram_records(),
    output:
        png=report(figure_path("training_curve.png"), caption="../report/training_curve.rst", category="Figures"),
        pdf=figure_path("training_curve.pdf"),
    log:
        log_path("figures/training_curve.log"),
    conda:
        "../envs/cpu.yaml"
    message:
        "figure training_curve"
    shell:
        "lt2 report figure training_curve --inputs {input} --png {output.png} --pdf {output.pdf} > {log} 2>&1"


rule table_decode:
    input:
        records=bench_csvs,
        paper=paper_csv("decode"),
    output:
        md=result_path("tables/decode.md"),
        csv=report(result_path("tables/decode.csv"), caption="../report/decode.rst", category="Tables"),
        tex=result_path("tables/decode.tex"),
    log:
        log_path("tables/decode.log"),
    conda:
        "../envs/cpu.yaml"
    message:
        "table decode ({input.records})"
    shell:
        "lt2 report table decode --inputs {input.records} --paper {input.paper}"
        " --md {output.md} --csv {output.csv} --tex {output.tex} > {log} 2>&1"


rule figure_decode_throughput:
    input:
        bench_csvs,
    output:
        png=report(figure_path("decode_throughput.png"), caption="../report/decode_throughput.rst", category="Figures"),
        pdf=figure_path("decode_throughput.pdf"),
    log:
        log_path("figures/decode_throughput.log"),
    conda:
        "../envs/cpu.yaml"
    message:
        "figure decode_throughput"
    shell:
        "lt2 report figure decode_throughput --inputs {input} --png {output.png} --pdf {output.pdf} > {log} 2>&1"


rule table_train_throughput:
    input:
        records=bench_train_records,
        paper=paper_csv("train_throughput"),  # the paper prints no training speed: a header only
    output:
        md=result_path("tables/train_throughput.md"),
        csv=report(result_path("tables/train_throughput.csv"), caption="../report/train_throughput.rst",
                   category="Tables"),  # fmt: skip
        tex=result_path("tables/train_throughput.tex"),
    log:
        log_path("tables/train_throughput.log"),
    conda:
        "../envs/cpu.yaml"
    message:
        "table train_throughput ({input.records})"
    shell:
        "lt2 report table train_throughput --inputs {input.records} --paper {input.paper}"
        " --md {output.md} --csv {output.csv} --tex {output.tex} > {log} 2>&1"


rule figure_grad_norm:
    input:
        per_recipe(result_path("train/{scale}/{recipe}/metrics.jsonl")),
    output:
        png=report(figure_path("grad_norm.png"), caption="../report/grad_norm.rst", category="Figures"),
        pdf=figure_path("grad_norm.pdf"),
    log:
        log_path("figures/grad_norm.log"),
    conda:
        "../envs/cpu.yaml"
    message:
        "figure grad_norm"
    shell:
        "lt2 report figure grad_norm --inputs {input} --png {output.png} --pdf {output.pdf} > {log} 2>&1"


# Analytic (no training): the pure-mixer recipes of report.mixer_costs_scale, as the paper's Figure 2.
rule figure_mixer_costs:
    input:
        mixer_cost_recipes(),
    output:
        png=report(figure_path("mixer_costs.png"), caption="../report/mixer_costs.rst", category="Figures"),
        pdf=figure_path("mixer_costs.pdf"),
    log:
        log_path("figures/mixer_costs.log"),
    conda:
        "../envs/cpu.yaml"
    message:
        "figure mixer_costs"
    shell:
        "lt2 report figure mixer_costs --inputs {input} --png {output.png} --pdf {output.pdf} > {log} 2>&1"
