# Zero-shot linear probe: per task, the frozen pretrained model's mean-pooled embeddings with a
# cross-validated logistic regression, scored once on test (`titans-dna evaluate`). The report
# shows it beside fine-tuning: the fair comparison with the k-mer baseline.


rule evaluate:
    input:
        task_inputs,
        model=MODEL,
    output:
        f"{RESULTS}/probe/{{task}}.json",
    wildcard_constraints:
        task=alternatives(TASKS),
    params:
        task=lambda wildcards: task_folder(wildcards.task),
        device=device,
    log:
        f"{LOGS}/probe/{{task}}.log",
    benchmark:
        f"{BENCHMARKS}/probe/{{task}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(60),
        gpu=0,
    shell:
        "titans-dna evaluate --task {params.task:q} --checkpoint {input.model:q} -o {output:q}"
        " --device {params.device} > {log:q} 2>&1"
