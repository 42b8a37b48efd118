//! The `tls_server_config` section of the web configuration: its schema, the mapping of Go's
//! TLS names onto rustls (ring provider), and the client-certificate policies, including the
//! `client_allowed_sans` check. Builds one immutable rustls `ServerConfig`; reloading is
//! someone else's job.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CipherSuite, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};
use serde::Deserialize;

use super::web_config::{SecretText, Stamp, read_named};

/// `tls_server_config` as written. Empty strings count as unset, as in exporter-toolkit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsSection {
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<SecretText>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
}

/// Go's `tls.ClientAuthType` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(text: &str) -> Result<ClientAuth, String> {
        Ok(match text {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // exporter-toolkit still accepts the old name.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => {
                return Err(format!(
                    "client_auth_type {other:?} is not valid; use NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ));
            }
        })
    }

    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }

    fn mandatory(self) -> bool {
        matches!(
            self,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Go's names of the TLS 1.2 suites `crypto/tls` calls secure, with the ring suite when
/// rustls has one. rustls implements no CBC and no RSA-key-exchange suite.
const TLS12_SUITES: &[(&str, Option<CipherSuite>)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Some(CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", None),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", None),
];

/// TLS 1.3 suites: Go accepts their names but cannot configure them, and neither do we.
const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Go's `tls.CurveID` names, with the ring group when there is one (ring has no P-521).
fn curve(name: &str) -> Option<Option<&'static dyn SupportedKxGroup>> {
    use rustls::crypto::ring::kx_group;
    Some(match name {
        "X25519" => Some(kx_group::X25519),
        "CurveP256" => Some(kx_group::SECP256R1),
        "CurveP384" => Some(kx_group::SECP384R1),
        "CurveP521" => None,
        _ => return None,
    })
}

fn version(field: &str, text: &str) -> Result<u8, String> {
    match text {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(format!(
            "{field} {text} is not supported: TLS 1.0 and 1.1 are obsolete (RFC 8996) and not implemented; use TLS12 or TLS13"
        )),
        other => Err(format!(
            "{field} {other:?} is not valid; use TLS12 or TLS13"
        )),
    }
}

/// What the TLS section amounts to, for logs and `--config.check`.
#[derive(Debug, Clone)]
pub(super) struct TlsSummary {
    client_auth: ClientAuth,
    versions: (u8, u8),
    allowed_sans: usize,
}

impl fmt::Display for TlsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TLS 1.{}{}, client certificates: {}",
            self.versions.0 % 10,
            if self.versions.1 != self.versions.0 {
                format!("-1.{}", self.versions.1 % 10)
            } else {
                String::new()
            },
            self.client_auth
        )?;
        if self.allowed_sans > 0 {
            write!(f, " (limited to {} allowed SANs)", self.allowed_sans)?;
        }
        Ok(())
    }
}

fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Resolves a path of the file against the file's own directory, as exporter-toolkit does.
fn resolve(dir: &Path, name: &str) -> PathBuf {
    let path = Path::new(name);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

impl TlsSection {
    /// Whether the section asks for TLS at all; an absent or empty section means plain HTTP.
    pub(super) fn is_empty(&self) -> bool {
        set(&self.cert).is_none()
            && self.key.as_ref().is_none_or(|k| k.expose().is_empty())
            && set(&self.client_ca).is_none()
            && set(&self.cert_file).is_none()
            && set(&self.key_file).is_none()
            && set(&self.client_auth_type).is_none()
            && set(&self.client_ca_file).is_none()
            && self.client_allowed_sans.is_none()
            && set(&self.min_version).is_none()
            && set(&self.max_version).is_none()
            && self.cipher_suites.is_none()
            && self.prefer_server_cipher_suites.is_none()
            && self.curve_preferences.is_none()
    }

    /// Reads the files the section names (recording them in `files` for change detection)
    /// and builds the server configuration. `warnings` collects settings that rustls cannot
    /// honour but that only make the server stricter when dropped.
    pub(super) fn build(
        &self,
        dir: &Path,
        files: &mut Vec<(PathBuf, Option<Stamp>)>,
        warnings: &mut Vec<String>,
    ) -> Result<(Arc<ServerConfig>, TlsSummary), String> {
        let cert_pem = match (set(&self.cert_file), set(&self.cert)) {
            (Some(_), Some(_)) => {
                return Err("tls_server_config: give cert_file or cert, not both".into());
            }
            (Some(name), None) => read_named("cert_file", &resolve(dir, name), files)?,
            (None, Some(inline)) => inline.as_bytes().to_vec(),
            (None, None) => {
                return Err(
                    "tls_server_config: cert_file (or an inline cert) is required to serve TLS"
                        .into(),
                );
            }
        };
        let inline_key = self
            .key
            .as_ref()
            .map(SecretText::expose)
            .filter(|k| !k.is_empty());
        let key_pem = match (set(&self.key_file), inline_key) {
            (Some(_), Some(_)) => {
                return Err("tls_server_config: give key_file or key, not both".into());
            }
            (Some(name), None) => read_named("key_file", &resolve(dir, name), files)?,
            (None, Some(inline)) => inline.as_bytes().to_vec(),
            (None, None) => {
                return Err(
                    "tls_server_config: key_file (or an inline key) is required to serve TLS"
                        .into(),
                );
            }
        };
        let cert_source = if set(&self.cert_file).is_some() {
            "cert_file"
        } else {
            "cert"
        };
        let key_source = if set(&self.key_file).is_some() {
            "key_file"
        } else {
            "key"
        };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls_server_config: {cert_source} is not valid PEM ({e})"))?;
        if chain.is_empty() {
            return Err(format!(
                "tls_server_config: {cert_source} holds no CERTIFICATE block; give the PEM certificate (chain) of the server"
            ));
        }
        // The error of a key parser may quote the input; say only what is wrong.
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            format!(
                "tls_server_config: {key_source} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"
            )
        })?;
        if let Some(note) = expiry_note(&chain[0]) {
            warnings.push(format!("tls_server_config: {cert_source}: {note}"));
        }

        let client_auth = ClientAuth::parse(set(&self.client_auth_type).unwrap_or(""))?;
        let ca_pem = match (set(&self.client_ca_file), set(&self.client_ca)) {
            (Some(_), Some(_)) => {
                return Err("tls_server_config: give client_ca_file or client_ca, not both".into());
            }
            (Some(name), None) => Some((
                "client_ca_file",
                read_named("client_ca_file", &resolve(dir, name), files)?,
            )),
            (None, Some(inline)) => Some(("client_ca", inline.as_bytes().to_vec())),
            (None, None) => None,
        };
        let roots = match &ca_pem {
            None => None,
            Some((source, pem)) => {
                if client_auth == ClientAuth::NoClientCert {
                    return Err(format!(
                        "tls_server_config: {source} is set but client_auth_type is NoClientCert; set client_auth_type: RequireAndVerifyClientCert to check client certificates"
                    ));
                }
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| {
                        format!("tls_server_config: {source} is not valid PEM ({e})")
                    })?;
                    roots.add(cert).map_err(|e| {
                        format!("tls_server_config: {source}: a CA certificate is unusable ({e})")
                    })?;
                }
                if roots.is_empty() {
                    return Err(format!(
                        "tls_server_config: {source} holds no CERTIFICATE block"
                    ));
                }
                Some(Arc::new(roots))
            }
        };
        if client_auth.verifies() && roots.is_none() {
            return Err(format!(
                "tls_server_config: client_auth_type {client_auth} needs client_ca_file (or client_ca): the CA that signs the client certificates"
            ));
        }
        let allowed_sans = match &self.client_allowed_sans {
            None => Vec::new(),
            Some(sans) if sans.is_empty() => {
                return Err(
                    "tls_server_config: client_allowed_sans is empty; list the allowed names or remove it"
                        .into(),
                );
            }
            Some(sans) => {
                if client_auth == ClientAuth::NoClientCert {
                    return Err(
                        "tls_server_config: client_allowed_sans needs a client_auth_type that asks for certificates, e.g. RequireAndVerifyClientCert"
                            .into(),
                    );
                }
                sans.clone()
            }
        };

        let min = version("min_version", set(&self.min_version).unwrap_or("TLS12"))?;
        let max = version("max_version", set(&self.max_version).unwrap_or("TLS13"))?;
        if min > max {
            return Err(format!(
                "tls_server_config: min_version TLS1{} is above max_version TLS1{}",
                min % 10,
                max % 10
            ));
        }
        let versions: Vec<&'static SupportedProtocolVersion> =
            [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, v)| v)
                .collect();

        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(names) = &self.cipher_suites {
            provider.cipher_suites =
                cipher_suites(names, &provider.cipher_suites, min <= 12, warnings)?;
        }
        if let Some(names) = &self.curve_preferences {
            let mut groups = Vec::new();
            for name in names {
                match curve(name) {
                    None => {
                        return Err(format!(
                            "tls_server_config: curve_preferences: unknown curve {name:?}; use X25519, CurveP256 or CurveP384"
                        ));
                    }
                    Some(None) => warnings.push(format!(
                        "tls_server_config: curve_preferences: {name} is not available with this exporter's TLS library and is ignored"
                    )),
                    Some(Some(group)) => {
                        if !groups.iter().any(|g: &&dyn SupportedKxGroup| g.name() == group.name()) {
                            groups.push(group);
                        }
                    }
                }
            }
            if groups.is_empty() {
                return Err(
                    "tls_server_config: curve_preferences names no usable curve; use X25519, CurveP256 or CurveP384"
                        .into(),
                );
            }
            provider.kx_groups = groups;
        }
        let provider = Arc::new(provider);

        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("tls_server_config: {e}"))?;
        let builder = if client_auth == ClientAuth::NoClientCert {
            builder.with_no_client_auth()
        } else {
            builder.with_client_cert_verifier(client_verifier(
                client_auth,
                roots,
                allowed_sans.clone(),
                &provider,
            )?)
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "tls_server_config: the private key ({key_source}) does not belong to the certificate ({cert_source})"
            ),
            other => format!("tls_server_config: unusable certificate or key ({other})"),
        })?;
        // Go's default, and what prefer_server_cipher_suites asks for.
        config.ignore_client_order = self.prefer_server_cipher_suites.unwrap_or(true);
        // Only HTTP/1.1 is served; a client that offers only h2 is refused in the handshake
        // instead of failing later.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok((
            Arc::new(config),
            TlsSummary {
                client_auth,
                versions: (min, max),
                allowed_sans: allowed_sans.len(),
            },
        ))
    }
}

/// The TLS 1.3 suites of the provider, then the listed TLS 1.2 suites in the listed order.
fn cipher_suites(
    names: &[String],
    available: &[SupportedCipherSuite],
    tls12: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<SupportedCipherSuite>, String> {
    let mut chosen: Vec<SupportedCipherSuite> = available
        .iter()
        .filter(|s| s.tls13().is_some())
        .copied()
        .collect();
    let mut unsupported = Vec::new();
    let mut any_tls12 = false;
    for name in names {
        if TLS13_SUITES.contains(&name.as_str()) {
            continue;
        }
        match TLS12_SUITES.iter().find(|(n, _)| n == name) {
            None => {
                return Err(format!(
                    "tls_server_config: cipher_suites: unknown cipher suite {name:?}; supported: {}",
                    TLS12_SUITES
                        .iter()
                        .filter(|(_, s)| s.is_some())
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Some((_, None)) => unsupported.push(name.as_str()),
            Some((_, Some(id))) => {
                if let Some(suite) = available.iter().find(|s| s.suite() == *id)
                    && !chosen.iter().any(|c| c.suite() == *id)
                {
                    chosen.push(*suite);
                    any_tls12 = true;
                }
            }
        }
    }
    if !unsupported.is_empty() {
        warnings.push(format!(
            "tls_server_config: cipher_suites: {} not implemented by this exporter's TLS library (rustls has no CBC or RSA key-exchange suites) and ignored",
            unsupported.join(", ")
        ));
    }
    if tls12 && !any_tls12 {
        return Err(
            "tls_server_config: cipher_suites names no TLS 1.2 suite this exporter implements while min_version allows TLS 1.2; add e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, or set min_version: TLS13"
                .into(),
        );
    }
    Ok(chosen)
}

/// Says so when the server certificate is outside its validity period, which a client will
/// refuse; the exporter serves it anyway, as exporter-toolkit does.
fn expiry_note(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let validity = parsed.validity();
    if validity.is_valid() {
        None
    } else {
        Some(format!(
            "the certificate is valid from {} to {} only",
            validity.not_before, validity.not_after
        ))
    }
}

fn client_verifier(
    auth: ClientAuth,
    roots: Option<Arc<RootCertStore>>,
    allowed_sans: Vec<String>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let hints: Vec<DistinguishedName> = roots.as_ref().map(|r| r.subjects()).unwrap_or_default();
    let webpki = match (&roots, auth.verifies()) {
        (Some(roots), true) => {
            let builder =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            let builder = if auth.mandatory() {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            Some(
                builder
                    .build()
                    .map_err(|e| format!("tls_server_config: client CA unusable ({e})"))?,
            )
        }
        _ => None,
    };
    Ok(Arc::new(ClientPolicy {
        auth,
        webpki,
        // Without a certificate there is no SAN to allow, so a SAN list makes one mandatory.
        mandatory: auth.mandatory() || !allowed_sans.is_empty(),
        allowed_sans,
        hints,
        algorithms: provider.signature_verification_algorithms,
    }))
}

/// One of Go's client-auth policies: chain verification by webpki when the policy verifies,
/// proof of key possession always, then the SAN allow-list.
#[derive(Debug)]
struct ClientPolicy {
    auth: ClientAuth,
    webpki: Option<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
    allowed_sans: Vec<String>,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientPolicy {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(webpki) = &self.webpki {
            webpki.verify_client_cert(end_entity, intermediates, now)?;
        }
        if !self.allowed_sans.is_empty() {
            let names = subject_alt_names(end_entity);
            if !names.iter().any(|n| self.allowed_sans.contains(n)) {
                tracing::debug!(client_auth = %self.auth, sans = ?names, "Client certificate has no allowed SAN");
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The DNS, e-mail, IP and URI subject alternative names, spelled as Go spells them, since
/// `client_allowed_sans` is matched exactly against those spellings.
fn subject_alt_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some((*s).to_string())
            }
            GeneralName::IPAddress(bytes) => ip_text(bytes),
            _ => None,
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => {
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            // Go prints an IPv4-mapped address as IPv4.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_names_map_onto_rustls_or_are_reported() {
        let available = rustls::crypto::ring::default_provider().cipher_suites;
        let mut warnings = Vec::new();
        let chosen = cipher_suites(
            &[
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into(),
                "TLS_AES_128_GCM_SHA256".into(),
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".into(),
            ],
            &available,
            true,
            &mut warnings,
        )
        .unwrap();
        let tls12: Vec<_> = chosen.iter().filter(|s| s.tls13().is_none()).collect();
        assert_eq!(tls12.len(), 1);
        assert_eq!(
            tls12[0].suite(),
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        );
        assert!(warnings[0].contains("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"));
        let unknown = cipher_suites(&["TLS_FOO".into()], &available, true, &mut warnings);
        assert!(unknown.unwrap_err().contains("TLS_FOO"));
        let only13 = cipher_suites(
            &["TLS_AES_128_GCM_SHA256".into()],
            &available,
            true,
            &mut warnings,
        );
        assert!(only13.unwrap_err().contains("min_version"));
        assert!(
            cipher_suites(
                &["TLS_AES_128_GCM_SHA256".into()],
                &available,
                false,
                &mut warnings
            )
            .is_ok()
        );
    }

    #[test]
    fn old_tls_versions_are_refused_by_name() {
        assert!(
            version("min_version", "TLS10")
                .unwrap_err()
                .contains("RFC 8996")
        );
        assert!(
            version("min_version", "TLS11")
                .unwrap_err()
                .contains("TLS12")
        );
        assert_eq!(version("max_version", "TLS13"), Ok(13));
        assert!(version("max_version", "tls13").is_err());
    }

    #[test]
    fn client_auth_names_are_go_names() {
        assert_eq!(
            ClientAuth::parse("RequireClientCert"),
            Ok(ClientAuth::RequireAnyClientCert)
        );
        assert!(ClientAuth::parse("requireandverifyclientcert").is_err());
    }

    #[test]
    fn ip_sans_print_like_go() {
        assert_eq!(ip_text(&[127, 0, 0, 1]).as_deref(), Some("127.0.0.1"));
        let mapped = std::net::Ipv4Addr::new(10, 0, 0, 1)
            .to_ipv6_mapped()
            .octets();
        assert_eq!(ip_text(&mapped).as_deref(), Some("10.0.0.1"));
        let v6 = "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        assert_eq!(ip_text(&v6).as_deref(), Some("2001:db8::1"));
    }
}
