#!/bin/sh
# Builds {{name}}.wasm, a WebAssembly component for Sluice's plugin
# directory, with componentize-js (`npm run build`). Uses componentize-js
# from PATH when it is the pinned version, else installs the project's
# devDependencies with npm; needs Node.js 18 or later and npm.
set -eu
cd "$(dirname "$0")"
version=0.23.0
if ! [ "$(componentize-js --version 2>/dev/null)" = "$version" ]; then
    if ! [ -x node_modules/.bin/componentize-js ]; then
        npm install --no-audit --no-fund
    fi
    PATH=$PWD/node_modules/.bin:$PATH
fi
# `-d http fetch-event`: the component does not import wasi:http, which the
# broker grants only to plugins configured with `http_allow`.
componentize-js --wit wit --world-name plugin -d http fetch-event -o {{name}}.wasm app.js
echo "built {{name}}.wasm"
