# Paths, input lookups, the command every rule runs, and the configuration checks that the
# schema cannot express (names that must refer to each other, task folders that must hold a
# train split). They run while the workflow is parsed, so a bad configuration fails before any
# job starts.
import re
import shlex
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from snakemake.exceptions import WorkflowError

# Jobs run this checkout's pipeline code: every shell command starts by defining `titans-dna`
# as this checkout's CLI, run by the Python that runs Snakemake (e.g. .venv/bin/python) or,
# under --software-deployment-method conda or apptainer, by the `python` of envs/titans-dna.yaml
# or of the container, which hold only the dependencies. Every way of running runs one code.
SOURCE = Path(workflow.basedir).parent
ENV = "../envs/titans-dna.yaml"  # relative to rules/, as conda: directives are
PYTHON = "python" if workflow.deployment_settings.deployment_method else shlex.quote(sys.executable)
# (the prefix is formatted like a shell command, hence the doubled braces)
shell.prefix(
    "set -euo pipefail; "
    f"export PYTHONPATH={shlex.quote(str(SOURCE))}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    f'titans-dna() {{{{ {PYTHON} -m pipeline.cli "$@"; }}}}; '
)

RESULTS = config["results"].rstrip("/")
RESOURCES = config["resources"].rstrip("/")
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
MODEL = f"{RESULTS}/pretrain/model"
REPORT = f"{RESULTS}/report.html"

URL = re.compile(r"^(https?|ftp|file)://", re.IGNORECASE)
# File types kept on fetched copies: task files are recognised by their suffix, genomes read better.
KNOWN_SUFFIX = re.compile(
    r"(\.(csv|bed|fa|fasta|fna|fq|fastq|gb|gbk|genbank|embl)(\.b?gz)?|\.bam|\.cram)$",
    re.IGNORECASE,
)
TRAIN_FILES = ("train.csv", "train.csv.gz", "train.bed", "train.bed.gz") + tuple(
    f"train.{ext}{gz}" for ext in ("fa", "fasta", "fna", "fq", "fastq") for gz in ("", ".gz")
)


def config_error(message):
    return WorkflowError(f"configuration error: {message}")


def is_url(source):
    return bool(URL.match(source))


def source_name(source):
    return PurePosixPath(unquote(urlparse(source).path)).name if is_url(source) else Path(source).name


def known_suffix(source):
    match = KNOWN_SUFFIX.search(source_name(source))
    return match.group(0) if match else ""


def local_input(entry):
    """A local source is a rule input (Snakemake then reports a missing file before running)."""
    return [] if is_url(entry["source"]) else [entry["source"]]


def fetch_args(entry):
    """The `titans-dna fetch` arguments of a source entry (checksum and mirror folders)."""
    args = [entry["source"]]
    if entry.get("sha256"):
        args += ["--sha256", entry["sha256"]]
    for folder in config["mirror"]:
        args += ["--mirror", folder]
    return shlex.join(args)


def option_args(options):
    """{name: value} as command options: true is a bare `--name`, false leaves it out, a list
    is `--name item...`, a mapping is one `--name key=value` per entry (pretrain's `set`)."""
    args = []
    for name, value in options.items():
        if value is True:
            args.append(f"--{name}")
        elif isinstance(value, list):
            args += [f"--{name}", *(str(item) for item in value)]
        elif isinstance(value, dict):
            args += [arg for key, item in value.items() for arg in (f"--{name}", f"{key}={item}")]
        elif value is not False:
            args += [f"--{name}", str(value)]
    return shlex.join(args)


def scaled(base):
    """A resource that grows with the attempt: a job retried after running out of memory or
    time (retries in the SLURM profile) is resubmitted with twice, then three times, as much."""
    return lambda wildcards, attempt: base * attempt


def store_weights(weights):
    """`--set data.weights=[...]` in the order of the stores, or nothing for sampling by length."""
    if not weights:
        return ""
    ordered = [float(weights.get(name, 1)) for name in config["pretrain"]["genomes"]]
    return shlex.join(["--set", f"data.weights={ordered}"])


def flag_list(flag, paths):
    """`--flag path...`, or nothing for no paths (an empty list would be a usage error)."""
    return shlex.join([flag, *paths]) if paths else ""


def alternatives(names):
    return "|".join(re.escape(name) for name in sorted(names))


# ---------------------------------------------------------------- genomes

GENOME_FILES = {f"{name}{known_suffix(e['source'])}": name for name, e in config["genomes"].items()}


def genome_path(name):
    return f"{RESOURCES}/genomes/{name}{known_suffix(config['genomes'][name]['source'])}"


for stage in ("pretrain", "embed"):
    for name in config[stage]["genomes"]:
        if name not in config["genomes"]:
            raise config_error(f"{stage}.genomes names {name!r}, which is not in genomes")

for name in config["pretrain"]["weights"]:
    if name not in config["pretrain"]["genomes"]:
        raise config_error(f"pretrain.weights names {name!r}, which is not in pretrain.genomes")

if config["long_context"]["genome"] not in config["pretrain"]["genomes"]:
    raise config_error(
        f"long_context.genome {config['long_context']['genome']!r} is not a pretraining genome "
        "(its held-out part is what is measured)"
    )

PRETRAIN_GENOMES = [genome_path(name) for name in config["pretrain"]["genomes"]]
EMBED_GENOMES = config["embed"]["genomes"]

# ---------------------------------------------------------------- tasks

TASKS = config["finetune"]["tasks"]
TASK_FILES = {}  # "task/split.suffix" -> source entry, for the tasks given as files
for task, spec in TASKS.items():
    if "folder" in spec:
        folder = Path(spec["folder"])
        if not folder.is_dir():
            raise config_error(f"finetune task {task!r}: folder {folder} does not exist")
        if not any((folder / name).is_file() for name in TRAIN_FILES):
            raise config_error(
                f"finetune task {task!r}: folder {folder} has no train split (train.csv, "
                "train.fa[.gz] or train.bed)"
            )
        continue
    for split, entry in spec["files"].items():
        suffix = known_suffix(entry["source"])
        if not suffix:
            raise config_error(
                f"finetune task {task!r}: {split} source {entry['source']} is not a .csv, "
                "FASTA/FASTQ or .bed file"
            )
        TASK_FILES[f"{task}/{split}{suffix}"] = entry


def task_folder(task):
    spec = TASKS[task]
    return spec["folder"] if "folder" in spec else f"{RESOURCES}/tasks/{task}"


def task_inputs(wildcards):
    """The fetched split files of a task given as files; nothing for a folder used in place."""
    return [f"{RESOURCES}/tasks/{key}" for key in TASK_FILES if key.startswith(f"{wildcards.task}/")]


# ---------------------------------------------------------------- devices


def device(wildcards, resources):
    return "cuda" if resources.gpu > 0 else "cpu"


def launcher(wildcards, resources):
    """torchrun with one process per GPU of the job, or the plain command without GPUs."""
    if resources.gpu > 0:
        return (
            f"{PYTHON} -m torch.distributed.run --standalone"
            f" --nproc_per_node {resources.gpu} -m pipeline.cli"
        )
    return "titans-dna"
