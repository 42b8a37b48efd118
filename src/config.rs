//! Command line and environment → a validated [`Config`]. Everything the rest of the program
//! needs is checked here, once, with messages that name the setting and the fix; nothing else
//! reads the environment. A pool comes from the `XEN_*` settings or from an entry of
//! `--config.file` ([`mod@file`]); both gather their raw settings and go through the same
//! validation (`pool`), and every duration has one syntax (`duration`). This layer imports
//! nothing from the rest of the crate: the XAPI client depends on it, not the reverse.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

mod duration;
pub mod file;
mod pool;
mod setting;
pub mod trust;

use pool::{RawPassword, RawPool, Verify};
use setting::{Setting, Zero};
use trust::Fingerprint;

/// The raw command line, each option also readable from the environment variable the original
/// Python exporter used. Values are kept as strings so that validation can name the variable
/// and the accepted values itself.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "xen-exporter",
    version,
    about = "Prometheus exporter for XCP-ng and Citrix XenServer pools",
    long_about = "Prometheus exporter for XCP-ng and Citrix XenServer pools: every RRD data \
                  source of every host, named hosts, VMs and SRs, and the state of pools, hosts, VMs, SRs, \
                  PBDs and multipath from XAPI's records; one pool from the XEN_* settings, \
                  or many from --config.file.\n\n\
                  Every option can also be set by the environment variable shown. There is \
                  deliberately no password flag: process arguments are visible to every user \
                  of the machine. Use XEN_PASSWORD_FILE (or XEN_PASSWORD).\n\n\
                  Durations are written as in Prometheus (500ms, 8s, 1m30s) or as seconds \
                  (8, 2.5)."
)]
pub struct Cli {
    /// Pool master (or any member) to talk to: `host`, `host:port`, `https://host[:port]`,
    /// `http://host[:port]`, IPv6 as `[::1]:443`. Members are reached at their `host.address`
    /// with the same scheme and port.
    #[arg(long = "xen.host", env = "XEN_HOST", default_value = "localhost")]
    pub xen_host: String,

    /// XAPI user name. Prefer a dedicated account over root.
    #[arg(long = "xen.user", env = "XEN_USER", default_value = "root")]
    pub xen_user: String,

    /// File holding the XAPI password (Docker/Kubernetes secrets). A trailing newline is
    /// ignored. Alternatively set XEN_PASSWORD in the environment (never on the command line).
    #[arg(long = "xen.password-file", env = "XEN_PASSWORD_FILE")]
    pub xen_password_file: Option<PathBuf>,

    /// Verify the TLS certificates of the pool's hosts (true or false).
    #[arg(
        long = "xen.ssl-verify",
        env = "XEN_SSL_VERIFY",
        default_value = "true"
    )]
    pub xen_ssl_verify: String,

    /// PEM file of extra CA certificates to trust for the pool's hosts, in addition to the
    /// system roots. Takes precedence over XEN_SSL_FINGERPRINT.
    #[arg(long = "xen.ssl-ca-file", env = "XEN_SSL_CA_FILE")]
    pub xen_ssl_ca_file: Option<PathBuf>,

    /// SHA-256 fingerprint of the pool master's certificate (hex, colons optional), pinned
    /// instead of checking a CA; members' certificates are then learned from the API.
    #[arg(long = "xen.ssl-fingerprint", env = "XEN_SSL_FINGERPRINT")]
    pub xen_ssl_fingerprint: Option<String>,

    /// PEM certificate (chain) to present to the master, for XAPI's client-certificate
    /// authentication. Needs XEN_SSL_CLIENT_KEY_FILE.
    #[arg(long = "xen.ssl-client-cert-file", env = "XEN_SSL_CLIENT_CERT_FILE")]
    pub xen_ssl_client_cert_file: Option<PathBuf>,

    /// PEM private key of XEN_SSL_CLIENT_CERT_FILE.
    #[arg(long = "xen.ssl-client-key-file", env = "XEN_SSL_CLIENT_KEY_FILE")]
    pub xen_ssl_client_key_file: Option<PathBuf>,

    /// `host`: export the RRD of XEN_HOST only; `pool`: export every host of the pool.
    #[arg(long = "xen.mode", env = "XEN_MODE", default_value = "host")]
    pub xen_mode: String,

    /// When an SR named in a host's data sources is unknown to the pool, mark that host failed
    /// (xen_host_up 0) instead of exporting its series with the SR UUID prefix (true or false).
    #[arg(
        long = "xen.halt-on-no-uuid",
        env = "HALT_ON_NO_UUID",
        default_value = "false"
    )]
    pub halt_on_no_uuid: String,

    /// Export PBD attachment (xen_pbd_attached): true or false.
    #[arg(
        long = "collector.pbd",
        env = "XEN_COLLECT_PBD",
        default_value = "true"
    )]
    pub collect_pbd: String,

    /// Export multipath state and path counts (xen_host_multipath_enabled,
    /// xen_sr_multipath_*): true or false.
    #[arg(
        long = "collector.multipath",
        env = "XEN_COLLECT_MULTIPATH",
        default_value = "true"
    )]
    pub collect_multipath: String,

    /// Export storage targets (xen_sr_iscsi_target_info, xen_sr_nfs_target_info,
    /// xen_sr_fc_info): true or false.
    #[arg(
        long = "collector.storage-targets",
        env = "XEN_COLLECT_STORAGE_TARGETS",
        default_value = "true"
    )]
    pub collect_storage_targets: String,

    /// Export VM disk sizes (xen_vm_disk_virtual_size_bytes,
    /// xen_vm_disk_physical_utilization_bytes); off, VBD and VDI records are not read: true or
    /// false.
    #[arg(
        long = "collector.disks",
        env = "XEN_COLLECT_DISKS",
        default_value = "true"
    )]
    pub collect_disks: String,

    /// Export user tags (xen_vm_tag, xen_host_tag, xen_sr_tag): true or false.
    #[arg(
        long = "collector.tags",
        env = "XEN_COLLECT_TAGS",
        default_value = "true"
    )]
    pub collect_tags: String,

    /// Export XAPI messages (xen_messages, xen_messages_newest_time_seconds); off,
    /// messages are not read: true or false.
    #[arg(
        long = "collector.messages",
        env = "XEN_COLLECT_MESSAGES",
        default_value = "true"
    )]
    pub collect_messages: String,

    /// Export certificate expiry (xen_certificate_expiry_time_seconds); off, Certificate
    /// records and host certificates are not read for it: true or false.
    #[arg(
        long = "collector.certificates",
        env = "XEN_COLLECT_CERTIFICATES",
        default_value = "true"
    )]
    pub collect_certificates: String,

    /// Ask each host's /rrd_updates for its VMs' data sources (xen_vm_cpu, xen_vm_memory,
    /// VBD and VIF series, dom0's included); off, the request selects no VM, so that dom0
    /// sends a fraction of the bytes; the VM families from records stay: true or false.
    #[arg(
        long = "collector.vm-rrd",
        env = "XEN_COLLECT_VM_RRD",
        default_value = "true"
    )]
    pub collect_vm_rrd: String,

    /// Family names and units: `compatible` (the original exporter's names, values in the
    /// units XAPI declares; what the shipped dashboard and alerts use) or `prometheus`
    /// (Prometheus' conventions: base units such as _bytes and _seconds, _total only on
    /// counters; both names of every family in docs/metrics.md).
    #[arg(
        long = "metrics.naming",
        env = "XEN_METRICS_NAMING",
        default_value = "compatible"
    )]
    pub metrics_naming: String,

    /// Time allowed for each XAPI request, and so for each host in a scrape, e.g. 8s or 8.
    /// Keep it below Prometheus' scrape timeout (10 s by default).
    #[arg(long = "xen.timeout", env = "XEN_TIMEOUT", default_value = "8")]
    pub xen_timeout: String,

    /// TCP port of the metrics endpoint.
    #[arg(long = "web.port", env = "PORT", default_value = "9100")]
    pub port: String,

    /// Address to bind the metrics endpoint to (an IPv4 or IPv6 address).
    #[arg(long = "web.bind", env = "BIND", default_value = "0.0.0.0")]
    pub bind: String,

    /// Web configuration file in the format shared by Prometheus exporters (exporter-toolkit):
    /// TLS, client certificates, basic authentication, extra response headers, rate limit.
    /// Re-read, with the certificate files it names, when they change.
    // A string, not a path, so that an empty value reaches validation (exit 64) instead of
    // clap's generic error.
    #[arg(long = "web.config.file", env = "XEN_WEB_CONFIG_FILE")]
    pub web_config_file: Option<String>,

    /// Most /metrics and /probe requests served at once, counted together; more are answered
    /// 503 at once. 0: no limit.
    #[arg(
        long = "web.max-requests",
        env = "XEN_WEB_MAX_REQUESTS",
        default_value = "40"
    )]
    pub web_max_requests: String,

    /// Time a client may take for the TLS handshake and for the headers of a request, and
    /// may stay idle between keep-alive requests, before its connection is closed.
    #[arg(
        long = "web.read-header-timeout",
        env = "XEN_WEB_READ_HEADER_TIMEOUT",
        default_value = "10"
    )]
    pub web_read_header_timeout: String,

    /// Time from a request's headers to its response's headers, and the longest a client may
    /// stop reading a response. Default: XEN_TIMEOUT + 10s, at least 60s.
    #[arg(long = "web.request-timeout", env = "XEN_WEB_REQUEST_TIMEOUT")]
    pub web_request_timeout: Option<String>,

    /// A scrape that arrives sooner than this after the last completed collection is answered
    /// from that collection instead of asking XAPI again. 0: off.
    #[arg(
        long = "scrape.min-interval",
        env = "XEN_SCRAPE_MIN_INTERVAL",
        default_value = "0"
    )]
    pub scrape_min_interval: String,

    /// YAML file describing any number of pools (see README, 'Many pools'); each is then
    /// scraped at `/probe?target=NAME` and the XEN_* pool settings are not used.
    #[arg(long = "config.file", env = "XEN_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,

    /// Most /rrd_updates fetches in flight across every pool of the process (0: no limit).
    #[arg(
        long = "xen.max-concurrent-fetches",
        env = "XEN_MAX_CONCURRENT_FETCHES",
        default_value = "64"
    )]
    pub max_fetches: String,

    /// Time subtracted from Prometheus' scrape timeout (X-Prometheus-Scrape-Timeout-Seconds)
    /// to get the collection deadline, so that the answer arrives before Prometheus gives up.
    #[arg(
        long = "scrape.timeout-offset",
        env = "XEN_SCRAPE_TIMEOUT_OFFSET",
        default_value = "0.5"
    )]
    pub timeout_offset: String,
    /// Replace every `*_uuid` label value by a keyed hash (HMAC-SHA256, 32 hex digits) that
    /// is stable for a given key: true or false. Needs XEN_HASH_UUIDS_KEY_FILE.
    #[arg(
        long = "labels.hash-uuids",
        env = "XEN_HASH_UUIDS",
        default_value = "false"
    )]
    pub hash_uuids: String,

    /// File holding the key for XEN_HASH_UUIDS (at least 16 bytes, e.g. from
    /// `head -c 32 /dev/urandom`).
    #[arg(long = "labels.hash-uuids-key-file", env = "XEN_HASH_UUIDS_KEY_FILE")]
    pub hash_uuids_key_file: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace (or a tracing filter directive).
    #[arg(long = "log.level", env = "XEN_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Validate the configuration, print what was understood (secrets masked) and exit.
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Start a built-in simulated XCP-ng pool on loopback and export it; no hypervisor
    /// needed. XAPI settings are ignored. Only in builds with the default `demo` feature
    /// (not the Docker image); elsewhere it exits 64.
    #[arg(long = "demo")]
    pub demo: bool,

    /// `check`: log in with these settings, report the account, its rights, how TLS is
    /// verified and what it can read, log out; exit 0 only if everything the exporter needs
    /// works.
    #[arg(value_name = "COMMAND", value_parser = ["check"])]
    pub command: Option<String>,
}

impl Cli {
    /// The environment's one pool as written, with clap's defaults filled in.
    fn raw_pool(&self, env: &Env) -> RawPool {
        RawPool {
            name: None,
            hosts: Setting::new("XEN_HOST (--xen.host)", vec![self.xen_host.clone()]),
            user: Setting::new("XEN_USER (--xen.user)", self.xen_user.clone()),
            password: RawPassword {
                // `--demo` also passes an empty `env`: nothing of the password is read.
                file: Setting::new(
                    "XEN_PASSWORD_FILE (--xen.password-file)",
                    self.xen_password_file.clone().filter(|_| !self.demo),
                ),
                value: env
                    .xen_password
                    .clone()
                    .map(|p| Setting::new("XEN_PASSWORD", p)),
                credential: None,
            },
            verify: Verify::Verify(Setting::new(
                "XEN_SSL_VERIFY (--xen.ssl-verify)",
                self.xen_ssl_verify.clone(),
            )),
            ca_file: Setting::new(
                "XEN_SSL_CA_FILE (--xen.ssl-ca-file)",
                self.xen_ssl_ca_file.clone(),
            ),
            fingerprint: Setting::new(
                "XEN_SSL_FINGERPRINT (--xen.ssl-fingerprint)",
                self.xen_ssl_fingerprint.clone(),
            ),
            client_cert_file: Setting::new(
                "XEN_SSL_CLIENT_CERT_FILE (--xen.ssl-client-cert-file)",
                self.xen_ssl_client_cert_file.clone(),
            ),
            client_key_file: Setting::new(
                "XEN_SSL_CLIENT_KEY_FILE (--xen.ssl-client-key-file)",
                self.xen_ssl_client_key_file.clone(),
            ),
            mode: Setting::new("XEN_MODE (--xen.mode)", self.xen_mode.clone()),
            halt_on_no_uuid: Setting::new(
                "HALT_ON_NO_UUID (--xen.halt-on-no-uuid)",
                self.halt_on_no_uuid.clone(),
            ),
            timeout: Setting::new("XEN_TIMEOUT (--xen.timeout)", self.xen_timeout.clone()),
            pbd: Setting::new(
                "XEN_COLLECT_PBD (--collector.pbd)",
                self.collect_pbd.clone(),
            ),
            multipath: Setting::new(
                "XEN_COLLECT_MULTIPATH (--collector.multipath)",
                self.collect_multipath.clone(),
            ),
            storage_targets: Setting::new(
                "XEN_COLLECT_STORAGE_TARGETS (--collector.storage-targets)",
                self.collect_storage_targets.clone(),
            ),
            disks: Setting::new(
                "XEN_COLLECT_DISKS (--collector.disks)",
                self.collect_disks.clone(),
            ),
            tags: Setting::new(
                "XEN_COLLECT_TAGS (--collector.tags)",
                self.collect_tags.clone(),
            ),
            messages: Setting::new(
                "XEN_COLLECT_MESSAGES (--collector.messages)",
                self.collect_messages.clone(),
            ),
            certificates: Setting::new(
                "XEN_COLLECT_CERTIFICATES (--collector.certificates)",
                self.collect_certificates.clone(),
            ),
            vm_rrd: Setting::new(
                "XEN_COLLECT_VM_RRD (--collector.vm-rrd)",
                self.collect_vm_rrd.clone(),
            ),
            naming: Setting::new(
                "XEN_METRICS_NAMING (--metrics.naming)",
                self.metrics_naming.clone(),
            ),
        }
    }
}

/// A secret string: it never prints, in `Debug` or anywhere else, and there is no `Display`.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

/// Secret bytes (a key): like [`Secret`], never printed.
#[derive(Clone, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        SecretBytes(value.into())
    }

    /// The bytes, for the one place that uses them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (XAPI's port 80, when `https_only` is not set).
    Http,
    /// HTTPS (XAPI's port 443, the default).
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where a XAPI host listens: scheme, host (name, IPv4 or IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL scheme.
    pub scheme: Scheme,
    /// Host name or address, IPv6 without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `XEN_HOST`-style text; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let text = text.trim();
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if text.contains("://") {
            return Err("the scheme must be https:// or http://".into());
        } else {
            (Scheme::Https, text)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err("give only a host and optional port, without a path".into());
        }
        if rest.contains('@') {
            return Err(
                "credentials do not belong in the address; use XEN_USER and XEN_PASSWORD_FILE"
                    .into(),
            );
        }
        if rest.is_empty() {
            return Err("the host name is empty".into());
        }
        let (host, port) = if let Some(after) = rest.strip_prefix('[') {
            let (inside, tail) = after
                .split_once(']')
                .ok_or("an IPv6 address opened with [ must close with ]")?;
            inside
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("{inside:?} is not an IPv6 address"))?;
            let port = match tail {
                "" => None,
                t => Some(t.strip_prefix(':').ok_or("expected :port after ]")?),
            };
            (inside.to_string(), port)
        } else if rest.parse::<Ipv6Addr>().is_ok() {
            (rest.to_string(), None)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err("the host name is empty".into());
        }
        if !host.contains(':') && !is_host_name(&host) {
            return Err(format!("{host:?} is not a valid host name or address"));
        }
        let port = match port {
            None => scheme.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("{p:?} is not a port number (1-65535)")),
                Ok(n) => n,
            },
        };
        Ok(Endpoint { scheme, host, port })
    }

    /// The same scheme and port at another host: how pool members and a master named by
    /// `HOST_IS_SLAVE` are reached.
    pub fn with_host(&self, host: &str) -> Endpoint {
        let host = host.trim();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Endpoint {
            scheme: self.scheme,
            host: host.to_string(),
            port: self.port,
        }
    }

    /// The base URL, e.g. `https://[2001:db8::1]:443`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority())
    }

    /// `host:port`, an IPv6 address in brackets: the URL's authority and the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url())
    }
}

fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `XEN_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Export the RRD of the configured host only.
    Host,
    /// Export every host of the pool.
    Pool,
}

/// `XEN_METRICS_NAMING`: how a pool's families are named and in which units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    /// The original exporter's names, values in the units XAPI declares.
    #[default]
    Compatible,
    /// Prometheus' conventions: base units, `_total` only on counters.
    Prometheus,
}

impl Naming {
    /// `"compatible"` or `"prometheus"`, as the setting is written.
    pub fn as_str(self) -> &'static str {
        match self {
            Naming::Compatible => "compatible",
            Naming::Prometheus => "prometheus",
        }
    }
}

/// How to trust the TLS certificates of the pool's hosts.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// `false` accepts any certificate (XEN_SSL_VERIFY=false).
    pub verify: bool,
    /// Extra trusted CA certificates, PEM, read from XEN_SSL_CA_FILE (or given by `--demo`).
    pub extra_roots_pem: Option<Vec<u8>>,
    /// Where `extra_roots_pem` came from, for messages.
    pub ca_file: Option<PathBuf>,
    /// XEN_SSL_FINGERPRINT: the master's certificate, pinned when there is no CA file.
    pub fingerprint: Option<Fingerprint>,
    /// XEN_SSL_CLIENT_CERT_FILE and XEN_SSL_CLIENT_KEY_FILE.
    pub client_identity: Option<ClientIdentity>,
}

impl TlsConfig {
    /// Which way certificates are checked: CA file, else fingerprint, else system roots;
    /// nothing with XEN_SSL_VERIFY=false.
    pub fn mode(&self) -> TrustMode {
        if !self.verify {
            TrustMode::Off
        } else if self.extra_roots_pem.is_some() {
            TrustMode::CaFile
        } else if self.fingerprint.is_some() {
            TrustMode::Fingerprint
        } else {
            TrustMode::System
        }
    }
}

/// How the certificates of the pool's hosts are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrustMode {
    /// Chains to XEN_SSL_CA_FILE (or a system root), names checked.
    CaFile,
    /// The master's pinned fingerprint, members' as XAPI reports them.
    Fingerprint,
    /// Chains to a system root, names checked.
    #[default]
    System,
    /// Not checked (XEN_SSL_VERIFY=false).
    Off,
}

impl TrustMode {
    /// Every mode, in the order of the metric's series.
    pub const ALL: [TrustMode; 4] = [
        TrustMode::CaFile,
        TrustMode::Fingerprint,
        TrustMode::System,
        TrustMode::Off,
    ];

    /// `ca_file`, `fingerprint`, `system` or `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustMode::CaFile => "ca_file",
            TrustMode::Fingerprint => "fingerprint",
            TrustMode::System => "system",
            TrustMode::Off => "off",
        }
    }
}

/// A client certificate and its key, presented to XAPI hosts that ask for one.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// PEM certificate chain, end entity first.
    pub cert_pem: Vec<u8>,
    /// PEM private key.
    pub key_pem: Secret,
    /// Where the certificate came from, for messages.
    pub cert_file: PathBuf,
}

/// Everything needed to collect one pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The pool's name in `--config.file` (the `/probe` target and `pool` label); the
    /// environment-variable setup names its one pool after `XEN_HOST`.
    pub name: String,
    /// Where to log in first (XEN_HOST, or the first of `hosts` in the file).
    pub endpoint: Endpoint,
    /// Other members to ask for the master when it stops answering (the rest of `hosts`).
    pub members: Vec<Endpoint>,
    /// XAPI user name.
    pub user: String,
    /// XAPI password.
    pub password: Secret,
    /// TLS trust.
    pub tls: TlsConfig,
    /// Host or pool mode.
    pub mode: Mode,
    /// HALT_ON_NO_UUID.
    pub halt_on_no_uuid: bool,
    /// Per-request (and per-host) timeout.
    pub timeout: Duration,
    /// Optional families.
    pub collectors: Collectors,
    /// Family names and units.
    pub naming: Naming,
    /// XEN_HASH_UUIDS: the key `*_uuid` label values are hashed with; `None` = kept.
    pub hash_uuids_key: Option<SecretBytes>,
}

/// Switches for the optional families: those derived from XAPI records, and the VMs' RRD
/// series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collectors {
    /// `xen_pbd_attached`.
    pub pbd: bool,
    /// `xen_host_multipath_enabled`, `xen_sr_multipath_*`.
    pub multipath: bool,
    /// `xen_sr_iscsi_target_info`, `xen_sr_nfs_target_info`, `xen_sr_fc_info`.
    pub storage_targets: bool,
    /// `xen_vm_disk_*`; also whether VBD and VDI records are read at all.
    pub disks: bool,
    /// `xen_vm_tag`, `xen_host_tag`, `xen_sr_tag`.
    pub tags: bool,
    /// `xen_messages*`; also whether messages are read at all.
    pub messages: bool,
    /// `xen_certificate_expiry_time_seconds`; also whether `Certificate` records are read.
    pub certificates: bool,
    /// The `xen_vm_*` series of `/rrd_updates`; also whether that request asks for VMs.
    pub vm_rrd: bool,
}

impl Default for Collectors {
    fn default() -> Self {
        Collectors {
            pbd: true,
            multipath: true,
            storage_targets: true,
            disks: true,
            tags: true,
            messages: true,
            certificates: true,
            vm_rrd: true,
        }
    }
}

/// How the HTTP side is protected and bounded: the `--web.*` and `--scrape.*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOptions {
    /// `--web.config.file`; checked by the server module, which owns the format.
    pub config_file: Option<PathBuf>,
    /// Most `/metrics` and `/probe` requests in flight together; 0 means no limit.
    pub max_requests: usize,
    /// TLS handshake, request headers and keep-alive idle time.
    pub read_header_timeout: Duration,
    /// Request headers to response headers, and the longest stall while a client reads a
    /// response. `None`: derived from the pool's XAPI timeout (see [`WebOptions::request_timeout_for`]).
    pub request_timeout: Option<Duration>,
    /// A scrape sooner than this after the last completed collection reuses it; zero is off.
    pub scrape_min_interval: Duration,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            config_file: None,
            max_requests: 40,
            read_header_timeout: Duration::from_secs(10),
            request_timeout: None,
            scrape_min_interval: Duration::ZERO,
        }
    }
}

impl WebOptions {
    /// The request timeout in force for a pool whose XAPI requests time out after
    /// `xen_timeout`: the configured one, or long enough for a whole collection.
    pub fn request_timeout_for(&self, xen_timeout: Duration) -> Duration {
        self.request_timeout
            .unwrap_or_else(|| (xen_timeout + Duration::from_secs(10)).max(Duration::from_secs(60)))
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The pool to collect (ignored by `--demo`, which builds its own, and with a
    /// configuration file).
    pub pool: PoolConfig,
    /// The pools of `--config.file`, when given.
    pub file_pools: Option<Vec<PoolConfig>>,
    /// Most `/rrd_updates` fetches in flight, all pools together (0: no limit).
    pub max_fetches: usize,
    /// Subtracted from Prometheus' scrape timeout for the collection deadline.
    pub timeout_offset: Duration,
    /// Where the metrics endpoint listens.
    pub listen: SocketAddr,
    /// HTTP protection and limits.
    pub web: WebOptions,
    /// Tracing filter directive.
    pub log_level: String,
    /// `--config.check`.
    pub check_only: bool,
    /// `check`: test the XAPI connection and rights, then exit.
    pub check_xapi: bool,
    /// `--demo`.
    pub demo: bool,
}

/// A configuration error: a message that names the setting and says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// Where the environment-only settings come from; tests pass their own instead of the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// XEN_PASSWORD.
    pub xen_password: Option<Secret>,
    /// CREDENTIALS_DIRECTORY (systemd `LoadCredential=`).
    pub credentials_directory: Option<PathBuf>,
}

impl Env {
    /// Reads the real process environment.
    pub fn from_process() -> Env {
        Env {
            xen_password: std::env::var("XEN_PASSWORD").ok().map(Secret::new),
            credentials_directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        }
    }
}

/// The systemd credential name read from `$CREDENTIALS_DIRECTORY` when no password is set.
pub const CREDENTIAL_NAME: &str = "xen-password";

impl Config {
    /// Validates the command line and environment.
    pub fn from_cli(cli: &Cli, env: &Env) -> Result<Config, Error> {
        // `--demo` builds its own pool: its password settings are not read.
        let pool_env = if cli.demo {
            Env::default()
        } else {
            env.clone()
        };
        let mut pool = pool::validate(cli.raw_pool(&pool_env), &pool_env)?;
        let port = match cli.port.trim().parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                return Err(Error(format!(
                    "PORT (--web.port) {:?} is not a port number; use 0-65535, e.g. 9100",
                    cli.port
                )));
            }
        };
        let bind_text = cli.bind.trim();
        let bind_text = bind_text
            .strip_prefix('[')
            .and_then(|b| b.strip_suffix(']'))
            .unwrap_or(bind_text);
        let bind: IpAddr = if bind_text.eq_ignore_ascii_case("localhost") {
            IpAddr::from([127, 0, 0, 1])
        } else {
            bind_text.parse().map_err(|_| {
                Error(format!(
                    "BIND (--web.bind) {:?} is not an IP address; use e.g. 0.0.0.0, 127.0.0.1 or ::",
                    cli.bind
                ))
            })?
        };
        let web = web_options(cli, pool.timeout)?;
        let mut file_pools = match &cli.config_file {
            None => None,
            Some(path) => Some(file::load(path, env)?),
        };
        let max_fetches = Setting::new(
            "XEN_MAX_CONCURRENT_FETCHES (--xen.max-concurrent-fetches)",
            cli.max_fetches.clone(),
        )
        .count(64)?;
        let timeout_offset = Setting::new(
            "XEN_SCRAPE_TIMEOUT_OFFSET (--scrape.timeout-offset)",
            cli.timeout_offset.clone(),
        )
        .duration(Zero::Off)?;
        let hash_uuids = Setting::new(
            "XEN_HASH_UUIDS (--labels.hash-uuids)",
            cli.hash_uuids.clone(),
        )
        .boolean()?;
        let hash_uuids_key = match (hash_uuids, &cli.hash_uuids_key_file) {
            (false, _) => None,
            (true, None) => {
                return Err(Error(
                    "XEN_HASH_UUIDS (--labels.hash-uuids) needs XEN_HASH_UUIDS_KEY_FILE (--labels.hash-uuids-key-file): a file of at least 16 secret bytes, e.g. from `head -c 32 /dev/urandom`".into(),
                ));
            }
            (true, Some(path)) => Some(read_hash_key(path)?),
        };
        // The label hashing key is process-wide: it applies to the file's pools too.
        pool.hash_uuids_key = hash_uuids_key.clone();
        for pool in file_pools.iter_mut().flatten() {
            pool.hash_uuids_key = hash_uuids_key.clone();
        }
        Ok(Config {
            web,
            file_pools,
            max_fetches,
            timeout_offset,
            pool,
            listen: SocketAddr::new(bind, port),
            log_level: cli.log_level.clone(),
            check_only: cli.config_check,
            check_xapi: cli.command.as_deref() == Some("check"),
            demo: cli.demo,
        })
    }

    /// A human-readable summary for `--config.check`, with secrets masked.
    pub fn summary(&self) -> String {
        let web = &self.web;
        let longest = self
            .file_pools
            .iter()
            .flatten()
            .chain([&self.pool])
            .map(|p| p.timeout)
            .max()
            .unwrap_or(self.pool.timeout);
        let web_lines = format!(
            "  web.config.file    {}\n  web.max-requests   {}\n  web.read-header-timeout {:?}\n  web.request-timeout {:?}\n  scrape.min-interval {}\n  scrape.timeout-offset {:?}\n  xen.max-concurrent-fetches {}\n",
            web.config_file.as_ref().map_or_else(
                || "(none: plain HTTP, no authentication)".to_string(),
                |p| p.display().to_string()
            ),
            match web.max_requests {
                0 => "unlimited".to_string(),
                n => n.to_string(),
            },
            web.read_header_timeout,
            web.request_timeout_for(longest),
            if web.scrape_min_interval.is_zero() {
                "off".to_string()
            } else {
                format!("{:?}", web.scrape_min_interval)
            },
            self.timeout_offset,
            match self.max_fetches {
                0 => "unlimited".to_string(),
                n => n.to_string(),
            },
        );
        let pools = match &self.file_pools {
            None => pool_summary(&self.pool, "  "),
            Some(pools) => {
                let mut text = format!(
                    "  {} pools from the configuration file, each at /probe?target=<name>:\n",
                    pools.len()
                );
                for pool in pools {
                    text.push_str(&format!("  - name               {}\n", pool.name));
                    text.push_str(&pool_summary(pool, "    "));
                }
                text
            }
        };
        format!(
            "configuration OK\n{pools}  listen             {}\n{web_lines}",
            self.listen
        )
    }
}

/// One pool's settings for `--config.check`, password masked, each line indented by `indent`.
fn pool_summary(pool: &PoolConfig, indent: &str) -> String {
    let mut trust = match pool.tls.mode() {
        TrustMode::Off => "verification OFF".to_string(),
        TrustMode::CaFile => match &pool.tls.ca_file {
            Some(f) => format!("verified against system roots and {}", f.display()),
            None => "verified against system roots and the given CA".to_string(),
        },
        TrustMode::Fingerprint => match &pool.tls.fingerprint {
            Some(f) => format!("master pinned to SHA-256 {f}, members as XAPI reports them"),
            None => "pinned".to_string(),
        },
        TrustMode::System => "verified against system roots".to_string(),
    };
    if let Some(identity) = &pool.tls.client_identity {
        trust.push_str(&format!(
            "; client certificate {}",
            identity.cert_file.display()
        ));
    }
    let members: Vec<String> = pool.members.iter().map(ToString::to_string).collect();
    let lines = [
        ("xen.host", pool.endpoint.to_string()),
        (
            "other members",
            if members.is_empty() {
                "(none configured; learned from the pool)".into()
            } else {
                members.join(", ")
            },
        ),
        ("xen.user", pool.user.clone()),
        (
            "xen.password",
            if pool.password.expose().is_empty() {
                "(empty)".into()
            } else {
                "<secret>".into()
            },
        ),
        (
            "xen.mode",
            match pool.mode {
                Mode::Host => "host".into(),
                Mode::Pool => "pool".into(),
            },
        ),
        ("xen.timeout", format!("{:?}", pool.timeout)),
        ("xen.halt-on-no-uuid", pool.halt_on_no_uuid.to_string()),
        (
            "collectors",
            format!(
                "pbd={} multipath={} storage-targets={} disks={} tags={} messages={} certificates={} vm-rrd={}",
                pool.collectors.pbd,
                pool.collectors.multipath,
                pool.collectors.storage_targets,
                pool.collectors.disks,
                pool.collectors.tags,
                pool.collectors.messages,
                pool.collectors.certificates,
                pool.collectors.vm_rrd,
            ),
        ),
        ("metrics.naming", pool.naming.as_str().to_string()),
        ("tls", trust),
        (
            "labels.hash-uuids",
            pool.hash_uuids_key.is_some().to_string(),
        ),
    ];
    lines
        .iter()
        .map(|(k, v)| format!("{indent}{k:<18} {v}\n"))
        .collect()
}

fn web_options(cli: &Cli, xen_timeout: Duration) -> Result<WebOptions, Error> {
    let max_requests = Setting::new(
        "XEN_WEB_MAX_REQUESTS (--web.max-requests)",
        cli.web_max_requests.clone(),
    )
    .count(40)?;
    let read_header_timeout = Setting::new(
        "XEN_WEB_READ_HEADER_TIMEOUT (--web.read-header-timeout)",
        cli.web_read_header_timeout.clone(),
    )
    .duration(Zero::Refused)?;
    let request_timeout = match &cli.web_request_timeout {
        None => None,
        Some(text) => {
            let setting = Setting::new(
                "XEN_WEB_REQUEST_TIMEOUT (--web.request-timeout)",
                text.clone(),
            );
            let timeout = setting.duration(Zero::Refused)?;
            // Shorter would cut every slow scrape off before its hosts time out.
            if timeout <= xen_timeout {
                return Err(Error(format!(
                    "{} {text:?} must be longer than XEN_TIMEOUT (--xen.timeout, {:?}) so that a scrape can finish; raise it or leave it unset",
                    setting.name, xen_timeout
                )));
            }
            Some(timeout)
        }
    };
    let scrape_min_interval = Setting::new(
        "XEN_SCRAPE_MIN_INTERVAL (--scrape.min-interval)",
        cli.scrape_min_interval.clone(),
    )
    .duration(Zero::Off)?;
    if cli
        .web_config_file
        .as_ref()
        .is_some_and(|p| p.trim().is_empty())
    {
        return Err(Error(
            "XEN_WEB_CONFIG_FILE (--web.config.file) is empty; give the path of a web configuration file or leave it unset".into(),
        ));
    }
    Ok(WebOptions {
        config_file: cli.web_config_file.as_ref().map(PathBuf::from),
        max_requests,
        read_header_timeout,
        request_timeout,
        scrape_min_interval,
    })
}

/// Fewer bytes than this make a guessable key: a UUID's hash could be brute-forced.
const MIN_HASH_KEY: usize = 16;

fn read_hash_key(path: &Path) -> Result<SecretBytes, Error> {
    let setting = "XEN_HASH_UUIDS_KEY_FILE (--labels.hash-uuids-key-file)";
    let mut key = std::fs::read(path).map_err(|e| {
        Error(format!(
            "{setting} {}: cannot read it ({e})",
            path.display()
        ))
    })?;
    // An editor's trailing newline is not part of a typed key.
    if key.ends_with(b"\n") {
        key.pop();
        if key.ends_with(b"\r") {
            key.pop();
        }
    }
    if key.len() < MIN_HASH_KEY {
        return Err(Error(format!(
            "{setting} {}: the key has {} bytes; give at least {MIN_HASH_KEY}, e.g. from `head -c 32 /dev/urandom`",
            path.display(),
            key.len()
        )));
    }
    Ok(SecretBytes::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["xen-exporter"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap()
    }

    fn err(args: &[&str]) -> String {
        Config::from_cli(&cli(args), &Env::default()).unwrap_err().0
    }

    #[test]
    fn record_collectors_default_on_and_switch_off_by_flag() {
        let c = Config::from_cli(&cli(&[]), &Env::default()).unwrap();
        assert_eq!(c.pool.collectors, Collectors::default());
        let on = c.pool.collectors;
        assert!(on.disks && on.tags && on.messages && on.certificates && on.vm_rrd);
        let off = Config::from_cli(
            &cli(&[
                "--collector.disks",
                "false",
                "--collector.tags",
                "false",
                "--collector.messages",
                "false",
                "--collector.certificates",
                "false",
            ]),
            &Env::default(),
        )
        .unwrap()
        .pool
        .collectors;
        assert!(!off.disks && !off.tags && !off.messages && !off.certificates);
        assert!(off.pbd && off.vm_rrd);
        assert!(err(&["--collector.tags", "maybe"]).starts_with("XEN_COLLECT_TAGS"));
    }

    #[test]
    fn vm_rrd_defaults_on_and_switches_off_by_flag() {
        assert!(Collectors::default().vm_rrd);
        let off = Config::from_cli(&cli(&["--collector.vm-rrd", "false"]), &Env::default());
        let off = off.unwrap().pool.collectors;
        assert_eq!(
            off,
            Collectors {
                vm_rrd: false,
                ..Collectors::default()
            }
        );
        assert!(err(&["--collector.vm-rrd", "no way"]).starts_with("XEN_COLLECT_VM_RRD"));
    }

    #[test]
    fn naming_defaults_to_compatible_and_names_itself_when_wrong() {
        let c = Config::from_cli(&cli(&[]), &Env::default()).unwrap();
        assert_eq!(c.pool.naming, Naming::Compatible);
        assert!(
            c.summary().contains("metrics.naming     compatible"),
            "{}",
            c.summary()
        );
        let c = Config::from_cli(&cli(&["--metrics.naming", " Prometheus "]), &Env::default());
        assert_eq!(c.unwrap().pool.naming, Naming::Prometheus);
        let e = err(&["--metrics.naming", "openmetrics"]);
        assert!(
            e.starts_with("XEN_METRICS_NAMING (--metrics.naming) \"openmetrics\" is not valid")
                && e.contains("\"compatible\"")
                && e.contains("\"prometheus\""),
            "{e}"
        );
    }

    #[test]
    fn endpoint_accepts_the_forms_operators_use() {
        let e = Endpoint::parse("192.0.2.10").unwrap();
        assert_eq!(e.base_url(), "https://192.0.2.10:443");
        let e = Endpoint::parse("http://xcp1.example.com").unwrap();
        assert_eq!(e.base_url(), "http://xcp1.example.com:80");
        let e = Endpoint::parse("https://[2001:db8::1]:8443/").unwrap();
        assert_eq!(e.base_url(), "https://[2001:db8::1]:8443");
        let e = Endpoint::parse("2001:db8::1").unwrap();
        assert_eq!(e.host, "2001:db8::1");
        assert_eq!(e.port, 443);
        let e = Endpoint::parse("localhost:8080").unwrap();
        assert_eq!(e.with_host("[::1]").base_url(), "https://[::1]:8080");
    }

    #[test]
    fn endpoint_rejects_unusable_addresses() {
        for bad in [
            "https://",
            "host:notaport",
            "host:0",
            "ftp://x",
            "https://x/path",
            "",
            "[::1",
            "bad host",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bad_settings_name_the_variable() {
        assert!(err(&["--xen.host", "https://"]).starts_with("XEN_HOST"));
        assert!(err(&["--xen.host", "host:notaport"]).starts_with("XEN_HOST"));
        assert!(err(&["--xen.mode", "cluster"]).starts_with("XEN_MODE"));
        assert!(err(&["--web.port", "abc"]).starts_with("PORT"));
        assert!(err(&["--xen.ssl-verify", "maybe"]).starts_with("XEN_SSL_VERIFY"));
        assert!(err(&["--xen.timeout", "0"]).starts_with("XEN_TIMEOUT"));
        assert!(err(&["--web.bind", "nowhere"]).starts_with("BIND"));
        let e = err(&["--xen.password-file", "/nonexistent/pw"]);
        assert!(e.starts_with("XEN_PASSWORD_FILE"), "{e}");
        assert!(err(&["--web.max-requests=-1"]).starts_with("XEN_WEB_MAX_REQUESTS"));
        assert!(err(&["--web.read-header-timeout", "0"]).starts_with("XEN_WEB_READ_HEADER"));
        assert!(err(&["--web.request-timeout", "nan"]).starts_with("XEN_WEB_REQUEST_TIMEOUT"));
        assert!(err(&["--scrape.min-interval=-2"]).starts_with("XEN_SCRAPE_MIN_INTERVAL"));
        assert!(err(&["--scrape.timeout-offset=-1"]).starts_with("XEN_SCRAPE_TIMEOUT_OFFSET"));
        assert!(
            err(&["--xen.max-concurrent-fetches", "many"])
                .starts_with("XEN_MAX_CONCURRENT_FETCHES")
        );
        assert!(err(&["--config.file", "/nonexistent/pools.yml"]).starts_with("--config.file"));
        assert!(err(&["--web.config.file="]).starts_with("XEN_WEB_CONFIG_FILE"));
        let e = err(&["--xen.timeout", "30", "--web.request-timeout", "20"]);
        assert!(e.contains("XEN_TIMEOUT"), "{e}");
        let e = err(&["--xen.timeout", "8x"]);
        assert!(e.starts_with("XEN_TIMEOUT (--xen.timeout) \"8x\""), "{e}");
        let e = err(&["--xen.user", " "]);
        assert!(e.starts_with("XEN_USER"), "{e}");
    }

    #[test]
    fn every_duration_takes_prometheus_syntax_or_seconds() {
        let c = Config::from_cli(
            &cli(&[
                "--xen.timeout",
                "1500ms",
                "--scrape.min-interval",
                "1m",
                "--scrape.timeout-offset",
                "250ms",
                "--web.read-header-timeout",
                "500ms",
                "--web.request-timeout",
                "30s",
            ]),
            &Env::default(),
        )
        .unwrap();
        assert_eq!(c.pool.timeout, Duration::from_millis(1500));
        assert_eq!(c.web.scrape_min_interval, Duration::from_secs(60));
        assert_eq!(c.timeout_offset, Duration::from_millis(250));
        assert_eq!(c.web.read_header_timeout, Duration::from_millis(500));
        assert_eq!(c.web.request_timeout, Some(Duration::from_secs(30)));
        let c = Config::from_cli(&cli(&["--xen.timeout", "2.5"]), &Env::default()).unwrap();
        assert_eq!(c.pool.timeout, Duration::from_millis(2500));
        for (flag, name) in [
            ("--xen.timeout", "XEN_TIMEOUT"),
            ("--scrape.min-interval", "XEN_SCRAPE_MIN_INTERVAL"),
            ("--scrape.timeout-offset", "XEN_SCRAPE_TIMEOUT_OFFSET"),
            ("--web.read-header-timeout", "XEN_WEB_READ_HEADER_TIMEOUT"),
            ("--web.request-timeout", "XEN_WEB_REQUEST_TIMEOUT"),
        ] {
            let e = err(&[flag, "8x"]);
            assert!(e.starts_with(&format!("{name} ({flag}) \"8x\"")), "{e}");
        }
    }

    #[test]
    fn web_defaults_follow_node_exporter_and_the_xapi_timeout() {
        let c = Config::from_cli(&cli(&[]), &Env::default()).unwrap();
        assert_eq!(c.web, WebOptions::default());
        assert_eq!(c.web.max_requests, 40);
        assert_eq!(
            c.web.request_timeout_for(c.pool.timeout),
            Duration::from_secs(60)
        );
        assert_eq!(
            c.web.request_timeout_for(Duration::from_secs(120)),
            Duration::from_secs(130)
        );
        let c = Config::from_cli(
            &cli(&["--scrape.min-interval", "15", "--web.max-requests", "0"]),
            &Env::default(),
        )
        .unwrap();
        assert_eq!(c.web.scrape_min_interval, Duration::from_secs(15));
        assert_eq!(c.web.max_requests, 0);
        assert!(c.summary().contains("unlimited"));
        assert!(err(&["--xen.ssl-fingerprint", "AB:CD"]).starts_with("XEN_SSL_FINGERPRINT"));
        let e = err(&["--xen.ssl-client-cert-file", "/nonexistent/c.pem"]);
        assert!(
            e.ends_with("XEN_SSL_CLIENT_KEY_FILE (--xen.ssl-client-key-file) is missing"),
            "{e}"
        );
        let e = err(&["--xen.ssl-client-key-file", "/nonexistent/k.pem"]);
        assert!(
            e.ends_with("XEN_SSL_CLIENT_CERT_FILE (--xen.ssl-client-cert-file) is missing"),
            "{e}"
        );
        assert!(err(&["--labels.hash-uuids", "true"]).starts_with("XEN_HASH_UUIDS"));
        assert!(err(&["--labels.hash-uuids", "perhaps"]).starts_with("XEN_HASH_UUIDS"));
    }

    #[test]
    fn trust_prefers_the_ca_file_then_the_fingerprint_then_the_system_roots() {
        let pin = Fingerprint([7; 32]);
        let mut tls = TlsConfig {
            verify: true,
            extra_roots_pem: Some(b"pem".to_vec()),
            fingerprint: Some(pin),
            ..TlsConfig::default()
        };
        assert_eq!(tls.mode(), TrustMode::CaFile);
        tls.extra_roots_pem = None;
        assert_eq!(tls.mode(), TrustMode::Fingerprint);
        tls.fingerprint = None;
        assert_eq!(tls.mode(), TrustMode::System);
        tls.verify = false;
        tls.fingerprint = Some(pin);
        assert_eq!(tls.mode(), TrustMode::Off);
        let c = Config::from_cli(
            &cli(&["--xen.ssl-fingerprint", &"ab".repeat(32)]),
            &Env::default(),
        )
        .unwrap();
        assert_eq!(c.pool.tls.fingerprint, Some(Fingerprint([0xab; 32])));
        assert!(c.summary().contains("AB:AB:AB"), "{}", c.summary());
    }

    #[test]
    fn hash_keys_must_be_long_enough_and_lose_a_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("xe-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "tooshort\n").unwrap();
        let e = err(&[
            "--labels.hash-uuids",
            "yes",
            "--labels.hash-uuids-key-file",
            short.to_str().unwrap(),
        ]);
        assert!(e.starts_with("XEN_HASH_UUIDS_KEY_FILE"), "{e}");
        let good = dir.join("good");
        std::fs::write(&good, "0123456789abcdef\n").unwrap();
        let c = Config::from_cli(
            &cli(&[
                "--labels.hash-uuids",
                "true",
                "--labels.hash-uuids-key-file",
                good.to_str().unwrap(),
            ]),
            &Env::default(),
        )
        .unwrap();
        let key = c.pool.hash_uuids_key.clone().unwrap();
        assert_eq!(key.expose(), b"0123456789abcdef");
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_is_a_command_wherever_the_flags_are() {
        let c = Config::from_cli(&cli(&["check", "--xen.mode", "pool"]), &Env::default()).unwrap();
        assert!(c.check_xapi && !c.check_only);
        let c = Config::from_cli(&cli(&["--xen.mode", "pool", "check"]), &Env::default()).unwrap();
        assert!(c.check_xapi);
        assert!(Cli::try_parse_from(["xen-exporter", "serve"]).is_err());
    }

    #[test]
    fn defaults_match_the_original_exporter() {
        let c = Config::from_cli(&cli(&[]), &Env::default()).unwrap();
        assert_eq!(c.pool.endpoint.host, "localhost");
        assert_eq!(c.pool.user, "root");
        assert!(c.pool.tls.verify);
        assert_eq!(c.pool.mode, Mode::Host);
        assert_eq!(c.listen, "0.0.0.0:9100".parse().unwrap());
        assert_eq!(c.pool.timeout, Duration::from_secs(8));
    }

    #[test]
    fn password_file_wins_and_loses_its_newline_and_never_prints() {
        let dir = std::env::temp_dir().join(format!("xe-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        std::fs::write(&path, "hunter2-secret\n").unwrap();
        let c = Config::from_cli(
            &cli(&["--xen.password-file", path.to_str().unwrap()]),
            &Env::default(),
        )
        .unwrap();
        assert_eq!(c.pool.password.expose(), "hunter2-secret");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.summary().contains("hunter2"));
        let both = Config::from_cli(
            &cli(&["--xen.password-file", path.to_str().unwrap()]),
            &Env {
                xen_password: Some("x".into()),
                credentials_directory: None,
            },
        );
        assert!(both.is_err());
        std::fs::write(dir.join(CREDENTIAL_NAME), "from-systemd").unwrap();
        let c = Config::from_cli(
            &cli(&[]),
            &Env {
                xen_password: None,
                credentials_directory: Some(dir.clone()),
            },
        )
        .unwrap();
        assert_eq!(c.pool.password.expose(), "from-systemd");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
