# Pretraining: one job. With gpu > 0 (the slurm profile) it runs under torchrun, one process per
# GPU inside the job; on the CPU it runs plainly. Checkpoints go to pretrain/checkpoints/, which
# is not a declared output: Snakemake keeps it when a run is interrupted, and the rerun
# (--rerun-incomplete) resumes from the newest checkpoint. The final model is protected.

TOKEN_STORES = expand(f"{RESULTS}/tokens/{{genome}}.h5", genome=config["pretrain"]["genomes"])
PRETRAIN_CONFIG = [config["pretrain"]["config"]] if config["pretrain"]["config"] else []


rule pretrain:
    input:
        stores=TOKEN_STORES,
        config=PRETRAIN_CONFIG,
    output:
        model=protected(directory(MODEL)),
        summary=f"{RESULTS}/pretrain/summary.json",
    params:
        out=lambda wildcards, output: Path(output.summary).parent,
        launcher=launcher,
        config=lambda wildcards, input: flag_list("--config", input.config),
        weights=store_weights(config["pretrain"]["weights"]),
        options=option_args(config["pretrain"]["options"]),
        device=device,
    log:
        f"{LOGS}/pretrain.log",
    benchmark:
        f"{BENCHMARKS}/pretrain.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(240),
        gpu=0,
    shell:
        "{params.launcher} pretrain {params.config} --store {input.stores:q} {params.weights}"
        " {params.options}"
        " --device {params.device} -o {params.out:q} > {log:q} 2>&1"
