//! The seed corpus in `fuzz/corpus/` (`cargo xtask fuzz --seeds` rewrites
//! it): client packets of every type for MQTT 3.1, 3.1.1 and 5, topic and
//! filter pairs, and configuration files (`config/sluice.toml`, a variant
//! with its commented examples switched on, and the TOML examples of
//! `docs/config.md`).

use std::path::Path;

use anyhow::{Context, Result};

/// Rewrites every seed directory; returns how many files it wrote.
pub fn write(root: &Path) -> Result<usize> {
    let mut count = 0;
    for (target, seeds) in [
        ("decode", decode_seeds()),
        ("topic", topic_seeds()),
        ("config", config_seeds(root)?),
    ] {
        let dir = root.join("fuzz/corpus").join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, bytes) in seeds {
            let path = dir.join(name);
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            count += 1;
        }
    }
    Ok(count)
}

type Seeds = Vec<(String, Vec<u8>)>;

/// A Variable Byte Integer.
fn varint(mut v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v % 128) as u8;
        v /= 128;
        out.push(if v > 0 { byte | 0x80 } else { byte });
        if v == 0 {
            return out;
        }
    }
}

/// A whole packet: first byte, Remaining Length, body.
fn frame(byte1: u8, body: &[&[u8]]) -> Vec<u8> {
    let body = body.concat();
    [vec![byte1], varint(body.len()), body].concat()
}

/// Length-prefixed binary data (and UTF-8 strings).
fn bin(v: &[u8]) -> Vec<u8> {
    let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
    [&len.to_be_bytes()[..], v].concat()
}

fn s(v: &str) -> Vec<u8> {
    bin(v.as_bytes())
}

/// An MQTT 5 property block.
fn props(parts: &[&[u8]]) -> Vec<u8> {
    let body = parts.concat();
    [varint(body.len()), body].concat()
}

/// The versions: file-name tag, the fuzz target's mode byte (which
/// prefixes a CONNECT of that version), protocol name and level.
const VERSIONS: [(&str, u8, &str, u8); 3] = [
    ("v3.1", 1, "MQIsdp", 3),
    ("v3.1.1", 2, "MQTT", 4),
    ("v5", 3, "MQTT", 5),
];

/// One seed of the `decode` target: mode, chunking, stream.
fn decode_seed(mode: u8, chunking: u8, stream: &[u8]) -> Vec<u8> {
    [&[mode, chunking][..], stream].concat()
}

fn decode_seeds() -> Seeds {
    let mut seeds = Vec::new();
    for (tag, mode, name, level) in VERSIONS {
        let v5 = level == 5;
        for (what, connect) in connects(name, level) {
            seeds.push((format!("{tag}-connect-{what}"), decode_seed(0, 0, &connect)));
        }
        let packets = packets(v5);
        for (what, packet) in &packets {
            seeds.push((format!("{tag}-{what}"), decode_seed(mode, 0, packet)));
        }
        // A whole session from its CONNECT, arriving in pieces, and the same
        // under the small maximum packet size.
        let mut session = connects(name, level).swap_remove(0).1;
        for (_, packet) in &packets {
            session.extend(packet);
        }
        seeds.push((format!("{tag}-session"), decode_seed(0, 7, &session)));
        seeds.push((format!("{tag}-session-small"), decode_seed(4, 31, &session)));
    }
    seeds
}

/// CONNECTs of one version: minimal first, then with a will, a user name
/// and a password, then an empty client id; MQTT 5 adds every property.
fn connects(name: &str, level: u8) -> Vec<(&'static str, Vec<u8>)> {
    let head =
        |flags: u8, props: &[u8]| [s(name), vec![level, flags, 0, 60], props.to_vec()].concat();
    let v5 = level == 5;
    let none: &[u8] = if v5 { &[0] } else { &[] };
    let mut out = vec![
        ("minimal", frame(0x10, &[&head(0x02, none), &s("c")])),
        ("empty-id", frame(0x10, &[&head(0x02, none), &s("")])),
    ];
    let will_props = if v5 {
        props(&[
            &[0x18, 0, 0, 0, 5],
            &[0x01, 1],
            &[0x02, 0, 0, 0, 60],
            &[0x03],
            &s("text/plain"),
            &[0x08],
            &s("resp/t"),
            &[0x09],
            &bin(&[9]),
            &[0x26],
            &s("k"),
            &s("v"),
        ])
    } else {
        Vec::new()
    };
    // user name, password, will retain, will QoS 1, will, clean start
    let flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02;
    let connect_props = if v5 {
        props(&[
            &[0x11, 0, 0, 0, 120],
            &[0x21, 0, 10],
            &[0x27, 0, 0, 4, 0],
            &[0x22, 0, 5],
            &[0x19, 1],
            &[0x17, 0],
            &[0x26],
            &s("a"),
            &s("b"),
        ])
    } else {
        Vec::new()
    };
    out.push((
        "full",
        frame(
            0x10,
            &[
                &head(flags, &connect_props),
                &s("client-1"),
                &will_props,
                &s("will/t"),
                &bin(b"bye"),
                &s("user"),
                &bin(&[0xC3, 0x28, 0x00]),
            ],
        ),
    ));
    if v5 {
        let auth = props(&[&[0x15], &s("SCRAM-SHA-1"), &[0x16], &bin(b"n,,n=user")]);
        out.push(("auth", frame(0x10, &[&head(0x02, &auth), &s("c")])));
    }
    out
}

/// Every packet a client sends after CONNECT.
fn packets(v5: bool) -> Vec<(&'static str, Vec<u8>)> {
    let p = |parts: &[&[u8]]| if v5 { props(parts) } else { Vec::new() };
    let none = p(&[]);
    let mut out = vec![
        ("publish-qos0", frame(0x30, &[&s("a/b"), &none, b"hello"])),
        (
            "publish-qos1-retain",
            frame(0x33, &[&s("a/b"), &[0, 1], &none, b"hi"]),
        ),
        (
            "publish-qos2-dup",
            frame(0x3C, &[&s("sensors/t/1"), &[0, 2], &none, &[0; 16]]),
        ),
        ("puback", frame(0x40, &[&[0, 1]])),
        ("pubrec", frame(0x50, &[&[0, 2]])),
        ("pubrel", frame(0x62, &[&[0, 2]])),
        ("pubcomp", frame(0x70, &[&[0, 2]])),
        (
            "subscribe",
            frame(
                0x82,
                &[
                    &[0, 3],
                    &none,
                    &s("a/+"),
                    &[1],
                    &s("#"),
                    &[2],
                    &s("$share/g/t/#"),
                    &[0],
                ],
            ),
        ),
        (
            "unsubscribe",
            frame(0xA2, &[&[0, 4], &none, &s("a/+"), &s("$share/g/t/#")]),
        ),
        ("pingreq", frame(0xC0, &[])),
        ("disconnect", frame(0xE0, &[])),
    ];
    if !v5 {
        return out;
    }
    let user: &[u8] = &[&[0x26][..], &s("k"), &s("v")].concat();
    let reason_string: &[u8] = &[&[0x1F][..], &s("why")].concat();
    out.extend([
        (
            "publish-properties",
            frame(
                0x35,
                &[
                    &s("a/b"),
                    &[0, 3],
                    &props(&[
                        &[0x01, 1],
                        &[0x02, 0, 0, 0, 30],
                        &[0x23, 0, 1],
                        &[0x08],
                        &s("r/t"),
                        &[0x09],
                        &bin(&[7]),
                        user,
                        &[0x03],
                        &s("text/plain"),
                    ]),
                    b"payload",
                ],
            ),
        ),
        (
            "publish-alias",
            frame(0x30, &[&s(""), &props(&[&[0x23, 0, 1]]), b"x"]),
        ),
        ("puback-reason", frame(0x40, &[&[0, 1, 0x10]])),
        (
            "puback-properties",
            frame(0x40, &[&[0, 1, 0x87], &props(&[reason_string, user])]),
        ),
        ("pubrec-reason", frame(0x50, &[&[0, 2, 0x80], &props(&[])])),
        ("pubrel-reason", frame(0x62, &[&[0, 2, 0x92]])),
        (
            "pubcomp-properties",
            frame(0x70, &[&[0, 2, 0x00], &props(&[reason_string])]),
        ),
        (
            "subscribe-properties",
            frame(
                0x82,
                &[
                    &[0, 5],
                    &props(&[&[0x0B, 0xAC, 0x02], user]),
                    &s("a/#"),
                    &[0b0010_1110],
                ],
            ),
        ),
        (
            "unsubscribe-properties",
            frame(0xA2, &[&[0, 6], &props(&[user]), &s("a/#")]),
        ),
        ("disconnect-reason", frame(0xE0, &[&[0x04]])),
        (
            "disconnect-properties",
            frame(
                0xE0,
                &[&[0x00], &props(&[&[0x11, 0, 0, 0, 0], reason_string, user])],
            ),
        ),
        ("auth", frame(0xF0, &[])),
        (
            "auth-continue",
            frame(
                0xF0,
                &[
                    &[0x18],
                    &props(&[&[0x15], &s("SCRAM-SHA-1"), &[0x16], &bin(b"c=biws"), user]),
                ],
            ),
        ),
    ]);
    out
}

fn topic_seeds() -> Seeds {
    let pairs: &[(&str, &str)] = &[
        ("a/b", "a/b"),
        ("a/+", "a/b"),
        ("a/#", "a"),
        ("#", "a/b/c"),
        ("+/+", "/x"),
        ("+", "$SYS"),
        ("$SYS/#", "$SYS/broker/uptime"),
        ("sport/tennis/+/score", "sport/tennis/p1/score"),
        ("sport/+/player1", "sport//player1"),
        ("/", "/"),
        ("a//b", "a//b"),
        ("$share/g/a/+", "a/b"),
        ("$share/g/#", "x"),
        ("$share//a", "a"),
        ("$share/g", "g"),
        ("$share", "$share"),
        ("a/b#", "a/b"),
        ("a/+b", "a/b"),
        ("a/#/b", "a/x/b"),
        ("héllo/wörld/+", "héllo/wörld/ünïcode"),
        ("a\0b", "a\0b"),
    ];
    let mut seeds: Seeds = pairs
        .iter()
        .enumerate()
        .map(|(i, (filter, topic))| {
            let bytes = [filter.as_bytes(), &[0xFF], topic.as_bytes()].concat();
            (format!("pair-{i:02}"), bytes)
        })
        .collect();
    for (i, one) in ["a/b/c", "+/#", "$SYS/a", "x"].iter().enumerate() {
        seeds.push((format!("single-{i}"), one.as_bytes().to_vec()));
    }
    seeds.push(("deep".to_owned(), "a/".repeat(200).into_bytes()));
    seeds
}

fn config_seeds(root: &Path) -> Result<Seeds> {
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path)).with_context(|| format!("cannot read {path}"))
    };
    let shipped = read("config/sluice.toml")?;
    // The commented examples switched on.
    let examples: String = shipped
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let mut seeds = vec![
        ("sluice.toml".to_owned(), shipped.into_bytes()),
        ("sluice-examples.toml".to_owned(), examples.into_bytes()),
        ("empty.toml".to_owned(), Vec::new()),
    ];
    // Each ```toml block of the reference.
    let docs = read("docs/config.md")?;
    let blocks = docs.split("```toml\n").skip(1);
    let blocks = blocks.filter_map(|block| block.split_once("```").map(|(toml, _)| toml));
    for (i, toml) in blocks.enumerate() {
        seeds.push((format!("docs-{i:02}.toml"), toml.as_bytes().to_vec()));
    }
    seeds.push((
        "plugin-values.toml".to_owned(),
        b"[plugin.p]\npriority = -1\n[plugin.p.config]\ns = \"x\"\nn = 1\nf = 1.5\nb = true\n\
          a = [1, \"two\", [3]]\nt = { k = \"v\" }\nd = 1979-05-27T07:32:00Z\n"
            .to_vec(),
    ));
    Ok(seeds)
}
