# Inputs: every genome and task file named in the configuration is fetched (a local path is
# verified and copied, a URL is read from the mirror or downloaded, then verified) so that
# later steps read files whose checksums are known. Fetching runs on the submit host
# (localrules): cluster compute nodes often have no network.


localrules:
    fetch_genome,
    fetch_task_file,


rule fetch_genome:
    input:
        lambda wildcards: local_input(config["genomes"][GENOME_FILES[wildcards.filename]]),
    output:
        f"{RESOURCES}/genomes/{{filename}}",
    wildcard_constraints:
        filename=alternatives(GENOME_FILES),
    params:
        args=lambda wildcards: fetch_args(config["genomes"][GENOME_FILES[wildcards.filename]]),
    log:
        f"{LOGS}/fetch/genomes/{{filename}}.log",
    benchmark:
        f"{BENCHMARKS}/fetch/genomes/{{filename}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(500),
        runtime=scaled(60),
    shell:
        "titans-dna fetch {params.args} -o {output:q} > {log:q} 2>&1"


rule fetch_task_file:
    input:
        lambda wildcards: local_input(TASK_FILES[f"{wildcards.task}/{wildcards.filename}"]),
    output:
        f"{RESOURCES}/tasks/{{task}}/{{filename}}",
    wildcard_constraints:
        task=alternatives(TASKS),
        filename=r"(train|dev|test)\.[A-Za-z.]+",
    params:
        args=lambda wildcards: fetch_args(TASK_FILES[f"{wildcards.task}/{wildcards.filename}"]),
    log:
        f"{LOGS}/fetch/tasks/{{task}}/{{filename}}.log",
    benchmark:
        f"{BENCHMARKS}/fetch/tasks/{{task}}/{{filename}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(500),
        runtime=scaled(60),
    shell:
        "titans-dna fetch {params.args} -o {output:q} > {log:q} 2>&1"
