# Long context: on the held-out part of one pretraining genome, the context curve (bits/base
# after more and more left context), planted-repeat recall and the genome's own distant repeats,
# each with the memory as trained and reset (the memory-off ablation). The report plots them.

LONG_CONTEXT = f"{RESULTS}/long_context.json"


rule long_context:
    input:
        genome=lambda wildcards: genome_path(config["long_context"]["genome"]),
        model=MODEL,
    output:
        LONG_CONTEXT,
    params:
        options=option_args(config["long_context"]["options"]),
        device=device,
    log:
        f"{LOGS}/long_context.log",
    benchmark:
        f"{BENCHMARKS}/long_context.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(60),
        gpu=0,
    shell:
        "titans-dna long-context {input.genome:q} --checkpoint {input.model:q} -o {output:q}"
        " --device {params.device} {params.options} > {log:q} 2>&1"
