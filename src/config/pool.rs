//! One pool's settings as either source wrote them — the environment and flags, or one entry
//! of `--config.file` — and [`validate`], the one check that turns them into a
//! [`PoolConfig`]. A source only gathers its text, its names and its documented defaults;
//! every rule about a pool lives here, so both sources accept the same values.

use std::path::{Path, PathBuf};

use super::setting::{Setting, Zero};
use super::trust::{self, Fingerprint};
use super::{
    CREDENTIAL_NAME, ClientIdentity, Collectors, Endpoint, Env, Error, Mode, Naming, PoolConfig,
    Secret, TlsConfig,
};

/// One pool as a source wrote it.
#[derive(Debug)]
pub(super) struct RawPool {
    /// A file's `name`; `None` (the environment's one pool) names the pool after its host.
    pub(super) name: Option<Setting>,
    /// Where to log in, first preferred: `XEN_HOST`, or the file's `hosts`.
    pub(super) hosts: Setting<Vec<String>>,
    pub(super) user: Setting,
    pub(super) password: RawPassword,
    pub(super) verify: Verify,
    pub(super) ca_file: Setting<Option<PathBuf>>,
    pub(super) fingerprint: Setting<Option<String>>,
    pub(super) client_cert_file: Setting<Option<PathBuf>>,
    pub(super) client_key_file: Setting<Option<PathBuf>>,
    pub(super) mode: Setting,
    pub(super) halt_on_no_uuid: Setting,
    pub(super) timeout: Setting,
    pub(super) pbd: Setting,
    pub(super) multipath: Setting,
    pub(super) storage_targets: Setting,
    pub(super) disks: Setting,
    pub(super) tags: Setting,
    pub(super) messages: Setting,
    pub(super) certificates: Setting,
    pub(super) vm_rrd: Setting,
    pub(super) naming: Setting,
}

/// Where the password may come from; at most one may be set.
#[derive(Debug)]
pub(super) struct RawPassword {
    /// `XEN_PASSWORD_FILE`, `password_file`.
    pub(super) file: Setting<Option<PathBuf>>,
    /// `XEN_PASSWORD`: the environment only, since a pool file must not hold passwords.
    pub(super) value: Option<Setting<Secret>>,
    /// `credential`: a systemd credential by name, in the file only (the environment's pool
    /// reads [`CREDENTIAL_NAME`] when nothing else is set, as a file's pool does).
    pub(super) credential: Option<Setting>,
}

/// Whether to check the hosts' certificates, in the source's own sense.
#[derive(Debug)]
pub(super) enum Verify {
    /// `XEN_SSL_VERIFY`: true checks them.
    Verify(Setting),
    /// `tls.insecure_skip_verify`, as in Prometheus' `tls_config`: true does not.
    InsecureSkip(Setting),
}

/// A pool's name is its `/probe` target and `pool` label: kept to what needs no escaping.
fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Validates one pool, reading the files it names. The label hashing key is process-wide and
/// left for the caller to set.
pub(super) fn validate(raw: RawPool, env: &Env) -> Result<PoolConfig, Error> {
    if let Some(name) = &raw.name
        && !name_ok(&name.value)
    {
        return Err(
            name.invalid("use 1-64 letters, digits, '-', '_' or '.' (it is the /probe target)")
        );
    }
    let hosts = &raw.hosts;
    if hosts.value.is_empty() {
        return Err(Error(format!(
            "{} is empty; list at least one pool member (the master is found from any)",
            hosts.name
        )));
    }
    let mut endpoints = Vec::with_capacity(hosts.value.len());
    for host in &hosts.value {
        endpoints.push(Endpoint::parse(host).map_err(|why| {
            Error(format!(
                "{} {host:?}: {why}; examples: 192.0.2.10, https://xcp1.example.com, http://[2001:db8::1]:80",
                hosts.name
            ))
        })?);
    }
    let user = raw.user.value.trim().to_string();
    if user.is_empty() {
        return Err(Error(format!(
            "{} is empty; give the XAPI user name, e.g. a dedicated read-only account",
            raw.user.name
        )));
    }
    let mode = match raw.mode.value.trim().to_ascii_lowercase().as_str() {
        "host" => Mode::Host,
        "pool" => Mode::Pool,
        _ => {
            return Err(raw
                .mode
                .invalid("use \"host\" (one host) or \"pool\" (every host of the pool)"));
        }
    };
    let naming = match raw.naming.value.trim().to_ascii_lowercase().as_str() {
        "compatible" => Naming::Compatible,
        "prometheus" => Naming::Prometheus,
        _ => {
            return Err(raw.naming.invalid(
                "use \"compatible\" (the original exporter's names and XAPI's units, the default) or \"prometheus\" (Prometheus' conventions: base units, _total only on counters)",
            ));
        }
    };
    let timeout = raw.timeout.duration(Zero::Refused)?;
    let halt_on_no_uuid = raw.halt_on_no_uuid.boolean()?;
    let collectors = Collectors {
        pbd: raw.pbd.boolean()?,
        multipath: raw.multipath.boolean()?,
        storage_targets: raw.storage_targets.boolean()?,
        disks: raw.disks.boolean()?,
        tags: raw.tags.boolean()?,
        messages: raw.messages.boolean()?,
        certificates: raw.certificates.boolean()?,
        vm_rrd: raw.vm_rrd.boolean()?,
    };
    let verify = match &raw.verify {
        Verify::Verify(setting) => setting.boolean()?,
        Verify::InsecureSkip(setting) => !setting.boolean()?,
    };
    let extra_roots_pem = match &raw.ca_file.value {
        None => None,
        Some(path) => {
            let setting = raw.ca_file.name;
            let pem = std::fs::read(path).map_err(|e| {
                Error(format!(
                    "{setting} {}: cannot read it ({e}); give a readable PEM file of CA certificates",
                    path.display()
                ))
            })?;
            trust::parse_certificates(&pem)
                .map_err(|why| Error(format!("{setting} {}: {why}", path.display())))?;
            Some(pem)
        }
    };
    let fingerprint = match &raw.fingerprint.value {
        None => None,
        Some(text) => Some(Fingerprint::parse(text).map_err(|why| {
            Error(format!(
                "{} {text:?} {why}; give the SHA-256 fingerprint of the pool master's certificate, hex with or without colons, e.g. from `openssl x509 -noout -fingerprint -sha256`",
                raw.fingerprint.name
            ))
        })?),
    };
    let client_identity = read_client_identity(&raw.client_cert_file, &raw.client_key_file)?;
    let password = read_password(&raw.password, env)?;
    let mut members = endpoints.into_iter();
    let endpoint = members.next().expect("hosts is not empty");
    Ok(PoolConfig {
        name: raw.name.map_or_else(|| endpoint.host.clone(), |n| n.value),
        endpoint,
        members: members.collect(),
        user,
        password,
        tls: TlsConfig {
            verify,
            extra_roots_pem,
            ca_file: raw.ca_file.value,
            fingerprint,
            client_identity,
        },
        mode,
        halt_on_no_uuid,
        timeout,
        collectors,
        naming,
        hash_uuids_key: None,
    })
}

fn read_password(raw: &RawPassword, env: &Env) -> Result<Secret, Error> {
    let given: Vec<&str> = [
        raw.file.value.as_ref().map(|_| raw.file.name),
        raw.value.as_ref().map(|s| s.name),
        raw.credential.as_ref().map(|s| s.name),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let [first, second, ..] = given[..] {
        return Err(Error(format!(
            "{first} and {second} are both set; keep one"
        )));
    }
    if let Some(path) = &raw.file.value {
        return read_secret_file(path).map_err(|e| {
            Error(format!(
                "{} {}: cannot read it ({e}); give a file readable by the exporter's user",
                raw.file.name,
                path.display()
            ))
        });
    }
    if let Some(password) = &raw.value {
        return Ok(password.value.clone());
    }
    if let Some(credential) = &raw.credential {
        let dir = env.credentials_directory.as_ref().ok_or_else(|| {
            Error(format!(
                "{} {:?} needs systemd's CREDENTIALS_DIRECTORY (LoadCredential=), which is not set",
                credential.name, credential.value
            ))
        })?;
        let path = dir.join(&credential.value);
        return read_secret_file(&path).map_err(|e| {
            Error(format!(
                "{} {:?}: systemd credential {}: cannot read it ({e})",
                credential.name,
                credential.value,
                path.display()
            ))
        });
    }
    if let Some(dir) = &env.credentials_directory {
        let path = dir.join(CREDENTIAL_NAME);
        if path.exists() {
            return read_secret_file(&path).map_err(|e| {
                Error(format!(
                    "systemd credential {} (CREDENTIALS_DIRECTORY): cannot read it ({e})",
                    path.display()
                ))
            });
        }
    }
    // The original exporter defaulted to an empty password; keep that for compatibility.
    Ok(Secret::default())
}

fn read_client_identity(
    cert_file: &Setting<Option<PathBuf>>,
    key_file: &Setting<Option<PathBuf>>,
) -> Result<Option<ClientIdentity>, Error> {
    let (cert_path, key_path) = match (&cert_file.value, &key_file.value) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) | (None, Some(_)) => {
            let missing = if cert_file.value.is_none() {
                cert_file.name
            } else {
                key_file.name
            };
            return Err(Error(format!(
                "{} and {} go together; {missing} is missing",
                cert_file.name, key_file.name
            )));
        }
    };
    let cert_pem = std::fs::read(cert_path).map_err(|e| {
        Error(format!(
            "{} {}: cannot read it ({e})",
            cert_file.name,
            cert_path.display()
        ))
    })?;
    let key_pem = read_secret_file(key_path).map_err(|e| {
        Error(format!(
            "{} {}: cannot read it ({e})",
            key_file.name,
            key_path.display()
        ))
    })?;
    trust::check_client_identity(&cert_pem, key_pem.expose()).map_err(|why| {
        Error(format!(
            "{} {} with {} {}: {why}",
            cert_file.name,
            cert_path.display(),
            key_file.name,
            key_path.display()
        ))
    })?;
    Ok(Some(ClientIdentity {
        cert_pem,
        key_pem,
        cert_file: cert_path.clone(),
    }))
}

/// Reads a password or key file; one trailing newline (an editor's, or `echo`'s) is not part
/// of the secret.
fn read_secret_file(path: &Path) -> std::io::Result<Secret> {
    let text = std::fs::read_to_string(path)?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(Secret::new(text))
}
