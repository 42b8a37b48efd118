//! TLS like XAPI's stunnel: TLS 1.2 only, ECDHE-RSA-AES-GCM suites, secp384r1 only, server
//! cipher preference; an RSA-2048 test CA and one leaf certificate per host (CN and SAN =
//! the host's IP), all made at start from one embedded simulator-only key.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, date_time_ymd,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring as ring_provider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

/// Simulator-only RSA-2048 PKCS#8 key (see the header of the file).
const KEY_PEM: &str = include_str!("sim-key.pem");

/// Certificates and acceptors for every host of one simulator.
pub(super) struct TlsMaterial {
    pub(super) ca_pem: String,
    pub(super) ca_der: Vec<u8>,
    pub(super) host_ders: Vec<Vec<u8>>,
    /// SHA-256 of each host certificate as `AB:CD:…` (XAPI's `pp_hash` form).
    pub(super) fingerprints: Vec<String>,
    pub(super) acceptors: Vec<TlsAcceptor>,
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

fn key_pair() -> Result<KeyPair, String> {
    // rcgen's PEM reader wants the armour first; skip the explanatory header.
    let pem = KEY_PEM
        .find("-----BEGIN")
        .map(|i| &KEY_PEM[i..])
        .ok_or("embedded key has no PEM block")?;
    KeyPair::from_pkcs8_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| format!("embedded RSA key: {e}"))
}

pub(super) fn build(addresses: &[Ipv4Addr]) -> Result<TlsMaterial, String> {
    let key = key_pair()?;
    let key_der = key.serialize_der();

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

    let provider = Arc::new(xapi_provider());
    let mut host_ders = Vec::with_capacity(addresses.len());
    let mut fingerprints = Vec::with_capacity(addresses.len());
    let mut acceptors = Vec::with_capacity(addresses.len());
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
        let cert = leaf
            .signed_by(&key, &issuer)
            .map_err(|e| format!("host {i} certificate: {e}"))?;
        let der = cert.der().to_vec();

        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .map_err(|e| format!("TLS policy: {e}"))?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.clone())),
            )
            .map_err(|e| format!("TLS certificate for host {i}: {e}"))?;
        config.ignore_client_order = true;
        acceptors.push(TlsAcceptor::from(Arc::new(config)));
        fingerprints.push(fingerprint(&der));
        host_ders.push(der);
    }
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        host_ders,
        fingerprints,
        acceptors,
    })
}

fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}
