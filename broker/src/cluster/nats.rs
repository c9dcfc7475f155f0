//! The node's connection to NATS and its JetStream set-up: credentials and
//! TLS from `[cluster]`, the node's name, and the streams behind the
//! cluster's key-value buckets.

use super::ClusterError;
use crate::config::ClusterConfig;

/// The first line of the file at `path` (a password or a token).
fn secret(path: &std::path::Path) -> Result<String, ClusterError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClusterError::Secret {
        path: path.to_owned(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// The NATS connection's settings from `[cluster]`: credentials and TLS.
pub(super) fn options(config: &ClusterConfig) -> Result<async_nats::ConnectOptions, ClusterError> {
    let mut o = async_nats::ConnectOptions::new();
    if let (Some(user), Some(file)) = (&config.user, &config.password_file) {
        o = o.user_and_password(user.clone(), secret(file)?);
    }
    if let Some(file) = &config.token_file {
        o = o.token(secret(file)?);
    }
    if let Some(ca) = &config.tls_ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(o)
}

/// This node's name: the configured one, or the host name and `port`.
pub(crate) fn node_name(config: &ClusterConfig, port: u16) -> String {
    if let Some(node) = &config.node {
        return node.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "sluice".into());
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    format!("{host}-{port}")
}

/// The stream of the key-value bucket `bucket`, as NATS's own buckets are
/// made (one value per key), with `replicas` copies. (async-nats's
/// `create_key_value` first asks for account details that NATS 2.9
/// answers in a shape it rejects.)
pub(super) fn kv_stream(
    bucket: &str,
    description: &str,
    replicas: usize,
) -> async_nats::jetstream::stream::Config {
    use async_nats::jetstream::stream;
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_bytes: -1,
        max_messages: -1,
        max_message_size: -1,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        duplicate_window: std::time::Duration::from_secs(120),
        ..Default::default()
    }
}

/// What `get` finds, after creating the stream `config` if it did not
/// find it (another node may create it at the same time: then `get` finds
/// that one).
pub(super) async fn get_or_create<T, E: std::fmt::Display>(
    js: &async_nats::jetstream::Context,
    what: &'static str,
    config: async_nats::jetstream::stream::Config,
    get: impl AsyncFn() -> Result<T, E>,
) -> Result<T, ClusterError> {
    if let Ok(found) = get().await {
        return Ok(found);
    }
    let created = js.create_stream(config).await;
    get().await.map_err(|got| ClusterError::Bucket {
        bucket: what,
        reason: match created {
            Err(e) => e.to_string(),
            Ok(_) => got.to_string(),
        },
    })
}
