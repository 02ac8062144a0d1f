# titans-dna workflow: fetch inputs, tokenize, pretrain, fine-tune, embed, report.
# `snakemake --cores 2` in the repository root runs the demo (workflows/config/config.yaml);
# `--configfile FILE` runs your own configuration, `--workflow-profile workflows/profiles/slurm`
# a cluster. Every rule is one `titans-dna` command, so each step can also be run by hand.
# `snakemake --lint` leaves one hint, on purpose: no per-rule conda environment or container.
# Every rule runs the same installed titans-dna package (the project's environment, `make`
# builds it), so per-rule environments would only duplicate that one environment.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "workflows/config/config.yaml"


validate(config, "workflows/config/config.schema.yaml")


include: "workflows/rules/common.smk"
include: "workflows/rules/inputs.smk"
include: "workflows/rules/tokenize.smk"
include: "workflows/rules/pretrain.smk"
include: "workflows/rules/finetune.smk"
include: "workflows/rules/embed.smk"
include: "workflows/rules/long_context.smk"
include: "workflows/rules/variants.smk"
include: "workflows/rules/report.smk"


rule all:
    input:
        REPORT,
    default_target: True
