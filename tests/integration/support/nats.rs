//! A real `nats-server` (Debian's, installed by `cargo xtask test`) with
//! JetStream on, on a loopback port of its choosing, killed (and its
//! storage removed) when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::{PATIENCE, TempDir};

pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    _storage: TempDir,
}

impl NatsServer {
    /// With JetStream, as a cluster needs.
    pub fn start() -> NatsServer {
        NatsServer::start_with(true, &[])
    }

    /// With JetStream or not, and further `nats-server` arguments.
    pub fn start_with(jetstream: bool, args: &[&str]) -> NatsServer {
        let storage = TempDir::new("nats");
        let mut cmd = Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1", "-p", "-1"]);
        if jetstream {
            cmd.args(["-js", "-sd"]).arg(&storage.path);
        }
        let mut child = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server runs (cargo xtask test installs it)");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(PATIENCE).expect("nats-server listening");
        NatsServer {
            child,
            url: format!("nats://{addr}"),
            _storage: storage,
        }
    }
}

impl NatsServer {
    /// Stops (`false`) or continues (`true`) the server's process, as a
    /// server that hangs or is cut off and comes back.
    pub fn set_running(&self, running: bool) {
        let signal = if running { "-CONT" } else { "-STOP" };
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} nats-server");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // A stopped server takes SIGKILL too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A NATS cluster of real servers with JetStream, routed on loopback.
pub struct NatsCluster {
    /// The servers, in order; drop (or `kill`) one to take it away.
    pub servers: Vec<Option<NatsServer>>,
    urls: Vec<String>,
}

impl NatsCluster {
    /// `n` servers, each routed to the others, with JetStream ready (a
    /// meta leader elected) when this returns.
    pub async fn start(n: usize) -> NatsCluster {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let servers: Vec<Option<NatsServer>> = (0..n)
            .map(|i| {
                let name = format!("nats-{i}");
                let listen = format!("nats://127.0.0.1:{}", routes[i]);
                let others: Vec<String> = (0..n)
                    .filter(|j| *j != i)
                    .map(|j| format!("nats://127.0.0.1:{}", routes[j]))
                    .collect();
                let others = others.join(",");
                let args = [
                    "-n",
                    &name,
                    "--cluster_name",
                    "sluice-test",
                    "--cluster",
                    &listen,
                    "--routes",
                    &others,
                ];
                Some(NatsServer::start_with(true, &args))
            })
            .collect();
        let urls = servers.iter().flatten().map(|s| s.url.clone()).collect();
        let cluster = NatsCluster { servers, urls };
        cluster.await_jetstream().await;
        cluster
    }

    /// Every server's URL, server `i`'s first (a client connects there and
    /// moves to another when it goes).
    pub fn urls_from(&self, i: usize) -> Vec<String> {
        let mut urls = vec![self.urls[i].clone()];
        urls.extend(
            self.urls
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, u)| u.clone()),
        );
        urls
    }

    /// Kills server `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        self.servers[i] = None;
    }

    /// Waits until JetStream answers (its meta leader is elected).
    async fn await_jetstream(&self) {
        let client = async_nats::connect(self.urls.as_slice())
            .await
            .expect("NATS cluster reachable");
        // A request JetStream gets before its meta leader is elected
        // goes unanswered: ask with a short timeout until one is answered
        // (a missing stream is an answer).
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(std::time::Duration::from_millis(250))
            .build(client);
        super::within("JetStream's meta leader", async {
            use async_nats::jetstream::context::GetStreamErrorKind;
            while let Err(e) = js.get_stream("ready_probe").await {
                if e.kind() != GetStreamErrorKind::Request {
                    return;
                }
            }
        })
        .await;
    }
}

/// A loopback port free now (for the servers' routes, which must be
/// known before they start).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
