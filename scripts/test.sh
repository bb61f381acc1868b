#!/usr/bin/env bash
# Runs every check: formatting, lints, unit, property and integration tests
# (including real CGI programs: git http-backend and php-cgi), the curl smoke test
# and the soak test. Installs what they need (curl, git, php-cgi, wrk) when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v git >/dev/null || missing+=(git)
command -v php-cgi >/dev/null || missing+=(php-cgi)
command -v python3 >/dev/null || missing+=(python3)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --quiet --all-targets -- -D warnings
echo "== cargo test"
cargo test --quiet
echo "== scripts/smoke.sh"
scripts/smoke.sh
echo "== scripts/soak.sh"
scripts/soak.sh --requests 20000 --debug
