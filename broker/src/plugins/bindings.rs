//! Host bindings generated from the WIT package in `wit/`.
//!
//! The world `plugin` lists every hook; a plugin exports any subset, so the
//! host never instantiates the world as a whole: it links the imports and
//! looks up each hook interface on its own (see `instance`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    exports: { default: async },
    with: { "sluice:plugin/types.payload": crate::plugins::host::PayloadRep },
});
