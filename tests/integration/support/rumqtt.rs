//! rumqttc clients (MQTT 3.1.1 and 5) driven by a background task that
//! forwards what the broker sends.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::PATIENCE;

/// An MQTT 3.1.1 client.
pub struct V4 {
    pub client: rumqttc::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::Packet, String>>,
    task: JoinHandle<()>,
    pub session_present: bool,
}

impl V4 {
    /// Connects with a clean session and waits for CONNACK.
    pub async fn connect(addr: SocketAddr, id: &str) -> V4 {
        Self::connect_with(addr, id, |_| {}).await
    }

    /// Connects with options changed by `tweak` and waits for CONNACK.
    pub async fn connect_with(
        addr: SocketAddr,
        id: &str,
        tweak: impl FnOnce(&mut rumqttc::MqttOptions),
    ) -> V4 {
        let mut opts = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(30));
        tweak(&mut opts);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 100);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(rumqttc::Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let first = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("CONNACK in time")
            .expect("event loop alive");
        let session_present = match first {
            Ok(rumqttc::Packet::ConnAck(ack)) => {
                assert_eq!(
                    ack.code,
                    rumqttc::ConnectReturnCode::Success,
                    "CONNACK refused"
                );
                ack.session_present
            }
            other => panic!("expected CONNACK, got {other:?}"),
        };
        V4 {
            client,
            events: rx,
            task,
            session_present,
        }
    }

    /// The next packet from the broker.
    pub async fn next(&mut self) -> rumqttc::Packet {
        match tokio::time::timeout(PATIENCE, self.events.recv()).await {
            Ok(Some(Ok(p))) => p,
            Ok(Some(Err(e))) => panic!("connection failed: {e}"),
            Ok(None) => panic!("event loop ended"),
            Err(_) => panic!("nothing from the broker in time"),
        }
    }

    /// The next packet from the broker, if one comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<rumqttc::Packet> {
        match tokio::time::timeout(wait, self.events.recv()).await {
            Ok(Some(Ok(p))) => Some(p),
            Ok(Some(Err(e))) => panic!("connection failed: {e}"),
            Ok(None) => panic!("event loop ended"),
            Err(_) => None,
        }
    }

    /// The next PUBLISH, skipping acks.
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        loop {
            if let rumqttc::Packet::Publish(p) = self.next().await {
                return p;
            }
        }
    }

    /// Subscribes and waits for the SUBACK; returns its codes.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, rumqttc::qos(qos).expect("qos"))
            .await
            .expect("subscribe");
        loop {
            if let rumqttc::Packet::SubAck(ack) = self.next().await {
                return ack.return_codes;
            }
        }
    }

    /// Publishes (the event loop handles the acks).
    pub async fn publish(&self, topic: &str, qos: u8, retain: bool, payload: &[u8]) {
        self.client
            .publish(
                topic,
                rumqttc::qos(qos).expect("qos"),
                retain,
                payload.to_vec(),
            )
            .await
            .expect("publish");
    }

    /// Asserts no PUBLISH arrives within `wait`.
    pub async fn no_publish_within(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return,
                Ok(Some(Ok(rumqttc::Packet::Publish(p)))) => panic!("unexpected PUBLISH {p:?}"),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => panic!("connection failed: {e}"),
                Ok(None) => panic!("event loop ended"),
            }
        }
    }

    /// Sends DISCONNECT and waits until the event loop stops.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("disconnect");
        let _ = tokio::time::timeout(PATIENCE, async {
            while let Some(Ok(_)) = self.events.recv().await {}
        })
        .await;
        self.task.abort();
    }

    /// Drops the connection without DISCONNECT (as a crash would).
    pub fn kill(self) {
        self.task.abort();
    }
}

pub use rumqttc::v5 as r5;

/// An MQTT 5 client.
pub struct V5 {
    pub client: r5::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<r5::mqttbytes::v5::Packet, String>>,
    task: JoinHandle<()>,
    pub connack: r5::mqttbytes::v5::ConnAck,
}

impl V5 {
    pub async fn connect(addr: SocketAddr, id: &str) -> V5 {
        Self::connect_with(addr, id, |_| {}).await
    }

    pub async fn connect_with(
        addr: SocketAddr,
        id: &str,
        tweak: impl FnOnce(&mut r5::MqttOptions),
    ) -> V5 {
        let mut opts = r5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(30));
        tweak(&mut opts);
        let (client, mut eventloop) = r5::AsyncClient::new(opts, 100);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(r5::Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(r5::Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let first = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("CONNACK in time")
            .expect("event loop alive");
        let connack = match first {
            Ok(r5::mqttbytes::v5::Packet::ConnAck(ack)) => {
                assert_eq!(
                    ack.code,
                    r5::mqttbytes::v5::ConnectReturnCode::Success,
                    "CONNACK refused"
                );
                ack
            }
            other => panic!("expected CONNACK, got {other:?}"),
        };
        V5 {
            client,
            events: rx,
            task,
            connack,
        }
    }

    pub async fn next(&mut self) -> r5::mqttbytes::v5::Packet {
        match tokio::time::timeout(PATIENCE, self.events.recv()).await {
            Ok(Some(Ok(p))) => p,
            Ok(Some(Err(e))) => panic!("connection failed: {e}"),
            Ok(None) => panic!("event loop ended"),
            Err(_) => panic!("nothing from the broker in time"),
        }
    }

    pub async fn next_publish(&mut self) -> r5::mqttbytes::v5::Publish {
        loop {
            if let r5::mqttbytes::v5::Packet::Publish(p) = self.next().await {
                return p;
            }
        }
    }

    /// The error that ended the connection (e.g. a server DISCONNECT).
    pub async fn next_error(&mut self) -> String {
        loop {
            match tokio::time::timeout(PATIENCE, self.events.recv()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return e,
                Ok(None) => panic!("event loop ended without an error"),
                Err(_) => panic!("connection still up"),
            }
        }
    }

    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: u8,
    ) -> Vec<r5::mqttbytes::v5::SubscribeReasonCode> {
        self.client
            .subscribe(filter, r5::mqttbytes::qos(qos).expect("qos"))
            .await
            .expect("subscribe");
        loop {
            if let r5::mqttbytes::v5::Packet::SubAck(ack) = self.next().await {
                return ack.return_codes;
            }
        }
    }

    pub async fn publish(&self, topic: &str, qos: u8, retain: bool, payload: &[u8]) {
        self.client
            .publish(
                topic,
                r5::mqttbytes::qos(qos).expect("qos"),
                retain,
                payload.to_vec(),
            )
            .await
            .expect("publish");
    }

    pub async fn no_publish_within(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return,
                Ok(Some(Ok(r5::mqttbytes::v5::Packet::Publish(p)))) => {
                    panic!("unexpected PUBLISH {p:?}")
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => panic!("connection failed: {e}"),
                Ok(None) => panic!("event loop ended"),
            }
        }
    }

    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("disconnect");
        let _ = tokio::time::timeout(PATIENCE, async {
            while let Some(Ok(_)) = self.events.recv().await {}
        })
        .await;
        self.task.abort();
    }

    pub fn kill(self) {
        self.task.abort();
    }
}
