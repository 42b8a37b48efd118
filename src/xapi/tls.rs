//! TLS trust for connections to XAPI hosts, in the order of preference: a CA bundle
//! (`XEN_SSL_CA_FILE`, with the system roots), the master's pinned SHA-256 fingerprint
//! (`XEN_SSL_FINGERPRINT`) plus member certificates learned from the API, the system roots,
//! or (loudly) nothing. Also the client certificate, and [`Trust`]: what the verifiers share
//! with the client (learned pins, the certificates hosts presented). No I/O beyond reading
//! the system root store.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ClientIdentity, TlsConfig, TrustMode};

/// A SHA-256 certificate fingerprint. Prints in XAPI's and OpenSSL's `AB:CD:…` form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Parses 64 hex digits, colons (or spaces) optional, any case; also takes OpenSSL's
    /// whole `sha256 Fingerprint=AB:…` line.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let text = text.trim();
        let text = match text.split_once('=') {
            Some((label, value)) if label.to_ascii_lowercase().contains("fingerprint") => value,
            _ => text,
        };
        let digits: Vec<u8> = text.bytes().filter(|b| !matches!(b, b':' | b' ')).collect();
        if digits.len() != 64 {
            return Err(format!(
                "has {} hex digits; a SHA-256 fingerprint has 64",
                digits.len()
            ));
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| "is not hexadecimal".to_string())?;
            out[i] = u8::from_str_radix(hex, 16).map_err(|_| "is not hexadecimal".to_string())?;
        }
        Ok(Fingerprint(out))
    }

    /// Constant-time equality, so that a probing peer learns nothing from timing.
    fn matches(&self, other: &Fingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses every certificate of a PEM bundle. A private key in the same file (XAPI's
/// `xapi-ssl.pem` holds key and certificate together) is skipped, not an error.
pub fn parse_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        certs.push(cert.map_err(|e| format!("not a valid PEM certificate bundle ({e})"))?);
    }
    if certs.is_empty() {
        return Err("no CERTIFICATE block found; give PEM certificates".into());
    }
    Ok(certs)
}

/// The first certificate of a PEM text, as `host.get_server_certificate` returns one.
fn first_certificate(pem: &str) -> Result<CertificateDer<'static>, String> {
    parse_roots(pem.as_bytes())?
        .into_iter()
        .next()
        .ok_or_else(|| "no certificate".to_string())
}

/// Checks that a client certificate chain and key load and belong together.
pub fn check_client_identity(cert_pem: &[u8], key_pem: &str) -> Result<(), String> {
    let (certs, key) = client_identity(cert_pem, key_pem)?;
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the key is not usable ({e})"))?;
    let certified = rustls::sign::CertifiedKey::new(certs, signing);
    match certified.keys_match() {
        Ok(()) => Ok(()),
        // Some key types cannot report their public key; the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(_) => Err("the key does not belong to the certificate".into()),
    }
}

fn client_identity(
    cert_pem: &[u8],
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs = parse_roots(cert_pem).map_err(|e| format!("certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("no usable PEM private key ({e})"))?;
    Ok((certs, key))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How a host name or address is keyed: IP addresses in canonical form, names in lower case,
/// so that `host.address` and the TLS server name agree.
fn host_key(host: &str) -> String {
    let host = host.trim();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => bare.to_ascii_lowercase(),
    }
}

fn server_key(name: &ServerName<'_>) -> String {
    match name {
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        other => host_key(&other.to_str()),
    }
}

/// What the certificate verifiers of one pool share with its client.
#[derive(Debug)]
pub struct Trust {
    mode: TrustMode,
    /// XEN_SSL_FINGERPRINT: the master's certificate, accepted at any address (only the
    /// holder of the master's key can present it).
    master: Option<Fingerprint>,
    /// Member certificates by address, as XAPI reported them.
    members: RwLock<HashMap<String, Fingerprint>>,
    /// The last certificate each address presented, whatever the verdict.
    presented: Mutex<HashMap<String, Fingerprint>>,
    /// Set when a member presented a certificate that is not (or no longer) the learned
    /// one: the inventory task asks XAPI again.
    refresh: AtomicBool,
}

impl Trust {
    fn new(mode: TrustMode, master: Option<Fingerprint>) -> Trust {
        Trust {
            mode,
            master,
            members: RwLock::new(HashMap::new()),
            presented: Mutex::new(HashMap::new()),
            refresh: AtomicBool::new(false),
        }
    }

    /// How certificates are checked.
    pub fn mode(&self) -> TrustMode {
        self.mode
    }

    /// Whether member certificates must be learned from the API ([`Trust::pin`]).
    pub fn pins_members(&self) -> bool {
        self.mode == TrustMode::Fingerprint
    }

    /// Pins the certificate `pem` (from `host.get_server_certificate`) for connections to
    /// `address`; returns its fingerprint.
    pub fn pin(&self, address: &str, pem: &str) -> Result<Fingerprint, String> {
        let fingerprint = Fingerprint::of(first_certificate(pem)?.as_ref());
        self.members
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host_key(address), fingerprint);
        Ok(fingerprint)
    }

    /// The learned pin of `address`.
    pub fn pinned(&self, address: &str) -> Option<Fingerprint> {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&host_key(address))
            .copied()
    }

    /// The certificate `address` presented last (in every mode).
    pub fn presented(&self, address: &str) -> Option<Fingerprint> {
        self.presented
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&host_key(address))
            .copied()
    }

    /// Whether a member presented an unknown certificate since the last call.
    pub fn take_refresh_request(&self) -> bool {
        self.refresh.swap(false, Ordering::Relaxed)
    }

    fn observe(&self, host: &str, fingerprint: Fingerprint) {
        self.presented
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), fingerprint);
    }
}

/// Builds the client configuration for one pool and the state its verifier shares.
pub fn client_config(tls: &TlsConfig) -> Result<(ClientConfig, Arc<Trust>), String> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let mode = tls.mode();
    let trust = Arc::new(Trust::new(mode, tls.fingerprint));
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        TrustMode::Off => Arc::new(AcceptAny {
            trust: trust.clone(),
            algorithms,
        }),
        TrustMode::Fingerprint => Arc::new(Pinned {
            trust: trust.clone(),
            algorithms,
        }),
        TrustMode::CaFile | TrustMode::System => {
            let mut roots = RootCertStore::empty();
            // A machine without a system bundle can still work with XEN_SSL_CA_FILE alone.
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if let Some(pem) = &tls.extra_roots_pem {
                for cert in parse_roots(pem)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("CA certificate rejected: {e}"))?;
                }
            }
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("TLS setup failed: {e}"))?;
            Arc::new(Chained {
                trust: trust.clone(),
                inner,
            })
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.client_identity {
        None => builder.with_no_client_auth(),
        Some(ClientIdentity {
            cert_pem, key_pem, ..
        }) => {
            let (certs, key) = client_identity(cert_pem, key_pem.expose())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client certificate rejected: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, trust))
}

/// The message of a refused certificate; it becomes the text of the TLS error.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused(
        message,
    )))))
}

/// CA-file and system-roots modes: webpki's chain and name checks, with refusals that name
/// the host and the certificate it presented (the fingerprint to pin, or to compare).
#[derive(Debug)]
struct Chained {
    trust: Arc<Trust>,
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for Chained {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let host = server_key(server_name);
        let presented = Fingerprint::of(end_entity.as_ref());
        self.trust.observe(&host, presented);
        let source = match self.trust.mode {
            TrustMode::CaFile => "XEN_SSL_CA_FILE or the system roots",
            _ => "the system roots",
        };
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|error| {
                refused(format!(
                    "certificate of {host} (SHA-256 {presented}) is not trusted by {source}: {error}"
                ))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Fingerprint mode: the end-entity certificate must be the master's pinned one or the one
/// XAPI reported for that address. Names and dates are not checked: the pin names one
/// certificate exactly, which is stronger, and XAPI's self-signed ones carry whatever name the
/// host had at first boot. Handshake signatures are verified as usual, so the peer holds the
/// pinned certificate's key.
#[derive(Debug)]
struct Pinned {
    trust: Arc<Trust>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let host = server_key(server_name);
        let presented = Fingerprint::of(end_entity.as_ref());
        self.trust.observe(&host, presented);
        if self.trust.master.is_some_and(|m| m.matches(&presented)) {
            return Ok(ServerCertVerified::assertion());
        }
        let learned = self.trust.pinned(&host);
        if learned.is_some_and(|l| l.matches(&presented)) {
            return Ok(ServerCertVerified::assertion());
        }
        // A member whose certificate changed or is not known yet: ask XAPI again soon.
        self.trust.refresh.store(true, Ordering::Relaxed);
        let master = self
            .trust
            .master
            .map_or_else(|| "none".to_string(), |m| m.to_string());
        Err(refused(match learned {
            Some(expected) => format!(
                "certificate of {host} does not match its pin: presented SHA-256 {presented}, expected {expected} (as XAPI reports it, host.get_server_certificate)"
            ),
            None => format!(
                "certificate of {host} does not match the pinned master certificate: presented SHA-256 {presented}, expected {master} (XEN_SSL_FINGERPRINT); no member certificate learned from XAPI for this address"
            ),
        }))
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

/// XEN_SSL_VERIFY=false: any certificate is accepted, but handshake signatures are still
/// checked so the connection is at least consistent with the certificate presented.
#[derive(Debug)]
struct AcceptAny {
    trust: Arc<Trust>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.trust.observe(
            &server_key(server_name),
            Fingerprint::of(end_entity.as_ref()),
        );
        Ok(ServerCertVerified::assertion())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_roots_rejects_files_without_certificates() {
        assert!(parse_roots(b"hello").is_err());
        assert!(parse_roots(b"").is_err());
    }

    #[test]
    fn fingerprints_parse_with_or_without_colons_in_any_case() {
        let canonical = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let f = Fingerprint::parse(canonical).unwrap();
        assert_eq!(f.to_string(), canonical);
        assert_eq!(
            Fingerprint::parse(&canonical.replace(':', "").to_lowercase()).unwrap(),
            f
        );
        assert_eq!(
            Fingerprint::parse(&format!("sha256 Fingerprint={canonical}\n")).unwrap(),
            f
        );
        assert!(Fingerprint::parse("AB:CD").is_err());
        assert!(Fingerprint::parse(&canonical.replace('A', "G")).is_err());
        assert!(Fingerprint::parse(&format!("{canonical}:00")).is_err());
    }

    #[test]
    fn addresses_key_the_same_whatever_their_spelling() {
        assert_eq!(host_key("[2001:DB8::1]"), host_key("2001:db8:0::1"));
        assert_eq!(host_key("XCP1.Example.com"), "xcp1.example.com");
        let name = ServerName::try_from("192.0.2.7").unwrap();
        assert_eq!(server_key(&name), host_key("192.0.2.7"));
    }
}
