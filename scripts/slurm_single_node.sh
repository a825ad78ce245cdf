#!/usr/bin/env bash
# A real one-node SLURM cluster on this host, for tests/test_slurm.py (and for trying
# profiles/slurm by hand).  Needs root and Debian's packages; everything listens on loopback.
#
#   scripts/slurm_single_node.sh up   STATE_DIR   install (apt, only what is missing), write
#                                                 /etc/slurm/slurm.conf, start munged, slurmctld,
#                                                 slurmd; wait until the node takes jobs
#   scripts/slurm_single_node.sh down STATE_DIR   stop exactly the daemons `up` started (by the
#                                                 pids it recorded), bounded in time; remove the
#                                                 config it wrote
#
# The cluster: one node (this host's name, NodeAddr 127.0.0.1) in two partitions, `cpu`
# (default) and `gpu`.  This host has no GPU: the node declares three `gpu` GRES whose device
# files are /dev/null, /dev/zero and /dev/full (slurmd counts a gres/gpu only with a File; with
# task/none no device cgroup is built from them), so the profile's GPU requests are scheduled
# exactly as on a GPU node with three GPUs -- three GPU jobs at once, all served by the node's
# one daemon -- which runs on the CPU because the test's config sets daemon.require_gpu: false.
# The node also declares three CPUs per real core (SlurmdParameters=config_overrides): a job is
# mostly two `snakemake` start-ups waiting on each other, and the test should not take minutes
# more for the scheduler to run them two at a time.  Memory is not a consumable resource here
# (CR_Core): the profile's per-job requests are passed to sbatch and checked against the node's
# size, but this 24 GB host could not hold three GPU jobs' requests at once.  No slurmdbd: accounting is off, so `sacct` answers nothing and Snakemake must query
# job states with squeue (--slurm-status-command squeue); MinJobAge keeps finished jobs in
# squeue for 10 minutes.
#
# Facts this relies on (slurm-wlm 22.05.8, Debian 12): the config must be at
# /etc/slurm/slurm.conf (a job step does not see SLURM_CONF); proctrack/linuxproc and
# task/none need no cgroup set-up; select/cons_tres is what --gpus needs.
# An existing /etc/slurm/slurm.conf that this script did not write is never touched: `up`
# refuses to run (exit 3) -- this host may be part of a real cluster.
set -euo pipefail

MARK="# written by voiceman scripts/slurm_single_node.sh"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
GRES_CONF="$CONF_DIR/gres.conf"

die() { echo "slurm_single_node: $1" >&2; exit "${2:-1}"; }
say() { echo "slurm_single_node: $*" >&2; }

cmd="${1:-}"; state="${2:-}"
[ -n "$cmd" ] && [ -n "$state" ] || die "usage: $0 up|down STATE_DIR" 2
state="$(mkdir -p "$state" && cd "$state" && pwd)"

wait_gone() {  # wait_gone PID SECONDS: true when the process is gone in time
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}

stop_pid_file() {  # stop_pid_file NAME: SIGTERM the recorded pid, SIGKILL after 15 s
  local name=$1 file="$state/$1.started" pid
  [ -f "$file" ] || return 0
  pid="$(cat "$file")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 15; then
      say "$name (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 5 || say "$name (pid $pid) is still there after SIGKILL"
    fi
  fi
  rm -f "$file"
}

down() {
  # Jobs first (their processes belong to slurmd's steps), then the daemons, newest first.
  if [ -f "$state/slurmctld.started" ] && command -v scancel >/dev/null; then
    timeout 10 scancel --user=root --full >/dev/null 2>&1 || true
  fi
  stop_pid_file slurmd
  stop_pid_file slurmctld
  stop_pid_file munged
  # The config files only when this state dir's `up` wrote them (their first line names it).
  local mine="$MARK (state: $state)"
  if [ -f "$CONF" ] && [ "$(head -n 1 "$CONF")" = "$mine" ]; then rm -f "$CONF"; fi
  if [ -f "$GRES_CONF" ] && [ "$(head -n 1 "$GRES_CONF")" = "$mine" ]; then rm -f "$GRES_CONF"; fi
  say "down ($state)"
}

install_missing() {
  local need=()
  command -v munged >/dev/null || need+=(munge)
  command -v slurmctld >/dev/null || need+=(slurmctld)
  command -v slurmd >/dev/null || need+=(slurmd)
  command -v sbatch >/dev/null || need+=(slurm-client)
  [ ${#need[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "SLURM is not installed (${need[*]} missing) and there is no apt-get to install it" 4
  say "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # An install from stale package lists can fail; update them only then.
  if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >"$state/apt.log" 2>&1; then
    apt-get update -qq >>"$state/apt.log" 2>&1 || die "apt-get update failed (log: $state/apt.log)" 4
    apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$state/apt.log" 2>&1 \
      || die "apt-get install ${need[*]} failed (log: $state/apt.log)" 4
  fi
}

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

up() {
  [ "$(id -u)" = 0 ] || die "must run as root (slurmd starts job steps as their users)" 3
  if [ -e "$CONF" ] && ! head -n 1 "$CONF" | grep -qF "$MARK"; then
    die "$CONF exists and was not written by this script: this host may belong to a real cluster; not touching it" 3
  fi
  install_missing
  if timeout 5 scontrol ping 2>/dev/null | grep -q "is UP"; then
    die "a slurmctld is already answering on this host; not starting another" 3
  fi
  local host cpus mem_mb
  host="$(hostname -s)"
  getent hosts "$host" >/dev/null || die "this host's name '$host' does not resolve (add it to /etc/hosts)" 3
  cpus=$(( $(nproc) * 3 ))
  mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  rm -rf "$state/ctld" "$state/d"  # a fresh cluster: no node or job state from an earlier run
  mkdir -p "$state/ctld" "$state/d" "$CONF_DIR"

  # munge: the cluster's authentication.  Reuse a munged that already answers (not ours to stop).
  if ! munge_works; then
    [ -s /etc/munge/munge.key ] || die "/etc/munge/munge.key is missing (the munge package creates it)" 3
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    setpriv --reuid=munge --regid=munge --init-groups munged --foreground >"$state/munged.log" 2>&1 &
    echo $! >"$state/munged.started"
    for _ in $(seq 50); do munge_works && break; sleep 0.2; done
    munge_works || die "munged did not come up (log: $state/munged.log)" 5
  fi

  cat >"$CONF" <<EOF
$MARK (state: $state)
ClusterName=voiceman-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=600
SlurmdParameters=config_overrides
KillWait=10
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:3 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host Default=NO MaxTime=INFINITE State=UP
EOF
  cat >"$GRES_CONF" <<EOF
$MARK (state: $state)
NodeName=$host Name=gpu File=/dev/null
NodeName=$host Name=gpu File=/dev/zero
NodeName=$host Name=gpu File=/dev/full
EOF

  # slurmctld -i: ignore state saved by an earlier run; both in the foreground, so the pid
  # recorded is the daemon's own and `down` stops exactly it.
  slurmctld -D -i >"$state/slurmctld.out" 2>&1 &
  echo $! >"$state/slurmctld.started"
  for _ in $(seq 100); do timeout 5 scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.2; done
  timeout 5 scontrol ping 2>/dev/null | grep -q "is UP" \
    || die "slurmctld did not answer (log: $state/slurmctld.log, $state/slurmctld.out)" 5
  slurmd -D >"$state/slurmd.out" 2>&1 &
  echo $! >"$state/slurmd.started"
  local node_state=""
  for _ in $(seq 150); do
    node_state="$(sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1)"
    case "$node_state" in idle|mix|alloc) break ;; esac
    sleep 0.2
  done
  case "$node_state" in
    idle|mix|alloc) ;;
    *) die "node $host is '$node_state', not idle (log: $state/slurmd.log, $state/slurmd.out, $state/slurmctld.log)" 5 ;;
  esac
  say "up: node $host ($cpus CPUs, $mem_mb MB, gres gpu:3 on /dev/null,zero,full), partitions cpu, gpu; state $state"
}

case "$cmd" in
  up)
    # A failed start leaves nothing running.
    (up) || { rc=$?; down; exit "$rc"; } ;;
  down) down ;;
  *) die "usage: $0 up|down STATE_DIR" 2 ;;
esac
