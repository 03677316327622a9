#!/usr/bin/env bash
# One-node SLURM cluster on localhost for tests that submit real jobs (submitit).
# Usage (as root):  bash tests/slurm/start_slurm.sh        install if needed, (re)start, self-test
#                   bash tests/slurm/start_slurm.sh stop   stop slurmctld, slurmd and munged
# Idempotent: a second run keeps running daemons unless slurm.conf changed;
# a (re)start begins with an empty queue (slurmctld -c: old jobs are dropped, job ids restart at 1).
set -uo pipefail

CONF=/etc/slurm/slurm.conf
LOGDIR=/var/log/slurm
RUNDIR=/run/slurm
CTLD_LOG=$LOGDIR/slurmctld.log
SLURMD_LOG=$LOGDIR/slurmd.log
MUNGE_KEY=/etc/munge/munge.key
WAIT_S=${SLURM_WAIT_S:-60}
T0=$(date +%s)

fail() { # fail STAGE MESSAGE [LOGFILE]
    echo "slurm setup FAILED at $1: $2" >&2
    if [ -n "${3:-}" ] && [ -f "$3" ]; then
        echo "--- tail of $3 ---" >&2
        tail -n 25 "$3" >&2
    fi
    exit 1
}
say() { echo "[start_slurm +$(( $(date +%s) - T0 ))s] $*"; }

[ "$(id -u)" = 0 ] || fail setup "must run as root (sudo bash $0)"

pids_of() { # live (non-zombie) pids of an exact process name
    ps -e -o pid=,stat=,comm= | awk -v n="$1" '$3 == n && $2 !~ /^Z/ {printf "%s ", $1}'; }

stop_slurm() {
    if [ -n "$(pids_of slurmctld)$(pids_of slurmd)" ]; then
        scontrol shutdown >/dev/null 2>&1 || true
        for _ in $(seq 20); do
            [ -z "$(pids_of slurmctld)$(pids_of slurmd)" ] && break
            sleep 0.5
        done
        for p in $(pids_of slurmctld) $(pids_of slurmd); do kill "$p" 2>/dev/null || true; done
        sleep 1
        for p in $(pids_of slurmctld) $(pids_of slurmd); do kill -9 "$p" 2>/dev/null || true; done
    fi
}

if [ "${1:-}" = stop ]; then
    stop_slurm
    for p in $(pids_of munged); do kill "$p" 2>/dev/null || true; done
    echo "slurm stopped"
    exit 0
fi

# 1. install --------------------------------------------------------------
if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null \
   || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge"
    # keep package scripts from trying to start services (no systemd here)
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends \
          slurm-wlm slurmctld slurmd slurm-client munge; } > /tmp/slurm-apt.log 2>&1
    rc=$?
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || fail install "apt-get install slurm-wlm munge exited $rc" /tmp/slurm-apt.log
fi
say "$(slurmd -V)"

# 2. munge ----------------------------------------------------------------
id munge >/dev/null 2>&1 || fail munge "no munge user (package install incomplete?)"
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s "$MUNGE_KEY" ]; then
    say "creating $MUNGE_KEY"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$MUNGE_KEY" --force >/dev/null 2>&1
    fi
    [ -s "$MUNGE_KEY" ] || dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
fi
chown munge:munge "$MUNGE_KEY"; chmod 0400 "$MUNGE_KEY"
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    for p in $(pids_of munged); do kill "$p" 2>/dev/null || true; done
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged >/dev/null 2>&1 || /usr/sbin/munged --force >/dev/null 2>&1
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 \
        || fail munge "munged not answering (munge -n | unmunge)" /var/log/munge/munged.log
    say "munged started"
fi

# 3. slurm.conf -----------------------------------------------------------
NODE=$(hostname -s)
CPUS=$(nproc)
MEM=$(free -m | awk '/^Mem:/ {print $2}')
MEM=$(( MEM * 90 / 100 ))          # a bit under the real total, or slurmd drains the node
install -d -m 0755 /etc/slurm "$LOGDIR" "$RUNDIR" /var/spool/slurmctld /var/spool/slurmd
NEW=$(mktemp)
cat > "$NEW" <<EOF
# written by tests/slurm/start_slurm.sh: one-node test cluster on localhost
ClusterName=localtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5,sched_interval=5
ReturnToService=2
MinJobAge=30
JobRequeue=1
KillWait=30
OverTimeLimit=0
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd.pid
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
changed=0
if ! cmp -s "$NEW" "$CONF"; then
    [ -f "$CONF" ] && cp "$CONF" "$CONF.bak"
    install -m 0644 "$NEW" "$CONF"; changed=1
    say "wrote $CONF (node $NODE, $CPUS cpus, ${MEM} MB)"
fi
rm -f "$NEW"

# 4. daemons --------------------------------------------------------------
if [ $changed = 1 ] || [ -z "$(pids_of slurmctld)" ] || [ -z "$(pids_of slurmd)" ]; then
    stop_slurm
    say "starting slurmctld and slurmd"
    slurmctld -c >>"$CTLD_LOG" 2>&1 || fail slurmctld "slurmctld did not start" "$CTLD_LOG"
    ok=0
    for _ in $(seq "$WAIT_S"); do scontrol ping 2>/dev/null | grep -q UP && { ok=1; break; }; sleep 1; done
    [ $ok = 1 ] || fail slurmctld "slurmctld not answering scontrol ping after ${WAIT_S}s" "$CTLD_LOG"
    slurmd >>"$SLURMD_LOG" 2>&1 || fail slurmd "slurmd did not start" "$SLURMD_LOG"
else
    say "slurmctld and slurmd already running with this config"
fi

state=""
for i in $(seq "$WAIT_S"); do
    [ -n "$(pids_of slurmd)" ] || fail slurmd "slurmd exited" "$SLURMD_LOG"
    state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1)
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        down*|drain*|fail*) [ $(( i % 5 )) = 1 ] && scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 ;;
    esac
    sleep 1
done
case "$state" in
    idle|mixed|allocated|completing) ;;
    *) fail "node state" "node $NODE is '${state:-unknown}' after ${WAIT_S}s ($(sinfo -h -N -n "$NODE" -o %E 2>/dev/null))" "$SLURMD_LOG" ;;
esac

# 5. self-test ------------------------------------------------------------
out=$(timeout 60 srun -N1 -n1 -t 1 hostname 2>&1) \
    || { echo "$out" >&2; fail "test job" "srun -N1 -n1 hostname failed" "$CTLD_LOG"; }
say "srun hostname -> $out"
for _ in $(seq 10); do sinfo -h -N -n "$NODE" -o %T | grep -q '^completing' || break; sleep 0.5; done
echo "slurm ready: $(sinfo -h -o '%P %a %l %D %T %N')"
