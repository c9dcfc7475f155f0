//! The store over the in-memory backend: what is written, what reading
//! it back gives, and the message reference counts.

use std::sync::Arc;

use bytes::Bytes;

use super::backend::{Backend, Memory, Space};
use super::*;
use crate::codec::{MessageProperties, QoS, SubscriptionOptions};
use crate::message::{Delivery, Message};
use crate::session::OutState;
use crate::topic::{ClientId, PacketId, Subscription, TopicName};

fn config() -> PersistenceConfig {
    PersistenceConfig {
        dir: None,
        durability: Durability::Always,
        sync_interval_ms: 1000,
    }
}

fn id(c: &str) -> SubscriberId {
    SubscriberId {
        mountpoint: crate::session::default_mountpoint(),
        client_id: ClientId::new(c).unwrap(),
    }
}

fn message(topic: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::from_static(b"p"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: MessageProperties::default(),
        expires_at: None,
    })
}

fn delivery(m: &Arc<Message>) -> Delivery {
    Delivery {
        message: m.clone(),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![3],
        shared: None,
        stored: None,
    }
}

fn count(m: &Memory, s: Space) -> usize {
    let mut n = 0;
    m.scan(s, b"", &mut |_, _| n += 1).unwrap();
    n
}

async fn settle(store: &Store) {
    store.wait(store.last_ticket()).await.unwrap();
}

#[tokio::test]
async fn a_message_is_stored_once_and_goes_with_its_last_delivery() {
    let mem = Arc::new(Memory::default());
    let (store, _) = Store::with_backend("mem".into(), mem.clone(), &config()).unwrap();
    let (a, b) = (store.session(&id("a")), store.session(&id("b")));
    let m = message("t");
    let mut da = delivery(&m);
    da.stored = Some(a.queue(&da, false));
    let mut db = delivery(&m);
    db.stored = Some(b.queue(&db, false));
    settle(&store).await;
    assert_eq!(
        count(&mem, Space::Messages),
        1,
        "one message for two queues"
    );
    assert_eq!(count(&mem, Space::Queue), 2);
    a.done(&da);
    settle(&store).await;
    assert_eq!(count(&mem, Space::Messages), 1, "b still holds it");
    b.done(&db);
    settle(&store).await;
    assert_eq!(count(&mem, Space::Messages), 0);
    assert_eq!(count(&mem, Space::Queue), 0);
    assert_eq!(store.held_messages(), 0);
    store.close();
}

#[tokio::test]
async fn reading_back_gives_sessions_queues_and_inflight_state() {
    let mem = Arc::new(Memory::default());
    let (store, _) = Store::with_backend("mem".into(), mem.clone(), &config()).unwrap();
    let p = store.session(&id("c"));
    p.put_session(&SessionRecord {
        level: 5,
        expiry_interval: 60,
        disconnected_at: 1,
        will: None,
        will_due: 0,
    });
    let sub = Subscription::parse("a/+").unwrap();
    p.subscribe(&sub, &SubscriptionOptions::v3(QoS::ExactlyOnce), Some(9));
    let (m1, m2) = (message("a/1"), message("a/2"));
    let mut d1 = delivery(&m1);
    d1.stored = Some(p.queue(&d1, false));
    let mut d2 = delivery(&m2);
    d2.stored = Some(p.queue(&d2, false));
    let pid = PacketId::new(4).unwrap();
    p.sent(&d1, pid, OutState::AwaitingPubAck);
    p.incoming_qos2(PacketId::new(7).unwrap());
    // A session that ended leaves nothing.
    let gone = store.session(&id("gone"));
    gone.subscribe(&sub, &SubscriptionOptions::v3(QoS::AtMostOnce), None);
    let mut dg = delivery(&m2);
    dg.stored = Some(gone.queue(&dg, false));
    gone.end();
    gone.forget(&dg);
    settle(&store).await;
    store.close();
    drop(store);

    let (store, recovered) = Store::with_backend("mem".into(), mem.clone(), &config()).unwrap();
    let r = &recovered.report;
    assert_eq!(
        (r.sessions, r.subscriptions, r.queued, r.inflight),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (r.incoming_qos2, r.messages, r.damaged, r.orphans),
        (1, 2, 0, 0)
    );
    let s = &recovered.sessions[0];
    assert_eq!(s.id, id("c"));
    assert_eq!(s.record.expiry_interval, 60);
    assert_eq!(s.subscriptions[0].0, sub);
    assert_eq!(s.subscriptions[0].2, Some(9));
    assert_eq!(s.inflight[0].0, pid);
    assert_eq!(s.inflight[0].1.message.topic.as_str(), "a/1");
    assert_eq!(s.queued[0].message.topic.as_str(), "a/2");
    assert_eq!(s.queued[0].subscription_ids, [3]);
    // New entries do not reuse the recovered sequence numbers or ids.
    let mut d3 = delivery(&message("a/3"));
    let stored = p.queue(&d3, false);
    assert!(stored.seq > s.queued[0].stored.unwrap().seq);
    d3.stored = Some(stored);
    drop(p);
    store.close();
}

#[tokio::test]
async fn damaged_and_orphaned_entries_are_dropped() {
    let mem = Arc::new(Memory::default());
    let mut batch = backend::Batch::new();
    batch.insert((Space::Sessions, b"junk".to_vec()), Some(vec![1, 2]));
    batch.insert(
        (Space::Messages, 5u64.to_be_bytes().to_vec()),
        Some(records::encode_message(&message("x"))),
    );
    mem.apply(&batch, true).unwrap();
    let (store, recovered) = Store::with_backend("mem".into(), mem.clone(), &config()).unwrap();
    assert_eq!((recovered.report.damaged, recovered.report.orphans), (1, 1));
    settle(&store).await;
    assert_eq!(count(&mem, Space::Sessions), 0);
    assert_eq!(count(&mem, Space::Messages), 0);
    store.close();
}

#[test]
fn a_newer_format_is_refused() {
    let mem = Arc::new(Memory::default());
    let mut w = records::Writer::new();
    w.u32(FORMAT + 1);
    let mut batch = backend::Batch::new();
    batch.insert((Space::Meta, b"format".to_vec()), Some(w.finish()));
    mem.apply(&batch, true).unwrap();
    let err = Store::with_backend("mem".into(), mem, &config()).unwrap_err();
    assert!(matches!(err, StoreError::NewerFormat { found, .. } if found == FORMAT + 1));
}

#[tokio::test]
async fn a_publication_settles_when_its_deliveries_complete_before_the_commit() {
    let mem = Arc::new(Memory::default());
    let (store, _) = Store::with_backend("mem".into(), mem.clone(), &config()).unwrap();
    let (a, b) = (store.session(&id("a")), store.session(&id("b")));
    let m = message("t");
    // Routing one PUBLISH to two connected persistent sessions.
    Store::begin();
    let mut da = delivery(&m);
    da.stored = Some(a.queue(&da, true));
    let mut db = delivery(&m);
    db.stored = Some(b.queue(&db, true));
    let settles = Store::settles().expect("only that message's deliveries were stored");
    assert!(!store.is_settled(settles));
    a.done(&da);
    assert!(!store.is_settled(settles), "b still holds it");
    b.done(&db);
    assert!(store.is_settled(settles));
    store.settled(settles).await;
    settle(&store).await;
    assert_eq!(count(&mem, Space::Messages), 0);
    // Anything else stored while routing (here a retained message) must
    // wait for the commit.
    Store::begin();
    let mut dc = delivery(&m);
    dc.stored = Some(a.queue(&dc, true));
    store.retain("", &m);
    assert_eq!(Store::settles(), None);
    // So must a delivery to an offline session (written at once anyway).
    Store::begin();
    let mut df = delivery(&message("w"));
    df.stored = Some(b.queue(&df, false));
    assert_eq!(Store::settles(), None);
    // And two messages' deliveries.
    Store::begin();
    let mut dd = delivery(&message("u"));
    dd.stored = Some(a.queue(&dd, true));
    let mut de = delivery(&message("v"));
    de.stored = Some(a.queue(&de, true));
    assert_eq!(Store::settles(), None);
    store.close();
}
