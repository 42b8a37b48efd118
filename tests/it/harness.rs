//! The test environment: a simulated pool and the real exporter on loopback port 0, an
//! exposition parser written independently of the exporter's encoder, and the one way tests
//! wait: for a condition, never for a time.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use xapi_sim::{Sim, SimConfig};
use xen_exporter::config::{Mode, PoolConfig};
use xen_exporter::{Pools, WebOptions};

/// How long an awaited condition may take before the test fails. Each is met within
/// milliseconds on an idle machine; the bound only turns a broken build's hang into a
/// message, and is far enough away that a busy machine never reaches it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `check` every few milliseconds until it gives `Ok`, and returns that; fails after
/// [`PATIENCE`] with `what` was awaited and the last `Err`, which should say what was seen.
pub(crate) async fn poll_until<T, E: Display>(
    what: &str,
    check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    poll_within(PATIENCE, what, check).await
}

/// [`poll_until`] with another bound, for the few conditions that must come true before
/// something else would make them true anyway (a long poll's own timeout, say): `patience`
/// is then that time, still far above what the condition needs.
pub(crate) async fn poll_within<T, E: Display>(
    patience: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still not so after {patience:?}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running simulator and exporter.
pub(crate) struct TestEnv {
    pub(crate) sim: Sim,
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// The pool configuration that points at `sim`, trusting its CA. Its XAPI timeout is long
/// enough that a simulator slowed by a busy machine is not taken for a failing host; tests
/// of timeouts set their own.
pub(crate) fn pool_config(sim: &Sim, mode: Mode) -> PoolConfig {
    xen_exporter::demo::simulator_pool(sim, mode, Duration::from_secs(30))
}

impl TestEnv {
    /// Scrapes until `shows` accepts a scrape, and returns that scrape: a change made in the
    /// simulator reaches the exporter by `event.from`, which takes a few milliseconds, so the
    /// first scrape after the change may come before it. `shows` says what it saw otherwise.
    pub(crate) async fn scrape_until(
        &self,
        change: &str,
        shows: impl Fn(&Scrape) -> Result<(), String>,
    ) -> Scrape {
        poll_until(change, async || {
            let scrape = self.scrape().await;
            shows(&scrape).map(|()| scrape)
        })
        .await
    }

    /// Starts a pool-mode exporter against a new simulator.
    pub(crate) async fn start(sim: SimConfig) -> TestEnv {
        Self::start_with(sim, |_| {}).await
    }

    /// Starts an exporter against a new simulator, letting the test adjust the pool config.
    pub(crate) async fn start_with(sim: SimConfig, tweak: impl FnOnce(&mut PoolConfig)) -> TestEnv {
        let sim = Sim::start(sim).await.expect("simulator starts");
        let mut config = pool_config(&sim, Mode::Pool);
        tweak(&mut config);
        Self::start_exporter(sim, config).await
    }

    /// Starts the exporter for `config` next to an already running simulator.
    pub(crate) async fn start_exporter(sim: Sim, config: PoolConfig) -> TestEnv {
        Self::start_pools(sim, Pools::single(config), WebOptions::default()).await
    }

    /// Starts the exporter for `pools` (one pool, on `/metrics`) next to `sim`, for tests
    /// that set what only [`Pools`] or [`WebOptions`] hold, such as the scrape-timeout offset
    /// or the cap on requests.
    pub(crate) async fn start_pools(sim: Sim, pools: Pools, web: WebOptions) -> TestEnv {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(xen_exporter::run_pools(pools, listener, web, async move {
            let _ = rx.await;
        }));
        let env = TestEnv {
            sim,
            url,
            http: http_client(),
            shutdown: Some(tx),
            task: Some(task),
        };
        env.wait_ready().await;
        env
    }

    /// Waits until `/-/ready` says the first login succeeded.
    pub(crate) async fn wait_ready(&self) {
        poll_until("the exporter is ready", async || {
            match self.get("/-/ready").await.status().as_u16() {
                200 => Ok(()),
                other => Err(other),
            }
        })
        .await;
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(path, &[]).await
    }

    /// [`TestEnv::get`] with request headers, e.g. `accept` or `accept-encoding`.
    pub(crate) async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .http
            .get(format!("{}{path}", self.url))
            .timeout(PATIENCE);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// Scrapes `/metrics` in the text format and parses it.
    pub(crate) async fn scrape(&self) -> Scrape {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        Scrape::parse(&response.text().await.unwrap())
    }

    /// Stops the exporter (logging out) and the simulator.
    pub(crate) async fn stop(mut self) -> Sim {
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
        self.sim
    }
}

/// A plain-HTTP client for talking to the exporter. reqwest is built without a default
/// crypto provider (the exporter passes its own TLS configuration), so install one first.
pub(crate) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone)]
pub(crate) struct Scrape {
    pub(crate) series: Vec<Series>,
    /// Family name → declared type.
    pub(crate) types: BTreeMap<String, String>,
    /// Family name → help text (unescaped).
    pub(crate) help: BTreeMap<String, String>,
}

impl Scrape {
    /// Parses the text format strictly: HELP and TYPE before a family's samples, families
    /// contiguous, no duplicate series. Panics with the offending line otherwise.
    pub(crate) fn parse(text: &str) -> Scrape {
        let mut series = Vec::new();
        let mut types = BTreeMap::new();
        let mut help = BTreeMap::new();
        let mut seen_families: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                help.insert(name.to_string(), unescape(text));
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "family declared twice: {line}"
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let s = parse_sample(line);
            let family = family_of(&s.name, &types);
            assert!(
                types.contains_key(&family),
                "sample before its TYPE: {line}"
            );
            assert!(help.contains_key(&family), "no HELP for {family}");
            if seen_families.last() != Some(&family) {
                assert!(
                    !seen_families.contains(&family),
                    "family {family} is not contiguous"
                );
                seen_families.push(family);
            }
            let key = format!("{}{:?}", s.name, s.labels);
            assert!(seen.insert(key), "duplicate series: {line}");
            series.push(s);
        }
        Scrape {
            series,
            types,
            help,
        }
    }

    /// Every series of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<&Series> {
        self.series.iter().filter(|s| s.name == name).collect()
    }

    /// The value of the one series of `name` whose labels include `labels`; panics when
    /// several match.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matches: Vec<_> = self
            .series
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(matches.len() <= 1, "several series match {name} {labels:?}");
        matches.first().map(|s| s.value)
    }
}

fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    if types.contains_key(name) {
        return name.to_string();
    }
    for suffix in ["_total", "_count", "_sum", "_bucket", "_created"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.contains_key(base)
        {
            return base.to_string();
        }
    }
    name.to_string()
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some(other) => panic!("bad escape \\{other} in {text:?}"),
                None => panic!("dangling backslash in {text:?}"),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `name{a="b",c="d"} value`.
pub(crate) fn parse_sample(line: &str) -> Series {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => panic!("no value: {line}"),
    };
    assert!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
        "bad metric name in {line}"
    );
    let mut labels = BTreeMap::new();
    let rest = if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = body.strip_prefix('}') {
                body = after;
                break;
            }
            let eq = body.find('=').expect("label =");
            let key = &body[..eq];
            assert!(
                key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "bad label name {key:?} in {line}"
            );
            body = body[eq + 1..].strip_prefix('"').expect("opening quote");
            let mut value = String::new();
            let mut chars = body.char_indices();
            let end = loop {
                let (i, c) = chars.next().expect("closing quote");
                match c {
                    '"' => break i,
                    '\\' => match chars.next().expect("escape").1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        other => panic!("bad escape \\{other} in {line}"),
                    },
                    c => value.push(c),
                }
            };
            assert!(
                labels.insert(key.to_string(), value).is_none(),
                "label {key} twice in {line}"
            );
            body = &body[end + 1..];
            body = body.strip_prefix(',').unwrap_or(body);
        }
        body
    } else {
        rest
    };
    let value_text = rest.trim();
    assert!(!value_text.contains(' '), "timestamp or junk in {line}");
    let value = match value_text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value {v:?} in {line}")),
    };
    Series {
        name: name.to_string(),
        labels,
        value,
    }
}

/// Families derived from XAPI records rather than from `/rrd_updates`.
pub(crate) fn is_record_family(name: &str) -> bool {
    matches!(
        name,
        "xen_host_info"
            | "xen_host_enabled"
            | "xen_host_live"
            | "xen_host_memory_total_bytes"
            | "xen_host_cpus"
            | "xen_host_running_vms"
            | "xen_host_multipath_enabled"
            | "xen_host_pif_attached"
            | "xen_vm_power_state"
            | "xen_vm_info"
            | "xen_vm_vcpus"
            | "xen_vm_memory_static_max_bytes"
            | "xen_vm_memory_static_min_bytes"
            | "xen_vm_memory_dynamic_max_bytes"
            | "xen_vm_memory_dynamic_min_bytes"
            | "xen_vm_start_time_seconds"
            | "xen_pbd_attached"
            | "xen_host_boot_time_seconds"
            | "xen_host_license_expiry_time_seconds"
            | "xen_host_reboot_required"
            | "xen_host_tag"
            | "xen_vm_reboot_required"
            | "xen_vm_snapshots"
            | "xen_vm_oldest_snapshot_time_seconds"
            | "xen_vm_tag"
            | "xen_vm_disk_virtual_size_bytes"
            | "xen_vm_disk_physical_utilization_bytes"
    ) || name.starts_with("xen_pool_")
        || name.starts_with("xen_sr_")
}

/// A scratch directory under the system temp dir, removed on drop.
pub(crate) struct Scratch(pub(crate) std::path::PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> Scratch {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("xe-it-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Writes `name` in the directory; returns its path as text.
    pub(crate) fn file(&self, name: &str, contents: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real `xen-exporter` binary, run with a clean environment and listening on a free
/// loopback port, its output collected.
pub(crate) struct Binary {
    child: std::process::Child,
    pub(crate) url: String,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect_output(
    pipe: impl std::io::Read + Send + 'static,
) -> (
    std::sync::Arc<std::sync::Mutex<String>>,
    std::thread::JoinHandle<()>,
) {
    let buffer = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = buffer.clone();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    (buffer, reader)
}

impl Binary {
    /// Starts the exporter and waits (bounded) until it says where it listens.
    pub(crate) async fn start(env: &[(&str, &str)], args: &[&str]) -> Binary {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xen-exporter"))
            .env_clear()
            .env("BIND", "127.0.0.1")
            .env("PORT", "0")
            .envs(env.iter().copied())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, out_reader) = collect_output(child.stdout.take().unwrap());
        let (stderr, err_reader) = collect_output(child.stderr.take().unwrap());
        let mut binary = Binary {
            child,
            url: String::new(),
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        };
        let address = poll_until("the exporter says where it listens", async || {
            let stderr = binary.stderr();
            let address = stderr
                .lines()
                .find(|l| l.contains("Listening"))
                .and_then(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("address="))
                });
            if let Some(address) = address {
                return Ok(address.to_string());
            }
            if let Ok(Some(status)) = binary.child.try_wait() {
                panic!("exporter exited with {status}: {stderr}");
            }
            Err(stderr)
        })
        .await;
        binary.url = format!("http://{address}");
        binary
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Status and body of a GET.
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let response = http_client()
            .get(format!("{}{path}", self.url))
            .timeout(PATIENCE)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Waits until `/-/ready` answers 200.
    pub(crate) async fn wait_ready(&self) {
        poll_until("the exporter is ready", async || {
            match self.get("/-/ready").await {
                (200, _) => Ok(()),
                (status, _) => Err(format!("{status}; {}", self.stderr())),
            }
        })
        .await;
    }

    /// Sends SIGTERM, waits (up to [`PATIENCE`]) for the exit; returns exit code, stdout and
    /// stderr.
    pub(crate) async fn stop(mut self) -> (Option<i32>, String, String) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut status = None;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        assert!(status.is_some(), "exporter ignored SIGTERM: {stderr}");
        (status.and_then(|s| s.code()), stdout, stderr)
    }
}

/// Runs `xen-exporter` to completion (bounded) with a clean environment; returns exit code,
/// stdout and stderr. Async so that a simulator served by the test's runtime keeps
/// answering meanwhile.
pub(crate) async fn run_binary(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_xen-exporter"));
    command
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("xen-exporter finishes within a minute")
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
