# Tokenization: one token store (HDF5) per pretraining genome, so that adding a genome to the
# corpus tokenizes only that genome. The stores are kept (not temp): changing a pretraining
# setting reruns pretraining, which then reuses them.


rule tokenize:
    input:
        lambda wildcards: genome_path(wildcards.genome),
    output:
        f"{RESULTS}/tokens/{{genome}}.h5",
    wildcard_constraints:
        genome=alternatives(config["genomes"]),
    log:
        f"{LOGS}/tokenize/{{genome}}.log",
    benchmark:
        f"{BENCHMARKS}/tokenize/{{genome}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(60),
    shell:
        "titans-dna tokenize {input:q} -o {output:q} > {log:q} 2>&1"
