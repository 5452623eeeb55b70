# Tables (md, csv, tex) and figures (png, pdf) from the records, each with provenance. One rule builds any
# table and one any figure: the package's registries (lt2.report.tables.TABLES, lt2.report.figures.FIGURES)
# say which records each reads; common.smk turns that into input paths. Adding a table is one function and
# its registry entry, plus its caption in workflow/report/<table>.rst and the paper's numbers in config/paper/.
# A figure whose entry names a `paper` table also reads config/paper/<paper>.csv (after its records).


rule table:
    input:
        records=table_records,
        paper=table_paper,
    output:
        md=result_path("tables/{table}.md"),
        csv=report(result_path("tables/{table}.csv"), caption="../report/caption.rst", category="Tables"),
        tex=result_path("tables/{table}.tex"),
    log:
        log_path("tables/{table}.log"),
    params:
        caption=report_caption,
    conda:
        "../envs/cpu.yaml"
    message:
        "table {wildcards.table} ({input.records})"
    shell:
        "lt2 report table {wildcards.table} --inputs {input.records} --paper {input.paper}"
        " --md {output.md} --csv {output.csv} --tex {output.tex} > {log} 2>&1"


rule figure:
    input:
        records=figure_records,
        paper=figure_paper,
    output:
        png=report(figure_path("{figure}.png"), caption="../report/caption.rst", category="Figures"),
        pdf=figure_path("{figure}.pdf"),
    log:
        log_path("figures/{figure}.log"),
    params:
        caption=report_caption,
    conda:
        "../envs/cpu.yaml"
    message:
        "figure {wildcards.figure}"
    shell:
        "lt2 report figure {wildcards.figure} --inputs {input} --png {output.png} --pdf {output.pdf} > {log} 2>&1"
