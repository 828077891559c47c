#!/usr/bin/env bash
# A private two-node SLURM cluster on localhost, for testing the project against real SLURM.
#
#   bash scripts/slurm_cluster.sh start  [STATE_DIR]   # prints the client environment (eval it)
#   bash scripts/slurm_cluster.sh status [STATE_DIR]   # exit 0: running, 3: stopped
#   bash scripts/slurm_cluster.sh stop   [STATE_DIR]
#
# STATE_DIR defaults to ${TMPDIR:-/tmp}/fastmri_pun_slurm. Everything the cluster writes (config,
# munge key and socket, spool, state, logs, PIDs) lives there. It runs its own munged, slurmctld
# and two slurmd ("n1", "n2", both on 127.0.0.1) with its own ports and munge socket, so a system
# SLURM on the same machine is left alone. Ports: FASTMRI_PUN_SLURM_PORT (controller, default
# 16817) and the two after it (nodes). Needs Debian's SLURM packages (slurmctld, slurmd,
# slurm-client, munge); `start` installs them with apt-get when running as root.
#
#   eval "$(bash scripts/slurm_cluster.sh start)"   # exports SLURM_CONF
#   sbatch -w n2 --wrap hostname
#
# start: idempotent (already running: prints the environment again); waits up to 60 s for both
#        nodes to be idle, else stops what it started and fails.
# stop:  scancels this cluster's jobs, then stops exactly the processes `start` recorded in
#        STATE_DIR/pids (SIGTERM, then SIGKILL after 10 s); no-op when stopped.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status [STATE_DIR]" >&2
  exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
ACTION=$1
STATE_DIR=${2:-${TMPDIR:-/tmp}/fastmri_pun_slurm}
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$PWD/$STATE_DIR" ;; esac
PORT=${FASTMRI_PUN_SLURM_PORT:-16817}
CONF="$STATE_DIR/slurm.conf"
PIDS="$STATE_DIR/pids"
MUNGE_SOCKET="$STATE_DIR/munge/munge.socket.2"
NODES=(n1 n2)
START_TIMEOUT=60

say() { echo "slurm_cluster: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# The client environment, for eval.
print_env() {
  echo "export SLURM_CONF='$CONF'"
}

# True when the recorded process NAME=PID is alive (not a zombie) and still runs NAME (not a
# reused PID).
alive() {
  local name=$1 pid=$2 stat
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  case "${stat%% *}" in Z | X | x) return 1 ;; esac
}

# Recorded processes still alive, one "NAME PID" per line.
live_pids() {
  [ -f "$PIDS" ] || return 0
  local name pid
  while read -r name pid _; do
    [ -n "${pid:-}" ] && alive "$name" "$pid" && echo "$name $pid"
  done <"$PIDS"
  return 0
}

# Number of this cluster's nodes that sinfo reports idle (0 when it cannot reach slurmctld).
idle_nodes() {
  SLURM_CONF="$CONF" timeout 10 sinfo -h -N -o '%N %T' 2>/dev/null | awk '$2 == "idle"' | wc -l
}

running() {
  [ -f "$PIDS" ] && [ "$(live_pids | wc -l)" -eq $((2 + ${#NODES[@]})) ]
}

do_stop() {
  if [ -f "$CONF" ] && command -v scancel >/dev/null 2>&1 && [ -n "$(live_pids)" ]; then
    SLURM_CONF="$CONF" timeout 10 scancel --full -p debug >/dev/null 2>&1 || true
  fi
  local name pid pids=() i
  while read -r name pid; do
    [ -n "${pid:-}" ] && pids+=("$pid")
  done < <(live_pids)
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      [ -z "$(live_pids)" ] && break
      sleep 0.1
    done
    while read -r name pid; do
      [ -n "${pid:-}" ] || continue
      say "$name (PID $pid) ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    done < <(live_pids)
  fi
  rm -f "$PIDS"
}

do_status() {
  if running; then
    echo "slurm_cluster: running in $STATE_DIR ($(live_pids | tr '\n' ' ' | sed 's/ $//'))"
    SLURM_CONF="$CONF" timeout 10 sinfo -N -o '%N %T %c' 2>/dev/null || true
    return 0
  fi
  if [ -n "$(live_pids)" ]; then
    echo "slurm_cluster: partly running in $STATE_DIR ($(live_pids | tr '\n' ' ' | sed 's/ $//')); run stop"
  else
    echo "slurm_cluster: stopped ($STATE_DIR)"
  fi
  return 3
}

install_packages() {
  command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 &&
    command -v sinfo >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 ||
    die "SLURM is not installed and this is not root with apt-get: install slurmctld slurmd slurm-client munge"
  say "installing slurmctld slurmd slurm-client munge (apt-get)"
  local pkgs=(slurmctld slurmd slurm-client munge)
  local log="$STATE_DIR/log/apt.log"
  mkdir -p "$STATE_DIR/log"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${pkgs[@]}" >"$log" 2>&1 ||
    { apt-get update -q && apt-get install -y -q "${pkgs[@]}"; } >>"$log" 2>&1 ||
    die "apt-get install failed (see $log)"
}

# The node topology slurmd detects ("CPUs=2 Boards=1 SocketsPerBoard=1 ..."), without memory.
node_hardware() {
  local hw
  hw=$(slurmd -C 2>/dev/null | head -n 1 | tr ' ' '\n' |
    grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
  echo "${hw:-CPUs=1}"
}

write_config() {
  mkdir -p "$STATE_DIR" "$STATE_DIR/munge" "$STATE_DIR/state" "$STATE_DIR/log"
  chmod 0755 "$STATE_DIR" # munged wants its socket reachable by all; the key stays 0600
  chmod 0755 "$STATE_DIR/munge"
  local n
  for n in "${NODES[@]}"; do mkdir -p "$STATE_DIR/spool/$n"; done
  if [ ! -s "$STATE_DIR/munge.key" ]; then
    (umask 077 && head -c 1024 /dev/urandom >"$STATE_DIR/munge.key")
  fi
  chmod 0600 "$STATE_DIR/munge.key"
  local hw host
  hw=$(node_hardware)
  host=$(hostname -s 2>/dev/null || hostname)
  cat >"$CONF" <<EOF
# Written by scripts/slurm_cluster.sh: a private two-node cluster on localhost.
ClusterName=fastmri_pun_ci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.%n.pid
SlurmdSpoolDir=$STATE_DIR/spool/%n
StateSaveLocation=$STATE_DIR/state
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=n1 NodeAddr=127.0.0.1 NodeHostname=$host Port=$((PORT + 1)) $hw State=UNKNOWN
NodeName=n2 NodeAddr=127.0.0.1 NodeHostname=$host Port=$((PORT + 2)) $hw State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
EOF
}

# Start NAME (the process name /proc shows) in the background, detached, logging to log/NAME.out.
launch() {
  local name=$1 tag=$2
  shift 2
  setsid "$@" </dev/null >>"$STATE_DIR/log/$tag.out" 2>&1 &
  local pid=$!
  echo "$name $pid $tag" >>"$PIDS"
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

do_start() {
  if running && [ "$(idle_nodes)" -ge ${#NODES[@]} ]; then
    say "already running in $STATE_DIR"
    print_env
    return 0
  fi
  do_stop # leftovers of a crashed or partial start
  install_packages
  local p
  for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
    port_free "$p" || die "port $p is in use (set FASTMRI_PUN_SLURM_PORT to another base port)"
  done
  write_config
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  : >"$PIDS"
  launch munged munged munged --foreground --force --socket="$MUNGE_SOCKET" \
    --key-file="$STATE_DIR/munge.key" --pid-file="$STATE_DIR/munged.pid" \
    --seed-file="$STATE_DIR/munge/munged.seed"
  local i
  for ((i = 0; i < 50; i++)); do
    [ -S "$MUNGE_SOCKET" ] && break
    sleep 0.1
  done
  [ -S "$MUNGE_SOCKET" ] || {
    do_stop
    die "munged did not start (see $STATE_DIR/log/munged.out)"
  }
  export SLURM_CONF="$CONF"
  launch slurmctld slurmctld slurmctld -D -i -f "$CONF"
  local n
  for n in "${NODES[@]}"; do
    launch slurmd "slurmd.$n" slurmd -D -N "$n" -f "$CONF"
  done
  local deadline=$((SECONDS + START_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! running; then
      do_stop
      die "a daemon exited during start (see $STATE_DIR/log/)"
    fi
    if [ "$(idle_nodes)" -ge ${#NODES[@]} ]; then
      say "running in $STATE_DIR (nodes ${NODES[*]} idle)"
      print_env
      return 0
    fi
    sleep 0.5
  done
  do_stop
  die "nodes not idle after ${START_TIMEOUT} s (see $STATE_DIR/log/); stopped"
}

case "$ACTION" in
  start) do_start ;;
  stop)
    if [ -n "$(live_pids)" ]; then
      do_stop
      say "stopped ($STATE_DIR)"
    else
      rm -f "$PIDS"
    fi
    ;;
  status) do_status ;;
  *) usage ;;
esac
