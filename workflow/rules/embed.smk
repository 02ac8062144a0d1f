# Embeddings: each configured genome is cut into windows (the model streams each window with
# its recurrent state) and pooled per window into an HDF5 file written atomically.


rule embed:
    input:
        genome=lambda wildcards: genome_path(wildcards.genome),
        model=MODEL,
    output:
        f"{RESULTS}/embeddings/{{genome}}.h5",
    wildcard_constraints:
        genome=alternatives(config["genomes"]),
    params:
        window=config["embed"]["window"],
        stride=config["embed"]["stride"],
        options=option_args(config["embed"]["options"]),
        device=device,
    log:
        f"{LOGS}/embed/{{genome}}.log",
    benchmark:
        f"{BENCHMARKS}/embed/{{genome}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(60),
        gpu=0,
    shell:
        "titans-dna embed {input.genome:q} --checkpoint {input.model:q} -o {output:q}"
        " --window {params.window} --stride {params.stride} --device {params.device}"
        " {params.options} > {log:q} 2>&1"
