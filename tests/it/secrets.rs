//! The XAPI password (and the other secrets: client key, hash key) never shows: not in logs
//! at trace level, the exposition, the status page, `check`'s report, the process arguments
//! or environment, nor in `Debug` of any configuration struct.

use clap::Parser;
use xapi_sim::{ClientIdentity, Sim, SimConfig};
use xen_exporter::config::{Cli, Config, Env, Secret};

use crate::harness::{Binary, Scratch, run_binary};

const PASSWORD: &str = "Zq7-unmistakable-pa55word-x9K";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_appears_nowhere() {
    let sim = Sim::start(SimConfig {
        password: PASSWORD.into(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let scratch = Scratch::new("secrets");
    let password = scratch.file("password", format!("{PASSWORD}\n").as_bytes());
    let ca = scratch.file("ca.pem", sim.ca_pem().as_bytes());
    let env = [
        ("XEN_HOST", sim.master_url()),
        ("XEN_USER", sim.username().to_string()),
        ("XEN_PASSWORD_FILE", password),
        ("XEN_SSL_CA_FILE", ca),
        ("XEN_MODE", "pool".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let exporter = Binary::start(&env, &["--log.level", "trace"]).await;
    exporter.wait_ready().await;
    let (status, metrics) = exporter.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("xen_host_up{"), "a real scrape happened");
    let (_, page) = exporter.get("/").await;
    // Error paths: a re-login after the sessions vanish, a dead member, unknown routes and
    // targets, readiness.
    sim.invalidate_sessions();
    sim.set_host_fault(1, xapi_sim::HostFault::Refuse);
    let mut errors = String::new();
    for path in [
        "/metrics",
        "/nope",
        "/probe",
        "/probe?target=no-such-pool",
        "/-/ready",
        "/-/healthy",
        "/metrics?x=%ZZ",
    ] {
        let (status, body) = exporter.get(path).await;
        errors.push_str(&format!("{path} {status}\n{body}\n"));
    }
    assert!(errors.contains("/nope 404"), "{errors}");
    assert!(errors.contains("/probe 400"), "{errors}");
    sim.set_host_fault(1, xapi_sim::HostFault::None);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", exporter.pid())).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", exporter.pid())).unwrap();
    let (code, stdout, stderr) = exporter.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Logged in to XAPI"),
        "trace logs were written: {stderr}"
    );
    assert!(sim.counters().logins >= 1);

    let (check_code, check_out, check_err) =
        run_binary(&env, &["--log.level", "trace", "check"]).await;
    assert_eq!(check_code, 0, "{check_out}\n{check_err}");

    for (what, text) in [
        ("stdout", stdout.as_bytes()),
        ("stderr", stderr.as_bytes()),
        ("/metrics", metrics.as_bytes()),
        ("/", page.as_bytes()),
        ("error paths", errors.as_bytes()),
        ("cmdline", &cmdline),
        ("environ", &environ),
        ("check stdout", check_out.as_bytes()),
        ("check stderr", check_err.as_bytes()),
    ] {
        assert!(
            !text
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "the password shows in {what}"
        );
    }
    sim.shutdown().await;
}

#[test]
fn debug_of_every_configuration_struct_masks_the_secrets() {
    let identity = ClientIdentity::generate("debug.example").unwrap();
    let scratch = Scratch::new("debug");
    let password = scratch.file("password", PASSWORD.as_bytes());
    let cert = scratch.file("client.pem", identity.cert_pem.as_bytes());
    let key = scratch.file("client.key", identity.key_pem.as_bytes());
    let hash_key = "hash-key-0123456789-secret";
    let hash_key_file = scratch.file("hash.key", hash_key.as_bytes());
    let cli = Cli::try_parse_from([
        "xen-exporter",
        "--xen.password-file",
        &password,
        "--xen.ssl-client-cert-file",
        &cert,
        "--xen.ssl-client-key-file",
        &key,
        "--labels.hash-uuids",
        "true",
        "--labels.hash-uuids-key-file",
        &hash_key_file,
    ])
    .unwrap();
    let config = Config::from_cli(&cli, &Env::default()).unwrap();
    assert_eq!(config.pool.password.expose(), PASSWORD);
    let from_env = Env {
        xen_password: Some(Secret::new(PASSWORD)),
        credentials_directory: None,
    };
    let key_body: String = identity
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let tls = &config.pool.tls;
    for (what, text) in [
        ("Cli", format!("{cli:?}")),
        ("Env", format!("{from_env:?}")),
        ("Config", format!("{config:?}")),
        ("PoolConfig", format!("{:?}", config.pool)),
        ("TlsConfig", format!("{tls:?}")),
        ("ClientIdentity", format!("{:?}", tls.client_identity)),
        ("summary", config.summary()),
    ] {
        assert!(!text.contains(PASSWORD), "{what} shows the password");
        assert!(!text.contains(hash_key), "{what} shows the hash key");
        assert!(
            !text.contains(&key_body[..40]),
            "{what} shows the client key"
        );
    }
}
