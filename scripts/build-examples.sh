#!/usr/bin/env bash
# Builds the compiled example function: api/_src/rust-hello → api/rust-hello.
# The binary is never committed (.gitignore); run this after a fresh clone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/api/_src/rust-hello"
cargo build --quiet --release --manifest-path "$src/Cargo.toml" --target-dir "$src/target"
# --target-dir wins over CARGO_TARGET_DIR, so the binary is always here.
install -m 755 "$src/target/release/rust-hello" "$root/api/rust-hello"
echo "built api/rust-hello"
