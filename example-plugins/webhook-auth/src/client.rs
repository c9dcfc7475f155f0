//! A small HTTP client over `wasi:http/outgoing-handler`: one POST with a
//! JSON body, the whole answer read back. The broker decides what the
//! plugin may reach (`http_allow`), caps the timeouts and the response size,
//! and keeps the call within the hook's deadline.

use std::time::Duration;

use wasip2::http::outgoing_handler::{self, ErrorCode};
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

/// A response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// POSTs `body` (JSON) to `url` and reads the response.
pub fn post_json(url: &str, body: &[u8], timeout: Duration) -> Result<Response, String> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else {
        return Err(format!("{url}: not an http or https URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let headers = Fields::from_list(&[
        ("content-type".to_owned(), b"application/json".to_vec()),
        (
            "content-length".to_owned(),
            body.len().to_string().into_bytes(),
        ),
    ])
    .map_err(|e| format!("headers: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    let set = |ok: Result<(), ()>, what: &str| ok.map_err(|()| format!("invalid {what}"));
    set(request.set_method(&Method::Post), "method")?;
    set(request.set_scheme(Some(&scheme)), "scheme")?;
    set(request.set_authority(Some(authority)), "authority")?;
    set(request.set_path_with_query(Some(path)), "path")?;
    let outgoing = request.body().map_err(|()| "no request body".to_owned())?;

    let options = RequestOptions::new();
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    let pending = outgoing_handler::handle(request, Some(options)).map_err(describe)?;
    {
        let stream = outgoing
            .write()
            .map_err(|()| "no request stream".to_owned())?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("sending the request: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(describe)?;

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(describe(e)),
        Some(Err(())) | None => return Err("no response".to_owned()),
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| "no response body".to_owned())?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| "no response stream".to_owned())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(format!("reading the response: {}", e.to_debug_string()));
                }
            }
        }
    }
    Ok(Response { status, body })
}

fn describe(e: ErrorCode) -> String {
    match e {
        ErrorCode::HttpRequestDenied => "the broker does not allow this URL (http_allow)".into(),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => "timed out".into(),
        ErrorCode::HttpResponseBodySize(_) => "response too large".into(),
        other => format!("{other:?}"),
    }
}
