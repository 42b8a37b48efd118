//! The Grafana dashboard (`deploy/grafana/xen-exporter.json`) against a real Prometheus
//! scraping the exporter on a simulated pool with every collector on: the variables are
//! resolved as Grafana resolves them (`label_values` through the label-values API, multi-value
//! selections as an escaped regex alternation, `$__rate_interval` from the scrape interval),
//! and every query of every panel must return data, except the few panels named here as
//! empty on a healthy pool. Static rules are checked on the way: every selector is filtered by
//! `$job` and `$instance`, and by `$host` where its series have a host label, and counters
//! are only read through `rate`/`increase` over `$__rate_interval`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use xapi_sim::SimConfig;
use xen_exporter::config::Collectors;

use crate::harness::{TestEnv, poll_until};
use crate::prometheus::{self, Prometheus, encode};

const DASHBOARD: &str = include_str!("../../deploy/grafana/xen-exporter.json");

/// Panels that show nothing on a healthy pool by design; at most one panel in ten.
const LEGITIMATELY_EMPTY: &[&str] = &[
    // Only priorities 1–3: a quiet pool has none.
    "XAPI alerts",
    // Only VMs that have snapshots.
    "VMs with snapshots",
];

/// Prometheus' scrape interval here, which is also the datasource's "scrape interval" that
/// Grafana's `$__rate_interval` is derived from.
const SCRAPE_INTERVAL_S: u64 = 1;
/// `$__interval` for the test's time range: Grafana divides the range by the panel's width in
/// points and never goes below the scrape interval, which a short range reaches.
const INTERVAL_S: u64 = SCRAPE_INTERVAL_S;
/// `$__range`: the dashboard's time range as the test pretends it is.
const RANGE_S: u64 = 300;

/// `$__rate_interval` as Grafana computes it: max($__interval + scrape interval, 4 × scrape
/// interval), so that a rate always spans at least two samples.
fn rate_interval_s() -> u64 {
    (INTERVAL_S + SCRAPE_INTERVAL_S).max(4 * SCRAPE_INTERVAL_S)
}

/// One panel that is not a row, and the queries of its targets.
struct Panel {
    title: String,
    exprs: Vec<String>,
}

/// Walks the panels as Grafana lays them out: rows with their panels after them at the top
/// level, or inside a collapsed row's `panels`. Returns the rows' titles and the others.
fn panels(dashboard: &Value) -> (Vec<String>, Vec<Panel>) {
    fn walk(list: &[Value], rows: &mut Vec<String>, out: &mut Vec<Panel>) {
        for panel in list {
            let title = panel["title"].as_str().unwrap_or("").to_string();
            if panel["type"] == "row" {
                rows.push(title);
                if let Some(inner) = panel["panels"].as_array() {
                    walk(inner, rows, out);
                }
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${DS_PROMETHEUS}",
                "panel {title:?}: its datasource must be the imported one"
            );
            let exprs: Vec<String> = panel["targets"]
                .as_array()
                .map(|targets| {
                    targets
                        .iter()
                        .map(|t| {
                            t["expr"].as_str().unwrap_or_else(|| {
                                panic!("panel {title:?}: a target without expr: {t}")
                            })
                        })
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            assert!(!exprs.is_empty(), "panel {title:?} has no Prometheus query");
            out.push(Panel { title, exprs });
        }
    }
    let (mut rows, mut out) = (Vec::new(), Vec::new());
    walk(
        dashboard["panels"].as_array().expect("dashboard panels"),
        &mut rows,
        &mut out,
    );
    (rows, out)
}

/// A template variable: its name, its `label_values` query and how it is selected.
struct Variable {
    name: String,
    query: String,
    multi: bool,
    include_all: bool,
    all_value: Option<String>,
}

fn variables(dashboard: &Value) -> Vec<Variable> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_string();
            assert_eq!(v["type"], "query", "variable {name}: a query variable");
            // Grafana 10+ stores the query as an object; older exports as a string.
            let query = match &v["query"] {
                Value::String(q) => q.clone(),
                q => q["query"].as_str().unwrap_or("").to_string(),
            };
            assert!(
                v["regex"].as_str().unwrap_or("").is_empty(),
                "variable {name}: this test does not apply variable regexes"
            );
            Variable {
                name,
                query,
                multi: v["multi"] == true,
                include_all: v["includeAll"] == true,
                all_value: v["allValue"]
                    .as_str()
                    .filter(|a| !a.is_empty())
                    .map(str::to_string),
            }
        })
        .collect()
}

/// Grafana's `prometheusSpecialRegexEscape`: a backslash pair before each regex
/// metacharacter, which the PromQL string literal turns into one.
fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' {
            out.push_str("\\\\\\\\");
        } else {
            if "$^*{}[]'+?.()|".contains(c) {
                out.push_str("\\\\");
            }
            out.push(c);
        }
    }
    out
}

/// What Grafana puts in a query for a variable with `values` selected: one escaped value,
/// or an alternation of them (multi-value and All selections).
fn format_selection(variable: &Variable, values: &[String]) -> String {
    if !variable.multi && !variable.include_all {
        assert_eq!(values.len(), 1, "${} is single-valued", variable.name);
        return values[0].replace('\\', "\\\\").replace('\'', "\\'");
    }
    let escaped: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
    match escaped.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join("|")),
    }
}

/// Replaces every `$name` and `${name}` by its text; `Err` names what is unknown.
fn interpolate(text: &str, known: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text}"))?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let value = known
            .get(name)
            .ok_or_else(|| format!("unknown variable ${name} in {text}"))?;
        out.push_str(value);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits `label_values(selector, label)` (or `label_values(label)`).
fn label_values_query(query: &str) -> (Option<&str>, &str) {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values() query: {query}"));
    match inner.rsplit_once(',') {
        Some((selector, label)) => (Some(selector.trim()), label.trim()),
        None => (None, inner.trim()),
    }
}

/// A metric selector in a query: the metric's name, its matchers and what follows it.
struct Selector<'a> {
    name: &'a str,
    matchers: &'a str,
    before: &'a str,
    after: &'a str,
}

/// Every `xen_…` metric named in `expr`; `Err` for one without a `{…}` selector.
fn selectors(expr: &str) -> Result<Vec<Selector<'_>>, String> {
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut found = Vec::new();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' && (i == 0 || bytes[i - 1] != b'\\') {
            in_string = !in_string;
        }
        if in_string || !expr[i..].starts_with("xen_") || (i > 0 && word(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let end = i + expr[i..].bytes().take_while(|&b| word(b)).count();
        let name = &expr[i..end];
        if bytes.get(end) != Some(&b'{') {
            return Err(format!("{name} without a selector"));
        }
        let mut close = end + 1;
        let mut quoted = false;
        while close < bytes.len() && (quoted || bytes[close] != b'}') {
            if bytes[close] == b'"' && bytes[close - 1] != b'\\' {
                quoted = !quoted;
            }
            close += 1;
        }
        found.push(Selector {
            name,
            matchers: &expr[end + 1..close.min(bytes.len())],
            before: &expr[..i],
            after: &expr[(close + 1).min(bytes.len())..],
        });
        i = close;
    }
    Ok(found)
}

/// The static rules of one query; `series_labels` holds each metric's label names and
/// `types` its type, both as Prometheus knows them.
fn check_rules(
    expr: &str,
    series_labels: &BTreeMap<String, BTreeSet<String>>,
    types: &BTreeMap<String, String>,
) -> Vec<String> {
    let selectors = match selectors(expr) {
        Ok(s) => s,
        Err(why) => return vec![why],
    };
    let mut problems = Vec::new();
    if selectors.is_empty() {
        problems.push("no xen_ metric".to_string());
    }
    for s in selectors {
        let Some(labels) = series_labels.get(s.name) else {
            problems.push(format!("{}: the exporter emits no such series", s.name));
            continue;
        };
        for filter in [r#"job=~"$job""#, r#"instance=~"$instance""#] {
            if !s.matchers.contains(filter) {
                problems.push(format!("{}: not filtered by {filter}", s.name));
            }
        }
        if labels.contains("host") && !s.matchers.contains(r#"host=~"$host"#) {
            problems.push(format!(
                "{}: has a host label but no host=~\"$host\"",
                s.name
            ));
        }
        if types.get(s.name).map(String::as_str) == Some("counter") {
            let through = ["rate(", "increase("]
                .iter()
                .any(|f| s.before.trim_end().ends_with(f));
            if !through || !s.after.starts_with("[$__rate_interval])") {
                problems.push(format!(
                    "{}: a counter, to be read through rate/increase over $__rate_interval",
                    s.name
                ));
            }
        }
    }
    problems
}

#[tokio::test]
async fn every_panel_of_the_dashboard_has_data_in_a_real_prometheus() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");

    // Importable as Grafana exports are: the datasource is an input, the uid fixed.
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().is_some());

    let (rows, panels) = panels(&dashboard);
    assert!(rows.len() >= 4, "at least 4 rows, found {rows:?}");
    assert!(
        panels.len() >= 20,
        "at least 20 panels besides rows, found {}",
        panels.len()
    );
    let titles: BTreeSet<&str> = panels.iter().map(|p| p.title.as_str()).collect();
    assert_eq!(titles.len(), panels.len(), "panel titles are unique");
    for title in LEGITIMATELY_EMPTY {
        assert!(
            titles.contains(title),
            "no panel {title:?} in the dashboard"
        );
    }
    assert!(
        LEGITIMATELY_EMPTY.len() * 10 <= panels.len(),
        "at most one panel in ten may be empty on a healthy pool"
    );

    let variables = variables(&dashboard);
    let names: Vec<&str> = variables.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["job", "instance", "host"]);
    assert_eq!(
        variables[2].query,
        r#"label_values(xen_host_info{job=~"$job",instance=~"$instance"}, host)"#
    );
    for v in &variables {
        assert!(
            v.multi && v.include_all,
            "${}: multi-value with All, so that the whole pool shows by default",
            v.name
        );
    }

    let Some(binary) = prometheus::binary() else {
        return;
    };
    let env = TestEnv::start_with(
        SimConfig {
            nan_ratio: 0.0,
            ..SimConfig::demo()
        },
        |pool| {
            // Every collector, so that the panels of the optional families have data.
            pool.collectors = Collectors {
                pbd: true,
                multipath: true,
                storage_targets: true,
                disks: true,
                tags: true,
                messages: true,
                certificates: true,
                vm_rrd: true,
            };
        },
    )
    .await;
    let target = env.url.trim_start_matches("http://").to_string();
    let server = Prometheus::start(
        &binary,
        &format!(
            "global:\n  scrape_interval: {SCRAPE_INTERVAL_S}s\n  scrape_timeout: {SCRAPE_INTERVAL_S}s\n\
             scrape_configs:\n  - job_name: xen\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    );

    // Enough samples for rate(): a counter's rate over $__rate_interval has a value.
    let rate_probe = format!(
        "rate(xen_exporter_xapi_requests_total[{}s])",
        rate_interval_s()
    );
    poll_until(
        "Prometheus has samples enough for rate()",
        async || match server.query(&rate_probe).await.is_empty() {
            false => Ok(()),
            true => Err(server.log()),
        },
    )
    .await;

    // The variables, in order, each query interpolated with those before it.
    let mut known: BTreeMap<String, String> = BTreeMap::from([
        ("__rate_interval".into(), format!("{}s", rate_interval_s())),
        ("__interval".into(), format!("{INTERVAL_S}s")),
        ("__interval_ms".into(), (INTERVAL_S * 1000).to_string()),
        ("__range".into(), format!("{RANGE_S}s")),
        ("__range_s".into(), RANGE_S.to_string()),
        ("__range_ms".into(), (RANGE_S * 1000).to_string()),
    ]);
    let mut resolved: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for variable in &variables {
        let query = interpolate(&variable.query, &known)
            .unwrap_or_else(|why| panic!("variable ${}: {why}", variable.name));
        let (selector, label) = label_values_query(&query);
        let path = match selector {
            Some(selector) => format!("/api/v1/label/{label}/values?match[]={}", encode(selector)),
            None => format!("/api/v1/label/{label}/values"),
        };
        let values: Vec<String> =
            poll_until(&format!("${} has values", variable.name), async || {
                let body = server.api(&path).await?;
                let values: Vec<String> = body["data"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                match values.is_empty() {
                    false => Ok(values),
                    true => Err(format!("{query}: {body}")),
                }
            })
            .await;
        // The dashboard opens on All: every value, or the variable's own "All" value.
        let text = match &variable.all_value {
            Some(all) => all.clone(),
            None => format_selection(variable, &values),
        };
        known.insert(variable.name.clone(), text);
        resolved.insert(variable.name.clone(), values);
    }
    assert_eq!(resolved["job"], ["xen"]);
    assert_eq!(resolved["instance"], std::slice::from_ref(&target));
    let hosts: BTreeSet<String> = env
        .sim
        .view()
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .collect();
    assert_eq!(
        resolved["host"].iter().cloned().collect::<BTreeSet<_>>(),
        hosts,
        "$host lists the pool's hosts"
    );
    assert!(
        hosts.len() > 1,
        "the pool has several hosts, so $host is an alternation"
    );

    // The label names and types of every metric the dashboard names, as Prometheus has them.
    let mut series_labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let named: BTreeSet<&str> = panels
        .iter()
        .flat_map(|p| &p.exprs)
        .filter_map(|e| selectors(e).ok())
        .flatten()
        .map(|s| s.name)
        .collect();
    for name in named {
        let series = server
            .api(&format!("/api/v1/series?match[]={}", encode(name)))
            .await
            .unwrap();
        if let Some(list) = series["data"].as_array().filter(|l| !l.is_empty()) {
            let labels = list
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|s| s.keys().cloned())
                .collect();
            series_labels.insert(name.to_string(), labels);
        }
        // OpenMetrics (what Prometheus asks for) names a counter's family without `_total`.
        for family in [name, name.strip_suffix("_total").unwrap_or(name)] {
            let metadata = server
                .api(&format!("/api/v1/metadata?metric={}", encode(family)))
                .await
                .unwrap();
            if let Some(kind) = metadata["data"][family][0]["type"].as_str() {
                types.insert(name.to_string(), kind.to_string());
            }
        }
    }
    // Without every type known, the counter rule below would pass by not looking.
    for name in series_labels.keys() {
        assert!(
            types.contains_key(name),
            "Prometheus has no type for {name}"
        );
    }
    let mut problems = Vec::new();
    for panel in &panels {
        for expr in &panel.exprs {
            for problem in check_rules(expr, &series_labels, &types) {
                problems.push(format!(
                    "panel {:?}, query `{expr}`: {problem}",
                    panel.title
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Every query of every panel answers, with data unless the panel is allowed to be empty.
    let queries: Vec<(&str, &str, String)> = panels
        .iter()
        .flat_map(|p| {
            p.exprs.iter().map(|e| {
                let concrete = interpolate(e, &known)
                    .unwrap_or_else(|why| panic!("panel {:?}: {why}", p.title));
                (p.title.as_str(), e.as_str(), concrete)
            })
        })
        .collect();
    poll_until("every panel's queries return data", async || {
        let mut empty = Vec::new();
        for (title, expr, concrete) in &queries {
            let body = server
                .api(&format!("/api/v1/query?query={}", encode(concrete)))
                .await?;
            // A query Prometheus rejects is broken for good: no point in waiting.
            assert_eq!(
                body["status"], "success",
                "panel {title:?}, query `{expr}` (as run: `{concrete}`): {body}"
            );
            let has_data = body["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            if !has_data && !LEGITIMATELY_EMPTY.contains(title) {
                empty.push(format!(
                    "panel {title:?}: query `{expr}` (as run: `{concrete}`) returned nothing"
                ));
            }
        }
        match empty.is_empty() {
            true => Ok(()),
            false => Err(empty.join("\n")),
        }
    })
    .await;

    drop(server);
    env.stop().await.shutdown().await;
}

#[test]
fn selectors_and_rules_catch_what_they_are_for() {
    let labels = BTreeMap::from([
        (
            "xen_host_cpu_avg".to_string(),
            BTreeSet::from(["host".to_string(), "job".to_string()]),
        ),
        (
            "xen_exporter_xapi_requests_total".to_string(),
            BTreeSet::from(["pool".to_string()]),
        ),
    ]);
    let types = BTreeMap::from([(
        "xen_exporter_xapi_requests_total".to_string(),
        "counter".to_string(),
    )]);
    let ok = r#"avg(xen_host_cpu_avg{job=~"$job",instance=~"$instance",host=~"$host"})"#;
    assert!(check_rules(ok, &labels, &types).is_empty());
    let rate = r#"rate(xen_exporter_xapi_requests_total{job=~"$job",instance=~"$instance"}[$__rate_interval])"#;
    assert!(check_rules(rate, &labels, &types).is_empty());
    for (bad, why) in [
        (r#"xen_host_cpu_avg"#, "without a selector"),
        (
            r#"xen_host_cpu_avg{job=~"$job",instance=~"$instance"}"#,
            "host",
        ),
        (r#"xen_host_cpu_avg{job=~"$job",host=~"$host"}"#, "instance"),
        (
            r#"xen_exporter_xapi_requests_total{job=~"$job",instance=~"$instance"}"#,
            "counter",
        ),
        (
            r#"rate(xen_exporter_xapi_requests_total{job=~"$job",instance=~"$instance"}[5m])"#,
            "counter",
        ),
        (
            r#"xen_no_such_metric{job=~"$job",instance=~"$instance"}"#,
            "no such series",
        ),
    ] {
        let problems = check_rules(bad, &labels, &types).join("; ");
        assert!(problems.contains(why), "{bad}: {problems:?}");
    }

    let known = BTreeMap::from([
        ("host".to_string(), "(a|b)".to_string()),
        ("__rate_interval".to_string(), "4s".to_string()),
    ]);
    assert_eq!(
        interpolate("x{host=~\"$host\"}[${__rate_interval}]", &known).unwrap(),
        "x{host=~\"(a|b)\"}[4s]"
    );
    assert!(interpolate("$hostname", &known).is_err());
    let multi = Variable {
        name: "instance".into(),
        query: String::new(),
        multi: true,
        include_all: true,
        all_value: None,
    };
    assert_eq!(
        format_selection(&multi, &["127.0.0.1:9100".into()]),
        r"127\\.0\\.0\\.1:9100"
    );
    assert_eq!(format_selection(&multi, &["a".into(), "b".into()]), "(a|b)");
}
