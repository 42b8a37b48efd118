//! `--config.file`: any number of pools in YAML, as the rest of the Prometheus ecosystem
//! configures itself. Unknown keys are errors (a typo must not silently drop a setting);
//! passwords come only from files or systemd credentials, never from the file itself. Each
//! pool is gathered into the raw settings the environment's pool also fills, and validated by
//! the same function (`config::pool`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::pool::{self, RawPassword, RawPool, Verify};
use super::setting::Setting;
use super::{Collectors, Env, Error, PoolConfig};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Decoded pool by pool, so that an error names the pool it is in.
    pools: Vec<Value>,
}

/// One pool as written. Scalars stay YAML values until [`scalar`] turns them into text for
/// the setting's one parser: `timeout: 8` and `timeout: "8s"` are both durations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePool {
    name: String,
    hosts: Vec<String>,
    user: Option<Value>,
    password_file: Option<PathBuf>,
    /// Name of a systemd credential (`LoadCredential=<name>:…`).
    credential: Option<String>,
    #[serde(default)]
    tls: FileTls,
    mode: Option<Value>,
    timeout: Option<Value>,
    halt_on_no_uuid: Option<Value>,
    /// `compatible` or `prometheus`, as `XEN_METRICS_NAMING`.
    naming: Option<Value>,
    #[serde(default)]
    collectors: FileCollectors,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    ca_file: Option<PathBuf>,
    /// SHA-256 of the master's certificate, as `XEN_SSL_FINGERPRINT`.
    fingerprint: Option<Value>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    insecure_skip_verify: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCollectors {
    pbd: Option<Value>,
    multipath: Option<Value>,
    storage_targets: Option<Value>,
    disks: Option<Value>,
    tags: Option<Value>,
    messages: Option<Value>,
    certificates: Option<Value>,
    vm_rrd: Option<Value>,
}

/// The file's documented defaults. Only `mode` differs from the environment's: a file
/// describes whole pools, so it is `pool` (`XEN_MODE` keeps the original exporter's `host`).
const DEFAULT_MODE: &str = "pool";
const DEFAULT_USER: &str = "root";
const DEFAULT_TIMEOUT: &str = "8s";
const DEFAULT_NAMING: &str = "compatible";

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
        let in_pool = |Error(why): Error| Error(format!("{which}: {why}"));
        let written: FilePool =
            serde_json::from_value(value).map_err(|e| in_pool(Error(e.to_string())))?;
        if !names.insert(written.name.clone()) {
            return Err(Error(format!(
                "pool name {:?} appears twice; names must be unique",
                written.name
            )));
        }
        let raw = raw_pool(written).map_err(in_pool)?;
        pools.push(pool::validate(raw, env).map_err(in_pool)?);
    }
    Ok(pools)
}

/// One pool of the file as written, with the file's defaults filled in.
fn raw_pool(p: FilePool) -> Result<RawPool, Error> {
    let collectors = Collectors::default();
    Ok(RawPool {
        name: Some(Setting::new("`name`", p.name)),
        hosts: Setting::new("`hosts`", p.hosts),
        user: scalar("`user`", p.user, DEFAULT_USER)?,
        password: RawPassword {
            file: Setting::new("`password_file`", p.password_file),
            value: None,
            credential: p.credential.map(|c| Setting::new("`credential`", c)),
        },
        verify: Verify::InsecureSkip(scalar(
            "`tls.insecure_skip_verify`",
            p.tls.insecure_skip_verify,
            "false",
        )?),
        ca_file: Setting::new("`tls.ca_file`", p.tls.ca_file),
        fingerprint: optional_scalar("`tls.fingerprint`", p.tls.fingerprint)?,
        client_cert_file: Setting::new("`tls.client_cert_file`", p.tls.client_cert_file),
        client_key_file: Setting::new("`tls.client_key_file`", p.tls.client_key_file),
        mode: scalar("`mode`", p.mode, DEFAULT_MODE)?,
        halt_on_no_uuid: scalar("`halt_on_no_uuid`", p.halt_on_no_uuid, "false")?,
        timeout: scalar("`timeout`", p.timeout, DEFAULT_TIMEOUT)?,
        pbd: scalar(
            "`collectors.pbd`",
            p.collectors.pbd,
            &collectors.pbd.to_string(),
        )?,
        multipath: scalar(
            "`collectors.multipath`",
            p.collectors.multipath,
            &collectors.multipath.to_string(),
        )?,
        storage_targets: scalar(
            "`collectors.storage_targets`",
            p.collectors.storage_targets,
            &collectors.storage_targets.to_string(),
        )?,
        disks: scalar(
            "`collectors.disks`",
            p.collectors.disks,
            &collectors.disks.to_string(),
        )?,
        tags: scalar(
            "`collectors.tags`",
            p.collectors.tags,
            &collectors.tags.to_string(),
        )?,
        messages: scalar(
            "`collectors.messages`",
            p.collectors.messages,
            &collectors.messages.to_string(),
        )?,
        certificates: scalar(
            "`collectors.certificates`",
            p.collectors.certificates,
            &collectors.certificates.to_string(),
        )?,
        vm_rrd: scalar(
            "`collectors.vm_rrd`",
            p.collectors.vm_rrd,
            &collectors.vm_rrd.to_string(),
        )?,
        naming: scalar("`naming`", p.naming, DEFAULT_NAMING)?,
    })
}

/// Like [`scalar`], for a setting without a default.
fn optional_scalar(
    name: &'static str,
    value: Option<Value>,
) -> Result<Setting<Option<String>>, Error> {
    Ok(match value {
        None | Some(Value::Null) => Setting::new(name, None),
        value => Setting::new(name, Some(scalar(name, value, "")?.value)),
    })
}

/// A YAML scalar as the text a setting parses (`8`, `2.5`, `true`, `8s`); `default` when the
/// key is absent or empty.
fn scalar(name: &'static str, value: Option<Value>, default: &str) -> Result<Setting, Error> {
    let text = match value {
        None | Some(Value::Null) => default.to_string(),
        Some(Value::String(text)) => text,
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Array(_) | Value::Object(_)) => {
            return Err(Error(format!(
                "{name} must be a single value (text, a number or true/false), not a list or map"
            )));
        }
    };
    Ok(Setting::new(name, text))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Mode;

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
    naming: prometheus
    collectors: {{pbd: false, tags: false, messages: false, disks: true, vm_rrd: false}}
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
        assert_eq!(lab.timeout, Duration::from_secs(8));
        assert_eq!(prod.user, "root");
        assert_eq!(prod.password.expose(), "other");
        assert_eq!(prod.timeout, Duration::from_millis(2500));
        assert_eq!(prod.mode, Mode::Host);
        assert!(!prod.collectors.pbd && prod.collectors.multipath);
        assert!(!prod.collectors.tags && !prod.collectors.messages);
        assert!(prod.collectors.disks && prod.collectors.certificates && lab.collectors.tags);
        assert!(!prod.collectors.vm_rrd && lab.collectors.vm_rrd);
        assert_eq!(prod.naming, crate::config::Naming::Prometheus);
        assert_eq!(lab.naming, crate::config::Naming::Compatible);
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
        assert!(err("pools: [{name: a, hosts: ['https://']}]").contains("`hosts` \"https://\""));
        assert!(err("pools: [{name: a, hosts: [h], mode: cluster}]").contains("`mode`"));
        assert!(err("pools: [{name: a, hosts: [h], timeout: soon}]").contains("`timeout`"));
        assert!(err("pools: [{name: a, hosts: [h], timeout: [8]}]").contains("single value"));
        assert!(
            err("pools: [{name: a, hosts: [h], halt_on_no_uuid: maybe}]")
                .contains("`halt_on_no_uuid`")
        );
        assert!(
            err("pools: [{name: a, hosts: [h], collectors: {pbd: 2}}]")
                .contains("`collectors.pbd`")
        );
        assert!(
            err("pools: [{name: a, hosts: [h], collectors: {vm_rrd: maybe}}]")
                .contains("`collectors.vm_rrd`")
        );
        assert!(
            err("pools: [{name: a, hosts: [h], password_file: /nonexistent/x}]")
                .contains("`password_file`")
        );
        let e = err("pools: [{name: a, hosts: [h], naming: prom}]");
        assert!(
            e.starts_with("pool \"a\": `naming` \"prom\" is not valid") && e.contains("prometheus"),
            "{e}"
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
    fn durations_take_the_same_syntax_as_the_environment() {
        let env = Env::default();
        let timeout = |value: &str| {
            parse(
                &format!("pools: [{{name: a, hosts: [h], timeout: {value}}}]"),
                &env,
            )
            .map(|pools| pools[0].timeout)
        };
        let ms = Duration::from_millis;
        for (value, expected) in [
            ("1500ms", ms(1500)),
            ("\"1500ms\"", ms(1500)),
            ("8", ms(8000)),
            ("2.5", ms(2500)),
            ("\"8\"", ms(8000)),
            ("1m", ms(60_000)),
            ("1m30s", ms(90_000)),
        ] {
            assert_eq!(timeout(value), Ok(expected), "{value}");
        }
        for bad in ["8x", "0", "-1", "1.5s", "2h", "nan"] {
            let Error(e) = timeout(bad).unwrap_err();
            assert!(
                e.starts_with("pool \"a\": `timeout`") && e.contains("500ms, 8s, 1m30s"),
                "{bad}: {e}"
            );
        }
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
