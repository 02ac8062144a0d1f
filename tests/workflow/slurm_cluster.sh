#!/usr/bin/env bash
# A real SLURM run of the demo workflow on this machine (Debian/Ubuntu, as root): installs
# slurm-wlm and munge when absent, starts a one-node cluster on localhost (slurmctld + slurmd),
# runs the demo through SLURM with the shipped profiles (profiles/slurm copied and its three
# values edited, as a user does; CPU overrides: no GPU, small memory), checks every output, and
# stops the daemons it started, also on failure.
# The cluster's slurm.conf lives in the work folder; /etc/slurm/slurm.conf links to it while the
# test runs, because Snakemake's job steps call srun without SLURM_CONF. A machine that already
# has its own /etc/slurm/slurm.conf (a real cluster node) is refused.
#
#   bash tests/workflow/slurm_cluster.sh        (or: make cluster-test)
#
# Environment: SLURM_TEST_DIR (work folder, default a new /tmp folder), SLURM_TEST_CPUS (2),
# TITANS_DNA_SHARED_DATA (the shared data folder, default ../shared/data beside the checkout).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$REPO/.venv/bin}
SHARED=$(cd "${TITANS_DNA_SHARED_DATA:-$REPO/../shared/data}" && pwd)
WORK=${SLURM_TEST_DIR:-$(mktemp -d /tmp/titans-dna-slurm.XXXXXX)}
CPUS=${SLURM_TEST_CPUS:-2}
NODE=$(hostname -s)
SLURM_CONF=$WORK/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf
WORKFLOW_TIMEOUT=${SLURM_TEST_TIMEOUT:-2700}  # seconds; a stuck status query must not hang CI

say() { printf '[slurm-test] %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }

install_slurm() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
        return
    fi
    [ "$(id -u)" -eq 0 ] || fail "slurm-wlm and munge are missing; run as root to install them"
    say "installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged
        STARTED_MUNGE=1
    fi
    munge -n </dev/null | unmunge >/dev/null || fail "munge does not authenticate"
}

write_slurm_conf() {
    local memory
    memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
    mkdir -p "$WORK/state" "$WORK/spool"
    cat >"$SLURM_CONF" <<EOF
ClusterName=titans-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    say "slurm.conf: node $NODE, $CPUS CPUs, $memory MB"
    if [ -e "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" != "$SLURM_CONF" ]; then
        fail "$SYSTEM_CONF exists: this machine has its own SLURM configuration"
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$SLURM_CONF" "$SYSTEM_CONF"
    LINKED_CONF=1
}

stop_daemons() {
    for name in slurmd slurmctld; do
        if [ -s "$WORK/$name.pid" ]; then
            kill "$(cat "$WORK/$name.pid")" 2>/dev/null || true
        fi
    done
    if [ -n "${STARTED_MUNGE:-}" ] && [ -s /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    fi
    if [ -n "${LINKED_CONF:-}" ]; then
        rm -f "$SYSTEM_CONF"
    fi
    say "daemons stopped"
}

start_slurm() {
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 60); do
        state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
        [ "$state" = "idle" ] && { say "node $NODE is idle"; return; }
        sleep 1
    done
    tail -n 20 "$WORK/slurmctld.log" "$WORK/slurmd.log" || true
    fail "node $NODE did not become idle (state: ${state:-none})"
}

copy_cluster_profile() {
    # what the README asks of a user: copy the folder, set the account and the two partitions
    # (no account on this test cluster: empty, so the plugin submits without one)
    mkdir -p "$WORK/profile"
    cp "$REPO"/profiles/slurm/* "$WORK/profile/"
    sed -i 's/slurm_account: "my_lab"/slurm_account: ""/' "$WORK/profile/config.yaml"
    sed -i -e 's/^  cpu:/  debug:/' -e 's/^  gpu:/  debug_gpu:/' "$WORK/profile/partitions.yaml"
}

run_workflow() {
    # the demo configuration, with its relative paths made absolute for the work folder
    sed -e "s#\.\./shared/data/#$SHARED/#" -e "s#config: config/#config: $REPO/config/#" \
        "$REPO/config/config.yaml" >"$WORK/config.yaml"
    copy_cluster_profile
    mkdir -p "$WORK/run"
    say "running the demo workflow through SLURM in $WORK/run"
    timeout "$WORKFLOW_TIMEOUT" "$BIN/snakemake" --snakefile "$REPO/workflow/Snakefile" \
        --directory "$WORK/run" --configfile "$WORK/config.yaml" --replace-workflow-config \
        --profile "$WORK/profile" --workflow-profile "$REPO/workflow/profiles/slurm" \
        --slurm-status-command squeue --slurm-init-seconds-before-status-checks 5 \
        --seconds-between-status-checks 5 --jobs 4 --retries 0 \
        --set-threads tokenize=1 pretrain="$CPUS" finetune=1 evaluate=1 embed=1 \
        score_variants=1 long_context=1 \
        --set-resources tokenize:mem_mb=1500 pretrain:gpu=0 pretrain:mem_mb=4000 finetune:gpu=0 \
        finetune:mem_mb=3000 evaluate:gpu=0 evaluate:mem_mb=3000 embed:gpu=0 embed:mem_mb=3000 score_variants:gpu=0 \
        score_variants:mem_mb=3000 long_context:gpu=0 long_context:mem_mb=3000 \
        2>&1 | tee "$WORK/snakemake.out"
}

check_outputs() {
    local results=$WORK/run/results/demo
    "$BIN/python" - "$results" <<'EOF'
import json, sys
from pathlib import Path

import h5py

results = Path(sys.argv[1])
for task in ("prom_300_tata", "mouse_0"):
    metrics = json.loads((results / "finetune" / task / "metrics.json").read_text())
    assert {"mcc", "accuracy", "f1", "auroc"} <= set(metrics["test"]), task
    print(f"finetune {task}: test MCC {metrics['test']['mcc']:.3f}")
assert (results / "pretrain/model/model.safetensors").is_file()
summary = json.loads((results / "pretrain/summary.json").read_text())
print("pretrain summary:", {k: v for k, v in summary.items() if not isinstance(v, dict)})
with h5py.File(results / "embeddings/lambda_phage.h5") as handle:
    shape = handle["embeddings"].shape
    assert shape[0] == handle["windows"].shape[0] > 0, shape
    print("embeddings lambda_phage:", shape)
report = (results / "report.html").read_text()
assert report.count("data:image/png;base64,") >= 2 and "mouse_0" in report
print("report:", results / "report.html", len(report), "bytes")
EOF
    jobs=$(grep -c "has been submitted with SLURM jobid" "$WORK/snakemake.out" || true)
    say "SLURM jobs submitted: $jobs (tokenize 4, pretrain, finetune 2, evaluate 2, embed," \
        "long_context, score_variants, report)"
    [ "$jobs" -eq 13 ] || fail "expected 13 SLURM jobs, saw $jobs"
    # every job went to the partition the copied partitions.yaml names for CPU jobs
    placed=$(grep -c "Auto-selected partition 'debug'" "$WORK/snakemake.out" || true)
    [ "$placed" -eq "$jobs" ] || fail "$placed of $jobs jobs were placed by partitions.yaml"
}

install_slurm
trap stop_daemons EXIT
start_munge
write_slurm_conf
start_slurm
start=$(date +%s)
run_workflow
check_outputs
say "OK: demo workflow through SLURM in $(($(date +%s) - start)) s"
