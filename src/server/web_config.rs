//! The `--web.config.file` format shared by Prometheus exporters (exporter-toolkit's
//! web-configuration): strict parsing (unknown keys and duplicate keys are errors),
//! validation, and the loaded result: the rustls configuration, the user table, extra
//! response headers and the rate limit, plus the files read and their stamps so that a
//! reload can tell when something changed. Error messages never quote secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderName, HeaderValue};
use rustls::ServerConfig;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::auth::{Users, UsersSection};
use super::tls::{TlsSection, TlsSummary};

/// A string from the file that must never be printed: an inline key or a password hash.
/// Deserialization errors do not quote it either.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct SecretText(String);

impl SecretText {
    pub(super) fn expose(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub(super) fn from_test(text: &str) -> Self {
        SecretText(text.to_string())
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(SecretVisitor)
    }
}

/// Accepts strings only, and says "expected a string" without repeating what it got.
struct SecretVisitor;

macro_rules! refuse_without_quoting {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method<E: de::Error>(self, _: $ty) -> Result<SecretText, E> {
            Err(E::custom("expected a string"))
        })*
    };
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = SecretText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretText, E> {
        Ok(SecretText(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<SecretText, E> {
        Ok(SecretText(v))
    }

    refuse_without_quoting!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_bytes: &[u8]);

    fn visit_unit<E: de::Error>(self) -> Result<SecretText, E> {
        Ok(SecretText::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<SecretText, E> {
        Ok(SecretText::default())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretText, A::Error> {
        Err(de::Error::custom("expected a string"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<SecretText, A::Error> {
        Err(de::Error::custom("expected a string"))
    }
}

/// The whole file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    #[serde(default)]
    tls_server_config: Option<TlsSection>,
    #[serde(default)]
    http_server_config: Option<HttpSection>,
    #[serde(default)]
    basic_auth_users: Option<UsersSection>,
    #[serde(default)]
    rate_limit: Option<RateLimitSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    /// Accepted for compatibility; only HTTP/1.1 is served.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitSection {
    #[serde(default)]
    interval: Option<GoDuration>,
    #[serde(default)]
    burst: Option<i64>,
}

/// A Go `time.Duration` as YAML gives it: a string such as `1s` or `1m30s`, or an integer
/// count of nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct GoDuration(Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Nanos(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Nanos(n) => Ok(GoDuration(Duration::from_nanos(n))),
            Raw::Text(text) => parse_go_duration(&text).map(GoDuration).ok_or_else(|| {
                de::Error::custom(format!(
                    "{text:?} is not a duration such as 1s, 500ms or 1m30s"
                ))
            }),
        }
    }
}

/// Go's `time.ParseDuration` for non-negative values: decimal numbers with units ns, us, µs,
/// ms, s, m, h, concatenated.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// exporter-toolkit's token bucket: `burst` requests at once, refilled one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RateLimit {
    pub(super) interval: Duration,
    pub(super) burst: u32,
}

/// The response headers exporter-toolkit lets a file set, with the values it allows (none
/// listed: any value). A fixed list keeps exporters consistent and keeps a file from
/// overriding `Content-Type` or the like.
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

fn headers(given: &BTreeMap<String, String>) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut out = Vec::new();
    for (name, value) in given {
        let Some((canonical, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| n == name) else {
            let hint = ALLOWED_HEADERS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(n, _)| format!(" (spelled {n})"))
                .unwrap_or_default();
            return Err(format!(
                "http_server_config: header {name:?} cannot be configured{hint}; allowed: {}",
                ALLOWED_HEADERS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        // "Unset if blank", as the format documents.
        if value.is_empty() {
            continue;
        }
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(format!(
                "http_server_config: header {canonical}: {value:?} is not allowed; use {}",
                allowed.join(" or ")
            ));
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            format!("http_server_config: header {canonical}: the value is not a valid header value")
        })?;
        let name = HeaderName::from_bytes(canonical.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("http_server_config: header {canonical}: invalid name"))?;
        out.push((name, value));
    }
    Ok(out)
}

/// What identifies a version of a file cheaply: size, modification time and (on Unix) inode,
/// so that an atomic rename of a new file is noticed as well as a rewrite in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    /// `None` when the file cannot be read: that too is a change.
    pub(super) fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        })
    }
}

/// Reads a file the configuration names, recording it for change detection.
pub(super) fn read_named(
    field: &str,
    path: &Path,
    files: &mut Vec<(PathBuf, Option<Stamp>)>,
) -> Result<Vec<u8>, String> {
    // Stamp before reading: a change during the read then shows up at the next check.
    files.push((path.to_path_buf(), Stamp::of(path)));
    std::fs::read(path).map_err(|e| format!("{field} {}: cannot read it ({e})", path.display()))
}

/// A loaded and validated web configuration.
pub struct WebConfig {
    pub(super) tls: Option<Arc<ServerConfig>>,
    pub(super) users: Arc<Users>,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) rate_limit: Option<RateLimit>,
    /// Every file read, with its stamp from just before the read; the first is the file itself.
    pub(super) files: Vec<(PathBuf, Option<Stamp>)>,
    warnings: Vec<String>,
    tls_summary: Option<TlsSummary>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls_summary)
            .field("users", &self.users.len())
            .field("headers", &self.headers.len())
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

impl Default for WebConfig {
    /// No file: plain HTTP, no authentication, no extra headers, no rate limit.
    fn default() -> Self {
        WebConfig {
            tls: None,
            users: Arc::new(Users::default()),
            headers: Vec::new(),
            rate_limit: None,
            files: Vec::new(),
            warnings: Vec::new(),
            tls_summary: None,
        }
    }
}

impl WebConfig {
    /// Reads and validates the file and every file it names. The error says what is wrong
    /// without naming the file itself (the caller does, with its setting) and never quotes a
    /// key or a hash.
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        Self::load_recording(path, &mut Vec::new())
    }

    /// [`WebConfig::load`], leaving in `files` what it read when it fails, so that a reload
    /// can wait for one of those to change before trying again.
    pub(super) fn load_recording(
        path: &Path,
        files: &mut Vec<(PathBuf, Option<Stamp>)>,
    ) -> Result<WebConfig, String> {
        files.push((path.to_path_buf(), Stamp::of(path)));
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read it ({e})"))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| "the file is not UTF-8 text")?;
        let schema = parse(text)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_schema(schema, dir, files)
    }

    fn from_schema(
        schema: FileSchema,
        dir: &Path,
        files: &mut Vec<(PathBuf, Option<Stamp>)>,
    ) -> Result<WebConfig, String> {
        let mut warnings = Vec::new();
        let (tls, tls_summary) = match schema.tls_server_config {
            Some(section) if !section.is_empty() => {
                let (config, summary) = section.build(dir, files, &mut warnings)?;
                (Some(config), Some(summary))
            }
            _ => (None, None),
        };
        let users = match schema.basic_auth_users {
            None => Users::default(),
            Some(section) => Users::from_section(section)?,
        };
        let http = schema.http_server_config.unwrap_or_default();
        let headers = headers(&http.headers.unwrap_or_default())?;
        let rate_limit = match schema.rate_limit {
            None => None,
            Some(section) => {
                let interval = section.interval.unwrap_or_default().0;
                let burst = section.burst.unwrap_or(0);
                let burst = u32::try_from(burst).map_err(|_| {
                    format!("rate_limit: burst {burst} is not valid; give a whole number of requests, 0 or more")
                })?;
                if interval.is_zero() {
                    None
                } else {
                    if burst == 0 {
                        warnings.push(
                            "rate_limit: burst 0 refuses every request (429), as in exporter-toolkit; set burst to 1 or more".into(),
                        );
                    }
                    Some(RateLimit { interval, burst })
                }
            }
        };
        Ok(WebConfig {
            tls,
            users: Arc::new(users),
            headers,
            rate_limit,
            files: std::mem::take(files),
            warnings,
            tls_summary,
        })
    }

    /// Whether connections are TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Settings that were accepted but that this exporter cannot honour (e.g. CBC cipher
    /// suites); the server logs them as warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// One line per aspect, for `--config.check` and the start-up log; no secrets.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        match &self.tls_summary {
            Some(tls) => out.push_str(&format!("  web tls            {tls}\n")),
            None => out.push_str("  web tls            off (plain HTTP)\n"),
        }
        out.push_str(&format!(
            "  web basic auth     {}\n",
            match self.users.len() {
                0 => "off".to_string(),
                1 => "1 user".to_string(),
                n => format!("{n} users"),
            }
        ));
        if !self.headers.is_empty() {
            out.push_str(&format!(
                "  web headers        {}\n",
                self.headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(limit) = &self.rate_limit {
            out.push_str(&format!(
                "  web rate limit     burst {}, one more every {:?}\n",
                limit.burst, limit.interval
            ));
        }
        for warning in &self.warnings {
            out.push_str(&format!("  warning: {warning}\n"));
        }
        out
    }
}

/// Strict YAML: unknown keys (serde) and duplicate keys (parser) are errors, and errors carry
/// a line number but no snippet of the file, which could hold a key.
fn parse(text: &str) -> Result<FileSchema, String> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    let parsed: Result<Option<FileSchema>, _> = serde_saphyr::from_str_with_options(text, options);
    match parsed {
        Ok(schema) => Ok(schema.unwrap_or_default()),
        Err(error) => {
            let message = error.without_snippet().to_string();
            Err(format!("not a valid web configuration: {message}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> Result<FileSchema, String> {
        parse(text)
    }

    #[test]
    fn empty_and_comment_only_files_mean_no_protection() {
        for text in ["", "# nothing\n", "---\n", "tls_server_config:\n"] {
            let s = schema(text).unwrap();
            let c = WebConfig::from_schema(s, Path::new("."), &mut Vec::new()).unwrap();
            assert!(!c.tls_enabled() && c.users.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn unknown_and_duplicate_keys_are_errors() {
        let e = schema("tls_server_config:\n  cert_fil: x\n").unwrap_err();
        assert!(e.contains("cert_fil"), "{e}");
        let e = schema("basic_auth_user:\n  a: b\n").unwrap_err();
        assert!(e.contains("basic_auth_user"), "{e}");
        let e = schema("rate_limit:\n  burst: 1\n  burst: 2\n").unwrap_err();
        assert!(e.to_lowercase().contains("duplicate"), "{e}");
    }

    #[test]
    fn secrets_are_not_quoted_in_errors() {
        let e = schema("tls_server_config:\n  key: [\"-----BEGIN PRIVATE KEY----- abc\"]\n")
            .unwrap_err();
        assert!(!e.contains("abc") && !e.contains("BEGIN"), "{e}");
    }

    #[test]
    fn headers_follow_exporter_toolkit_rules() {
        let ok: BTreeMap<String, String> = [
            ("X-Frame-Options", "deny"),
            ("Content-Security-Policy", "default-src 'self'"),
            ("X-XSS-Protection", ""),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let h = headers(&ok).unwrap();
        assert_eq!(h.len(), 2);
        assert!(h.iter().any(|(n, _)| n == "x-frame-options"));
        for (name, value, why) in [
            ("Content-Type", "text/html", "cannot be configured"),
            ("x-frame-options", "deny", "spelled X-Frame-Options"),
            ("X-Frame-Options", "allow", "deny or sameorigin"),
            ("X-Content-Type-Options", "sniff", "nosniff"),
            (
                "Strict-Transport-Security",
                "a\nb",
                "not a valid header value",
            ),
        ] {
            let given = [(name.to_string(), value.to_string())]
                .into_iter()
                .collect();
            let e = headers(&given).unwrap_err();
            assert!(e.contains(why), "{name}: {e}");
        }
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "1", "s", "1d", "-1s", "1 s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rate_limit_zero_interval_is_off() {
        let s = schema("rate_limit:\n  interval: 0\n  burst: 0\n").unwrap();
        let c = WebConfig::from_schema(s, Path::new("."), &mut Vec::new()).unwrap();
        assert_eq!(c.rate_limit, None);
        let s = schema("rate_limit:\n  interval: 1s\n  burst: 3\n").unwrap();
        let c = WebConfig::from_schema(s, Path::new("."), &mut Vec::new()).unwrap();
        assert_eq!(
            c.rate_limit,
            Some(RateLimit {
                interval: Duration::from_secs(1),
                burst: 3
            })
        );
        let s = schema("rate_limit:\n  interval: 1s\n  burst: -1\n").unwrap();
        assert!(WebConfig::from_schema(s, Path::new("."), &mut Vec::new()).is_err());
    }

    #[test]
    fn tls_settings_without_a_certificate_are_an_error() {
        let s = schema("tls_server_config:\n  min_version: TLS13\n").unwrap();
        let e = WebConfig::from_schema(s, Path::new("."), &mut Vec::new()).unwrap_err();
        assert!(e.contains("cert_file"), "{e}");
    }
}
