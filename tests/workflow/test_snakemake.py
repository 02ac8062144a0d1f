"""The Snakemake workflow without training: lint, dry runs (local and SLURM), and the early
failures on a bad configuration (unknown key, missing input, task without train split, bad URL)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from .conftest import REPO, demo_config, snakemake, write_config

CONDA_LINT = "Specify a conda environment or container for each rule."


@pytest.fixture
def config(shared_data: Path, tmp_path: Path) -> dict:
    return demo_config(shared_data)


def _planned_jobs(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_lint_reports_only_the_software_deployment_hint():
    # The rules all call one installed package (the project's environment), so per-rule conda
    # environments or containers would only duplicate it: that one hint is expected.
    result = snakemake(REPO, "--lint")
    findings = re.findall(r"^    \* (.+?):?$", result.stdout, re.M)
    assert findings, result.stdout
    assert set(findings) == {CONDA_LINT}, findings


def test_dry_run_of_the_default_configuration():
    # --forceall: plan every job whatever a previous `make demo` left in the repository
    result = snakemake(REPO, "-n", "--forceall", "--cores", "2")
    assert result.returncode == 0, result.stdout
    jobs = _planned_jobs(result.stdout)
    assert jobs == {
        "fetch_genome": 6,
        "fetch_task_file": 6,
        "fetch_vcf": 1,
        "tokenize": 4,
        "pretrain": 1,
        "finetune": 2,
        "embed": 1,
        "long_context": 1,
        "score_variants": 1,
        "report": 1,
        "all": 1,
        "total": 25,
    }


def test_dry_run_with_the_slurm_profile(config: dict, tmp_path: Path):
    args = ["--executor", "slurm", "--workflow-profile", str(REPO / "workflows/profiles/slurm")]
    result = snakemake(tmp_path, *args, "-n", "-p", config=write_config(tmp_path, config))
    assert result.returncode == 0, result.stdout
    text = result.stdout
    assert "torchrun --standalone --nproc_per_node 4 -m pipeline.cli pretrain" in text
    assert re.search(r"rule finetune:.*?gpu=1.*?--device cuda", text, re.S)
    assert re.search(r"rule score_variants:.*?gpu=1.*?score-variants .*?--device cuda", text, re.S)
    assert re.search(r"titans-dna fetch \S+lambda_phage.fa.gz --sha256 08fe", text)


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
