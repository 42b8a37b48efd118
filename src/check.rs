//! `xen-exporter check`: logs in with the configured settings and reports, for an operator,
//! the account and its rights, how TLS is verified (with the master's fingerprint, ready to
//! pin), and whether everything the exporter reads can be read, then logs out. The verdict
//! lists what failed. Makes the exporter's own calls and a few session getters, nothing else
//! (in particular never `host.get_management_interface`).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::{Mode, PoolConfig, TrustMode};
use crate::inventory::store::followed;
use crate::xapi::{self, Client, Reason, records};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Works.
    Ok,
    /// Works, but the operator should know (unverified TLS, an administrator account).
    Warn,
    /// Does not work; the exporter needs it.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
struct Item {
    what: String,
    status: Status,
    detail: String,
}

/// Everything `check` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    target: String,
    items: Vec<Item>,
    notes: Vec<String>,
}

impl Report {
    fn push(&mut self, what: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.items.push(Item {
            what: what.into(),
            status,
            detail: detail.into(),
        });
    }

    /// Whether everything the exporter needs works.
    pub fn ok(&self) -> bool {
        self.items.iter().all(|i| i.status != Status::Fail)
    }

    /// The checks that failed, as `what: detail`.
    pub fn failures(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| i.status == Status::Fail)
            .map(|i| format!("{}: {}", i.what, i.detail))
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "xen-exporter check: {}", self.target)?;
        for item in &self.items {
            let status = match item.status {
                Status::Ok => "ok",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            writeln!(f, "  {:<28} {:<4}  {}", item.what, status, item.detail)?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        let failures = self.failures();
        if failures.is_empty() {
            writeln!(f, "result: OK, everything the exporter needs works")
        } else {
            writeln!(f, "result: FAILED ({}):", failures.len())?;
            for failure in failures {
                writeln!(f, "  - {failure}")?;
            }
            Ok(())
        }
    }
}

/// Runs every check against the pool of `config`, logging out at the end.
pub async fn check(config: &PoolConfig) -> Report {
    let mut report = Report {
        target: format!("{} as {}", config.endpoint, config.user),
        ..Report::default()
    };
    let client = match Client::new(config) {
        Ok(client) => Arc::new(client),
        Err(error) => {
            report.push("setup", Status::Fail, error);
            return report;
        }
    };
    // Logging in is the first call that needs a session.
    let pools = match client.all_records::<IgnoredAny>("pool").await {
        Ok(pools) => {
            report.push(
                "login",
                Status::Ok,
                format!(
                    "session.login_with_password on {} (originator {})",
                    client.master(),
                    xapi::ORIGINATOR
                ),
            );
            Some(pools)
        }
        Err(error) => {
            report.push("login", Status::Fail, explain_login(&error));
            tls(&mut report, &client);
            return report;
        }
    };
    account(&mut report, &client).await;
    tls(&mut report, &client);

    let (event_classes, record_classes) = followed(config.collectors);
    for class in record_classes {
        let answer = if class == "pool" {
            Ok(pools.clone().unwrap_or_default())
        } else {
            client.all_records::<IgnoredAny>(class).await
        };
        match answer {
            Ok(records) => report.push(
                format!("read {class}"),
                Status::Ok,
                format!("{class}.get_all_records: {} records", records.len()),
            ),
            // Certificate arrived in xapi 1.249; the exporter then uses what hosts serve.
            Err(xapi::Error::Api(f)) if class == "Certificate" && f.code == "MESSAGE_METHOD_UNKNOWN" => report.push(
                format!("read {class}"),
                Status::Ok,
                format!("{class}.get_all_records: no such class on this XAPI; host certificates are read with host.get_server_certificate"),
            ),
            Err(error) => report.push(
                format!("read {class}"),
                Status::Fail,
                format!("{class}.get_all_records: {error}"),
            ),
        }
    }
    events(&mut report, &client, pools.as_ref(), &event_classes).await;
    if client.trust().pins_members() {
        member_certificates(&mut report, &client, config.mode).await;
    }
    rrd_updates(&mut report, &client, config.timeout).await;
    client.logout().await;
    report.push("logout", Status::Ok, "session.logout");
    report
}

fn explain_login(error: &xapi::Error) -> String {
    let hint = match error.reason() {
        Reason::Auth => "; check XEN_USER and the password (XEN_PASSWORD_FILE)",
        Reason::Tls => "; see \"Trusting the pool's certificates\" in the README",
        Reason::Connect | Reason::Timeout => {
            "; check XEN_HOST and that port 443 of the master is reachable"
        }
        _ => "",
    };
    format!("{error}{hint}")
}

async fn account(report: &mut Report, client: &Client) {
    let name = client
        .session_field::<String>("get_auth_user_name")
        .await
        .unwrap_or_default();
    let sid = client
        .session_field::<String>("get_auth_user_sid")
        .await
        .unwrap_or_default();
    let local = client
        .session_field::<bool>("get_is_local_superuser")
        .await
        .ok();
    // A field since xapi 21.2; older hosts do not know the getter.
    let by_certificate = client
        .session_field::<bool>("get_client_certificate")
        .await
        .unwrap_or(false);
    let permissions = client
        .session_field::<Vec<String>>("get_rbac_permissions")
        .await
        .ok();
    let who = if sid.is_empty() {
        format!("{name:?}")
    } else {
        format!("{name:?} (subject {sid})")
    };
    match (local, permissions) {
        (Some(true), _) => {
            report.push(
                "account",
                Status::Warn,
                format!("{who} is a local superuser: a full pool administrator"),
            );
            report.notes.push(
                "RBAC roles apply to external (Active Directory) users only: every local account XAPI accepts is a full administrator. For a read-only account, configure external authentication and give the user the read-only role (README, \"A dedicated account\"), or use a client certificate.".into(),
            );
        }
        (_, Some(permissions)) => {
            let (status, role) = role_of(&permissions, by_certificate);
            report.push(
                "account",
                status,
                format!(
                    "{who}: {role}; {} RBAC permissions (session.get_rbac_permissions)",
                    permissions.len()
                ),
            );
        }
        (_, None) => report.push(
            "account",
            Status::Warn,
            format!("{who}: XAPI did not tell its rights"),
        ),
    }
}

/// The least role that explains a permission list; XAPI lists permissions, not roles.
fn role_of(permissions: &[String], by_certificate: bool) -> (Status, &'static str) {
    let has = |p: &str| permissions.iter().any(|q| q.eq_ignore_ascii_case(p));
    if has("host.get_management_interface") {
        (
            Status::Warn,
            "pool-operator or pool-admin role, more than monitoring needs",
        )
    } else if has("vm.start") {
        (
            Status::Warn,
            "a VM role (vm-operator or above), more than monitoring needs",
        )
    } else if by_certificate {
        (
            Status::Ok,
            "client-cert role (read-only rights, authenticated by the client certificate)",
        )
    } else {
        (Status::Ok, "read-only role")
    }
}

fn tls(report: &mut Report, client: &Client) {
    let trust = client.trust();
    let master = client.master();
    let presented = trust
        .presented(&master.host)
        .map_or_else(|| "not seen".to_string(), |f| format!("SHA-256 {f}"));
    let (status, how) = match trust.mode() {
        TrustMode::CaFile => (Status::Ok, "chain to XEN_SSL_CA_FILE or a system root"),
        TrustMode::Fingerprint => (
            Status::Ok,
            "master pinned (XEN_SSL_FINGERPRINT), members as XAPI reports them",
        ),
        TrustMode::System => (Status::Ok, "chain to a system root"),
        TrustMode::Off => (
            Status::Warn,
            "NOT VERIFIED (XEN_SSL_VERIFY=false): pin the fingerprint below instead",
        ),
    };
    let status = if master.scheme.as_str() == "http" {
        report
            .notes
            .push("XEN_HOST uses http://: the password crosses the network in clear.".into());
        Status::Warn
    } else {
        status
    };
    report.push(
        "tls",
        status,
        format!(
            "mode {}: {how}; master {} presented {presented}",
            trust.mode().as_str(),
            master.host
        ),
    );
}

async fn events(
    report: &mut Report,
    client: &Client,
    pools: Option<&records::Records<IgnoredAny>>,
    classes: &[&str],
) {
    let Some(pool) = pools.and_then(|p| p.keys().next()) else {
        report.push(
            "events",
            Status::Fail,
            "no pool record to take a token from",
        );
        return;
    };
    let token = match client
        .call::<String>(
            "event.inject",
            &[Value::from("pool"), Value::from(pool.as_str())],
        )
        .await
    {
        Ok(token) => token,
        Err(error) => {
            report.push("events", Status::Fail, format!("event.inject: {error}"));
            return;
        }
    };
    match client.event_from(classes, &token, Duration::ZERO).await {
        Ok(batch) => report.push(
            "events",
            Status::Ok,
            format!(
                "event.inject, event.from (timeout 0): {} events",
                batch.events.len()
            ),
        ),
        Err(error) => report.push("events", Status::Fail, format!("event.from: {error}")),
    }
}

async fn member_certificates(report: &mut Report, client: &Client, mode: Mode) {
    let hosts = match client.all_records::<records::Host>("host").await {
        Ok(hosts) => hosts,
        Err(error) => {
            report.push("host certificates", Status::Fail, error.to_string());
            return;
        }
    };
    let mut learned = 0;
    let mut failed = String::new();
    for (reference, host) in &hosts {
        let answer = client
            .call::<String>(
                "host.get_server_certificate",
                &[Value::from(reference.as_str())],
            )
            .await
            .map_err(|e| e.to_string())
            .and_then(|pem| client.trust().pin(&host.address, &pem));
        match answer {
            Ok(_) => learned += 1,
            Err(error) => {
                let _ = write!(failed, "; {} ({}): {error}", host.name_label, host.address);
            }
        }
    }
    // Host mode reads only XEN_HOST, which the master's pin covers when it is the master.
    let status = if failed.is_empty() {
        Status::Ok
    } else if mode == Mode::Pool {
        Status::Fail
    } else {
        Status::Warn
    };
    report.push(
        "host certificates",
        status,
        format!(
            "host.get_server_certificate: {learned} of {} learned{failed}",
            hosts.len()
        ),
    );
}

async fn rrd_updates(report: &mut Report, client: &Client, timeout: Duration) {
    let master = client.master();
    let what = format!("rrd_updates {}", master.host);
    match client
        .rrd_updates(&master, Instant::now() + timeout)
        .await
        .map_err(|e| e.to_string())
        .and_then(|body| {
            let parsed = xapi::rrd::parse(&body).map_err(|e| e.to_string())?;
            Ok((parsed.legend.len(), parsed.newest.is_some()))
        }) {
        Ok((sources, true)) => report.push(
            what,
            Status::Ok,
            format!("GET /rrd_updates: {sources} data sources"),
        ),
        Ok((sources, false)) => report.push(
            what,
            Status::Warn,
            format!("GET /rrd_updates: {sources} data sources but no row yet"),
        ),
        Err(error) => report.push(what, Status::Fail, format!("GET /rrd_updates: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_are_told_from_the_permissions() {
        let read_only = strings(&["event.from", "http/get_rrd_updates", "vm.get_all_records"]);
        assert_eq!(role_of(&read_only, false), (Status::Ok, "read-only role"));
        assert_eq!(role_of(&read_only, true).0, Status::Ok);
        assert!(role_of(&read_only, true).1.starts_with("client-cert"));
        let operator = strings(&["VM.start", "event.from"]);
        assert_eq!(role_of(&operator, false).0, Status::Warn);
        let admin = strings(&["host.get_management_interface", "vm.start"]);
        assert!(role_of(&admin, false).1.starts_with("pool-operator"));
    }

    #[test]
    fn the_verdict_lists_every_failure() {
        let mut report = Report {
            target: "https://x:443 as monitor".into(),
            ..Report::default()
        };
        report.push("login", Status::Ok, "fine");
        report.push("tls", Status::Warn, "NOT VERIFIED");
        assert!(report.ok());
        report.push("read SR", Status::Fail, "RBAC_PERMISSION_DENIED");
        report.push("events", Status::Fail, "event.from: timeout");
        assert!(!report.ok());
        let text = report.to_string();
        assert!(text.contains("result: FAILED (2):"), "{text}");
        assert!(
            text.contains("  - read SR: RBAC_PERMISSION_DENIED"),
            "{text}"
        );
        assert!(text.contains("  - events: event.from: timeout"), "{text}");
    }
}
