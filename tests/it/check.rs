//! `xen-exporter check` against the simulator, run as the real binary: what it reports, that
//! it logs out and never asks for `host.get_management_interface`, and the exit code and
//! list of failures when something does not work.

use xapi_sim::{ClientIdentity, Sim, SimConfig};

use crate::harness::{Scratch, run_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_account_tls_and_every_read_then_logs_out() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let scratch = Scratch::new("check-ok");
    let password = scratch.file("password", sim.password().as_bytes());
    let ca = scratch.file("ca.pem", sim.ca_pem().as_bytes());
    let (code, stdout, stderr) = run_binary(
        &[
            ("XEN_HOST", &sim.master_url()),
            ("XEN_USER", sim.username()),
            ("XEN_PASSWORD_FILE", &password),
            ("XEN_SSL_CA_FILE", &ca),
            ("XEN_MODE", "pool"),
        ],
        &["check"],
    )
    .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for expected in [
        "local superuser",
        "RBAC roles apply to external (Active Directory) users only",
        "mode ca_file",
        &format!("presented SHA-256 {}", sim.host_cert_fingerprint(0)),
        "read pool",
        "read VM_guest_metrics",
        "read PIF",
        "event.from (timeout 0)",
        "GET /rrd_updates",
        "result: OK",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    let counters = sim.counters();
    assert_eq!(counters.logins, 1);
    assert_eq!(counters.logouts, 1, "check logs out");
    assert_eq!(counters.rpc.get("event.from"), Some(&1));
    assert_eq!(counters.rrd_updates[0], 1);
    assert!(!counters.rpc.contains_key("host.get_management_interface"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_with_a_clear_list_when_the_password_is_wrong() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let scratch = Scratch::new("check-bad");
    let ca = scratch.file("ca.pem", sim.ca_pem().as_bytes());
    let (code, stdout, _) = run_binary(
        &[
            ("XEN_HOST", &sim.master_url()),
            ("XEN_USER", sim.username()),
            ("XEN_PASSWORD", "wrong"),
            ("XEN_SSL_CA_FILE", &ca),
        ],
        &["check"],
    )
    .await;
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("result: FAILED (1):"), "{stdout}");
    assert!(
        stdout.contains("  - login: XAPI error SESSION_AUTHENTICATION_FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("check XEN_USER and the password"),
        "{stdout}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_a_client_certificate_and_a_pinned_master() {
    let identity = ClientIdentity::generate("prometheus.example").unwrap();
    let sim = Sim::start(SimConfig {
        hosts: 3,
        client_ca_pem: Some(identity.ca_pem.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let scratch = Scratch::new("check-cert");
    let cert = scratch.file("client.pem", identity.cert_pem.as_bytes());
    let key = scratch.file("client.key", identity.key_pem.as_bytes());
    let (code, stdout, stderr) = run_binary(
        &[
            ("XEN_HOST", &sim.master_url()),
            ("XEN_USER", "prometheus"),
            ("XEN_SSL_FINGERPRINT", &sim.host_cert_fingerprint(0)),
            ("XEN_SSL_CLIENT_CERT_FILE", &cert),
            ("XEN_SSL_CLIENT_KEY_FILE", &key),
            ("XEN_MODE", "pool"),
        ],
        &["check"],
    )
    .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for expected in [
        "\"prometheus\": client-cert role",
        "mode fingerprint",
        "host.get_server_certificate: 3 of 3 learned",
        "result: OK",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("local superuser"), "{stdout}");
    assert_eq!(sim.counters().client_cert_logins, 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_a_refused_certificate() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (code, stdout, _) = run_binary(
        &[
            ("XEN_HOST", &sim.master_url()),
            ("XEN_PASSWORD", sim.password()),
            ("XEN_SSL_FINGERPRINT", &sim.host_cert_fingerprint(1)),
        ],
        &["check"],
    )
    .await;
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("  - login: TLS handshake failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("expected {}", sim.host_cert_fingerprint(1))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "presented SHA-256 {}",
            sim.host_cert_fingerprint(0)
        )),
        "{stdout}"
    );
    sim.shutdown().await;
}
