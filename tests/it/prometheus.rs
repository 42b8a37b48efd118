//! A real Prometheus server for the tests that need one (sharding, the dashboard): found on
//! PATH, started on a free loopback port with a scratch TSDB, asked through its HTTP API, and
//! killed when dropped so that a failing assertion cannot leak it.

use std::time::Duration;

use crate::harness::{Scratch, http_client};

/// Where `promtool`'s sibling lives on Debian; `None` when Prometheus is not installed and
/// the run does not require it. CI sets `XEN_EXPORTER_REQUIRE_PROMETHEUS`, so that a missing
/// install fails there instead of silently skipping the test.
pub(crate) fn binary() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("XEN_EXPORTER_REQUIRE_PROMETHEUS").is_none(),
            "prometheus is not installed but CI requires this test"
        );
        eprintln!("prometheus not installed (apt-get install prometheus): test skipped");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Percent-encodes everything but letters, digits and `_`, for a query-string value.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A running Prometheus server; killed on drop.
pub(crate) struct Prometheus {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    http: reqwest::Client,
    dir: Scratch,
}

impl Prometheus {
    /// Starts `binary` with `config` (a prometheus.yml) on a free loopback port.
    pub(crate) fn start(binary: &std::path::Path, config: &str) -> Prometheus {
        let dir = Scratch::new("prometheus");
        let config_file = dir.file("prometheus.yml", config.as_bytes());
        let port = free_port();
        let child = std::process::Command::new(binary)
            .arg(format!("--config.file={config_file}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: http_client(),
            dir,
        }
    }

    /// What the server logged so far, for failure messages.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// The JSON body of `GET <base><path_and_query>`; `Err` when the server does not answer
    /// (yet) or answers something that is not JSON.
    pub(crate) async fn api(&self, path_and_query: &str) -> Result<serde_json::Value, String> {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("GET {path_and_query}: {e}"))?;
        let text = response
            .text()
            .await
            .map_err(|e| format!("GET {path_and_query}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("GET {path_and_query}: {e}: {text}"))
    }

    /// The result vector of the instant query `promql`; empty when the server does not
    /// answer yet or the query fails.
    pub(crate) async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let Ok(body) = self
            .api(&format!("/api/v1/query?query={}", encode(promql)))
            .await
        else {
            return Vec::new();
        };
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
