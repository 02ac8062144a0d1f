# Variant scores: every configured VCF is fetched and verified, then scored against its genome
# (alt vs ref log-likelihood ratio on both strands, one streamed pass per contig) into a
# bgzipped, tabix-indexed VCF with INFO fields and a TSV. The report plots the scores.

VARIANT_SETS = config["variants"]["vcfs"]
SCORED_VCFS = expand(f"{RESULTS}/variants/{{name}}.vcf.gz", name=VARIANT_SETS)

for name, spec in VARIANT_SETS.items():
    if spec["genome"] not in config["genomes"]:
        raise config_error(f"variants.vcfs.{name}.genome {spec['genome']!r} is not in genomes")


localrules:
    fetch_vcf,


rule fetch_vcf:
    input:
        lambda wildcards: local_input(VARIANT_SETS[wildcards.name]),
    output:
        f"{RESOURCES}/variants/{{name}}.vcf.gz",
    wildcard_constraints:
        name=alternatives(VARIANT_SETS),
    params:
        args=lambda wildcards: fetch_args(VARIANT_SETS[wildcards.name]),
    log:
        f"{LOGS}/fetch/variants/{{name}}.log",
    benchmark:
        f"{BENCHMARKS}/fetch/variants/{{name}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(500),
        runtime=scaled(60),
    shell:
        "titans-dna fetch {params.args} -o {output:q} > {log:q} 2>&1"


rule score_variants:
    input:
        vcf=f"{RESOURCES}/variants/{{name}}.vcf.gz",
        genome=lambda wildcards: genome_path(VARIANT_SETS[wildcards.name]["genome"]),
        model=MODEL,
    output:
        vcf=f"{RESULTS}/variants/{{name}}.vcf.gz",
        index=f"{RESULTS}/variants/{{name}}.vcf.gz.tbi",
        tsv=f"{RESULTS}/variants/{{name}}.tsv",
    wildcard_constraints:
        name=alternatives(VARIANT_SETS),
    params:
        options=option_args(config["variants"]["options"]),
        device=device,
    log:
        f"{LOGS}/variants/{{name}}.log",
    benchmark:
        f"{BENCHMARKS}/variants/{{name}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(120),
        gpu=0,
    shell:
        "titans-dna score-variants --vcf {input.vcf:q} --genome {input.genome:q}"
        " --checkpoint {input.model:q} -o {output.vcf:q} --tsv {output.tsv:q}"
        " --device {params.device} {params.options} > {log:q} 2>&1"
