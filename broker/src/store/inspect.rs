//! `sluice store stats|dump|compact`: a stopped broker's store, looked at
//! from outside. Opening takes the store's lock, so a running broker's
//! store is refused rather than read while it changes. `stats` and `dump`
//! write nothing (a store without a format mark is refused, not marked).

use std::io::Write;
use std::path::Path;

use super::backend::{Backend, Fjall, Space};
use super::recover;
use super::{FORMAT, StoreError};

/// Entries and bytes of one keyspace.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpaceStats {
    pub entries: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

/// What `sluice store stats` prints.
#[derive(Debug)]
pub struct Stats {
    pub format: u32,
    pub disk_bytes: u64,
    pub spaces: Vec<(Space, SpaceStats)>,
}

fn open(dir: &Path) -> Result<Fjall, StoreError> {
    if !dir.is_dir() {
        return Err(StoreError::Io(
            dir.to_owned(),
            std::io::Error::new(std::io::ErrorKind::NotFound, "no store here"),
        ));
    }
    Fjall::open(dir)
}

/// Counts every keyspace of the store in `dir`.
pub fn stats(dir: &Path) -> Result<Stats, StoreError> {
    let backend = open(dir)?;
    let mut spaces = Vec::new();
    let mut format = 0;
    for space in Space::ALL {
        let mut s = SpaceStats::default();
        backend.scan(space, b"", &mut |k, v| {
            s.entries += 1;
            s.key_bytes += k.len() as u64;
            s.value_bytes += v.len() as u64;
            if space == Space::Meta && k == b"format" && v.len() == 5 {
                format = u32::from_be_bytes([v[1], v[2], v[3], v[4]]);
            }
        })?;
        spaces.push((space, s));
    }
    Ok(Stats {
        format,
        disk_bytes: backend.disk_bytes(),
        spaces,
    })
}

/// Writes the store's contents as text: each session with its
/// subscriptions, queued and in-flight deliveries and incoming QoS 2
/// ids; the retained topics; the plugin key-value keys.
pub fn dump(dir: &Path, out: &mut dyn Write) -> Result<(), StoreError> {
    let backend = open(dir)?;
    let (recovered, _, _) = recover::read(&backend)?;
    let io = |e| StoreError::Io(dir.to_owned(), e);
    writeln!(out, "# store {} (format {FORMAT})", dir.display()).map_err(io)?;
    for s in &recovered.sessions {
        let r = &s.record;
        writeln!(
            out,
            "session {:?} mountpoint {:?}: level {}, expiry {} s, {}, will {}",
            s.id.client_id.as_str(),
            &*s.id.mountpoint,
            r.level,
            r.expiry_interval,
            if r.disconnected_at == 0 {
                "connected when the broker stopped".to_owned()
            } else {
                format!("disconnected at {} ms", r.disconnected_at)
            },
            r.will
                .as_ref()
                .map_or("none".to_owned(), |w| format!("to {}", w.message.topic)),
        )
        .map_err(io)?;
        for (sub, o, id) in &s.subscriptions {
            writeln!(out, "  subscription {sub} qos {} id {id:?}", o.qos as u8).map_err(io)?;
        }
        for d in &s.queued {
            writeln!(
                out,
                "  queued qos {} {} ({} bytes)",
                d.qos as u8,
                d.message.topic,
                d.message.payload.len()
            )
            .map_err(io)?;
        }
        for (pid, d, state) in &s.inflight {
            writeln!(
                out,
                "  in flight #{pid} {state:?} qos {} {}",
                d.qos as u8, d.message.topic
            )
            .map_err(io)?;
        }
        for pid in &s.incoming_qos2 {
            writeln!(out, "  incoming QoS 2 #{pid} awaiting PUBREL").map_err(io)?;
        }
    }
    for (mountpoint, m) in &recovered.retained {
        writeln!(
            out,
            "retained {:?}{} ({} bytes)",
            &**mountpoint,
            m.topic,
            m.payload.len()
        )
        .map_err(io)?;
    }
    for (plugin, entries) in &recovered.plugin_kv {
        for (key, value) in entries {
            writeln!(out, "plugin {plugin:?} key {key:?} ({} bytes)", value.len()).map_err(io)?;
        }
    }
    writeln!(out, "# {}", recovered.report).map_err(io)?;
    Ok(())
}

/// Rewrites the store to reclaim the space of deleted entries.
pub fn compact(dir: &Path) -> Result<(u64, u64), StoreError> {
    let backend = open(dir)?;
    let before = backend.disk_bytes();
    backend.compact()?;
    Ok((before, backend.disk_bytes()))
}
