#!/usr/bin/env bash
# Records the Slurm output about dynamic nodes that tests/unit/test_slurm_nodes.py parses, from the
# real local cluster in elastic mode (LOCAL_SLURM_ELASTIC=N ../shared/slurm/start-local-slurm;
# Slurm 22.05). Takes about 10 seconds. Run from anywhere, as root:
#   tests/unit/data/slurm/record-elastic.sh
# Each NAME.out / NAME.err / NAME.rc holds a command's stdout, stderr and exit status, in the exact
# form flow's Slurm batch system and provisioner run it.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
slurm=$(cd "$here/../../../../../shared/slurm" && pwd)
scratch=$(mktemp -d)
NODE=fpppppppp9 FEATURE=flowpppppppp
trap '"$slurm/remove-local-node" $NODE; rm -rf "$scratch"' EXIT
cd "$scratch"
record() {  # record NAME command...
  local name=$1; shift
  "$@" >"$here/$name.out" 2>"$here/$name.err" </dev/null
  echo $? >"$here/$name.rc"
}
printf '#!/bin/sh\nexec sleep 30\n' >job.sh
"$slurm/remove-local-node" $NODE
record sbatch_no_node_feature sbatch --parsable -p elastic --mem=100M --constraint=$FEATURE job.sh
"$slurm/add-local-node" $NODE 1 1024 "$FEATURE,${FEATURE}_small" >/dev/null
record sbatch_unknown_feature sbatch --parsable -p elastic --mem=100M --constraint=flowaaaaaaaa job.sh
job=$(sbatch --parsable -p elastic --mem=100M --constraint=$FEATURE --output=/dev/null job.sh)
for _ in $(seq 50); do [ "$(squeue -h -j "$job" -o %T)" = RUNNING ] && break; sleep 0.2; done
scontrol update NodeName=$NODE State=DRAIN Reason="flow: the cluster scaler is removing it"
record scontrol_nodes_busy_draining scontrol show nodes -o
scancel "$job"
for _ in $(seq 100); do scontrol show node $NODE | grep -q 'State=IDLE+DRAIN+DYNAMIC_NORM ' && break; sleep 0.2; done
scontrol update NodeName=$NODE State=RESUME
for _ in $(seq 50); do [ "$(sinfo -h -n $NODE -o %T)" = idle ] && break; sleep 0.2; done
record scontrol_nodes_idle scontrol show nodes -o
record scontrol_delete_unknown scontrol delete NodeName=fnosuchnode1
