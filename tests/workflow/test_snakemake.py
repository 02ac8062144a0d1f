"""The Snakemake workflow without training: lint, dry runs (local and SLURM), and the early
failures on a bad configuration (unknown key, missing input, task without train split, bad URL)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, demo_config, snakemake, write_config

PROFILES = {
    "default": REPO / "workflow" / "profiles" / "default" / "config.yaml",
    "slurm_jobs": REPO / "workflow" / "profiles" / "slurm" / "config.yaml",
    "slurm_cluster": REPO / "profiles" / "slurm" / "config.yaml",
}


@pytest.fixture
def config(shared_data: Path, tmp_path: Path) -> dict:
    return demo_config(shared_data)


def _planned_jobs(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def _rule_block(output: str, rule: str) -> str:
    """The dry-run paragraph of the first job of `rule` (its resources and shell command)."""
    start = output.index(f"rule {rule}:")
    return output[start : output.index("\n\n", start)]


def test_lint_finds_nothing():
    result = snakemake(REPO, "--lint")
    assert result.returncode == 0, result.stdout
    assert "Lints for" not in result.stdout, result.stdout
    assert "Congratulations, your workflow is in a good condition!" in result.stdout


def test_bare_run_uses_the_default_profile():
    # `snakemake --cores 2` (no profile named) behaves like `make demo`: the default workflow
    # profile is found beside the Snakefile; its printshellcmds shows here without -p.
    # --forceall: plan every job whatever a previous `make demo` left in the repository
    result = snakemake(REPO, "-n", "--forceall", "--cores", "2")
    assert result.returncode == 0, result.stdout
    assert f"workflow specific profile {REPO}/workflow/profiles/default " in result.stdout
    assert "Shell command: titans-dna tokenize" in result.stdout
    assert yaml.safe_load(PROFILES["default"].read_text())["rerun-incomplete"] is True
    assert _planned_jobs(result.stdout) == {
        "fetch_genome": 6,
        "fetch_task_file": 6,
        "fetch_vcf": 1,
        "tokenize": 4,
        "pretrain": 1,
        "finetune": 2,
        "evaluate": 2,
        "embed": 1,
        "long_context": 1,
        "score_variants": 1,
        "run_config": 1,
        "report": 1,
        "all": 1,
        "total": 28,
    }


def test_options_are_written_one_way_for_every_stage():
    result = snakemake(REPO, "-n", "--forceall", "--cores", "2")
    assert result.returncode == 0, result.stdout
    pretrain = _rule_block(result.stdout, "pretrain")
    assert "--set train.max_minutes=3 --set train.batch_size=4" in pretrain
    assert "--max-minutes 4 --batch-size 32 --lr 0.002" in _rule_block(result.stdout, "finetune")
    assert "--contexts 512 2048 8192" in _rule_block(result.stdout, "long_context")
    # the report reads the run's configuration from a file, not from its command line
    report = _rule_block(result.stdout, "report")
    assert "--config results/demo/config.yaml" in report and "sha256" not in report


def _slurm_dry_run(tmp_path: Path, config: dict, *args: str) -> str:
    profiles = ["--profile", str(REPO / "profiles" / "slurm")]
    profiles += ["--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm")]
    result = snakemake(tmp_path, *profiles, "-n", *args, config=write_config(tmp_path, config))
    assert result.returncode == 0, result.stdout
    return result.stdout


def test_dry_run_with_the_slurm_profiles(config: dict, tmp_path: Path):
    config["finetune"]["seeds"] = 2
    text = _slurm_dry_run(tmp_path, config)
    pretrain = _rule_block(text, "pretrain")
    assert "-m torch.distributed.run --standalone --nproc_per_node 4 -m pipeline.cli" in pretrain
    for resource in ("gpu=4", "mem_mb=128000", "slurm_account=my_lab"):
        assert resource in pretrain
    for rule in ("finetune", "finetune_seed", "score_variants"):
        assert re.search(r"gpu=1.*?--device cuda", _rule_block(text, rule), re.S), rule
    assert re.search(r"titans-dna fetch \S+lambda_phage.fa.gz --sha256 08fe", text)


def test_a_retried_job_asks_for_more_memory_and_time(config: dict, tmp_path: Path):
    # retries: 1 in the cluster profile; the second attempt of a job killed for memory or time
    # must not ask for the same again, both for rule defaults and for the profile's values
    first, second = (_slurm_dry_run(tmp_path, config, "--attempt", n) for n in ("1", "2"))
    assert yaml.safe_load(PROFILES["slurm_cluster"].read_text())["retries"] == 1
    for rule, mem_mb, runtime in (("pretrain", 128000, 1440), ("report", 2000, 30)):
        for text, attempt in ((first, 1), (second, 2)):
            resources = re.search(r"resources: (.*)", _rule_block(text, rule))[1].split(", ")
            assert f"mem_mb={attempt * mem_mb}" in resources, (rule, attempt, resources)
            assert f"runtime={attempt * runtime}" in resources, (rule, attempt, resources)


def test_cluster_profile_leaves_three_values_to_set():
    cluster = yaml.safe_load(PROFILES["slurm_cluster"].read_text())
    assert cluster["executor"] == "slurm"
    assert cluster["default-resources"] == {"slurm_account": "my_lab"}
    partition_file = REPO / "profiles" / "slurm" / cluster["slurm-partition-config"]
    partitions = yaml.safe_load(partition_file.read_text())
    assert set(partitions["partitions"]) == {"cpu", "gpu"}
    assert partitions["partitions"]["gpu"]["max_gpu"] >= 1
    jobs = yaml.safe_load(PROFILES["slurm_jobs"].read_text())
    # cluster facts stay in the cluster profile, job needs in the workflow's
    assert not {"executor", "slurm-partition-config", "default-resources"} & set(jobs)
    assert all("slurm_partition" not in need for need in jobs["set-resources"].values())


def test_unknown_key_fails_naming_it(config: dict, tmp_path: Path):
    config["pretrain"]["sett"] = {"train.max_steps": 5}
    result = snakemake(tmp_path, "-n", config=write_config(tmp_path, config))
    assert result.returncode != 0
    assert "Additional properties are not allowed ('sett' was unexpected)" in result.stdout


def test_url_without_checksum_fails_validation(config: dict, tmp_path: Path):
    config["genomes"]["remote"] = {"source": "https://example.org/remote.fa.gz"}
    result = snakemake(tmp_path, "-n", config=write_config(tmp_path, config))
    assert result.returncode != 0 and "'sha256' is a required property" in result.stdout


def test_missing_input_file_fails_before_any_job(config: dict, tmp_path: Path):
    missing = tmp_path / "nowhere" / "absent.fa.gz"
    config["genomes"]["lambda_phage"]["source"] = str(missing)
    result = snakemake(tmp_path, "-n", config=write_config(tmp_path, config))
    assert result.returncode != 0
    assert "MissingInputException" in result.stdout and str(missing) in result.stdout


def test_unknown_genome_name_fails(config: dict, tmp_path: Path):
    config["embed"]["genomes"] = ["phage_t4"]
    result = snakemake(tmp_path, "-n", config=write_config(tmp_path, config))
    assert result.returncode != 0
    assert "embed.genomes names 'phage_t4', which is not in genomes" in result.stdout


def test_task_folder_without_train_split_fails_early(config: dict, tmp_path: Path):
    folder = tmp_path / "my_task"
    folder.mkdir()
    (folder / "test.csv").write_text("sequence,label\nACGT,1\n")
    config["finetune"]["tasks"]["my_task"] = {"folder": str(folder)}
    result = snakemake(tmp_path, "-n", config=write_config(tmp_path, config))
    assert result.returncode != 0
    assert f"finetune task 'my_task': folder {folder} has no train split" in result.stdout
    (folder / "train.csv").write_text("sequence,label\nACGT,1\n")
    result = snakemake(tmp_path, "-n", "-p", config=write_config(tmp_path, config))
    assert result.returncode == 0, result.stdout
    assert _planned_jobs(result.stdout)["finetune"] == 3
    assert f"titans-dna finetune --task {folder} " in result.stdout  # used in place


def test_url_with_wrong_checksum_fails_and_leaves_nothing(
    config: dict, tmp_path: Path, http_server
):
    body = b">remote\nACGTACGTAC\n"
    http_server.files["remote.fa"] = body
    good = hashlib.sha256(body).hexdigest()
    config["genomes"]["remote"] = {"source": f"{http_server.url}/data/remote.fa", "sha256": good}
    config["genomes"]["bad"] = {"source": f"{http_server.url}/data/remote.fa", "sha256": "0" * 64}
    path = write_config(tmp_path, config)
    ok = snakemake(tmp_path, "--cores", "1", "resources/genomes/remote.fa", config=path)
    assert ok.returncode == 0, ok.stdout
    assert (tmp_path / "resources/genomes/remote.fa").read_bytes() == body
    result = snakemake(tmp_path, "--cores", "1", "resources/genomes/bad.fa", config=path)
    assert result.returncode != 0
    log = (tmp_path / "results/demo/logs/fetch/genomes/bad.fa.log").read_text()
    assert f"sha256 mismatch: expected {'0' * 64}, got {good}" in log
    assert sorted(p.name for p in (tmp_path / "resources/genomes").iterdir()) == ["remote.fa"]


def test_pretraining_genomes_mix_by_weight(config: dict, tmp_path: Path):
    first, *_ = config["pretrain"]["genomes"]
    config["pretrain"]["weights"] = {first: 3}
    result = snakemake(tmp_path, "-n", "--cores", "2", config=write_config(tmp_path, config))
    assert result.returncode == 0, result.stdout
    weights = [3.0] + [1.0] * (len(config["pretrain"]["genomes"]) - 1)
    assert f"--set 'data.weights={weights}'" in _rule_block(result.stdout, "pretrain")
    config["pretrain"]["weights"] = {"lambda_phage": 1}  # a genome, but not a pretraining one
    result = snakemake(tmp_path, "-n", config=write_config(tmp_path, config))
    assert result.returncode != 0
    assert (
        "pretrain.weights names 'lambda_phage', which is not in pretrain.genomes" in result.stdout
    )


def test_fine_tuning_seeds_are_planned_and_reported(config: dict, tmp_path: Path):
    config["finetune"]["seeds"] = 3
    result = snakemake(tmp_path, "-n", "--cores", "2", config=write_config(tmp_path, config))
    assert result.returncode == 0, result.stdout
    jobs = _planned_jobs(result.stdout)
    tasks = len(config["finetune"]["tasks"])
    assert jobs["finetune"] == tasks and jobs["finetune_seed"] == 2 * tasks
    assert "--seed 0 " in _rule_block(result.stdout, "finetune")
    assert re.search(r"--seed [12] ", _rule_block(result.stdout, "finetune_seed"))
    command = _rule_block(result.stdout, "report").split("titans-dna report", 1)[1]
    assert command.count("finetune_seeds/") == 2 * tasks and "--finetune-seeds " in command
