//! Test fixture: a plugin that misbehaves on purpose, chosen by the
//! connecting client's username. The broker must contain every one of these:
//! refuse that client within the deadline, replace the instance, and keep
//! serving everyone else.

wit_bindgen::generate!({
    inline: r#"
        package fixtures:hostile;
        world hostile {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/auth-on-register@0.1.0;
            export sluice:plugin/auth-on-register-m5@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

use exports::sluice::plugin::auth_on_register::{Guest, RegisterVerdict};
use exports::sluice::plugin::auth_on_register_m5::{self, RegisterVerdictM5};
use sluice::plugin::host;
use sluice::plugin::types::{
    ConnectProperties, Connection, Denial, M5Denial, RegisterModifiers, SubscriberId,
};

struct Hostile;

/// What the plugin answers when it survives its own behaviour.
enum Outcome {
    Accept(Option<RegisterModifiers>),
    Refuse(String),
}

#[inline(never)]
#[allow(unconditional_recursion, reason = "it is meant to overflow the stack")]
fn recurse(depth: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(depth % 256) as usize] = depth as u8;
    let mut next = [0u8; 256];
    std::hint::black_box(&mut next);
    1 + recurse(depth + 1, &mut next) + u64::from(pad[0])
}

fn modifiers_with_client_id(client_id: String) -> RegisterModifiers {
    RegisterModifiers {
        subscriber_id: Some(SubscriberId {
            mountpoint: String::new(),
            client_id,
        }),
        username: None,
        clean_start: None,
        session_expiry_interval: None,
        max_packet_size: None,
        max_message_rate: None,
        max_inflight_messages: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        upgrade_qos: None,
        allow_publish: None,
        allow_subscribe: None,
        allow_unsubscribe: None,
        max_online_messages: None,
        max_offline_messages: None,
        max_connection_lifetime: None,
    }
}

fn behave(username: Option<&str>) -> Outcome {
    match username.unwrap_or("") {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![0xAB; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "recurse" => {
            let mut pad = [0u8; 256];
            let n = recurse(0, &mut pad);
            Outcome::Refuse(format!("recursion ended at {n}?"))
        }
        "panic" => panic!("hostile plugin panics on purpose"),
        "huge-id" => Outcome::Accept(Some(modifiers_with_client_id("x".repeat(4 << 20)))),
        "huge-reason" => Outcome::Refuse("y".repeat(4 << 20)),
        "file" => match std::fs::read_to_string("/etc/hostname") {
            Ok(_) => Outcome::Accept(None),
            Err(e) => Outcome::Refuse(format!("file access failed: {e}")),
        },
        "net" => {
            let port = host::config()
                .into_iter()
                .find(|(k, _)| k == "probe_port")
                .map(|(_, v)| v)
                .unwrap_or_else(|| "1883".into());
            match std::net::TcpStream::connect(format!("127.0.0.1:{port}")) {
                Ok(_) => Outcome::Accept(None),
                Err(e) => Outcome::Refuse(format!("network access failed: {e}")),
            }
        }
        "log-flood" => {
            // 500 records of 64 KiB: the broker cuts each and writes at
            // most its per-second allowance, counting the rest.
            let line = "z".repeat(64 << 10);
            for _ in 0..500 {
                host::log(host::LogLevel::Info, &line);
            }
            Outcome::Accept(None)
        }
        "kv-flood" => {
            // Tiny keys until the store is full: each entry counts its
            // overhead, so they run out long before millions.
            let mut n: u32 = 0;
            while host::kv_set(&format!("k{n}"), &[]).is_ok() {
                n += 1;
            }
            for i in 0..n {
                host::kv_delete(&format!("k{i}"));
            }
            Outcome::Refuse(format!("kv entries: {n}"))
        }
        "print" => {
            println!("hello from the sandbox");
            eprintln!("complaint from the sandbox");
            Outcome::Accept(None)
        }
        "env" => {
            let seen: Vec<(String, String)> = std::env::vars().collect();
            if seen.is_empty() && std::env::var("HOME").is_err() && std::env::var("PATH").is_err() {
                Outcome::Refuse("no environment visible".into())
            } else {
                Outcome::Accept(None)
            }
        }
        _ => Outcome::Accept(None),
    }
}

impl Guest for Hostile {
    fn auth_on_register(
        _conn: Connection,
        _subscriber_id: SubscriberId,
        username: Option<String>,
        _password: Option<Vec<u8>>,
        _clean_session: bool,
    ) -> RegisterVerdict {
        match behave(username.as_deref()) {
            Outcome::Accept(m) => RegisterVerdict::Ok(m),
            Outcome::Refuse(why) => RegisterVerdict::Error(Denial::NotAuthorized(why)),
        }
    }
}

impl auth_on_register_m5::Guest for Hostile {
    fn auth_on_register_m5(
        _conn: Connection,
        _subscriber_id: SubscriberId,
        username: Option<String>,
        _password: Option<Vec<u8>>,
        _clean_start: bool,
        _properties: ConnectProperties,
    ) -> RegisterVerdictM5 {
        match behave(username.as_deref()) {
            Outcome::Accept(m) => RegisterVerdictM5::Ok(m),
            Outcome::Refuse(why) => RegisterVerdictM5::Error(M5Denial {
                reason_code: 0x87,
                reason_string: Some(why),
                server_reference: None,
            }),
        }
    }
}

export!(Hostile);
