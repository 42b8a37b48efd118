//! Trusting the pool's certificates: a CA file, the master's pinned fingerprint with members
//! learned from XAPI, refusals (wrong pin, impostor member, unknown CA) that name the host
//! and both fingerprints and show as `tls` failures, verification off (warned and visible in
//! `xen_exporter_xapi_tls_verify`), and client-certificate login.

use serde::de::IgnoredAny;
use tokio::time::Instant;
use xapi_sim::{Sim, SimConfig};
use xen_exporter::config::trust::Fingerprint;
use xen_exporter::config::{ClientIdentity, Mode, PoolConfig, Secret, TlsConfig};
use xen_exporter::xapi::{self, Client};

use crate::harness::{Binary, Scrape, Scratch, TestEnv, pool_config};

fn pinned(sim: &Sim, host: usize) -> TlsConfig {
    TlsConfig {
        verify: true,
        fingerprint: Some(Fingerprint::parse(&sim.host_cert_fingerprint(host)).unwrap()),
        ..TlsConfig::default()
    }
}

fn trust_mode(scrape: &Scrape) -> String {
    let on: Vec<String> = scrape
        .all("xen_exporter_xapi_tls_verify")
        .iter()
        .filter(|s| s.value == 1.0)
        .map(|s| s.labels["mode"].clone())
        .collect();
    assert_eq!(on.len(), 1, "exactly one trust mode is on: {on:?}");
    assert_eq!(scrape.all("xen_exporter_xapi_tls_verify").len(), 4);
    on[0].clone()
}

fn up(scrape: &Scrape, host: &str) -> f64 {
    scrape
        .value("xen_host_up", &[("host", host)])
        .unwrap_or_else(|| panic!("no xen_host_up for {host}"))
}

fn names(sim: &Sim) -> Vec<String> {
    sim.view().hosts.iter().map(|h| h.name.clone()).collect()
}

#[tokio::test]
async fn a_ca_file_verifies_every_host() {
    let env = TestEnv::start(SimConfig::default()).await;
    let scrape = env.scrape().await;
    for name in names(&env.sim) {
        assert_eq!(up(&scrape, &name), 1.0, "{name}");
    }
    assert_eq!(trust_mode(&scrape), "ca_file");
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn a_pinned_master_fingerprint_verifies_the_master_then_the_members() {
    let sim = Sim::start(SimConfig {
        hosts: 3,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut config = pool_config(&sim, Mode::Pool);
    // No CA at all: only the pin and what XAPI says of the members.
    config.tls = pinned(&sim, 0);
    let env = TestEnv::start_exporter(sim, config).await;
    for _ in 0..3 {
        let scrape = env.scrape().await;
        for name in names(&env.sim) {
            assert_eq!(up(&scrape, &name), 1.0, "{name}");
        }
        assert_eq!(trust_mode(&scrape), "fingerprint");
    }
    // Learned once per full read of the inventory, never per scrape.
    let counters = env.sim.counters();
    assert_eq!(counters.rpc.get("host.get_server_certificate"), Some(&3));
    env.stop().await.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_fingerprint_fails_with_both_fingerprints_and_sends_no_password() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    // A real certificate's fingerprint, but not the master's.
    let wrong = sim.host_cert_fingerprint(1);
    let scratch = Scratch::new("wrong-pin");
    let password = scratch.file("password", sim.password().as_bytes());
    let exporter = Binary::start(
        &[
            ("XEN_HOST", &sim.master_url()),
            ("XEN_USER", sim.username()),
            ("XEN_PASSWORD_FILE", &password),
            (
                "XEN_SSL_FINGERPRINT",
                &wrong.replace(':', "").to_lowercase(),
            ),
            ("XEN_MODE", "host"),
            ("XEN_TIMEOUT", "2"),
        ],
        &[],
    )
    .await;
    let (status, body) = exporter.get("/metrics").await;
    assert_eq!(status, 200);
    let scrape = Scrape::parse(&body);
    let address = sim.host_address(0);
    assert_eq!(up(&scrape, &address), 0.0);
    assert_eq!(
        scrape.value(
            "xen_host_scrape_errors_total",
            &[("host", &address), ("reason", "tls")]
        ),
        Some(1.0)
    );
    assert!(
        scrape
            .value(
                "xen_collector_errors_total",
                &[("source", "inventory"), ("reason", "tls")]
            )
            .is_some_and(|n| n >= 1.0),
        "{body}"
    );
    assert_eq!(trust_mode(&scrape), "fingerprint");
    let (_, _, stderr) = exporter.stop().await;
    let refusal = stderr
        .lines()
        .find(|l| l.contains("Host collection failed"))
        .unwrap_or_else(|| panic!("no refusal logged: {stderr}"));
    assert!(refusal.contains(&address), "{refusal}");
    assert!(
        refusal.contains(&format!(
            "presented SHA-256 {}",
            sim.host_cert_fingerprint(0)
        )),
        "{refusal}"
    );
    assert!(refusal.contains(&format!("expected {wrong}")), "{refusal}");
    // The handshake failed before any request: the password never left.
    assert!(
        !sim.counters()
            .rpc
            .contains_key("session.login_with_password")
    );
    sim.shutdown().await;
}

/// A client of `config` that has logged in and pinned every member as XAPI reports it.
async fn logged_in_client(sim: &Sim, config: &PoolConfig) -> Client {
    let client = Client::new(config).unwrap();
    client.all_records::<IgnoredAny>("pool").await.unwrap();
    for h in 0..sim.view().hosts.len() {
        client
            .trust()
            .pin(&sim.host_address(h), &sim.host_cert_pem(h))
            .unwrap();
    }
    client
}

#[tokio::test]
async fn a_member_presenting_another_certificate_is_refused_alone() {
    let sim = Sim::start(SimConfig {
        hosts: 3,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut config = pool_config(&sim, Mode::Pool);
    config.tls = pinned(&sim, 0);
    let env = TestEnv::start_exporter(sim, config.clone()).await;
    let hosts = names(&env.sim);
    let scrape = env.scrape().await;
    assert!(hosts.iter().all(|h| up(&scrape, h) == 1.0));

    // A man in the middle on the way to member 1.
    env.sim.impersonate_host(1, true);
    let scrape = env.scrape().await;
    assert_eq!(up(&scrape, &hosts[0]), 1.0);
    assert_eq!(up(&scrape, &hosts[1]), 0.0);
    assert_eq!(up(&scrape, &hosts[2]), 1.0);
    assert_eq!(
        scrape.value(
            "xen_host_scrape_errors_total",
            &[("host", &hosts[1]), ("reason", "tls")]
        ),
        Some(1.0)
    );

    let client = logged_in_client(&env.sim, &config).await;
    let member = client.member(&env.sim.host_address(1));
    let error = client
        .rrd_updates(&member, Instant::now() + crate::harness::PATIENCE)
        .await
        .unwrap_err();
    assert_eq!(error.reason().as_str(), "tls");
    let text = error.to_string();
    assert!(text.contains(&env.sim.host_address(1)), "{text}");
    assert!(
        text.contains(&format!("expected {}", env.sim.host_cert_fingerprint(1))),
        "{text}"
    );
    let presented = client.trust().presented(&env.sim.host_address(1)).unwrap();
    assert!(
        text.contains(&format!("presented SHA-256 {presented}")),
        "{text}"
    );
    assert_ne!(presented.to_string(), env.sim.host_cert_fingerprint(1));
    client.logout().await;

    env.sim.impersonate_host(1, false);
    let scrape = env.scrape().await;
    assert_eq!(up(&scrape, &hosts[1]), 1.0);
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn an_unknown_ca_fails_like_a_wrong_pin() {
    let stranger = xapi_sim::ClientIdentity::generate("some-other-ca").unwrap();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let mut config = pool_config(&sim, Mode::Host);
    config.tls.extra_roots_pem = Some(stranger.ca_pem.into_bytes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(xen_exporter::run(config.clone(), listener, async move {
        let _ = rx.await;
    }));
    let http = crate::harness::http_client();
    let body = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = Scrape::parse(&body);
    let address = sim.host_address(0);
    assert_eq!(up(&scrape, &address), 0.0);
    assert_eq!(
        scrape.value(
            "xen_host_scrape_errors_total",
            &[("host", &address), ("reason", "tls")]
        ),
        Some(1.0)
    );
    assert!(
        scrape
            .value(
                "xen_collector_errors_total",
                &[("source", "inventory"), ("reason", "tls")]
            )
            .is_some()
    );
    assert_eq!(trust_mode(&scrape), "ca_file");

    let client = Client::new(&config).unwrap();
    let error = client.all_records::<IgnoredAny>("pool").await.unwrap_err();
    assert!(matches!(error, xapi::Error::Tls(_)), "{error}");
    let text = error.to_string();
    assert!(text.contains(&address), "{text}");
    assert!(text.contains("is not trusted"), "{text}");
    assert!(text.contains(&sim.host_cert_fingerprint(0)), "{text}");
    assert!(
        !sim.counters()
            .rpc
            .contains_key("session.login_with_password")
    );
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_off_works_warns_and_says_off() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let scratch = Scratch::new("verify-off");
    let password = scratch.file("password", sim.password().as_bytes());
    let exporter = Binary::start(
        &[
            ("XEN_HOST", &sim.master_url()),
            ("XEN_USER", sim.username()),
            ("XEN_PASSWORD_FILE", &password),
            ("XEN_SSL_VERIFY", "false"),
            ("XEN_MODE", "pool"),
        ],
        &[],
    )
    .await;
    exporter.wait_ready().await;
    let (_, body) = exporter.get("/metrics").await;
    let scrape = Scrape::parse(&body);
    for name in names(&sim) {
        assert_eq!(up(&scrape, &name), 1.0, "{name}: {body}");
    }
    assert_eq!(trust_mode(&scrape), "off");
    let (_, _, stderr) = exporter.stop().await;
    let warning = stderr
        .lines()
        .find(|l| l.contains("XEN_SSL_VERIFY=false"))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(
        warning.contains("WARN") && warning.contains("NOT verified"),
        "{warning}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_client_certificate_logs_in_without_the_right_password() {
    let identity = xapi_sim::ClientIdentity::generate("prometheus.example").unwrap();
    let sim = Sim::start(SimConfig {
        client_ca_pem: Some(identity.ca_pem.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut config = pool_config(&sim, Mode::Pool);
    config.password = Secret::new("certainly not the password");
    config.tls.client_identity = Some(ClientIdentity {
        cert_pem: identity.cert_pem.clone().into_bytes(),
        key_pem: Secret::new(identity.key_pem.clone()),
        cert_file: "client.pem".into(),
    });
    let env = TestEnv::start_exporter(sim, config.clone()).await;
    let scrape = env.scrape().await;
    for name in names(&env.sim) {
        assert_eq!(up(&scrape, &name), 1.0, "{name}");
    }
    let counters = env.sim.counters();
    assert!(counters.client_cert_logins >= 1, "{counters:?}");
    assert_eq!(counters.logins, counters.client_cert_logins);
    assert_eq!(counters.failed_logins, 0);

    // The same wrong password without the certificate is refused.
    config.tls.client_identity = None;
    let client = Client::new(&config).unwrap();
    let error = client.all_records::<IgnoredAny>("pool").await.unwrap_err();
    assert_eq!(error.reason().as_str(), "auth", "{error}");
    env.stop().await.shutdown().await;
}
