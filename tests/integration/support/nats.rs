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

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
