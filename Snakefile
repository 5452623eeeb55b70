# LT2 reproduction: data -> shuffle/shard -> tokenizer -> train -> eval -> tables and figures.
#   snakemake --profile profiles/local all                                  (tiny, offline, laptop CPU)
#   snakemake --profile profiles/slurm --configfile=config/paper.yaml all   (paper scale, GPU cluster)


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
