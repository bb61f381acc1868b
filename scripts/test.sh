#!/usr/bin/env bash
# Runs every check: formatting, lints, unit and integration tests (including real
# CGI programs: git http-backend and php-cgi), and the curl smoke test.
# Installs what the tests need (curl, git, php-cgi) when it is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v git >/dev/null || missing+=(git)
command -v php-cgi >/dev/null || missing+=(php-cgi)
command -v python3 >/dev/null || missing+=(python3)
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
