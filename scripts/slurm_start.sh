#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (Debian slurm-wlm 22.05 + munge), as root.
#
#   bash scripts/slurm_start.sh            # install what is missing, configure, start, wait for the node
#   bash scripts/slurm_start.sh --check    # only say whether the cluster answers (exit 0 / 1)
#
# Idempotent: a daemon that runs is left running; the configuration is rewritten only when it
# changes (then the daemons re-read it). Without root the script only checks. What it sets up:
#   - munge (the packaged key /etc/munge/munge.key; munged runs as the munge account);
#   - /etc/slurm/slurm.conf naming this host as controller and only compute node, with the CPUs
#     and memory that `slurmd -C` reports, one partition "debug" (default), and the plugins that
#     work without cgroups or accounting: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none,
#     SelectType=select/cons_tres, JobAcctGatherType=jobacct_gather/none, no accounting storage;
#   - no /etc/slurm/cgroup.conf (slurmd 22.05 refuses to start with one and no cgroup support).
# Without accounting `sacct` fails: submitit then only warns, and probelib's Slurm executor
# follows jobs with `squeue` and the files submitit writes.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
PARTITION=${PROBELIB_SLURM_PARTITION:-debug}
start=$(date +%s.%N)

say() { echo "slurm_start: $*"; }

answers() {  # the controller answers and the node is usable
    command -v sinfo >/dev/null 2>&1 || return 1
    local state
    state=$(timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -n1) || return 1
    [[ "$state" =~ ^(idle|mixed|allocated|completing)$ ]]
}

if [[ "${1:-}" == "--check" ]]; then
    if answers; then say "running ($(sinfo -h -o '%P %D %T' | head -n1))"; exit 0; fi
    say "not running"; exit 1
fi

if [[ $(id -u) -ne 0 ]]; then
    if answers; then say "running"; exit 0; fi
    say "Slurm is not running and starting it needs root (apt-get, daemons)"; exit 1
fi

# -- packages ---------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
        || ! command -v sbatch >/dev/null; then
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
fi

# -- munge --------------------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 0700 /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || { say "munged did not start"; exit 1; }
    say "munged started"
fi

# -- configuration ------------------------------------------------------------------------------------
if [[ -e $CONF_DIR/cgroup.conf ]]; then
    say "$CONF_DIR/cgroup.conf exists: slurmd 22.05 without cgroup support refuses to start with it;" \
        "move it away (this script never deletes it)"
    exit 1
fi
host=$(hostname -s)
node=$(slurmd -C | head -n1)                    # NodeName=<host> CPUs=... RealMemory=...
node=${node/NodeName=* CPUs/NodeName=$host CPUs}
install -d -m 0755 $CONF_DIR $LOG_DIR /var/spool/slurmctld /var/spool/slurmd
new=$(cat <<EOF
# Written by probelib's scripts/slurm_start.sh: a single-node cluster for tests and small studies.
ClusterName=probelib
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
)
changed=0
if [[ ! -f $CONF ]] || [[ "$(cat $CONF)" != "$new" ]]; then
    printf '%s\n' "$new" > $CONF
    chmod 0644 $CONF
    changed=1
    say "wrote $CONF"
fi

# -- daemons ------------------------------------------------------------------------------------------
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
if alive $CTLD_PID && [[ $changed -eq 1 ]]; then
    scontrol reconfigure >/dev/null 2>&1 || true
fi
if ! alive $CTLD_PID; then
    /usr/sbin/slurmctld
    say "slurmctld started"
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
if ! alive $SLURMD_PID; then
    /usr/sbin/slurmd
    say "slurmd started"
fi

# -- the node -----------------------------------------------------------------------------------------
for i in $(seq 300); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        down*|drain*|drained*|fail*)
            scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.1
done
if ! answers; then
    say "the node is not usable (state: ${state:-none}); see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log"
    exit 1
fi
say "ready: partition $PARTITION on $host ($(sinfo -h -o '%c' | head -n1) CPUs) in" \
    "$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')" 2>/dev/null || echo '?') s"
