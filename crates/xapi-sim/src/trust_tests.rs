//! Loopback tests of the simulator's certificate features: `host.get_server_certificate`,
//! the impostor certificate, and client-certificate login on the master.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::tests::{call, client, login};
use super::*;

fn hex_colons(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[tokio::test]
async fn get_server_certificate_returns_each_hosts_own_pem() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let c = client(&sim);
    let session = login(&c, &sim).await;
    let hosts = call(&c, &sim.master_url(), "host.get_all", json!([session])).await;
    let mut seen = Vec::new();
    for r in hosts["result"].as_array().unwrap() {
        let reply = call(
            &c,
            &sim.master_url(),
            "host.get_server_certificate",
            json!([session, r]),
        )
        .await;
        let pem = reply["result"].as_str().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
        assert!(
            pem.ends_with("-----END CERTIFICATE-----"),
            "no newline after the block"
        );
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        seen.push(hex_colons(&Sha256::digest(der.as_ref())));
    }
    seen.sort();
    let mut expected = vec![sim.host_cert_fingerprint(0), sim.host_cert_fingerprint(1)];
    expected.sort();
    assert_eq!(seen, expected);
    let bad = call(
        &c,
        &sim.master_url(),
        "host.get_server_certificate",
        json!([session, "OpaqueRef:nope"]),
    )
    .await;
    assert_eq!(bad["error"]["message"], "HANDLE_INVALID");
    sim.shutdown().await;
}

/// A client that trusts nothing and accepts anything, recording what it was shown.
fn trusting_client(identity: Option<&ClientIdentity>) -> reqwest::Client {
    #[derive(Debug)]
    struct Any;
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(Any));
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .tls_info(true)
        .build()
        .unwrap()
}

async fn presented(c: &reqwest::Client, url: &str) -> String {
    let r = c.get(format!("{url}/")).send().await.unwrap();
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    hex_colons(&Sha256::digest(info.peer_certificate().unwrap()))
}

#[tokio::test]
async fn an_impersonated_host_presents_another_certificate_until_told_to_stop() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let c = trusting_client(None);
    assert_eq!(
        presented(&c, &sim.host_url(1)).await,
        sim.host_cert_fingerprint(1)
    );
    sim.impersonate_host(1, true);
    let fresh = trusting_client(None);
    let impostor = presented(&fresh, &sim.host_url(1)).await;
    assert_ne!(impostor, sim.host_cert_fingerprint(1));
    assert_eq!(
        presented(&fresh, &sim.master_url()).await,
        sim.host_cert_fingerprint(0)
    );
    sim.impersonate_host(1, false);
    let fresh = trusting_client(None);
    assert_eq!(
        presented(&fresh, &sim.host_url(1)).await,
        sim.host_cert_fingerprint(1)
    );
    sim.shutdown().await;
}

async fn login_with(c: &reqwest::Client, sim: &Sim, password: &str) -> serde_json::Value {
    call(
        c,
        &sim.master_url(),
        "session.login_with_password",
        json!([sim.username(), password, "1.0", "trust-tests"]),
    )
    .await
}

#[tokio::test]
async fn a_vouched_client_certificate_logs_in_without_the_password() {
    let identity = ClientIdentity::generate("prometheus.example").unwrap();
    let stranger = ClientIdentity::generate("stranger.example").unwrap();
    let sim = Sim::start(SimConfig {
        client_ca_pem: Some(identity.ca_pem.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap();

    let with_cert = trusting_client(Some(&identity));
    let reply = login_with(&with_cert, &sim, "not the password").await;
    let session = reply["result"]
        .as_str()
        .expect("client-cert login")
        .to_string();
    let field = |m: &'static str| {
        let c = with_cert.clone();
        let url = sim.master_url();
        let s = session.clone();
        async move { call(&c, &url, m, json!([s, s])).await["result"].clone() }
    };
    assert_eq!(field("session.get_is_local_superuser").await, json!(false));
    assert_eq!(field("session.get_client_certificate").await, json!(true));
    let permissions = field("session.get_rbac_permissions").await;
    assert!(
        permissions
            .as_array()
            .unwrap()
            .contains(&json!("http/get_rrd_updates"))
    );

    // A certificate from another CA, or none, takes the password path (stunnel redirects).
    for c in [trusting_client(Some(&stranger)), trusting_client(None)] {
        let refused = login_with(&c, &sim, "not the password").await;
        assert_eq!(refused["error"]["message"], "SESSION_AUTHENTICATION_FAILED");
        let ok = login_with(&c, &sim, sim.password()).await;
        let s = ok["result"].as_str().unwrap();
        let is_root = call(
            &c,
            &sim.master_url(),
            "session.get_is_local_superuser",
            json!([s, s]),
        )
        .await;
        assert_eq!(is_root["result"], json!(true));
    }
    let counters = sim.counters();
    assert_eq!(counters.client_cert_logins, 1);
    assert_eq!(counters.logins, 3);
    assert_eq!(counters.failed_logins, 2);
    sim.shutdown().await;
}
