//! Authentication at CONNECT: the `auth-on-register(-m5)` chain and MQTT
//! 5 enhanced authentication (`on-auth-m5`), turned into broker decisions.

use std::sync::Arc;

use super::bindings::exports::sluice::plugin::{auth_on_register, auth_on_register_m5, on_auth_m5};
use super::bindings::sluice::plugin::types as wit;
use super::chain::{Answer, Outcome};
use super::convert::{self, ConnectionInfo, Modifiers};
use super::{CallFailure, Hook, Plugin, Plugins, clip, walk};
use crate::codec::{ConnectProperties, ProtocolVersion};
use crate::config::Config;
use crate::reason::ReasonCode;
use crate::session::SubscriberId;

/// A client's registration, as the authentication hooks see it.
#[derive(Debug)]
pub struct RegisterRequest<'a> {
    pub conn: &'a ConnectionInfo,
    pub id: &'a SubscriberId,
    pub version: ProtocolVersion,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub clean_start: bool,
    pub properties: &'a ConnectProperties,
}

/// A refusal decided by the plugins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// MQTT 5 reason code (MQTT 3.x clients get its 3.x equivalent).
    pub code: ReasonCode,
    pub reason_string: Option<String>,
    pub server_reference: Option<String>,
    /// What to log: which plugin, and why.
    pub cause: String,
}

/// What the authentication chain decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// No plugin implements an authentication hook: `allow_anonymous`
    /// decides.
    NoPlugins,
    Accepted {
        plugin: Arc<str>,
        modifiers: Modifiers,
    },
    Refused(Refusal),
}

/// Where an enhanced-authentication exchange stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthStep {
    Connect,
    Continue,
    Reauthenticate,
}

/// One step of an enhanced-authentication exchange.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    pub conn: &'a ConnectionInfo,
    pub id: &'a SubscriberId,
    pub username: Option<&'a str>,
    pub step: AuthStep,
    pub method: &'a str,
    pub data: Option<&'a [u8]>,
}

/// What the enhanced-authentication chain decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Send AUTH 0x18 with this data.
    Continue(Option<Vec<u8>>),
    /// Authenticated; the data goes to the client.
    Success(Option<Vec<u8>>),
    Refused(Refusal),
    /// No plugin handles this method.
    Unhandled,
}

impl Plugins {
    /// Walks the authentication chain for a CONNECT. MQTT 5 clients get a
    /// plugin's `auth-on-register-m5`, or its `auth-on-register` when it has
    /// only that one.
    pub async fn authenticate(
        &self,
        req: &RegisterRequest<'_>,
        config: &Config,
    ) -> RegisterOutcome {
        if !self.authenticates() {
            return RegisterOutcome::NoPlugins;
        }
        let set = self.set();
        let chains = &set.register;
        if let Some(name) = chains.missing() {
            return RegisterOutcome::Refused(missing(name));
        }
        let chain = chains.plugins();
        let conn = req.conn.wit();
        let id = convert::subscriber_id(req.id);
        let props = chains
            .needs_m5(req.version)
            .then(|| convert::connect_properties(req.properties));
        let outcome = walk(chain, "auth-on-register", |p| {
            let (id, props) = (&id, &props);
            async move {
                match props {
                    Some(props) if chains.m5_for(p, req.version) => {
                        call_register_m5(p, conn, id, req, props).await
                    }
                    _ => call_register(p, conn, id, req).await,
                }
            }
        })
        .await;
        match outcome {
            Outcome::Accepted { index, value } => {
                let plugin = chain[index].name.clone();
                // An m5 hook answering for an MQTT 3.x client: the MQTT 5
                // settings have nothing to apply to.
                let via_m5_for_v3 =
                    !req.version.is_v5() && chains.m5_for(&chain[index], req.version);
                let value = value.map(|mut m| {
                    if via_m5_for_v3 {
                        m.receive_maximum = None;
                        m.topic_alias_maximum = None;
                    }
                    m
                });
                match value.map(|m| convert::modifiers(m, req.version, config)) {
                    None => RegisterOutcome::Accepted {
                        plugin,
                        modifiers: Modifiers::default(),
                    },
                    Some(Ok(modifiers)) => RegisterOutcome::Accepted { plugin, modifiers },
                    Some(Err(e)) => {
                        let hook = chains.hook_for(&chain[index], req.version);
                        chain[index].invalid_answer(req.id, hook, &e);
                        RegisterOutcome::Refused(Refusal {
                            code: ReasonCode::UNSPECIFIED_ERROR,
                            reason_string: None,
                            server_reference: None,
                            cause: format!("plugin {plugin} returned an invalid {e}"),
                        })
                    }
                }
            }
            Outcome::Refused { index, error } => {
                RegisterOutcome::Refused(error.by(&chain[index].name, convert::is_connack_refusal))
            }
            Outcome::Failed { index, failure } => RegisterOutcome::Refused(Refusal {
                code: ReasonCode::NOT_AUTHORIZED,
                reason_string: None,
                server_reference: None,
                cause: format!("plugin {} failed: {failure}", chain[index].name),
            }),
            Outcome::Exhausted => RegisterOutcome::Refused(Refusal {
                code: ReasonCode::NOT_AUTHORIZED,
                reason_string: None,
                server_reference: None,
                cause: "every authentication plugin answered next".into(),
            }),
        }
    }

    /// Walks the enhanced-authentication chain for one step. `reauth`
    /// selects which reason codes a refusal may use (DISCONNECT instead of
    /// CONNACK).
    pub async fn enhanced_auth(&self, req: &AuthRequest<'_>, reauth: bool) -> AuthOutcome {
        let set = self.set();
        if let Some(name) = &set.auth_enhanced_missing {
            return AuthOutcome::Refused(missing(name));
        }
        let chain = &set.auth_enhanced;
        let conn = req.conn.wit();
        let id = convert::subscriber_id(req.id);
        let request = on_auth_m5::AuthRequest {
            step: match req.step {
                AuthStep::Connect => on_auth_m5::AuthStep::Connect,
                AuthStep::Continue => on_auth_m5::AuthStep::ContinueAuthentication,
                AuthStep::Reauthenticate => on_auth_m5::AuthStep::Reauthenticate,
            },
            method: req.method.to_owned(),
            data: req.data.map(<[u8]>::to_vec),
            username: req.username.map(str::to_owned),
        };
        let outcome = walk(chain, "on-auth-m5", |p| {
            let (id, request) = (&id, &request);
            async move {
                let verdict = hook_call!(p, Hook::OnAuthM5, on_auth_m5, |g, store| {
                    g.call_on_auth_m5(store, conn, id, request)
                })
                .await?;
                Ok(match verdict {
                    on_auth_m5::AuthVerdict::ContinueAuthentication(d) => {
                        Answer::Ok(AuthOutcome::Continue(d))
                    }
                    on_auth_m5::AuthVerdict::Success(d) => Answer::Ok(AuthOutcome::Success(d)),
                    on_auth_m5::AuthVerdict::Next => Answer::Next,
                    on_auth_m5::AuthVerdict::Error(e) => Answer::Error(Denied::M5(e)),
                })
            }
        })
        .await;
        let valid: fn(ReasonCode) -> bool = if reauth {
            convert::is_disconnect_reason
        } else {
            convert::is_connack_refusal
        };
        match outcome {
            Outcome::Accepted { value, .. } => value,
            Outcome::Refused { index, error } => {
                let mut refusal = error.by(&chain[index].name, |code| {
                    valid(code) || (reauth && convert::is_connack_refusal(code))
                });
                // A CONNACK-only code (0x86 bad credentials, 0x8C bad
                // method...) cannot end an established connection.
                if reauth && !convert::is_disconnect_reason(refusal.code) {
                    refusal.code = ReasonCode::NOT_AUTHORIZED;
                }
                AuthOutcome::Refused(refusal)
            }
            Outcome::Failed { index, failure } => AuthOutcome::Refused(Refusal {
                code: ReasonCode::NOT_AUTHORIZED,
                reason_string: None,
                server_reference: None,
                cause: format!("plugin {} failed: {failure}", chain[index].name),
            }),
            Outcome::Exhausted => AuthOutcome::Unhandled,
        }
    }
}

/// A plugin's refusal before validation.
enum Denied {
    V3(wit::Denial),
    M5(wit::M5Denial),
}

impl Denied {
    /// The refusal to send, checking that a plugin-supplied code is one
    /// `valid` allows.
    fn by(self, plugin: &str, valid: impl Fn(ReasonCode) -> bool) -> Refusal {
        match self {
            Denied::V3(wit::Denial::InvalidCredentials(why)) => Refusal {
                code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                reason_string: None,
                server_reference: None,
                cause: format!("plugin {plugin}: invalid credentials: {}", clip(&why)),
            },
            Denied::V3(wit::Denial::NotAuthorized(why)) => Refusal {
                code: ReasonCode::NOT_AUTHORIZED,
                reason_string: None,
                server_reference: None,
                cause: format!("plugin {plugin}: not authorized: {}", clip(&why)),
            },
            Denied::M5(d) => {
                let code = ReasonCode(d.reason_code);
                if valid(code) {
                    Refusal {
                        code,
                        cause: format!(
                            "plugin {plugin} refused with {code}{}",
                            d.reason_string
                                .as_deref()
                                .map(|s| format!(": {}", clip(s)))
                                .unwrap_or_default()
                        ),
                        reason_string: convert::reason_string(d.reason_string),
                        server_reference: convert::reason_string(d.server_reference),
                    }
                } else {
                    Refusal {
                        code: ReasonCode::UNSPECIFIED_ERROR,
                        reason_string: None,
                        server_reference: None,
                        cause: format!(
                            "plugin {plugin} refused with {code}, which is not a refusal code here"
                        ),
                    }
                }
            }
        }
    }
}

type RegisterAnswer = Result<Answer<Option<wit::RegisterModifiers>, Denied>, CallFailure>;

/// The refusal of a chain that misses a required plugin.
fn missing(name: &str) -> Refusal {
    Refusal {
        code: ReasonCode::NOT_AUTHORIZED,
        reason_string: None,
        server_reference: None,
        cause: format!("required plugin {name} is not loaded (fail closed)"),
    }
}

async fn call_register(
    p: &Plugin,
    conn: &wit::Connection,
    id: &wit::SubscriberId,
    req: &RegisterRequest<'_>,
) -> RegisterAnswer {
    let verdict = hook_call!(p, Hook::AuthOnRegister, auth_on_register, |g, store| {
        g.call_auth_on_register(store, conn, id, req.username, req.password, req.clean_start)
    })
    .await?;
    Ok(match verdict {
        auth_on_register::RegisterVerdict::Ok(m) => Answer::Ok(m),
        auth_on_register::RegisterVerdict::Next => Answer::Next,
        auth_on_register::RegisterVerdict::Error(d) => Answer::Error(Denied::V3(d)),
    })
}

async fn call_register_m5(
    p: &Plugin,
    conn: &wit::Connection,
    id: &wit::SubscriberId,
    req: &RegisterRequest<'_>,
    props: &wit::ConnectProperties,
) -> RegisterAnswer {
    let verdict = hook_call!(
        p,
        Hook::AuthOnRegisterM5,
        auth_on_register_m5,
        |g, store| {
            g.call_auth_on_register_m5(
                store,
                conn,
                id,
                req.username,
                req.password,
                req.clean_start,
                props,
            )
        }
    )
    .await?;
    Ok(match verdict {
        auth_on_register_m5::RegisterVerdictM5::Ok(m) => Answer::Ok(m),
        auth_on_register_m5::RegisterVerdictM5::Next => Answer::Next,
        auth_on_register_m5::RegisterVerdictM5::Error(d) => Answer::Error(Denied::M5(d)),
    })
}
