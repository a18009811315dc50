#!/usr/bin/env bash
# The issue-14 benchmark: `uptime` on the 50 hosts of an inventory (50 sshd on loopback, each with
# its own host key, all in known_hosts), three ways, 50 at a time:
#   runbook exec bench/fleet/uptime.lua --auto      (inventory:all, limit = 50: one process, parallel())
#   ansible all -i INVENTORY -m command -a uptime -f 50
#   clush -w h[01-50] -f 50 -b uptime                (ClusterShell)
# Each run starts cold: a fresh ControlPath directory, and the master connections of the run before
# (runbook's and Ansible's ControlPersist) are closed first, so that every tool makes 50 handshakes.
# The commands run in turn, round after round, so that the machine's drifts fall on all alike.
# Prints a Markdown table: median and min wall time, and the peak RSS of the largest process.
#   bench/fleet.sh [BINARY] [ROUNDS] [HOSTS]     needs: openssh-server, ansible-core, clustershell (apt); root
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/fleet/fleet.py" "$(realpath "${1:-$here/../runbook}")" "${2:-10}" "${3:-50}"
