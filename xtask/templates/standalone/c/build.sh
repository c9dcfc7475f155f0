#!/bin/sh
# Builds {{name}}.wasm, a WebAssembly component for Sluice's plugin
# directory, from plugin.c with public tools:
#   - clang for wasm32-wasi with wasm-ld and wasi-libc (Debian:
#     apt-get install clang lld wasi-libc libclang-rt-dev-wasm32; or the
#     WASI SDK: CC=/path/to/wasi-sdk/bin/clang ./build.sh);
#   - wit-bindgen (the C bindings of wit/world.wit) and wasm-tools (the
#     component step), at pinned versions: taken from PATH, else installed
#     with cargo into .tools (or $SLUICE_TOOLS), which needs Rust.
set -eu
cd "$(dirname "$0")"
wit_bindgen_version=0.60.0
wasm_tools_version=1.254.0
tools=${SLUICE_TOOLS:-$PWD/.tools}
PATH=$tools/bin:$PATH
if ! [ "$(wit-bindgen --version 2>/dev/null | cut -d' ' -f2)" = "$wit_bindgen_version" ]; then
    cargo install --locked --root "$tools" "wit-bindgen-cli@$wit_bindgen_version" \
        --no-default-features --features c
fi
if ! [ "$(wasm-tools --version 2>/dev/null | cut -d' ' -f2)" = "$wasm_tools_version" ]; then
    cargo install --locked --root "$tools" "wasm-tools@$wasm_tools_version" \
        --no-default-features --features component
fi

rm -rf build
mkdir -p build/gen
wit-bindgen c wit --world {{name}} --out-dir build/gen
# reactor: a library the host calls into, no main. --strip-debug: wasi-libc
# may carry debug information, several times the size of the code.
${CC:-clang} --target=wasm32-wasi -O2 -mexec-model=reactor -Wl,--strip-debug \
    -Wall -Wextra -I build/gen -o build/core.wasm \
    ./*.c build/gen/*.c build/gen/*_component_type.o
# The core module imports WASI preview 1; the reactor adapter (from the
# wasmtime release the broker embeds) turns it into a preview 2 component.
wasm-tools component new build/core.wasm \
    --adapt wasi_snapshot_preview1=wasi_snapshot_preview1.reactor.wasm \
    -o {{name}}.wasm
echo "built {{name}}.wasm"
