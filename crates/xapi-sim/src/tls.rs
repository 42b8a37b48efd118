//! TLS like XAPI's stunnel: TLS 1.2 only, ECDHE-RSA-AES-GCM suites, secp384r1 only, server cipher
//! preference; an RSA-2048 test CA and one leaf certificate per host (CN and SAN = the host's IP),
//! all signed with one RSA-2048 key that the process generates the first time a simulator starts
//! and keeps in memory only: no private key is stored in the repository or compiled into a binary.
//! RSA because XAPI's certificates are RSA-2048 and its suites ECDHE-RSA only; one key per process
//! because generating one is slow (a search for two large primes) and certificates, not keys, are
//! what tests tell apart. Also what pinning and client-certificate tests need: a self-signed
//! impostor certificate per host (a man in the middle), and on the master stunnel's optional
//! client-certificate check (`pool.enable_client_certificate_auth`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, date_time_ymd,
};
use rsa::pkcs8::EncodePrivateKey;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring as ring_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName as WireName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

/// Certificates and acceptors for every host of one simulator.
pub(super) struct TlsMaterial {
    pub(super) ca_pem: String,
    pub(super) ca_der: Vec<u8>,
    pub(super) host_ders: Vec<Vec<u8>>,
    /// Each host certificate as `host.get_server_certificate` returns it.
    pub(super) host_pems: Vec<String>,
    /// SHA-256 of each host certificate as `AB:CD:…` (XAPI's `pp_hash` form).
    pub(super) fingerprints: Vec<String>,
    pub(super) acceptors: Vec<TlsAcceptor>,
    /// Per host: the same listener presenting a self-signed certificate nobody vouches for.
    pub(super) impostors: Vec<TlsAcceptor>,
    /// Set when the master checks offered client certificates against a CA.
    pub(super) client_check: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("hosts", &self.host_ders.len())
            .field("fingerprints", &self.fingerprints)
            .finish_non_exhaustive()
    }
}

/// The ring provider cut down to stunnel's policy in XAPI (`Tls_policy`): two ECDHE-RSA
/// AES-GCM suites and the P-384 group only.
pub(super) fn xapi_provider() -> CryptoProvider {
    let base = ring_provider::default_provider();
    CryptoProvider {
        cipher_suites: vec![
            ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![ring_provider::kx_group::SECP384R1],
        ..base
    }
}

/// Bits of the simulator's RSA key: what XAPI generates for its host certificates.
const RSA_BITS: usize = 2048;

/// The process's RSA key as PKCS#8 DER, generated with the OS random source on first use
/// (see the header of the file).
fn key_der() -> Result<&'static [u8], String> {
    static KEY: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
            .map_err(|e| format!("generating the RSA key: {e}"))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| format!("encoding the RSA key: {e}"))?;
        Ok(der.as_bytes().to_vec())
    })
    .as_deref()
    .map_err(Clone::clone)
}

fn key_pair() -> Result<KeyPair, String> {
    let der = PrivatePkcs8KeyDer::from(key_der()?);
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| format!("RSA key: {e}"))
}

pub(super) fn build(
    addresses: &[Ipv4Addr],
    client_ca_pem: Option<&str>,
) -> Result<TlsMaterial, String> {
    let key = key_pair()?;
    let key_der = key.serialize_der();
    let provider = Arc::new(xapi_provider());
    let client_check = match client_ca_pem {
        None => None,
        Some(pem) => Some(client_verifier(pem, &provider)?),
    };

    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "XAPI simulator test CA");
    dn.push(DnType::OrganizationName, "xen-exporter simulator");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.serial_number = Some(SerialNumber::from(1u64));
    ca.not_before = date_time_ymd(2025, 1, 1);
    ca.not_after = date_time_ymd(2035, 1, 1);
    let ca_cert = ca
        .self_signed(&key)
        .map_err(|e| format!("CA certificate: {e}"))?;
    let issuer = Issuer::new(ca, &key);

    let mut host_ders = Vec::with_capacity(addresses.len());
    let mut host_pems = Vec::with_capacity(addresses.len());
    let mut fingerprints = Vec::with_capacity(addresses.len());
    let mut acceptors = Vec::with_capacity(addresses.len());
    let mut impostors = Vec::with_capacity(addresses.len());
    for (i, ip) in addresses.iter().enumerate() {
        let mut leaf = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, ip.to_string());
        leaf.distinguished_name = dn;
        leaf.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(*ip))];
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Distinct serials make each host's certificate (and fingerprint) distinct even
        // though every host shares the one simulator key.
        leaf.serial_number = Some(SerialNumber::from(1000 + i as u64));
        leaf.not_before = date_time_ymd(2025, 1, 1);
        leaf.not_after = date_time_ymd(2035, 1, 1);
        leaf.use_authority_key_identifier_extension = true;
        let impostor_params = leaf.clone();
        let cert = leaf
            .signed_by(&key, &issuer)
            .map_err(|e| format!("host {i} certificate: {e}"))?;
        let der = cert.der().to_vec();
        // Only the master runs stunnel with client-certificate checking (XAPI enables it
        // on the master alone).
        let check = if i == 0 { client_check.clone() } else { None };
        acceptors.push(acceptor(&provider, &der, &key_der, check.clone())?);

        // What a man in the middle would present: the host's name, its own signature.
        let mut impostor_params = impostor_params;
        impostor_params.serial_number = Some(SerialNumber::from(5000 + i as u64));
        let impostor = impostor_params
            .self_signed(&key)
            .map_err(|e| format!("host {i} impostor certificate: {e}"))?;
        impostors.push(acceptor(&provider, impostor.der(), &key_der, check)?);

        fingerprints.push(fingerprint(&der));
        host_pems.push(xapi_pem(cert.pem().as_str()));
        host_ders.push(der);
    }
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        host_ders,
        host_pems,
        fingerprints,
        acceptors,
        impostors,
        client_check,
    })
}

fn acceptor(
    provider: &Arc<CryptoProvider>,
    cert_der: &[u8],
    key_der: &[u8],
    client_check: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<TlsAcceptor, String> {
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .map_err(|e| format!("TLS policy: {e}"))?;
    let builder = match client_check {
        Some(inner) => builder.with_client_cert_verifier(Arc::new(OfferedClientCert { inner })),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(
            vec![CertificateDer::from(cert_der.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec())),
        )
        .map_err(|e| format!("TLS certificate: {e}"))?;
    config.ignore_client_order = true;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// XAPI's shape: the CERTIFICATE block of `xapi-ssl.pem`, lines joined by `\n`, no newline
/// after the last one (certificates.ml joins the block's lines).
fn xapi_pem(pem: &str) -> String {
    pem.lines().collect::<Vec<_>>().join("\n")
}

fn client_verifier(
    ca_pem: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("client CA: {e}"))?;
        roots.add(cert).map_err(|e| format!("client CA: {e}"))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("client CA: {e}"))
}

/// Whether `chain` (end entity first) is a client certificate the master's CA vouches for.
pub(super) fn client_cert_verified(
    check: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'static>],
) -> bool {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return false;
    };
    check
        .verify_client_cert(end_entity, intermediates, UnixTime::now())
        .is_ok()
}

/// stunnel with `verifyChain` and `redirect`: a client certificate that fails the check
/// does not end the handshake, the connection just goes the password way. So the handshake
/// accepts any certificate (the proof of key possession is still checked) and the connection
/// is classified afterwards with [`client_cert_verified`].
#[derive(Debug)]
struct OfferedClientCert {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for OfferedClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[WireName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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

/// A client certificate and key for tests of client-certificate login, with the CA that
/// signed it (give that CA to [`super::SimConfig::client_ca_pem`] to make the master accept
/// it). Each call makes a new CA and a new P-256 key.
#[derive(Clone)]
pub struct ClientIdentity {
    /// PEM of the issuing CA.
    pub ca_pem: String,
    /// PEM of the client certificate (CN and DNS name = the name given).
    pub cert_pem: String,
    /// PEM (PKCS#8) of the client's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// A new CA and a client certificate for `name` signed by it.
    pub fn generate(name: &str) -> Result<ClientIdentity, String> {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("client CA key: {e}"))?;
        let mut ca = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{name} client CA"));
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = date_time_ymd(2025, 1, 1);
        ca.not_after = date_time_ymd(2035, 1, 1);
        let ca_cert = ca
            .self_signed(&ca_key)
            .map_err(|e| format!("client CA: {e}"))?;
        let issuer = Issuer::new(ca, &ca_key);

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("client key: {e}"))?;
        let mut leaf = CertificateParams::new(vec![name.to_string()])
            .map_err(|e| format!("client certificate: {e}"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        leaf.distinguished_name = dn;
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf.not_before = date_time_ymd(2025, 1, 1);
        leaf.not_after = date_time_ymd(2035, 1, 1);
        let cert = leaf
            .signed_by(&key, &issuer)
            .map_err(|e| format!("client certificate: {e}"))?;
        Ok(ClientIdentity {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// notBefore and notAfter (epoch seconds) of the CA and every host certificate: 2025-01-01
/// and 2035-01-01, midnight UTC.
pub(super) const VALIDITY: (i64, i64) = (1_735_689_600, 2_051_222_400);

fn fingerprint(der: &[u8]) -> String {
    colon_hex(&Sha256::digest(der))
}

/// SHA-256 and SHA-1 of a DER certificate, as `Certificate.fingerprint_sha256` and
/// `fingerprint_sha1` hold them.
pub(super) fn fingerprints(der: &[u8]) -> (String, String) {
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    (fingerprint(der), colon_hex(sha1.as_ref()))
}

fn colon_hex(digest: &[u8]) -> String {
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;

    use super::*;

    #[test]
    fn validity_is_what_certificates_carry() {
        assert_eq!(date_time_ymd(2025, 1, 1).unix_timestamp(), VALIDITY.0);
        assert_eq!(date_time_ymd(2035, 1, 1).unix_timestamp(), VALIDITY.1);
    }

    #[test]
    fn the_process_makes_one_rsa_2048_key() {
        let first = key_der().expect("the key is generated");
        let again = key_der().expect("the key is kept");
        assert!(std::ptr::eq(first, again), "generated once per process");
        let key = rsa::RsaPrivateKey::from_pkcs8_der(first).expect("PKCS#8 RSA key");
        assert_eq!(key.size() * 8, RSA_BITS);
        key.validate().expect("a consistent RSA key");
    }
}
