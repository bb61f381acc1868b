#!/usr/bin/env bash
# Serves the example functions in api/ at http://127.0.0.1:3000/api/ (extra
# arguments go to `watchdog serve`, e.g. --listen 127.0.0.1:8080).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build-examples.sh"
cd "$root"
exec cargo run --quiet --release -- serve api "$@"
