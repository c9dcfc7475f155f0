//! The plugin's logic, independent of the WIT bindings: the configuration,
//! HS256 JWT verification (RFC 7519 / RFC 7515) and the grants a token's
//! claims carry.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use sluice_plugin_sdk::config::{Otherwise, Secret};

/// The parsed configuration: the keys of the fields' names.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    /// The HS256 key.
    secret: Secret,
    #[serde(default = "thirty")]
    pub leeway_secs: u64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// What to do with a password that is not shaped like a JWT (default:
    /// leave the client to the next plugin).
    #[serde(default)]
    pub other_passwords: Otherwise,
}

fn thirty() -> u64 {
    30
}

fn yes() -> bool {
    true
}

/// What a valid token grants: its claims of the fields' names (absent or
/// null: `None`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct Grant {
    pub client_id: Option<String>,
    pub mountpoint: Option<String>,
    pub can_publish: Option<bool>,
    pub can_subscribe: Option<bool>,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JWT at all (only with `other_passwords = "deny"`).
    NotAToken,
    /// A JWT that cannot be read, or with claims of the wrong type.
    Malformed(String),
    /// `alg` other than HS256 (including "none").
    Algorithm(String),
    BadSignature,
    Expired,
    NotYetValid,
    MissingExpiry,
    /// `iss` or `aud` not the configured ones.
    WrongIssuer,
    WrongAudience,
}

impl Rejection {
    /// Whether the credentials are bad (CONNACK 4 / 0x86) rather than
    /// valid but not for this broker (CONNACK 5 / 0x87).
    pub fn is_bad_credentials(&self) -> bool {
        !matches!(self, Rejection::WrongIssuer | Rejection::WrongAudience)
    }

    pub fn text(&self) -> String {
        match self {
            Rejection::NotAToken => "the password is not a JWT".to_owned(),
            Rejection::Malformed(why) => format!("malformed token: {why}"),
            Rejection::Algorithm(alg) => format!("token algorithm {alg:?} is not HS256"),
            Rejection::BadSignature => "bad token signature".to_owned(),
            Rejection::Expired => "token expired".to_owned(),
            Rejection::NotYetValid => "token not valid yet".to_owned(),
            Rejection::MissingExpiry => "token without exp".to_owned(),
            Rejection::WrongIssuer => "token from another issuer".to_owned(),
            Rejection::WrongAudience => "token for another audience".to_owned(),
        }
    }
}

/// The result of checking one password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Valid(Grant),
    /// Not a token: for the next plugin.
    Next,
    Refused(Rejection),
}

impl Settings {
    /// Whether the secret is shorter than RFC 7518 §3.2 asks (32 bytes).
    pub fn weak_secret(&self) -> bool {
        self.secret.expose().len() < 32
    }

    /// Checks `password` as a token at `now` (seconds since the epoch).
    pub fn check(&self, password: &[u8], now: u64) -> Outcome {
        let Some(parts) = split(password) else {
            return match self.other_passwords {
                Otherwise::Next => Outcome::Next,
                Otherwise::Deny => Outcome::Refused(Rejection::NotAToken),
            };
        };
        match self.verify(parts, now) {
            Ok(grant) => Outcome::Valid(grant),
            Err(r) => Outcome::Refused(r),
        }
    }

    fn verify(&self, parts: Parts<'_>, now: u64) -> Result<Grant, Rejection> {
        let malformed = |why: &str| Rejection::Malformed(why.to_owned());
        match parts.header.get("alg") {
            Some(Value::String(alg)) if alg == "HS256" => {}
            Some(Value::String(alg)) => return Err(Rejection::Algorithm(alg.clone())),
            _ => return Err(malformed("header without alg")),
        }
        // RFC 7515 §4.1.11: extensions we do not understand must refuse.
        if parts.header.contains_key("crit") {
            return Err(malformed("critical header extensions are not supported"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(parts.signature)
            .map_err(|_| malformed("signature is not base64url"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose())
            .map_err(|_| malformed("unusable secret"))?;
        mac.update(parts.signed);
        // Constant-time comparison.
        mac.verify_slice(&signature)
            .map_err(|_| Rejection::BadSignature)?;

        // Only a signed payload is read.
        let claims: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(parts.payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| malformed("payload is not a JSON object"))?;
        let time = |name: &str| -> Result<Option<u64>, Rejection> {
            match claims.get(name) {
                None => Ok(None),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or_else(|| Rejection::Malformed(format!("{name} is not a time"))),
                Some(_) => Err(Rejection::Malformed(format!("{name} is not a number"))),
            }
        };
        match time("exp")? {
            Some(exp) if now >= exp.saturating_add(self.leeway_secs) => {
                return Err(Rejection::Expired);
            }
            None if self.require_exp => return Err(Rejection::MissingExpiry),
            _ => {}
        }
        if let Some(nbf) = time("nbf")?
            && now.saturating_add(self.leeway_secs) < nbf
        {
            return Err(Rejection::NotYetValid);
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(Rejection::WrongIssuer);
        }
        if let Some(audience) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => a == audience,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !ok {
                return Err(Rejection::WrongAudience);
            }
        }
        // A grant's claim of the wrong type refuses the token.
        Grant::deserialize(&claims).map_err(|e| Rejection::Malformed(format!("grant: {e}")))
    }
}

/// A token's parts.
struct Parts<'a> {
    header: Map<String, Value>,
    /// `HEADER.PAYLOAD`, as signed.
    signed: &'a [u8],
    payload: &'a str,
    signature: &'a str,
}

/// The parts of `password` if it looks like a JWS in compact form: three
/// base64url segments, the first a JSON object. Anything else is some
/// other kind of password.
fn split(password: &[u8]) -> Option<Parts<'_>> {
    let text = std::str::from_utf8(password).ok()?;
    let mut it = text.split('.');
    let (Some(h), Some(payload), Some(signature), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return None;
    };
    let header: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())?;
    Some(Parts {
        header,
        signed: &password[..h.len() + 1 + payload.len()],
        payload,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin_sdk::{FromConfig, Settings as Values};

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
    const NOW: u64 = 1_700_000_000;

    fn settings(extra: &[(&str, &str)]) -> Settings {
        let pairs = [("secret", SECRET)]
            .into_iter()
            .chain(extra.iter().copied());
        Settings::from_config(&Values::new(pairs)).expect("valid settings")
    }

    fn token_with(header: &str, claims: &str, secret: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let c = URL_SAFE_NO_PAD.encode(claims);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(format!("{h}.{c}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{c}.{s}")
    }

    fn token(claims: &str) -> String {
        token_with(r#"{"alg":"HS256","typ":"JWT"}"#, claims, SECRET)
    }

    fn check(s: &Settings, t: &str) -> Outcome {
        s.check(t.as_bytes(), NOW)
    }

    #[test]
    fn rfc_7515_example_signature_verifies() {
        // RFC 7515 appendix A.1: an HS256 JWS and its key.
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .expect("key");
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\
            eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.\
            dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let s = Settings {
            secret: key.into(),
            ..settings(&[])
        };
        assert_eq!(
            s.check(token.as_bytes(), 1_300_819_000),
            Outcome::Valid(Grant::default())
        );
        assert_eq!(
            s.check(token.as_bytes(), 1_300_819_380 + 30),
            Outcome::Refused(Rejection::Expired)
        );
    }

    #[test]
    fn claims_become_grants() {
        let s = settings(&[]);
        let t = token(&format!(
            r#"{{"exp":{},"client_id":"dev-1","mountpoint":"acme","can_publish":false,"can_subscribe":true}}"#,
            NOW + 60
        ));
        assert_eq!(
            check(&s, &t),
            Outcome::Valid(Grant {
                client_id: Some("dev-1".into()),
                mountpoint: Some("acme".into()),
                can_publish: Some(false),
                can_subscribe: Some(true),
            })
        );
        let t = token(&format!(r#"{{"exp":{}.5}}"#, NOW + 60));
        assert_eq!(check(&s, &t), Outcome::Valid(Grant::default()));
        let t = token(&format!(r#"{{"exp":{},"can_publish":"yes"}}"#, NOW + 60));
        assert!(matches!(
            check(&s, &t),
            Outcome::Refused(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn times_with_leeway() {
        let s = settings(&[("leeway_secs", "30")]);
        let exp = |e: u64| token(&format!(r#"{{"exp":{e}}}"#));
        assert!(matches!(check(&s, &exp(NOW - 29)), Outcome::Valid(_)));
        assert_eq!(
            check(&s, &exp(NOW - 30)),
            Outcome::Refused(Rejection::Expired)
        );
        let nbf = |n: u64| token(&format!(r#"{{"exp":{},"nbf":{n}}}"#, NOW + 600));
        assert!(matches!(check(&s, &nbf(NOW + 30)), Outcome::Valid(_)));
        assert_eq!(
            check(&s, &nbf(NOW + 31)),
            Outcome::Refused(Rejection::NotYetValid)
        );
        assert_eq!(
            check(&s, &token("{}")),
            Outcome::Refused(Rejection::MissingExpiry)
        );
        let lax = settings(&[("require_exp", "false")]);
        assert!(matches!(check(&lax, &token("{}")), Outcome::Valid(_)));
    }

    #[test]
    fn signature_and_algorithm() {
        let s = settings(&[]);
        let claims = format!(r#"{{"exp":{}}}"#, NOW + 60);
        let other_key = token_with(r#"{"alg":"HS256"}"#, &claims, "another-secret");
        assert_eq!(
            check(&s, &other_key),
            Outcome::Refused(Rejection::BadSignature)
        );
        // Tampered payload, original signature.
        let good = token(&claims);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{},"client_id":"x"}}"#, NOW + 60));
        parts[1] = &forged;
        assert_eq!(
            check(&s, &parts.join(".")),
            Outcome::Refused(Rejection::BadSignature)
        );
        // alg none, with or without a signature; other algorithms.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(&claims)
        );
        assert_eq!(
            check(&s, &none),
            Outcome::Refused(Rejection::Algorithm("none".into()))
        );
        let hs512 = token_with(r#"{"alg":"HS512"}"#, &claims, SECRET);
        assert_eq!(
            check(&s, &hs512),
            Outcome::Refused(Rejection::Algorithm("HS512".into()))
        );
        let crit = token_with(r#"{"alg":"HS256","crit":["x"],"x":1}"#, &claims, SECRET);
        assert!(matches!(
            check(&s, &crit),
            Outcome::Refused(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn issuer_and_audience() {
        let s = settings(&[("issuer", "auth.example"), ("audience", "sluice")]);
        let t = |c: &str| token(&format!(r#"{{"exp":{},{c}}}"#, NOW + 60));
        assert!(matches!(
            check(&s, &t(r#""iss":"auth.example","aud":"sluice""#)),
            Outcome::Valid(_)
        ));
        assert!(matches!(
            check(&s, &t(r#""iss":"auth.example","aud":["a","sluice"]"#)),
            Outcome::Valid(_)
        ));
        let wrong_iss = check(&s, &t(r#""iss":"evil","aud":"sluice""#));
        assert_eq!(wrong_iss, Outcome::Refused(Rejection::WrongIssuer));
        let no_aud = check(&s, &t(r#""iss":"auth.example""#));
        assert_eq!(no_aud, Outcome::Refused(Rejection::WrongAudience));
        assert!(!Rejection::WrongAudience.is_bad_credentials());
        assert!(Rejection::Expired.is_bad_credentials());
    }

    #[test]
    fn other_passwords() {
        let s = settings(&[]);
        for p in ["hunter2", "a.b.c", "x.y", "", "\u{ff}"] {
            assert_eq!(check(&s, p), Outcome::Next, "{p:?}");
        }
        assert_eq!(s.check(&[0xff, 0xfe], NOW), Outcome::Next);
        let strict = settings(&[("other_passwords", "deny")]);
        assert_eq!(
            check(&strict, "hunter2"),
            Outcome::Refused(Rejection::NotAToken)
        );
    }

    #[test]
    fn configuration_errors() {
        let parse =
            |pairs: &[(&str, &str)]| Settings::from_config(&Values::new(pairs.iter().copied()));
        assert!(parse(&[]).expect_err("no secret").contains("secret"));
        assert!(parse(&[("secret", "")]).is_err());
        assert!(parse(&[("secret", "s"), ("leeway_secs", "-3")]).is_err());
        assert!(parse(&[("secret", "s"), ("require_exp", "maybe")]).is_err());
        assert!(parse(&[("secret", "s"), ("other_passwords", "ok")]).is_err());
        assert!(parse(&[("secret", "s"), ("colour", "red")]).is_err());
        assert!(parse(&[("secret", "s")]).expect("valid").weak_secret());
        assert!(!settings(&[]).weak_secret());
    }
}
