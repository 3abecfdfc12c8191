#!/usr/bin/env bash
# Best effort: make Debian's SLURM (slurmctld, slurmd, sbatch) and munge available for
# tests/scale/test_slurm.py, which starts its own throw-away single-node cluster as root and
# skips with its reason when it cannot. Never fails the build.
set -u
if command -v sbatch >/dev/null 2>&1 && { command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ]; }; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "slurm.sh: cannot install slurm-wlm and munge here (needs root and apt-get); its test will skip"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null 2>&1 \
       && apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1; } \
  || echo "slurm.sh: apt-get install slurm-wlm munge failed; its test will skip"
exit 0
