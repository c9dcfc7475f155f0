//! `cargo xtask cluster [N]`: N nats-servers (JetStream on) clustered on
//! loopback and N Sluice nodes, one on each (the cluster's buckets with
//! up to 3 replicas), for trying the cluster by hand. Runs until
//! Ctrl-C; logs, configurations and stores are in `target/cluster/`.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::build_sluice;
use crate::tools::install_nats_server;

/// A loopback port free right now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Node {
    nats: u16,
    route: u16,
    mqtt: u16,
}

fn spawn(cmd: &mut Command, log: &Path) -> Result<Child> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdout(file.try_clone()?)
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let n: usize = match args.first() {
        Some(a) => a
            .parse()
            .context("usage: cargo xtask cluster [N] (N: 1 to 9 nodes)")?,
        None => 3,
    };
    if !(1..=9).contains(&n) {
        bail!("usage: cargo xtask cluster [N] (N: 1 to 9 nodes)");
    }
    install_nats_server()?;
    build_sluice()?;
    let dir = root.join("target/cluster");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("cannot create target/cluster")?;
    let nodes = (0..n)
        .map(|_| {
            Ok(Node {
                nats: free_port()?,
                route: free_port()?,
                mqtt: free_port()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut children = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let routes: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| format!("nats://127.0.0.1:{}", o.route))
            .collect();
        let mut cmd = Command::new("nats-server");
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &node.nats.to_string(),
            "-n",
            &format!("nats-{i}"),
        ])
        .args([
            "--cluster_name",
            "sluice",
            "--cluster",
            &format!("nats://127.0.0.1:{}", node.route),
        ]);
        if !routes.is_empty() {
            cmd.args(["--routes", &routes.join(",")]);
        }
        // JetStream holds the cluster's retained messages.
        cmd.arg("-js")
            .arg("-sd")
            .arg(dir.join(format!("jetstream-{i}")));
        children.push(spawn(&mut cmd, &dir.join(format!("nats-{i}.log")))?);
    }
    for (i, node) in nodes.iter().enumerate() {
        // Every NATS server, its own listed first (the client may pick any
        // of them, and moves to another when one goes).
        let mut nats = vec![format!("\"nats://127.0.0.1:{}\"", node.nats)];
        nats.extend(
            nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| format!("\"nats://127.0.0.1:{}\"", o.nats)),
        );
        let config = dir.join(format!("node-{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nbind = [\"127.0.0.1:{}\"]\nallow_anonymous = true\n\n\
                 [persistence]\ndir = \"{}\"\n\n\
                 [cluster]\nnats = [{}]\nnode = \"node-{i}\"\nreplicas = {}\n",
                node.mqtt,
                dir.join(format!("store-{i}")).display(),
                nats.join(", "),
                n.min(3)
            ),
        )?;
        // NATS must be up before the node starts (the first connection
        // must succeed).
        wait_port(node.nats, &format!("nats-{i}"))?;
        let mut cmd = Command::new(root.join("target/release/sluice"));
        cmd.arg("--config").arg(&config);
        children.push(spawn(&mut cmd, &dir.join(format!("node-{i}.log")))?);
    }
    for (i, node) in nodes.iter().enumerate() {
        wait_port(node.mqtt, &format!("node-{i}"))?;
    }
    println!(
        "A cluster of {n} Sluice nodes over {n} NATS servers (logs in {}):",
        dir.display()
    );
    for (i, node) in nodes.iter().enumerate() {
        println!(
            "  node-{i}: MQTT 127.0.0.1:{}   (its NATS server: 127.0.0.1:{})",
            node.mqtt, node.nats
        );
    }
    let (first, last) = (nodes[0].mqtt, nodes[n - 1].mqtt);
    println!(
        "Try: mosquitto_sub -p {first} -t 'demo/#' -v   and   mosquitto_pub -p {last} -t demo/hello -m hi"
    );
    println!("Ctrl-C stops them all.");
    // Ctrl-C reaches every process of the terminal's group; the first that
    // ends takes the others with it.
    loop {
        for c in &mut children {
            if let Ok(Some(_)) = c.try_wait() {
                for other in &mut children {
                    let _ = other.kill();
                    let _ = other.wait();
                }
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until something listens on `port`.
fn wait_port(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} is not listening on 127.0.0.1:{port} after 30 s (see target/cluster/)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
