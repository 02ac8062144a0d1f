# Fine-tuning: one job per task in the configuration, each starting from the pretrained model.
# The output folder (metrics.json, model/, label_map.json) is written atomically by the command.


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
        "titans-dna finetune --task {params.task:q} --checkpoint {input.model:q}"
        " -o {output:q} --device {params.device} {params.options} > {log:q} 2>&1"
