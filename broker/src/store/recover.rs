//! Reading the store back at start: sessions with their subscriptions,
//! queues and QoS state, retained messages and plugin key-value entries,
//! ready for the registry and router to take (see
//! `Registry::restore`). Entries that do not decode, and entries nothing
//! refers to any more, are counted, logged and deleted; they never stop
//! the broker from starting.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::SubscriptionOptions;
use crate::message::{Delivery, Message};
use crate::session::{OutState, SubscriberId};
use crate::topic::{PacketId, Subscription};

use super::backend::{Backend, Batch, Space};
use super::keys;
use super::records::{self, DeliveryState, Malformed, Reader, SessionRecord};
use super::writer::Op;
use super::{FORMAT, Held, StoreError, Stored};

/// A session read back.
#[derive(Debug)]
pub struct RecoveredSession {
    pub id: SubscriberId,
    pub(crate) record: SessionRecord,
    pub subscriptions: Vec<(Subscription, SubscriptionOptions, Option<u32>)>,
    /// Deliveries not yet sent, in queue order.
    pub queued: Vec<Delivery>,
    /// Deliveries sent and not acknowledged, in send order.
    pub inflight: Vec<(PacketId, Delivery, OutState)>,
    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub incoming_qos2: Vec<PacketId>,
}

/// How much was read back, and how long it took.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub sessions: usize,
    pub subscriptions: usize,
    pub queued: usize,
    pub inflight: usize,
    pub incoming_qos2: usize,
    pub messages: usize,
    pub retained: usize,
    pub plugin_entries: usize,
    /// Entries that did not decode (deleted).
    pub damaged: usize,
    /// Entries nothing refers to, or expired retained messages (deleted).
    pub orphans: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sessions, {} subscriptions, {} queued and {} in-flight deliveries of {} \
             messages, {} incoming QoS 2 ids, {} retained messages, {} plugin entries \
             in {:.1?}; {} damaged and {} orphaned entries dropped",
            self.sessions,
            self.subscriptions,
            self.queued,
            self.inflight,
            self.messages,
            self.incoming_qos2,
            self.retained,
            self.plugin_entries,
            self.elapsed,
            self.damaged,
            self.orphans
        )
    }
}

/// Entries to delete once the writer runs.
#[derive(Debug, Default)]
pub(crate) struct Cleanup(Vec<Op>);

impl Cleanup {
    pub(crate) fn drain_ops(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.0)
    }
}

/// Everything read back.
#[derive(Debug, Default)]
pub struct Recovered {
    pub sessions: Vec<RecoveredSession>,
    pub retained: Vec<(Arc<str>, Arc<Message>)>,
    /// Key-value entries, by plugin name.
    pub plugin_kv: HashMap<String, Vec<(String, Vec<u8>)>>,
    pub report: RecoveryReport,
    pub(crate) cleanup: Cleanup,
}

const FORMAT_KEY: &[u8] = b"format";

/// Refuses a store of a newer format; marks a new store with ours.
pub(crate) fn check_format(dir: &Path, backend: &dyn Backend) -> Result<(), StoreError> {
    let mut found = None;
    backend.scan(Space::Meta, FORMAT_KEY, &mut |k, v| {
        if k == FORMAT_KEY {
            found = Some(Reader::new(v).and_then(|mut r| r.u32()));
        }
    })?;
    match found {
        Some(Ok(format)) if format > FORMAT => Err(StoreError::NewerFormat {
            path: dir.to_owned(),
            found: format,
        }),
        Some(Ok(_)) => Ok(()),
        _ => {
            let mut w = records::Writer::new();
            w.u32(FORMAT);
            let mut batch = Batch::new();
            batch.insert((Space::Meta, FORMAT_KEY.to_vec()), Some(w.finish()));
            backend.apply(&batch, true)
        }
    }
}

/// Reads the whole store. Returns it, the message references, and the
/// next queue sequence number.
pub(crate) fn read(backend: &dyn Backend) -> Result<(Recovered, Held, u64), StoreError> {
    let mut out = Recovered::default();
    let report = &mut out.report;
    let mut cleanup = Vec::new();
    let damaged = |space: Space, key: &[u8], e: Malformed, cleanup: &mut Vec<Op>| {
        tracing::warn!(
            "store: a {} entry is damaged ({e}) and dropped",
            space.name()
        );
        cleanup.push(Op::Delete(space, key.to_vec()));
    };

    // Messages first: deliveries refer to them.
    let mut messages: HashMap<u64, (u32, Arc<Message>)> = HashMap::new();
    let mut max_id = 0;
    backend.scan(Space::Messages, b"", &mut |k, v| {
        let id = <[u8; 8]>::try_from(k).map(u64::from_be_bytes);
        match (id, records::decode_message(v)) {
            (Ok(id), Ok(m)) => {
                max_id = max_id.max(id);
                messages.insert(id, (0, Arc::new(m)));
            }
            (Err(_), _) => damaged(Space::Messages, k, Malformed("bad key"), &mut cleanup),
            (_, Err(e)) => damaged(Space::Messages, k, e, &mut cleanup),
        }
    })?;

    let mut sessions: HashMap<Vec<u8>, RecoveredSession> = HashMap::new();
    backend.scan(
        Space::Sessions,
        b"",
        &mut |k, v| match keys::split_id(k).and_then(|(id, _, rest)| {
            if !rest.is_empty() {
                return Err(Malformed("bad key"));
            }
            Ok((id, records::decode_session(v)?))
        }) {
            Ok((id, record)) => {
                sessions.insert(
                    k.to_vec(),
                    RecoveredSession {
                        id,
                        record,
                        subscriptions: Vec::new(),
                        queued: Vec::new(),
                        inflight: Vec::new(),
                        incoming_qos2: Vec::new(),
                    },
                );
            }
            Err(e) => damaged(Space::Sessions, k, e, &mut cleanup),
        },
    )?;

    let mut orphans = 0;
    backend.scan(Space::Subscriptions, b"", &mut |k, v| {
        let parsed = keys::split_id(k).and_then(|(_, at, rest)| {
            let s = std::str::from_utf8(rest).map_err(|_| Malformed("subscription not UTF-8"))?;
            let s = Subscription::parse(s).map_err(|_| Malformed("invalid subscription"))?;
            let (o, i) = records::decode_subscription(v)?;
            Ok((at, s, o, i))
        });
        match parsed {
            Ok((at, s, o, i)) => match sessions.get_mut(&k[..at]) {
                Some(session) => session.subscriptions.push((s, o, i)),
                None => {
                    orphans += 1;
                    cleanup.push(Op::Delete(Space::Subscriptions, k.to_vec()));
                }
            },
            Err(e) => damaged(Space::Subscriptions, k, e, &mut cleanup),
        }
    })?;

    let mut next_seq = 1;
    backend.scan(Space::Queue, b"", &mut |k, v| {
        let parsed = keys::split_id(k).and_then(|(_, at, rest)| {
            let seq = <[u8; 8]>::try_from(rest)
                .map(u64::from_be_bytes)
                .map_err(|_| Malformed("bad key"))?;
            Ok((at, seq, records::decode_delivery(v)?))
        });
        let (at, seq, r) = match parsed {
            Ok(p) => p,
            Err(e) => return damaged(Space::Queue, k, e, &mut cleanup),
        };
        next_seq = next_seq.max(seq + 1);
        let (Some(session), Some(held)) =
            (sessions.get_mut(&k[..at]), messages.get_mut(&r.message))
        else {
            orphans += 1;
            cleanup.push(Op::Delete(Space::Queue, k.to_vec()));
            return;
        };
        held.0 += 1;
        let d = Delivery {
            message: held.1.clone(),
            qos: r.qos,
            retain: r.retain,
            subscription_ids: r.subscription_ids,
            shared: None,
            stored: Some(Stored {
                seq,
                message: r.message,
            }),
        };
        match r.state {
            DeliveryState::Queued => session.queued.push(d),
            DeliveryState::Sent(pid, state) => session.inflight.push((pid, d, state)),
        }
    })?;

    backend.scan(Space::IncomingQos2, b"", &mut |k, _| {
        let parsed = keys::split_id(k).and_then(|(_, at, rest)| {
            let pid = <[u8; 2]>::try_from(rest)
                .ok()
                .and_then(|b| PacketId::new(u16::from_be_bytes(b)))
                .ok_or(Malformed("bad key"))?;
            Ok((at, pid))
        });
        match parsed {
            Ok((at, pid)) => match sessions.get_mut(&k[..at]) {
                Some(s) => s.incoming_qos2.push(pid),
                None => {
                    orphans += 1;
                    cleanup.push(Op::Delete(Space::IncomingQos2, k.to_vec()));
                }
            },
            Err(e) => damaged(Space::IncomingQos2, k, e, &mut cleanup),
        }
    })?;

    backend.scan(Space::Retained, b"", &mut |k, v| {
        let parsed = keys::split_short(k)
            .and_then(|(mountpoint, _)| Ok((mountpoint.to_owned(), records::decode_message(v)?)));
        match parsed {
            Ok((_, m)) if records::expired(&m) => {
                orphans += 1;
                cleanup.push(Op::Delete(Space::Retained, k.to_vec()));
            }
            Ok((mountpoint, m)) => {
                let mountpoint = if mountpoint.is_empty() {
                    crate::session::default_mountpoint()
                } else {
                    Arc::from(mountpoint)
                };
                out.retained.push((mountpoint, Arc::new(m)));
            }
            Err(e) => damaged(Space::Retained, k, e, &mut cleanup),
        }
    })?;

    backend.scan(Space::PluginKv, b"", &mut |k, v| {
        let parsed = keys::split_short(k).and_then(|(plugin, key)| {
            let key = std::str::from_utf8(key).map_err(|_| Malformed("key not UTF-8"))?;
            let mut r = Reader::new(v)?;
            let value = r.bytes()?.to_vec();
            r.end()?;
            Ok((plugin.to_owned(), key.to_owned(), value))
        });
        match parsed {
            Ok((plugin, key, value)) => {
                out.plugin_kv.entry(plugin).or_default().push((key, value));
            }
            Err(e) => damaged(Space::PluginKv, k, e, &mut cleanup),
        }
    })?;

    let mut held = Held::after(max_id);
    for (id, (refs, message)) in messages {
        if refs == 0 {
            orphans += 1;
            cleanup.push(Op::Delete(Space::Messages, id.to_be_bytes().to_vec()));
        } else {
            held.restore(id, refs, message);
        }
    }

    report.damaged = cleanup.len() - orphans;
    report.orphans = orphans;
    report.messages = held.len();
    report.retained = out.retained.len();
    report.plugin_entries = out.plugin_kv.values().map(Vec::len).sum();
    let mut list: Vec<_> = sessions.into_values().collect();
    list.sort_unstable_by(|a, b| {
        (&*a.id.mountpoint, a.id.client_id.as_str())
            .cmp(&(&*b.id.mountpoint, b.id.client_id.as_str()))
    });
    for s in &list {
        report.subscriptions += s.subscriptions.len();
        report.queued += s.queued.len();
        report.inflight += s.inflight.len();
        report.incoming_qos2 += s.incoming_qos2.len();
    }
    report.sessions = list.len();
    out.sessions = list;
    out.cleanup = Cleanup(cleanup);
    Ok((out, held, next_seq))
}
