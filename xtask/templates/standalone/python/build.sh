#!/bin/sh
# Builds {{name}}.wasm, a WebAssembly component for Sluice's plugin
# directory, with componentize-py. Uses componentize-py from PATH when it is
# the pinned version, else installs it into a virtualenv (.venv, or $VENV)
# from PyPI; needs python3 with venv and pip.
set -eu
cd "$(dirname "$0")"
version=0.25.1
tool=componentize-py
if ! [ "$($tool --version 2>/dev/null)" = "componentize-py $version" ]; then
    venv=${VENV:-.venv}
    tool=$venv/bin/componentize-py
    if ! [ "$($tool --version 2>/dev/null)" = "componentize-py $version" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "componentize-py==$version"
    fi
fi
# wit/ holds the plugin's world (world.wit) and the broker's package
# (wit/deps/sluice-plugin/).
"$tool" -d wit -w sluice-user:{{name}}/plugin componentize app -p . -o {{name}}.wasm
echo "built {{name}}.wasm"
