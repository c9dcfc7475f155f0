//! `loadgen`: the MQTT load generator behind `cargo xtask bench`.
//!
//! ```text
//! loadgen SCENARIO --addr ADDR [options]
//!   fanin    --pubs N --msgs N --size B --qos Q [--sub-addr ADDR]
//!   fanout   --subs N --msgs N --size B --qos Q [--filter F] [--sub-addr ADDR]
//!   pairs    --pairs N --msgs N --size B --qos Q [--sub-addr ADDR]
//!   shared   --pubs N --subs N --msgs N --size B --qos Q
//!   connect  --workers N --secs S [--ids fresh|reused] (reused: each
//!            worker reconnects with one client id, as a device does)
//!   latency  --rate R --secs S --size B [--sub-addr ADDR]
//!   idle     --pid PID --conns N
//!   soak     --secs S --pairs N --rate R --size B --hostile 0|1|KINDS
//!            --pid PID --rss-limit-mb M
//!   stuckplugin --secs S --stuck K --clients N --rate R --late-ms L
//!   durable  --pubs N --secs S --msgs N --size B --window W
//!   recovery --phase fill --sessions N --per K --size B --conc C --pubs N --window W
//!   recovery --phase verify --sessions N --per K --sample S
//! ```
//!
//! Prints one JSON line of figures. Targets the given addresses only (the
//! benchmarks use 127.0.0.1), and every scenario is bounded in count and
//! time. `--sub-addr` (default: `--addr`) puts the subscribers on another
//! node of a cluster than the publishers. `--keep-alive SECS` (any
//! scenario; default 0, none) is the keep alive of the clients' MQTT 3.1.1
//! CONNECTs, for a broker that refuses 0 (rumqttd).

#![allow(clippy::print_stdout, reason = "the result goes to stdout")]

mod client;
mod persist;
mod scenarios;
mod soak;
mod stuck;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: loadgen SCENARIO --addr ADDR [options]
  fanin    --pubs N --msgs N --size B --qos Q [--sub-addr ADDR]
  fanout   --subs N --msgs N --size B --qos Q [--filter F] [--sub-addr ADDR]
  pairs    --pairs N --msgs N --size B --qos Q [--sub-addr ADDR]
  shared   --pubs N --subs N --msgs N --size B --qos Q
  connect  --workers N --secs S [--ids fresh|reused]
  latency  --rate R --secs S --size B [--sub-addr ADDR]
  idle     --pid PID --conns N
  soak     --secs S --pairs N --rate R --size B --hostile 0|1|KINDS --pid PID --rss-limit-mb M
           (KINDS: some of amp,deep,stuck,slow,connect,garbage)
  stuckplugin --secs S --stuck K --clients N --rate R --late-ms L
  durable  --pubs N --secs S --msgs N --size B --window W
  recovery --phase fill --sessions N --per K --size B --conc C --pubs N --window W
  recovery --phase verify --sessions N --per K --sample S
any scenario: --keep-alive SECS (of the MQTT 3.1.1 CONNECTs; default 0)";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(scenario) = args.next().filter(|s| !s.starts_with('-')) else {
        bail!("{USAGE}");
    };
    let mut opts: HashMap<String, String> = HashMap::new();
    while let Some(k) = args.next() {
        let key = k
            .strip_prefix("--")
            .with_context(|| format!("unexpected argument {k}"))?;
        let value = args
            .next()
            .with_context(|| format!("--{key} needs a value"))?;
        opts.insert(key.to_owned(), value);
    }
    let get = |k: &str, default: &str| -> String {
        opts.get(k).cloned().unwrap_or_else(|| default.to_owned())
    };
    let num = |k: &str, default: &str| -> Result<usize> {
        get(k, default)
            .parse()
            .with_context(|| format!("--{k} must be a number"))
    };
    let addr: SocketAddr = get("addr", "127.0.0.1:1883")
        .parse()
        .context("--addr must be ADDR:PORT")?;
    let sub_addr: SocketAddr = match opts.get("sub-addr") {
        Some(a) => a.parse().context("--sub-addr must be ADDR:PORT")?,
        None => addr,
    };
    client::set_keep_alive(
        get("keep-alive", "0")
            .parse()
            .context("--keep-alive must be 0 to 65535")?,
    );
    if !addr.ip().is_loopback() || !sub_addr.ip().is_loopback() {
        bail!("the load generator only targets loopback addresses");
    }
    if sub_addr != addr && !matches!(scenario.as_str(), "fanin" | "fanout" | "pairs" | "latency") {
        bail!("--sub-addr is for fanin, fanout, pairs and latency only");
    }
    let addrs = scenarios::Addrs {
        publish: addr,
        subscribe: sub_addr,
    };
    let (msgs, size, qos) = (
        num("msgs", "50000")?,
        num("size", "64")?,
        num("qos", "0")? as u8,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(async {
        match scenario.as_str() {
            "fanin" => scenarios::fanin(addrs, num("pubs", "4")?, msgs, size, qos).await,
            "fanout" => {
                let filter = get("filter", "bench/out");
                scenarios::fanout(addrs, num("subs", "8")?, &filter, msgs, size, qos).await
            }
            "pairs" => scenarios::pairs(addrs, num("pairs", "4")?, msgs, size, qos).await,
            "shared" => {
                scenarios::shared(addr, num("pubs", "4")?, num("subs", "4")?, msgs, size, qos).await
            }
            "connect" => {
                let secs: f64 = get("secs", "5").parse().context("--secs")?;
                let reuse = match get("ids", "fresh").as_str() {
                    "fresh" => false,
                    "reused" => true,
                    other => bail!("--ids is fresh or reused, not {other}"),
                };
                scenarios::connects(addr, num("workers", "8")?, secs, reuse).await
            }
            "latency" => {
                let secs: f64 = get("secs", "5").parse().context("--secs")?;
                scenarios::latency(addrs, num("rate", "10000")? as u64, secs, size).await
            }
            "idle" => {
                scenarios::idle_memory(addr, num("pid", "0")? as u32, num("conns", "10000")?).await
            }
            "soak" => {
                let settings = soak::Soak {
                    secs: get("secs", "10").parse().context("--secs")?,
                    pairs: num("pairs", "4")?,
                    rate: num("rate", "1000")? as u64,
                    size,
                    hostile: soak::Kinds::parse(&get("hostile", "0"))?,
                    pid: num("pid", "0")? as u32,
                    rss_limit_mb: num("rss-limit-mb", "3072")? as u64,
                };
                soak::soak(addr, settings).await
            }
            "stuckplugin" => {
                let settings = stuck::Stuck {
                    secs: get("secs", "10").parse().context("--secs")?,
                    stuck: num("stuck", "4")?,
                    clients: num("clients", "4")?,
                    rate: num("rate", "100")?.max(1) as u64,
                    late_ms: num("late-ms", "100")? as u64,
                };
                stuck::stuck_plugin(addr, settings).await
            }
            "durable" => {
                let settings = persist::Durable {
                    pubs: num("pubs", "4")?,
                    secs: get("secs", "10").parse().context("--secs")?,
                    msgs,
                    size,
                    window: num("window", "100")?,
                };
                persist::durable(addr, settings).await
            }
            "recovery" => match get("phase", "").as_str() {
                "fill" => {
                    let settings = persist::Fill {
                        sessions: num("sessions", "100000")?,
                        per: num("per", "10")?,
                        size,
                        conc: num("conc", "64")?,
                        pubs: num("pubs", "4")?,
                        window: num("window", "100")?,
                    };
                    persist::fill(addr, settings).await
                }
                "verify" => {
                    let settings = persist::Verify {
                        sessions: num("sessions", "100000")?,
                        per: num("per", "10")?,
                        sample: num("sample", "100")?,
                    };
                    persist::verify(addr, settings).await
                }
                _ => bail!("recovery needs --phase fill or --phase verify"),
            },
            other => bail!("unknown scenario {other}\n{USAGE}"),
        }
    })?;
    println!("{}", outcome.json(&scenario));
    Ok(())
}
