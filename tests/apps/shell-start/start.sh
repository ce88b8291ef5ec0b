#!/usr/bin/env bash
# A worker started by a shell script: no port, it logs and keeps running.
set -euo pipefail

echo "start.sh: worker started"
while true; do
    sleep 60
    echo "start.sh: still working"
done
