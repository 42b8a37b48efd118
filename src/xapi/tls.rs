//! TLS trust for connections to XAPI hosts, in the order of preference: a CA bundle
//! (`XEN_SSL_CA_FILE`, with the system roots), the master's pinned SHA-256 fingerprint
//! (`XEN_SSL_FINGERPRINT`) plus member certificates learned from the API, the system roots,
//! or (loudly) nothing. Also the client certificate, and [`Trust`]: what the verifiers share
//! with the client (learned pins, the certificates hosts presented). Fingerprints and PEM
//! come parsed by [`crate::config::trust`], the parsers start-up validation uses. No I/O
//! beyond reading the system root store.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::trust::{Fingerprint, parse_certificates, parse_client_identity};
use crate::config::{ClientIdentity, TlsConfig, TrustMode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};

/// The first certificate of a PEM text, as `host.get_server_certificate` returns one.
fn first_certificate(pem: &str) -> Result<CertificateDer<'static>, String> {
    parse_certificates(pem.as_bytes())?
        .into_iter()
        .next()
        .ok_or_else(|| "no certificate".to_string())
}

/// When the first certificate of a PEM text expires (`notAfter`), in Unix seconds.
pub fn certificate_expiry(pem: &str) -> Result<i64, String> {
    let der = first_certificate(pem)?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    Ok(parsed.validity().not_after.timestamp())
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
                for cert in parse_certificates(pem)? {
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
            let (certs, key) = parse_client_identity(cert_pem, key_pem.expose())?;
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
    fn addresses_key_the_same_whatever_their_spelling() {
        assert_eq!(host_key("[2001:DB8::1]"), host_key("2001:db8:0::1"));
        assert_eq!(host_key("XCP1.Example.com"), "xcp1.example.com");
        let name = ServerName::try_from("192.0.2.7").unwrap();
        assert_eq!(server_key(&name), host_key("192.0.2.7"));
    }

    #[test]
    fn certificate_expiry_is_not_after() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["xcp1".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let pem = params.self_signed(&key).unwrap().pem();
        assert_eq!(certificate_expiry(&pem), Ok(1_893_456_000));
        assert!(certificate_expiry("not a certificate").is_err());
        let garbled = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(certificate_expiry(garbled).is_err());
    }
}
