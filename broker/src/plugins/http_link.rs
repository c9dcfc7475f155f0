//! Links `wasi:http` into the plugins' linker, with one correction to
//! wasmtime-wasi-http 48: its `outgoing-handler.handle` reads the
//! `request-options` it is given (an owned handle) but never removes them
//! from the instance's resource table. Every request that passes options
//! (most clients do, for their timeouts) would leave one entry behind, and
//! after [`MAX_HOST_RESOURCES`](super::limiter::MAX_HOST_RESOURCES)
//! requests the instance could create no resource at all: every later
//! request, stream or lent payload would trap. Here `handle` is replaced by
//! the library's own, followed by the removal of the options it left.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler, types};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{RequestOptions, WasiHttpView};

/// The `outgoing-handler` interface as wasmtime-wasi-http 48 links it.
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// Adds `wasi:http` (types and outgoing-handler), `handle` corrected.
pub(crate) fn add_to_linker<T: WasiHttpView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    linker.allow_shadowing(true);
    let defined = linker.instance(OUTGOING_HANDLER)?.func_wrap(
        "handle",
        |mut store: StoreContextMut<'_, T>,
         (request, options): (
            Resource<HostOutgoingRequest>,
            Option<Resource<RequestOptions>>,
        )| {
            let mut view = store.data_mut().http();
            let left = options
                .as_ref()
                .map(|o| Resource::<RequestOptions>::new_own(o.rep()));
            let result = outgoing_handler::Host::handle(&mut view, request, options);
            if let Some(left) = left {
                // Only if the entry is still the options: a library that
                // removes them itself may have reused the slot.
                if view.table.get(&left).is_ok() {
                    let _ = view.table.delete(left);
                }
            }
            let result: Result<Resource<HostFutureIncomingResponse>, types::ErrorCode> =
                match result {
                    Ok(response) => Ok(response),
                    Err(e) => Err(types::Host::convert_error_code(&mut view, e)?),
                };
            Ok((result,))
        },
    );
    linker.allow_shadowing(false);
    defined
}
