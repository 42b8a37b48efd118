//! `--config.file`: any number of pools in YAML, as the rest of the Prometheus ecosystem
//! configures itself. Unknown keys are errors (a typo must not silently drop a setting);
//! passwords come only from files or systemd credentials, never from the file itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::trust::{self, Fingerprint};
use super::{
    CREDENTIAL_NAME, Collectors, Endpoint, Env, Error, Mode, PoolConfig, Secret, TlsConfig,
    read_client_identity, read_secret_file,
};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Decoded pool by pool, so that an error names the pool it is in.
    pools: Vec<serde_json::Value>,
}

/// One pool as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: String,
    hosts: Vec<String>,
    #[serde(default = "default_user")]
    user: String,
    password_file: Option<PathBuf>,
    /// Name of a systemd credential (`LoadCredential=<name>:…`).
    credential: Option<String>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default = "default_mode")]
    mode: String,
    timeout: Option<RawDuration>,
    #[serde(default)]
    halt_on_no_uuid: bool,
    #[serde(default)]
    collectors: RawCollectors,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<PathBuf>,
    /// SHA-256 of the master's certificate, as `XEN_SSL_FINGERPRINT`.
    fingerprint: Option<String>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCollectors {
    pbd: bool,
    multipath: bool,
    storage_targets: bool,
}

impl Default for RawCollectors {
    fn default() -> Self {
        let d = Collectors::default();
        RawCollectors {
            pbd: d.pbd,
            multipath: d.multipath,
            storage_targets: d.storage_targets,
        }
    }
}

/// `8`, `2.5`, `"8s"` or `"500ms"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(f64),
    Text(String),
}

fn default_user() -> String {
    "root".into()
}

fn default_mode() -> String {
    "pool".into()
}

/// Default per-request timeout, as for `XEN_TIMEOUT`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);

/// Reads and validates the pools of `path`.
pub fn load(path: &Path, env: &Env) -> Result<Vec<PoolConfig>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error(format!(
            "--config.file {}: cannot read it ({e}); give a readable YAML file",
            path.display()
        ))
    })?;
    parse(&text, env)
        .map_err(|Error(why)| Error(format!("--config.file {}: {why}", path.display())))
}

/// Parses and validates the text of a configuration file.
pub fn parse(text: &str, env: &Env) -> Result<Vec<PoolConfig>, Error> {
    let file: File = serde_saphyr::from_str(text)
        .map_err(|e| Error(format!("not a valid configuration: {e}")))?;
    if file.pools.is_empty() {
        return Err(Error("`pools` is empty; describe at least one pool".into()));
    }
    let mut names = BTreeSet::new();
    let mut pools = Vec::with_capacity(file.pools.len());
    for (index, value) in file.pools.into_iter().enumerate() {
        let which = match value.get("name").and_then(|n| n.as_str()) {
            Some(name) => format!("pool {name:?}"),
            None => format!("pool #{} (no `name`)", index + 1),
        };
        let raw: RawPool =
            serde_json::from_value(value).map_err(|e| Error(format!("{which}: {e}")))?;
        let name = raw.name.clone();
        if !names.insert(name.clone()) {
            return Err(Error(format!(
                "pool name {name:?} appears twice; names must be unique"
            )));
        }
        pools.push(pool(raw, env).map_err(|Error(why)| Error(format!("pool {name:?}: {why}")))?);
    }
    Ok(pools)
}

fn pool(raw: RawPool, env: &Env) -> Result<PoolConfig, Error> {
    let name_ok = !raw.name.is_empty()
        && raw.name.len() <= 64
        && raw
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(Error(
            "`name` must be 1-64 characters of letters, digits, '-', '_' or '.' (it is the /probe target)"
                .into(),
        ));
    }
    if raw.hosts.is_empty() {
        return Err(Error(
            "`hosts` is empty; list at least one pool member (the master is found from any)".into(),
        ));
    }
    let mut endpoints = Vec::with_capacity(raw.hosts.len());
    for host in &raw.hosts {
        endpoints.push(
            Endpoint::parse(host).map_err(|why| Error(format!("`hosts` entry {host:?}: {why}")))?,
        );
    }
    let mode = match raw.mode.trim().to_ascii_lowercase().as_str() {
        "pool" => Mode::Pool,
        "host" => Mode::Host,
        other => {
            return Err(Error(format!(
                "`mode` {other:?} is not valid; use \"pool\" or \"host\""
            )));
        }
    };
    let timeout = match raw.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => parse_duration(&t).ok_or_else(|| {
            Error(format!(
                "`timeout` {t:?} is not valid; give seconds above 0 and at most 3600, e.g. 8, 2.5, \"8s\" or \"500ms\""
            ))
        })?,
    };
    if raw.user.trim().is_empty() {
        return Err(Error("`user` is empty".into()));
    }
    let password = match (&raw.password_file, &raw.credential) {
        (Some(_), Some(_)) => {
            return Err(Error(
                "`password_file` and `credential` are both set; keep one".into(),
            ));
        }
        (Some(path), None) => read_secret_file(path).map_err(|e| {
            Error(format!(
                "`password_file` {}: cannot read it ({e})",
                path.display()
            ))
        })?,
        (None, Some(credential)) => {
            let dir = env.credentials_directory.as_ref().ok_or_else(|| {
                Error(format!(
                    "`credential` {credential:?} needs systemd's CREDENTIALS_DIRECTORY (LoadCredential=), which is not set"
                ))
            })?;
            let path = dir.join(credential);
            read_secret_file(&path).map_err(|e| {
                Error(format!(
                    "systemd credential {}: cannot read it ({e})",
                    path.display()
                ))
            })?
        }
        (None, None) => match &env.credentials_directory {
            // The one-pool default credential name still works for a file of one pool.
            Some(dir) if dir.join(CREDENTIAL_NAME).exists() => {
                read_secret_file(&dir.join(CREDENTIAL_NAME)).map_err(|e| {
                    Error(format!(
                        "systemd credential {CREDENTIAL_NAME}: cannot read it ({e})"
                    ))
                })?
            }
            _ => Secret::default(),
        },
    };
    let extra_roots_pem = match &raw.tls.ca_file {
        None => None,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Error(format!(
                    "`tls.ca_file` {}: cannot read it ({e})",
                    path.display()
                ))
            })?;
            trust::parse_certificates(&pem)
                .map_err(|why| Error(format!("`tls.ca_file` {}: {why}", path.display())))?;
            Some(pem)
        }
    };
    let fingerprint = match &raw.tls.fingerprint {
        None => None,
        Some(text) => Some(Fingerprint::parse(text).map_err(|why| {
            Error(format!(
                "`tls.fingerprint` {text:?} {why}; give the SHA-256 fingerprint of the master's certificate, hex with or without colons"
            ))
        })?),
    };
    let client_identity = read_client_identity(
        raw.tls.client_cert_file.as_deref(),
        raw.tls.client_key_file.as_deref(),
    )
    .map_err(|Error(why)| {
        Error(format!(
            "`tls.client_cert_file`/`tls.client_key_file`: {why}"
        ))
    })?;
    let mut members = endpoints.into_iter();
    let endpoint = members.next().expect("hosts is not empty");
    Ok(PoolConfig {
        name: raw.name,
        endpoint,
        members: members.collect(),
        user: raw.user,
        password,
        tls: TlsConfig {
            verify: !raw.tls.insecure_skip_verify,
            extra_roots_pem,
            ca_file: raw.tls.ca_file,
            fingerprint,
            client_identity,
        },
        mode,
        halt_on_no_uuid: raw.halt_on_no_uuid,
        timeout,
        collectors: Collectors {
            pbd: raw.collectors.pbd,
            multipath: raw.collectors.multipath,
            storage_targets: raw.collectors.storage_targets,
        },
        // Set from the process-wide setting by the caller.
        hash_uuids_key: None,
    })
}

fn parse_duration(raw: &RawDuration) -> Option<Duration> {
    let seconds = match raw {
        RawDuration::Seconds(s) => *s,
        RawDuration::Text(t) => {
            let t = t.trim();
            if let Some(ms) = t.strip_suffix("ms") {
                ms.trim().parse::<f64>().ok()? / 1000.0
            } else if let Some(s) = t.strip_suffix('s') {
                s.trim().parse().ok()?
            } else {
                t.parse().ok()?
            }
        }
    };
    (seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0)
        .then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        path
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xen-exporter-cfg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_documented_shape_parses() {
        let dir = tempdir("shape");
        let lab = secret_file(&dir, "lab", "s3cret");
        let creds = tempdir("creds");
        secret_file(&creds, "prod-xapi", "other");
        let text = format!(
            r#"
pools:
  - name: lab
    hosts: ["https://192.0.2.10", "192.0.2.11"]   # any members; the master is found
    user: monitoring
    password_file: {}
    tls: {{insecure_skip_verify: true}}
    mode: pool
  - name: prod
    hosts: [xcp1.example.com:8443]
    credential: prod-xapi
    timeout: 2500ms
    mode: host
    collectors: {{pbd: false}}
"#,
            lab.display()
        );
        let env = Env {
            xen_password: Some("ignored".into()),
            credentials_directory: Some(creds),
        };
        let pools = parse(&text, &env).unwrap();
        assert_eq!(pools.len(), 2);
        let (lab, prod) = (&pools[0], &pools[1]);
        assert_eq!(lab.name, "lab");
        assert_eq!(lab.endpoint.to_string(), "https://192.0.2.10:443");
        assert_eq!(lab.members.len(), 1);
        assert_eq!(lab.user, "monitoring");
        assert_eq!(lab.password.expose(), "s3cret");
        assert!(!lab.tls.verify);
        assert_eq!(lab.mode, Mode::Pool);
        assert_eq!(lab.timeout, DEFAULT_TIMEOUT);
        assert_eq!(prod.user, "root");
        assert_eq!(prod.password.expose(), "other");
        assert_eq!(prod.timeout, Duration::from_millis(2500));
        assert_eq!(prod.mode, Mode::Host);
        assert!(!prod.collectors.pbd && prod.collectors.multipath);
        assert!(prod.tls.verify);
    }

    #[test]
    fn mistakes_are_named() {
        let env = Env::default();
        let err = |text: &str| parse(text, &env).unwrap_err().0;
        assert!(err("pools: []").contains("at least one pool"));
        assert!(
            err("pool: []").contains("unknown field"),
            "{}",
            err("pool: []")
        );
        assert!(err("pools: [{name: a, hosts: [h], pasword_file: /x}]").contains("pasword_file"));
        assert!(err("pools: [{name: a, hosts: []}]").contains("`hosts` is empty"));
        assert!(err("pools: [{name: 'a b', hosts: [h]}]").contains("`name`"));
        assert!(err("pools: [{name: a, hosts: [h]}, {name: a, hosts: [g]}]").contains("twice"));
        assert!(err("pools: [{name: a, hosts: ['https://']}]").contains("`hosts` entry"));
        assert!(err("pools: [{name: a, hosts: [h], mode: cluster}]").contains("`mode`"));
        assert!(err("pools: [{name: a, hosts: [h], timeout: soon}]").contains("`timeout`"));
        assert!(
            err("pools: [{name: a, hosts: [h], password_file: /nonexistent/x}]")
                .contains("`password_file`")
        );
        assert!(
            err("pools: [{name: a, hosts: [h], credential: c}]").contains("CREDENTIALS_DIRECTORY")
        );
        assert!(err("pools: [{name: a, hosts: [h], tls: {verify: false}}]").contains("verify"));
        // Each names the pool as well as the key.
        let e = err("pools: [{name: ok, hosts: [h]}, {name: lab, hosts: [h], pasword_file: /x}]");
        assert!(e.contains("\"lab\"") && e.contains("pasword_file"), "{e}");
        let e = err("pools: [{name: lab, hosts: [h], tls: {fingerprint: 'AB:CD'}}]");
        assert!(
            e.contains("\"lab\"") && e.contains("tls.fingerprint"),
            "{e}"
        );
        let e = err("pools: [{name: lab, hosts: [h], password_file: /nonexistent/x}]");
        assert!(e.contains("\"lab\"") && e.contains("password_file"), "{e}");
        let e = err("pools: [{name: lab, hosts: [h]}, {name: lab, hosts: [g]}]");
        assert!(e.contains("\"lab\"") && e.contains("twice"), "{e}");
        let e = err("pools: [{hosts: [h]}]");
        assert!(e.contains("pool #1") && e.contains("name"), "{e}");
    }

    #[test]
    fn the_shipped_example_parses() {
        // Secrets and CA files the example names do not exist here: drop those lines.
        let text: String = include_str!("../../deploy/examples/pools.yml")
            .lines()
            .filter(|l| {
                let key = l.trim_start();
                !(key.starts_with("password_file:")
                    || key.starts_with("credential:")
                    || key.starts_with("tls:"))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let pools = parse(&text, &Env::default()).unwrap();
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["lab", "edge"]);
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let dir = tempdir("debug");
        let path = secret_file(&dir, "p", "hunter2");
        let text = format!(
            "pools: [{{name: a, hosts: [h], password_file: {}}}]",
            path.display()
        );
        let pools = parse(&text, &Env::default()).unwrap();
        assert!(!format!("{pools:?}").contains("hunter2"));
    }
}
