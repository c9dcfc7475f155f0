//! What the broker knows about a client's TLS certificate, for plugins
//! (`auth-on-register(-m5)` receives it in `connection`).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// A verified client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Subject distinguished name as RFC 4514 text (most specific
    /// attribute first), e.g. "CN=device-17,O=Acme". Empty if the
    /// certificate could not be parsed beyond what TLS verified.
    pub subject: String,
    /// Subject alternative names (DNS names, IPs, URIs, e-mail addresses)
    /// as text, in certificate order.
    pub subject_alt_names: Vec<String>,
    /// SHA-256 of the DER encoding, lowercase hex.
    pub sha256_fingerprint: String,
    /// The certificate, DER-encoded.
    pub der: Vec<u8>,
}

impl ClientCertificate {
    /// The facts of a DER certificate that TLS has already verified. If its
    /// names cannot be read (an encoding the TLS verifier tolerated but the
    /// X.509 parser does not), subject and SANs stay empty, so a plugin
    /// matching on them refuses the client, and a warning is logged.
    pub fn from_der(der: &[u8]) -> Self {
        let sha256_fingerprint =
            Sha256::digest(der)
                .iter()
                .fold(String::with_capacity(64), |mut hex, b| {
                    let _ = write!(hex, "{b:02x}");
                    hex
                });
        let (subject, subject_alt_names) = match names(der) {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(
                    fingerprint = %sha256_fingerprint,
                    "cannot read the names of a client certificate: {e}"
                );
                (String::new(), Vec::new())
            }
        };
        ClientCertificate {
            subject,
            subject_alt_names,
            sha256_fingerprint,
            der: der.to_vec(),
        }
    }
}

/// The subject (RFC 4514) and subject alternative names of a certificate.
fn names(der: &[u8]) -> Result<(String, Vec<String>), x509_cert::der::Error> {
    let cert = Certificate::from_der(der)?;
    let tbs = &cert.tbs_certificate;
    let subject = tbs.subject.to_string();
    let mut sans = Vec::new();
    if let Some((_critical, SubjectAltName(names))) = tbs.get::<SubjectAltName>()? {
        for name in names {
            match name {
                GeneralName::DnsName(s)
                | GeneralName::UniformResourceIdentifier(s)
                | GeneralName::Rfc822Name(s) => sans.push(s.to_string()),
                GeneralName::IpAddress(octets) => {
                    let b = octets.as_bytes();
                    let ip = if let Ok(v4) = <[u8; 4]>::try_from(b) {
                        std::net::IpAddr::from(v4).to_string()
                    } else if let Ok(v6) = <[u8; 16]>::try_from(b) {
                        std::net::IpAddr::from(v6).to_string()
                    } else {
                        continue;
                    };
                    sans.push(ip);
                }
                GeneralName::DirectoryName(dn) => sans.push(dn.to_string()),
                GeneralName::OtherName(_)
                | GeneralName::EdiPartyName(_)
                | GeneralName::RegisteredId(_) => {}
            }
        }
    }
    Ok((subject, sans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_subject_sans_and_fingerprint() {
        let mut params =
            rcgen::CertificateParams::new(vec!["device-17.example".to_owned()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "device-17");
        params.subject_alt_names.push(rcgen::SanType::IpAddress(
            std::net::Ipv4Addr::new(10, 1, 2, 3).into(),
        ));
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://acme/device-17").expect("uri"),
        ));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let c = ClientCertificate::from_der(cert.der());
        assert_eq!(c.subject, "CN=device-17,O=Acme");
        assert_eq!(
            c.subject_alt_names,
            ["device-17.example", "10.1.2.3", "spiffe://acme/device-17"]
        );
        assert_eq!(c.sha256_fingerprint.len(), 64);
        assert_eq!(
            c.sha256_fingerprint,
            format!("{:x}", Sha256::digest(cert.der().as_ref()))
        );
        assert_eq!(c.der, cert.der().as_ref());
    }

    #[test]
    fn unreadable_names_leave_subject_empty() {
        let c = ClientCertificate::from_der(b"not a certificate");
        assert_eq!(c.subject, "");
        assert!(c.subject_alt_names.is_empty());
        assert_eq!(c.sha256_fingerprint.len(), 64);
    }
}
