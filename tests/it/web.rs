//! Protecting /metrics and bounding load: the web configuration file (TLS, client
//! certificates, basic auth, reload), the read-header timeout, the request cap and
//! `--scrape.min-interval`, against the real exporter on loopback. Every web configuration
//! written here is also checked with `promtool check web-config` when promtool is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use xapi_sim::{HostFault, Sim, SimConfig};
use xen_exporter::WebOptions;
use xen_exporter::config::Mode;

use crate::harness::{Binary, PATIENCE, poll_until};

/// A fresh directory for one test's files, removed when the test ends.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("xe-web-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Fails the test when promtool rejects `path`; says so and returns when there is none.
fn promtool_accepts(path: &Path) {
    promtool_accepts_but(path, &[]);
}

/// [`promtool_accepts`], except that an older promtool may not know the `newer` fields
/// (Debian 12's 2.42 predates `client_allowed_sans` and `rate_limit`): that alone is noted.
fn promtool_accepts_but(path: &Path, newer: &[&str]) {
    let output = match Command::new("promtool")
        .arg("check")
        .arg("web-config")
        .arg(path)
        .output()
    {
        Ok(output) => output,
        Err(_) => {
            eprintln!(
                "note: promtool not installed; {} not checked with promtool",
                path.display()
            );
            return;
        }
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let unknown_fields: Vec<&str> = said
        .lines()
        .filter_map(|l| l.split("field ").nth(1)?.split(" not found").next())
        .collect();
    if !output.status.success()
        && !unknown_fields.is_empty()
        && unknown_fields.iter().all(|f| newer.contains(f))
    {
        eprintln!(
            "note: this promtool does not know {unknown_fields:?}, so {} is not checked further",
            path.display()
        );
        return;
    }
    assert!(
        output.status.success(),
        "promtool check web-config {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test CA and what it signs.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) for `sans`, for a server or a client.
    fn leaf(&self, sans: Vec<SanType>, server: bool) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server(&self) -> (String, String) {
        self.leaf(
            vec![
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ],
            true,
        )
    }
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// A TLS client trusting `ca`, presenting `identity` (certificate and key PEM) if given.
fn tls_client(ca: &Ca, identity: Option<&(String, String)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(der_of(&ca.pem))).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(der_of(cert))],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    Arc::new(config)
}

/// What a raw HTTPS GET got: status, body and the server's certificate.
struct Answer {
    status: u16,
    head: String,
    body: String,
    server_cert: Vec<u8>,
}

/// One `GET` over a new TLS connection (`Connection: close`), bounded in time.
async fn tls_get(
    addr: std::net::SocketAddr,
    client: Arc<ClientConfig>,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Result<Answer, String> {
    tokio::time::timeout(PATIENCE, async move {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let authorization = auth
            .map(|(u, p)| {
                format!(
                    "Authorization: Basic {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            })
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Connection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        tls.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no status")?;
        Ok(Answer {
            status,
            head: head.to_string(),
            body: body.to_string(),
            server_cert,
        })
    })
    .await
    .map_err(|_| "timed out".to_string())?
}

/// The exporter, started with `run_with`, next to a simulator.
struct Exporter {
    sim: Sim,
    addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Exporter {
    async fn start(sim: SimConfig, web: WebOptions) -> Exporter {
        Self::start_with(sim, web, |_| {}).await
    }

    /// [`Exporter::start`], letting the test adjust the pool configuration.
    async fn start_with(
        sim: SimConfig,
        web: WebOptions,
        tweak: impl FnOnce(&mut xen_exporter::config::PoolConfig),
    ) -> Exporter {
        let sim = Sim::start(sim).await.unwrap();
        let mut pool = crate::harness::pool_config(&sim, Mode::Pool);
        tweak(&mut pool);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(xen_exporter::run_with(pool, listener, web, async move {
            let _ = rx.await;
        }));
        Exporter {
            sim,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("exporter stops")
                .unwrap()
                .unwrap();
        }
        self.sim.shutdown().await;
    }
}

fn with_file(path: &Path) -> WebOptions {
    WebOptions {
        config_file: Some(path.to_path_buf()),
        ..WebOptions::default()
    }
}

/// Waits until `probe` answers 200.
async fn until_ok<F, Fut>(mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<u16>>,
{
    poll_until("an answer 200", async || match probe().await {
        Some(200) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
}

/// Replaces `path` by a new file (written beside it, then renamed over it), as deployment
/// tools do: a new inode, so that the exporter's change check sees it even when size and
/// modification time happen to equal the old file's.
fn replace(path: &Path, contents: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, contents).unwrap();
    std::fs::rename(&new, path).unwrap();
}

#[tokio::test]
async fn tls_scrape_works_and_promtool_accepts_the_file() {
    let dir = scratch("tls");
    let ca = Ca::new("web test CA");
    let (cert, key) = ca.server();
    std::fs::write(dir.join("server.crt"), &cert).unwrap();
    std::fs::write(dir.join("server.key"), &key).unwrap();
    let file = dir.join("web.yml");
    std::fs::write(
        &file,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    - TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA\n  curve_preferences: [X25519, CurveP256]\nhttp_server_config:\n  http2: false\n  headers:\n    X-Content-Type-Options: nosniff\n",
    )
    .unwrap();
    promtool_accepts(&file);
    let exporter = Exporter::start(SimConfig::default(), with_file(&file)).await;
    let client = tls_client(&ca, None);
    until_ok(|| async {
        tls_get(exporter.addr, client.clone(), "/-/ready", None)
            .await
            .ok()
            .map(|a| a.status)
    })
    .await;
    let answer = tls_get(exporter.addr, client.clone(), "/metrics", None)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.server_cert, der_of(&cert));
    assert!(answer.body.contains("xen_host_up"), "{}", answer.head);
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{}",
        answer.head
    );
    // Plain HTTP on the TLS port gets no answer.
    let plain = crate::harness::http_client()
        .get(exporter.url("/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err());
    exporter.stop().await;
}

#[tokio::test]
async fn require_and_verify_client_cert_accepts_only_certificates_of_the_ca() {
    let dir = scratch("mtls");
    let ca = Ca::new("web test CA");
    let (cert, key) = ca.server();
    std::fs::write(dir.join("server.crt"), &cert).unwrap();
    std::fs::write(dir.join("server.key"), &key).unwrap();
    std::fs::write(dir.join("clients.pem"), &ca.pem).unwrap();
    let file = dir.join("web.yml");
    let verify = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n";
    std::fs::write(&file, verify).unwrap();
    promtool_accepts(&file);
    let exporter = Exporter::start(SimConfig::default(), with_file(&file)).await;
    let scraper = ca.leaf(
        vec![SanType::DnsName(
            "prometheus.example.net".try_into().unwrap(),
        )],
        false,
    );
    let good = tls_client(&ca, Some(&scraper));
    until_ok(|| async {
        tls_get(exporter.addr, good.clone(), "/-/ready", None)
            .await
            .ok()
            .map(|a| a.status)
    })
    .await;
    assert_eq!(
        tls_get(exporter.addr, good.clone(), "/metrics", None)
            .await
            .unwrap()
            .status,
        200
    );
    let anonymous = tls_get(exporter.addr, tls_client(&ca, None), "/metrics", None).await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate was served"
    );
    let stranger = Ca::new("another CA").leaf(
        vec![SanType::DnsName(
            "prometheus.example.net".try_into().unwrap(),
        )],
        false,
    );
    let foreign = tls_get(
        exporter.addr,
        tls_client(&ca, Some(&stranger)),
        "/metrics",
        None,
    )
    .await;
    assert!(foreign.is_err(), "a certificate of another CA was accepted");
    let other_name = ca.leaf(
        vec![SanType::DnsName("intruder.example.net".try_into().unwrap())],
        false,
    );
    let other = tls_client(&ca, Some(&other_name));
    assert_eq!(
        tls_get(exporter.addr, other.clone(), "/-/healthy", None)
            .await
            .unwrap()
            .status,
        200
    );

    // Now only some SANs are allowed (applied by a reload).
    std::fs::write(
        &file,
        format!(
            "{verify}  client_allowed_sans: [prometheus.example.net, spiffe://example.net/prometheus]\n"
        ),
    )
    .unwrap();
    promtool_accepts_but(&file, &["client_allowed_sans"]);
    // The reload happens at a request once a second at most: until then the other name is
    // still let in. Refused at last, the reload has taken effect.
    poll_until(
        "a SAN outside client_allowed_sans is refused",
        async || match tls_get(exporter.addr, other.clone(), "/-/healthy", None).await {
            Err(_) => Ok(()),
            Ok(answer) => Err(format!("still served, {}", answer.status)),
        },
    )
    .await;
    assert_eq!(
        tls_get(exporter.addr, good, "/-/healthy", None)
            .await
            .unwrap()
            .status,
        200
    );
    exporter.stop().await;
}

#[tokio::test]
async fn basic_auth_protects_every_route() {
    let dir = scratch("auth");
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    let file = dir.join("web.yml");
    std::fs::write(
        &file,
        format!(
            "basic_auth_users:\n  prometheus: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        ),
    )
    .unwrap();
    promtool_accepts(&file);
    let exporter = Exporter::start(SimConfig::default(), with_file(&file)).await;
    let http = crate::harness::http_client();
    let get = |path: &str, auth: Option<(&str, &str)>| {
        let mut request = http.get(exporter.url(path)).timeout(PATIENCE);
        if let Some((user, password)) = auth {
            request = request.basic_auth(user, Some(password));
        }
        request.send()
    };
    until_ok(|| async {
        get("/-/ready", Some(("prometheus", "correct horse")))
            .await
            .ok()
            .map(|r| r.status().as_u16())
    })
    .await;
    for path in ["/metrics", "/", "/-/healthy", "/-/ready"] {
        let none = get(path, None).await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        assert_eq!(none.headers()["www-authenticate"], "Basic");
        assert_eq!(none.headers()["x-frame-options"], "deny");
        let wrong = get(path, Some(("prometheus", "battery staple")))
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let nobody = get(path, Some(("root", "correct horse"))).await.unwrap();
        assert_eq!(nobody.status(), 401, "{path}");
    }
    let right = get("/metrics", Some(("prometheus", "correct horse")))
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("xen_host_up"));
    let status = get("/", Some(("prometheus", "correct horse")))
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    assert!(
        status
            .text()
            .await
            .unwrap()
            .contains("Last collection: started")
    );
    exporter.stop().await;
}

/// The real binary, with `--demo` and trace logs: neither the password, nor its Basic
/// encoding, nor the hash shows up in anything it prints.
#[test]
fn passwords_and_hashes_never_reach_the_logs() {
    let dir = scratch("logs");
    let password = "Tr0ub4dor-web-secret";
    let hash = bcrypt::hash(password, 4).unwrap();
    let file = dir.join("web.yml");
    std::fs::write(&file, format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
    promtool_accepts(&file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_xen-exporter"))
        .env_clear()
        .env("PORT", "0")
        .env("BIND", "127.0.0.1")
        .args(["--demo", "--log.level", "trace", "--web.config.file"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let address = loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the exporter logs its address");
        log.push(line.clone());
        if line.contains("Listening")
            && let Some(rest) = line.split("address=").nth(1)
        {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = crate::harness::http_client();
        let url = |path: &str| format!("http://{address}{path}");
        until_ok(|| async {
            http.get(url("/-/ready"))
                .basic_auth("alice", Some(password))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        })
        .await;
        for (user, pw, status) in [
            ("alice", password, 200),
            ("alice", "wrong", 401),
            ("mallory", password, 401),
        ] {
            let response = http
                .get(url("/metrics"))
                .basic_auth(user, Some(pw))
                .timeout(PATIENCE)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{user}");
        }
    });
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
    reader.join().unwrap();
    log.extend(lines_rx.try_iter());
    let mut stdout = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let everything = format!("{}\n{stdout}", log.join("\n"));
    assert!(everything.contains("Shutting down"), "{everything}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    for secret in [password, &basic, &hash, &hash[7..29]] {
        assert!(!everything.contains(secret), "{secret:?} was logged");
    }
}

#[test]
fn an_invalid_file_stops_start_up_with_64_and_no_secret() {
    let dir = scratch("invalid");
    let file = dir.join("web.yml");
    let bad_hash = "$2y$10$this-is-not-a-real-bcrypt-hash-and-too-long-xx";
    let cases = [
        format!("basic_auth_users:\n  alice: '{bad_hash}'\n"),
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n".to_string(),
        "tls_server_config:\n  cert_fiel: x\n".to_string(),
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n".to_string(),
        "http_server_config:\n  headers:\n    Content-Type: text/html\n".to_string(),
    ];
    for (i, text) in cases.iter().enumerate() {
        std::fs::write(&file, text).unwrap();
        for check in [false, true] {
            let mut command = Command::new(env!("CARGO_BIN_EXE_xen-exporter"));
            command.env_clear().arg("--web.config.file").arg(&file);
            if check {
                command.arg("--config.check");
            }
            let output = command.output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(64), "case {i}: {stderr}");
            assert!(stderr.contains("XEN_WEB_CONFIG_FILE"), "{stderr}");
            assert!(stderr.contains(&file.display().to_string()), "{stderr}");
            assert!(!stderr.contains(bad_hash), "{stderr}");
        }
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_xen-exporter"))
        .env_clear()
        .args([
            "--config.check",
            "--web.config.file",
            "/nonexistent/web.yml",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
    // A valid file: --config.check says what it understood.
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(&file, format!("basic_auth_users:\n  a: '{hash}'\n")).unwrap();
    promtool_accepts(&file);
    let ok = Command::new(env!("CARGO_BIN_EXE_xen-exporter"))
        .env_clear()
        .args(["--config.check", "--web.config.file"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("1 user") && !stdout.contains(&hash),
        "{stdout}"
    );
}

/// The real binary (its simulated pool built in), so that its log can be read: a rejected
/// reload changes nothing a client can see, and the error line it logs is how the test knows
/// the rejection has happened.
#[tokio::test]
async fn certificates_rotate_without_restart_and_a_broken_rewrite_keeps_the_old_ones() {
    const REJECTED: &str = "Web configuration not reloaded";
    let dir = scratch("reload");
    let ca = Ca::new("web test CA");
    let (first, first_key) = ca.server();
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&crt, &first).unwrap();
    std::fs::write(&key, &first_key).unwrap();
    let file = dir.join("web.yml");
    let valid = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    std::fs::write(&file, valid).unwrap();
    promtool_accepts(&file);
    let exporter = Binary::start(
        &[],
        &["--demo", "--web.config.file", file.to_str().unwrap()],
    )
    .await;
    let addr: std::net::SocketAddr = exporter.url.trim_start_matches("http://").parse().unwrap();
    let client = tls_client(&ca, None);
    let healthy = || tls_get(addr, client.clone(), "/-/healthy", None);
    // Each wait makes requests, since a reload happens at a request (once a second at most).
    let served_until = async |want: &str, why: &str| {
        poll_until(why, async || {
            let answer = healthy().await?;
            assert_eq!(answer.status, 200);
            match answer.server_cert == der_of(want) {
                true => Ok(()),
                false => Err("the previous certificate".to_string()),
            }
        })
        .await;
    };
    let rejections = || exporter.stderr().matches(REJECTED).count();
    let rejected_until = async |before: usize, kept: &str, why: &str| {
        poll_until(why, async || {
            let answer = healthy().await?;
            assert_eq!(answer.status, 200);
            assert_eq!(answer.server_cert, der_of(kept), "the kept certificate");
            match rejections() > before {
                true => Ok(()),
                false => Err(exporter.stderr()),
            }
        })
        .await;
    };
    assert_eq!(healthy().await.unwrap().server_cert, der_of(&first));

    let (second, second_key) = ca.server();
    replace(&crt, &second);
    replace(&key, &second_key);
    promtool_accepts(&file);
    served_until(&second, "the new certificate is served").await;

    // A key that does not match, then a file that is no YAML: the second certificate stays.
    // (A reload between the two writes above may have been rejected already: count anew.)
    let (_, other_key) = ca.server();
    let before = rejections();
    replace(&key, &other_key);
    rejected_until(before, &second, "the mismatched key is rejected").await;
    let before = rejections();
    replace(&file, "tls_server_config: [not: a: mapping\n");
    rejected_until(before, &second, "the broken file is rejected").await;

    // Fixing both files again brings in the third certificate.
    let (third, third_key) = ca.server();
    replace(&crt, &third);
    replace(&key, &third_key);
    replace(&file, valid);
    served_until(&third, "the third certificate is served").await;
    exporter.stop().await;
}

/// Reads until the server closes; `Ok(bytes)` on a close, `Err` when it stays open too long.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, ()> {
    let mut received = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .map_err(|_| ())?;
    Ok(received)
}

#[tokio::test]
async fn slow_clients_are_disconnected_after_the_read_header_timeout() {
    let timeout = Duration::from_millis(500);
    let exporter = Exporter::start(
        SimConfig::default(),
        WebOptions {
            read_header_timeout: timeout,
            ..WebOptions::default()
        },
    )
    .await;
    // Half a request line, then nothing.
    let started = Instant::now();
    let mut loris = TcpStream::connect(exporter.addr).await.unwrap();
    loris.write_all(b"GET /metr").await.unwrap();
    let answer = read_until_closed(&mut loris, PATIENCE)
        .await
        .expect("the half-sent request is cut off");
    let waited = started.elapsed();
    assert!(waited >= timeout - Duration::from_millis(50), "{waited:?}");
    assert!(
        answer.is_empty() || String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // A keep-alive connection left idle after a request is closed as well.
    let mut idle = TcpStream::connect(exporter.addr).await.unwrap();
    idle.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle, PATIENCE)
        .await
        .expect("the idle connection is closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    exporter.stop().await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_off_too() {
    let dir = scratch("tls-loris");
    let ca = Ca::new("web test CA");
    let (cert, key) = ca.server();
    std::fs::write(dir.join("server.crt"), &cert).unwrap();
    std::fs::write(dir.join("server.key"), &key).unwrap();
    let file = dir.join("web.yml");
    std::fs::write(
        &file,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    promtool_accepts(&file);
    let exporter = Exporter::start(
        SimConfig::default(),
        WebOptions {
            read_header_timeout: Duration::from_millis(500),
            ..with_file(&file)
        },
    )
    .await;
    let mut silent = TcpStream::connect(exporter.addr).await.unwrap();
    silent.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    read_until_closed(&mut silent, PATIENCE)
        .await
        .expect("the stalled handshake is cut off");
    exporter.stop().await;
}

#[tokio::test]
async fn scrapes_beyond_the_cap_get_503() {
    // No XAPI timeout to speak of: the held host is let go by the test, not by the exporter.
    let exporter = Exporter::start_with(
        SimConfig::default(),
        WebOptions {
            max_requests: 2,
            ..WebOptions::default()
        },
        |pool| pool.timeout = Duration::from_secs(600),
    )
    .await;
    let http = crate::harness::http_client();
    until_ok(|| async {
        http.get(exporter.url("/-/ready"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    })
    .await;
    // Host 1 hangs, so the first two scrapes stay in flight until the test lets it go.
    exporter.sim.set_host_fault(1, HostFault::Hang);
    let slow = (0..2).map(|_| http.get(exporter.url("/metrics")).timeout(PATIENCE).send());
    // Their headers come while the hosts are fetched: both hold their slot now.
    let slow = futures::future::join_all(slow).await;
    let refused = http.get(exporter.url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("Limit of concurrent requests reached (2)")
    );
    // Cheap endpoints are not capped.
    let health = http.get(exporter.url("/-/healthy")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    exporter.sim.set_host_fault(1, HostFault::None);
    for response in slow {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().contains("xen_host_up"));
    }
    let after = http.get(exporter.url("/metrics")).send().await.unwrap();
    assert_eq!(after.status(), 200, "slots are given back");
    exporter.stop().await;
}

#[tokio::test]
async fn scrapes_within_the_min_interval_reuse_the_last_collection() {
    let exporter = Exporter::start(
        SimConfig::default(),
        WebOptions {
            scrape_min_interval: Duration::from_secs(60),
            ..WebOptions::default()
        },
    )
    .await;
    let http = crate::harness::http_client();
    until_ok(|| async {
        http.get(exporter.url("/-/ready"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    })
    .await;
    exporter.sim.reset_counters();
    let first = http
        .get(exporter.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let second = http
        .get(exporter.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(first.contains("xen_host_up"));
    assert_eq!(first, second, "the second scrape is the first collection");
    let counters = exporter.sim.counters();
    assert!(
        counters.rrd_updates.iter().all(|&n| n == 1),
        "{:?}",
        counters.rrd_updates
    );
    exporter.stop().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429() {
    let dir = scratch("rate");
    let file = dir.join("web.yml");
    std::fs::write(&file, "rate_limit:\n  interval: 1m\n  burst: 2\n").unwrap();
    promtool_accepts_but(&file, &["rate_limit"]);
    let exporter = Exporter::start(SimConfig::default(), with_file(&file)).await;
    let http = crate::harness::http_client();
    let statuses =
        futures::future::join_all((0..4).map(|_| http.get(exporter.url("/-/healthy")).send()))
            .await;
    let mut codes: Vec<u16> = statuses
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, [200, 200, 429, 429]);
    exporter.stop().await;
}

#[test]
fn bad_limits_exit_64_naming_the_setting() {
    for (var, value) in [
        ("XEN_WEB_MAX_REQUESTS", "lots"),
        ("XEN_WEB_READ_HEADER_TIMEOUT", "0"),
        ("XEN_WEB_REQUEST_TIMEOUT", "5"),
        ("XEN_SCRAPE_MIN_INTERVAL", "-1"),
        ("XEN_WEB_CONFIG_FILE", ""),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_xen-exporter"))
            .env_clear()
            .env(var, value)
            .arg("--config.check")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "{stderr}");
    }
}
