# The report: one self-contained HTML file with the curves, the metrics table, the embedding
# map and the provenance. The configuration as this run saw it (after any --config overrides)
# is written beside it and recorded in it; a changed configuration rewrites it (params).
import yaml

RUN_CONFIG = f"{RESULTS}/config.yaml"
ALL_INPUTS = PRETRAIN_GENOMES + sorted(
    {genome_path(name) for name in EMBED_GENOMES} - set(PRETRAIN_GENOMES)
) + [f"{RESOURCES}/tasks/{key}" for key in TASK_FILES]


localrules:
    run_config,


rule run_config:
    output:
        RUN_CONFIG,
    params:
        text=yaml.safe_dump(config, sort_keys=False),
    log:
        f"{LOGS}/run_config.log",
    run:
        Path(output[0]).write_text(params.text)
        Path(log[0]).write_text(f"wrote {output[0]}\n")


rule report:
    input:
        summary=f"{RESULTS}/pretrain/summary.json",
        model=MODEL,
        finetune=expand(f"{RESULTS}/finetune/{{task}}", task=TASKS),
        finetune_seeds=SEED_RUNS,
        probes=expand(f"{RESULTS}/probe/{{task}}.json", task=TASKS),
        embeddings=expand(f"{RESULTS}/embeddings/{{genome}}.h5", genome=EMBED_GENOMES),
        long_context=LONG_CONTEXT,
        variants=SCORED_VCFS,
        inputs=ALL_INPUTS,
        config=RUN_CONFIG,
    output:
        REPORT,
    params:
        pretrain=lambda wildcards, input: Path(input.summary).parent,
        benchmarks=BENCHMARKS,
        finetune=lambda wildcards, input: flag_list("--finetune", input.finetune),
        seeds=lambda wildcards, input: flag_list("--finetune-seeds", input.finetune_seeds),
        probes=lambda wildcards, input: flag_list("--probes", input.probes),
        embeddings=lambda wildcards, input: flag_list("--embeddings", input.embeddings),
        variants=lambda wildcards, input: flag_list("--variants", input.variants),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCHMARKS}/report.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(30),
    shell:
        "titans-dna report --pretrain {params.pretrain:q} {params.finetune} {params.seeds}"
        " {params.probes}"
        " {params.embeddings}"
        " --long-context {input.long_context:q} {params.variants} --inputs {input.inputs:q}"
        " --config {input.config:q} --benchmarks {params.benchmarks:q} -o {output:q}"
        " > {log:q} 2>&1"
