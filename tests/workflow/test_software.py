"""The software the jobs run with under --software-deployment-method: the conda environment and
the Apptainer definition name exactly the requirements of pyproject.toml, and a conda dry run
plans every job in that environment."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

import yaml

from .conftest import REPO, snakemake

ENV_FILE = REPO / "workflow" / "envs" / "titans-dna.yaml"
DEFINITION = REPO / "workflow" / "envs" / "titans-dna.def"


def _project_requirements() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["triton"]


def _pip_section(env: dict) -> list[str]:
    (pip,) = [entry["pip"] for entry in env["dependencies"] if isinstance(entry, dict)]
    return pip


def test_conda_environment_holds_the_project_requirements():
    env = yaml.safe_load(ENV_FILE.read_text())
    assert env["channels"][0] == "conda-forge"
    plain = [entry for entry in env["dependencies"] if isinstance(entry, str)]
    assert "pip" in plain and any(re.fullmatch(r"python=3\.1[1-9]", entry) for entry in plain)
    assert _pip_section(env) == _project_requirements()


def test_container_definition_installs_the_same_requirements():
    text = DEFINITION.read_text()
    assert re.search(r"^Bootstrap: docker\nFrom: python:3\.1[1-9]", text, re.M)
    post = text[text.index("%post") : text.index("%environment")]
    assert re.findall(r'"([^"]+)"', post) == _project_requirements()


def test_every_rule_names_the_environment():
    rules = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    text = "\n".join(path.read_text() for path in rules)
    shell_rules = len(re.findall(r"^    shell:$", text, re.M))
    assert shell_rules and len(re.findall(r"^    conda:\n        ENV$", text, re.M)) == shell_rules


def test_conda_dry_run_plans_every_job(tmp_path: Path):
    # Conda channels cannot be reached here, and a dry run creates no environment: a stand-in
    # `conda` answers the installation queries Snakemake makes before planning.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "conda"
    stand_in.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f'  "info --json") echo \'{{"conda_prefix": "{tmp_path}", "platform": "linux-64"}}\' ;;\n'
        '  "--version") echo "conda 24.11.3" ;;\n'
        '  "config --get channel_priority --json")\n'
        '    echo \'{"get": {"channel_priority": "strict"}}\' ;;\n'
        '  *) echo "unexpected conda call: $*" >&2; exit 1 ;;\n'
        "esac\n"
    )
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    args = ("-n", "-p", "--forceall", "--cores", "2", "--sdm", "conda")
    result = snakemake(REPO, *args, env=env)
    assert result.returncode == 0, result.stdout
    assert "Conda environment workflow/envs/titans-dna.yaml will be created." in result.stdout
    assert re.search(r"^total\s+28$", result.stdout, re.M)
    assert "Shell command: titans-dna pretrain" in result.stdout
