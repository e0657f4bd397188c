#!/usr/bin/env bash
# Records the Slurm command output that tests/unit/test_slurm_parsing.py parses, from the real
# local cluster (../shared/slurm/start-local-slurm; Slurm 22.05). Takes about 2 minutes (a real
# Slurm TIMEOUT needs a one-minute limit). Run from anywhere, as root:
#   tests/unit/data/slurm/record.sh
# Each NAME.out / NAME.err / NAME.rc holds a command's stdout, stderr and exit status, in the exact
# form flow's Slurm batch system runs it (see batchsystems/slurm.py).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
TAG=flow:recorded0000

record() {  # record NAME command...
  local name=$1; shift
  "$@" >"$here/$name.out" 2>"$here/$name.err" </dev/null
  echo $? >"$here/$name.rc"
}
submit() {  # submit SCRIPT-TEXT sbatch-args... -> job id
  local text=$1; shift
  printf '#!/bin/sh\n%s\n' "$text" | sbatch --parsable --comment=$TAG --output=/dev/null "$@"
}

printf '#!/bin/sh\nexit 0\n' >ok.sh
sbatch --parsable --comment=$TAG --output=/dev/null --job-name=recorded-ok ok.sh \
  >"$here/sbatch_ok.out" 2>"$here/sbatch_ok.err"; echo $? >"$here/sbatch_ok.rc"
record sbatch_too_many_cpus sbatch --parsable --cpus-per-task=64 ok.sh
record sbatch_too_much_memory sbatch --parsable --mem=100000000M ok.sh
record sbatch_bad_partition sbatch --parsable --partition=no-such-partition ok.sh

timeout=$(submit 'exec sleep 300' --time=1 --job-name=recorded-timeout)
exit3=$(submit 'exit 3' --job-name=recorded-exit3)
signal=$(submit 'exec python3 -c "import os; os.kill(os.getpid(), 9)"' --job-name=recorded-signal)
cancelled=$(submit 'exec sleep 300' --job-name=recorded-cancelled)
pending=$(submit 'exec sleep 300' --cpus-per-task=2 --job-name=recorded-pending)
sleep 5
record squeue_leftovers squeue --noheader --user="$(id -un)" --format='%i|%k'
scancel "$cancelled"
sleep 2
ids="$timeout,$exit3,$signal,$cancelled,$pending"
record squeue_mixed squeue --noheader --states=all --jobs="$ids" --format='%i|%T|%M|%r'
record squeue_unknown squeue --noheader --states=all --jobs=999999 --format='%i|%T|%M|%r'
running=$(submit 'exec sleep 120' --mem=10M --job-name=recorded-running)
later=$(submit 'exit 0' --mem=10M --begin=now+3600 --job-name=recorded-later)
while [ "$(squeue -h -j "$running" -o %T)" != RUNNING ]; do sleep 1; done; sleep 3
record squeue_nodes squeue --noheader --states=all --jobs="$running,$later" --format='%i|%T|%M|%r|%N'
scancel "$running" "$later"
record scontrol_exit3 scontrol show job -o "$exit3"
record scontrol_signal scontrol show job -o "$signal"
record scontrol_cancelled scontrol show job -o "$cancelled"
record scontrol_running scontrol show job -o "$timeout"
record scontrol_unknown scontrol show job -o 999999
record sacct_disabled sacct --allocations --noheader --parsable2 --jobs="$exit3" \
  --format=JobID,State,ExitCode,ElapsedRaw
scancel "$pending"
for _ in $(seq 60); do  # Slurm checks time limits about every 30 s
  sleep 5
  state=$(squeue --noheader --states=all --jobs="$timeout" --format=%T)
  [ "$state" = TIMEOUT ] && break
done
record scontrol_timeout scontrol show job -o "$timeout"
record squeue_timeout squeue --noheader --states=all --jobs="$timeout" --format='%i|%T|%M|%r'
record sacct_completion_log sacct -c --noheader --parsable2 --jobs="$ids" \
  --format=JobID,State,ExitCode,ElapsedRaw
echo "$ids" >"$here/job_ids.txt"
# squeue_oom, scontrol_oom and sacct_oom (job 670) were recorded the same way from a cluster
# started with LOCAL_SLURM_CGROUP=1 (which enforces --mem), for a job submitted with --mem=50M
# whose script is: exec python3 -c "x = bytearray(400 * 1024 * 1024)". Set RECORD_OOM=1 to
# record them again (the cluster must enforce memory limits).
if [ "${RECORD_OOM:-0}" = 1 ]; then
  oom=$(submit 'exec python3 -c "x = bytearray(400 * 1024 * 1024); import time; time.sleep(2)"' \
    --mem=50M --job-name=recorded-oom)
  sleep 10
  record squeue_oom squeue --noheader --states=all --jobs="$oom" --format='%i|%T|%M|%r'
  record scontrol_oom scontrol show job -o "$oom"
  record sacct_oom sacct -c --noheader --parsable2 --jobs="$oom" --format=JobID,State,ExitCode,ElapsedRaw
fi
echo "recorded into $here"
