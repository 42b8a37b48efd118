//! The trust material a pool's TLS settings name, parsed: SHA-256 certificate fingerprints
//! (`XEN_SSL_FINGERPRINT`, `tls.fingerprint`), PEM certificate bundles (`XEN_SSL_CA_FILE`,
//! `tls.ca_file`, XAPI's `host.get_server_certificate`) and client identities (certificate
//! chain and private key). One parser per syntax: validation here and the XAPI client's TLS
//! setup both use them, so a file accepted at start-up is one the client can load.

use std::fmt;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
    pub fn matches(&self, other: &Fingerprint) -> bool {
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
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        certs.push(cert.map_err(|e| format!("not a valid PEM certificate bundle ({e})"))?);
    }
    if certs.is_empty() {
        return Err("no CERTIFICATE block found; give PEM certificates".into());
    }
    Ok(certs)
}

/// A client certificate chain and its private key, parsed from PEM.
pub fn parse_client_identity(
    cert_pem: &[u8],
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs = parse_certificates(cert_pem).map_err(|e| format!("certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("no usable PEM private key ({e})"))?;
    Ok((certs, key))
}

/// Checks that a client certificate chain and key load and belong together, with the crypto
/// provider the XAPI client uses.
pub fn check_client_identity(cert_pem: &[u8], key_pem: &str) -> Result<(), String> {
    let (certs, key) = parse_client_identity(cert_pem, key_pem)?;
    let signing = rustls::crypto::ring::default_provider()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_bundles_without_certificates_are_refused() {
        assert!(parse_certificates(b"hello").is_err());
        assert!(parse_certificates(b"").is_err());
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
        assert!(f.matches(&f) && !f.matches(&Fingerprint([0; 32])));
    }
}
