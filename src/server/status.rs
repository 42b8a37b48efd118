//! The status page `/`: per pool its hosts, whether each answered the last collection and
//! why not, when that collection ran and how long it took, the TLS trust mode, and the links
//! to scrape. Plain HTML without scripts or external assets, rendered by a pure function
//! from what [`Pool::status`](crate::collect::Pool::status) read; every value escaped.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::collect::{HostOutcome, PoolStatus};
use crate::config::{Mode, TrustMode};

/// The page. `description` says what the process exports; `probes` whether pools are
/// behind `/probe` (a configuration file) rather than `/metrics`; `now` dates the ages.
pub(super) fn render(
    description: &str,
    pools: &[PoolStatus],
    probes: bool,
    now: SystemTime,
) -> String {
    let mut page = String::with_capacity(2048 + 256 * pools.len());
    let version = env!("CARGO_PKG_VERSION");
    page.push_str(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>xen-exporter</title>\n\
         <style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px;text-align:left}\
         .down{color:#b00}</style></head>\n<body>\n",
    );
    let _ = write!(
        page,
        "<h1>xen-exporter {version}</h1>\n<p>{}</p>\n<ul><li><a href=\"metrics\">metrics</a></li>\
         <li><a href=\"-/healthy\">health</a></li><li><a href=\"-/ready\">readiness</a></li></ul>\n",
        escape(description)
    );
    for pool in pools {
        pool_section(&mut page, pool, probes, now);
    }
    page.push_str("</body></html>\n");
    page
}

fn pool_section(page: &mut String, pool: &PoolStatus, probes: bool, now: SystemTime) {
    let name = escape(&pool.name);
    let _ = write!(page, "<h2>Pool {name}</h2>\n<ul>");
    if probes {
        let _ = write!(
            page,
            "<li>Scrape: <a href=\"probe?target={name}\">probe?target={name}</a></li>"
        );
    }
    let mode = match pool.mode {
        Mode::Host => "host (the configured host only)",
        Mode::Pool => "pool (every host)",
    };
    let _ = write!(
        page,
        "<li>Mode: {mode}</li><li>TLS: {}</li>",
        tls(pool.trust_mode, pool.plain_http)
    );
    let Some(last) = &pool.last else {
        page.push_str("<li>Last collection: not started</li></ul>\n");
        return;
    };
    let ago = now
        .duration_since(last.started)
        .map_or_else(|_| String::new(), |d| format!(", {} s ago", d.as_secs()));
    let up = last.hosts.iter().filter(|h| h.failure.is_none()).count();
    let _ = writeln!(
        page,
        "<li>Last collection: started {}{ago}, took {}; {up} of {} hosts answered</li></ul>",
        utc(last.started),
        seconds(last.took),
        last.hosts.len(),
    );
    if last.hosts.is_empty() {
        page.push_str("<p>No host was asked: the pool's inventory was not read yet.</p>\n");
        return;
    }
    page.push_str(
        "<table><tr><th>Host</th><th>UUID</th><th>Address</th><th>Last collection</th><th>Reason</th></tr>\n",
    );
    for host in &last.hosts {
        host_row(page, host);
    }
    page.push_str("</table>\n");
}

fn host_row(page: &mut String, host: &HostOutcome) {
    let (state, reason) = match host.failure {
        None => ("<td>up</td>", ""),
        Some(reason) => ("<td class=\"down\">down</td>", reason.as_str()),
    };
    let _ = writeln!(
        page,
        "<tr><td>{}</td><td>{}</td><td>{}</td>{state}<td>{}</td></tr>",
        escape(&host.name),
        escape(&host.uuid),
        escape(&host.address),
        escape(reason),
    );
}

/// The trust mode in words, with the label value of `xen_exporter_xapi_tls_verify`.
fn tls(mode: TrustMode, plain_http: bool) -> String {
    if plain_http {
        return "none: plain HTTP".into();
    }
    let words = match mode {
        TrustMode::CaFile => "certificates chain to the configured CA file",
        TrustMode::Fingerprint => "the master's pinned SHA-256 fingerprint",
        TrustMode::System => "certificates chain to the system roots",
        TrustMode::Off => "NOT VERIFIED (insecure)",
    };
    format!("{words} (mode=\"{}\")", mode.as_str())
}

fn seconds(took: Duration) -> String {
    format!("{:.3} s", took.as_secs_f64())
}

/// `2026-01-01T00:00:07Z`; times before 1970 (a clock set back) print as the epoch.
fn utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Text made safe for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::collect::{HostReason, LastCollection};

    const T: u64 = 1_767_225_607;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn reason(label: &str) -> HostReason {
        HostReason::all().find(|r| r.as_str() == label).unwrap()
    }

    fn host(name: &str, failure: Option<HostReason>) -> HostOutcome {
        HostOutcome {
            name: Arc::from(name),
            uuid: Arc::from("0844f276-6eef-4658-a5a6-6d0bd5ed740a"),
            address: "192.0.2.10".into(),
            failure,
        }
    }

    fn pool(name: &str, last: Option<LastCollection>) -> PoolStatus {
        PoolStatus {
            name: Arc::from(name),
            mode: Mode::Pool,
            trust_mode: TrustMode::Fingerprint,
            plain_http: false,
            last: last.map(Arc::new),
        }
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(utc(at(T)), "2026-01-01T00:00:07Z");
        assert_eq!(utc(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(utc(at(4_107_542_399)), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_down_host_is_named_with_its_reason_and_the_time_is_shown() {
        let last = LastCollection {
            started: at(T),
            took: Duration::from_millis(1234),
            hosts: vec![host("xcp1", None), host("xcp2", Some(reason("connect")))],
        };
        let page = render("Exporting.", &[pool("lab", Some(last))], true, at(T + 42));
        assert!(page.contains("started 2026-01-01T00:00:07Z, 42 s ago, took 1.234 s"));
        assert!(page.contains("1 of 2 hosts answered"));
        assert!(page.contains(
            "<tr><td>xcp2</td><td>0844f276-6eef-4658-a5a6-6d0bd5ed740a</td><td>192.0.2.10</td>\
             <td class=\"down\">down</td><td>connect</td></tr>"
        ));
        assert!(page.contains("<tr><td>xcp1</td>") && page.contains("<td>up</td><td></td>"));
        assert!(page.contains("<a href=\"probe?target=lab\">"));
        assert!(page.contains("mode=\"fingerprint\""));
        for link in ["metrics", "-/healthy", "-/ready"] {
            assert!(page.contains(&format!("<a href=\"{link}\">")), "{link}");
        }
        assert!(!page.contains("<script"));
    }

    #[test]
    fn a_pool_never_collected_is_not_started() {
        let page = render("", &[pool("lab", None)], false, at(T));
        assert!(page.contains("Last collection: not started"));
        assert!(!page.contains("<table>") && !page.contains("probe?target"));
    }

    #[test]
    fn every_value_is_escaped() {
        let last = LastCollection {
            started: at(T),
            took: Duration::ZERO,
            hosts: vec![host("<script>alert(\"x\")</script> & 'co'", None)],
        };
        let page = render("<b>", &[pool("a", Some(last))], false, at(T));
        assert!(
            page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;")
        );
        assert!(page.contains("<p>&lt;b&gt;</p>"));
        assert!(!page.contains("<script") && !page.contains("<b>"));
    }

    #[test]
    fn tls_mode_says_when_nothing_is_checked() {
        assert!(tls(TrustMode::Off, false).contains("NOT VERIFIED"));
        assert_eq!(tls(TrustMode::System, true), "none: plain HTTP");
        assert!(tls(TrustMode::CaFile, false).ends_with("(mode=\"ca_file\")"));
    }
}
