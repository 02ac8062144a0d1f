# Fine-tuning: one job per task in the configuration, each starting from the pretrained model,
# and with finetune.seeds > 1 one more job per task and further seed, whose test MCC the report
# shows as a spread. The output folder (metrics.json, model/, label_map.json) is written
# atomically by the command.

SEED_RUNS = expand(
    f"{RESULTS}/finetune_seeds/{{task}}/seed{{seed}}",
    task=TASKS,
    seed=range(1, config["finetune"]["seeds"]),
)


rule finetune:
    input:
        task_inputs,
        model=MODEL,
    output:
        directory(f"{RESULTS}/finetune/{{task}}"),
    wildcard_constraints:
        task=alternatives(TASKS),
    params:
        task=lambda wildcards: task_folder(wildcards.task),
        seed=0,
        options=option_args(config["finetune"]["options"]),
        device=device,
    log:
        f"{LOGS}/finetune/{{task}}.log",
    benchmark:
        f"{BENCHMARKS}/finetune/{{task}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(120),
        gpu=0,
    shell:
        "titans-dna finetune --task {params.task:q} --checkpoint {input.model:q} --seed {params.seed}"
        " -o {output:q} --device {params.device} {params.options} > {log:q} 2>&1"


use rule finetune as finetune_seed with:
    output:
        directory(f"{RESULTS}/finetune_seeds/{{task}}/seed{{seed}}"),
    wildcard_constraints:
        task=alternatives(TASKS),
        seed=r"[1-9]\d*",
    params:
        seed=lambda wildcards: wildcards.seed,
    log:
        f"{LOGS}/finetune_seeds/{{task}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/finetune_seeds/{{task}}/seed{{seed}}.tsv"
