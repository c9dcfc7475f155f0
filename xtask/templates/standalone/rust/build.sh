#!/bin/sh
# Builds {{name}}.wasm, a WebAssembly component for Sluice's plugin
# directory. Needs Rust (rustup) with the wasm32-wasip2 target, which it
# adds when missing.
set -eu
cd "$(dirname "$0")"
if command -v rustup >/dev/null 2>&1 &&
    ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2
target=${CARGO_TARGET_DIR:-target}
cp "$target/wasm32-wasip2/release/{{name_snake}}.wasm" {{name}}.wasm
echo "built {{name}}.wasm"
