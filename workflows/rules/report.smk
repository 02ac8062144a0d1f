# The report: one self-contained HTML file with the curves, the metrics table, the embedding
# map and the provenance. The configuration as this run saw it (after any --config overrides)
# is written beside it and recorded in it.
import yaml

EFFECTIVE_CONFIG = yaml.safe_dump(config, sort_keys=False)
ALL_INPUTS = PRETRAIN_GENOMES + sorted(
    {genome_path(name) for name in EMBED_GENOMES} - set(PRETRAIN_GENOMES)
) + [f"{RESOURCES}/tasks/{key}" for key in TASK_FILES]


rule report:
    input:
        summary=f"{RESULTS}/pretrain/summary.json",
        model=MODEL,
        finetune=expand(f"{RESULTS}/finetune/{{task}}", task=TASKS),
        embeddings=expand(f"{RESULTS}/embeddings/{{genome}}.h5", genome=EMBED_GENOMES),
        long_context=LONG_CONTEXT,
        variants=SCORED_VCFS,
        inputs=ALL_INPUTS,
    output:
        html=REPORT,
        config=f"{RESULTS}/config.yaml",
    params:
        pretrain=lambda wildcards, input: Path(input.summary).parent,
        config=EFFECTIVE_CONFIG,
        finetune=lambda wildcards, input: flag_list("--finetune", input.finetune),
        embeddings=lambda wildcards, input: flag_list("--embeddings", input.embeddings),
        variants=lambda wildcards, input: flag_list("--variants", input.variants),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCHMARKS}/report.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "printf '%s' {params.config:q} > {output.config:q} && "
        "titans-dna report --pretrain {params.pretrain:q} {params.finetune} {params.embeddings}"
        " --long-context {input.long_context:q} {params.variants} --inputs {input.inputs:q}"
        " --config {output.config:q} -o {output.html:q} > {log:q} 2>&1"
