//! Loopback tests of the simulator through real HTTP(S) clients: RPC in both encodings,
//! roles and sessions, `/rrd_updates` shapes per generation and its query semantics, TLS
//! policy and fault injection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::*;

/// 2026-01-01T00:00:07Z, the fixtures' frozen time.
pub(super) const T: i64 = 1_767_225_607;

/// Ends a request the simulator never answers; far above what any answer takes, so that a
/// busy machine does not reach it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn frozen(generation: Generation) -> SimConfig {
    SimConfig {
        generation,
        clock: Clock::Frozen(T),
        ..SimConfig::default()
    }
}

/// A frozen current-generation pool served over plain HTTP: what the wire-level tests read.
pub(super) async fn plain_sim() -> Sim {
    Sim::start(SimConfig {
        tls: false,
        ..frozen(Generation::Current)
    })
    .await
    .expect("sim starts")
}

fn client_config(
    sim: &Sim,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(sim.ca_pem().as_bytes())
        .expect("ca_pem is a PEM certificate");
    roots
        .add(ca)
        .expect("CA certificate is acceptable as a trust anchor");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .expect("ring supports these versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

pub(super) fn client(sim: &Sim) -> reqwest::Client {
    client_with(sim, &[&rustls::version::TLS13, &rustls::version::TLS12])
}

fn client_with(
    sim: &Sim,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(sim, versions))
        .no_proxy()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("client builds")
}

/// A client for `tls: false` simulators (reqwest still needs a TLS configuration).
pub(super) fn plain_client() -> reqwest::Client {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the defaults")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("client builds")
}

pub(super) async fn post(
    c: &reqwest::Client,
    url: String,
    body: String,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = c
        .post(url)
        .body(body)
        .send()
        .await
        .expect("request is answered");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.expect("body"))
}

/// A JSON-RPC 2.0 call; returns the whole reply object.
pub(super) async fn call(c: &reqwest::Client, base: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 7}).to_string();
    let (status, headers, text) = post(c, format!("{base}/jsonrpc"), body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    serde_json::from_str(&text).expect("JSON-RPC reply is JSON")
}

pub(super) async fn login(c: &reqwest::Client, sim: &Sim) -> String {
    let r = call(
        c,
        &sim.master_url(),
        "session.login_with_password",
        json!([sim.username(), sim.password(), "1.0", "sim-tests"]),
    )
    .await;
    r["result"].as_str().expect("login succeeds").to_string()
}

pub(super) async fn get(
    c: &reqwest::Client,
    url: String,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = c.get(url).send().await.expect("request is answered");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.expect("body"))
}

#[tokio::test]
async fn json_rpc_login_records_logout() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    assert!(sim.master_url().starts_with("https://127."));
    let c = client(&sim);
    let base = sim.master_url();

    let bad = call(
        &c,
        &base,
        "session.login_with_password",
        json!(["root", "wrong"]),
    )
    .await;
    assert_eq!(
        bad["error"],
        json!({"code": 1, "message": "SESSION_AUTHENTICATION_FAILED", "data": ["root", "Authentication failure"]})
    );

    let session = login(&c, &sim).await;
    assert!(session.starts_with("OpaqueRef:"));

    let vms = call(&c, &base, "VM.get_all_records", json!([session])).await;
    let vms = vms["result"].as_object().expect("map ref → record");
    // 2 dom0 + 2×3 running + 1 halted guests + 3 templates + 1 snapshot.
    assert_eq!(vms.len(), 13);
    let web = vms
        .values()
        .find(|v| v["name_label"] == "web-001")
        .expect("default guest name");
    assert_eq!(web["power_state"], "Running");
    assert_eq!(web["VCPUs_max"], 2);
    assert!(web["memory_static_max"].is_i64());
    assert!(
        web["resident_on"]
            .as_str()
            .is_some_and(|r| r.starts_with("OpaqueRef:"))
    );
    assert_eq!(
        vms.values()
            .filter(|v| v["is_control_domain"] == true)
            .count(),
        2
    );
    assert_eq!(
        vms.values().filter(|v| v["is_a_template"] == true).count(),
        3
    );
    assert_eq!(
        vms.values().filter(|v| v["is_a_snapshot"] == true).count(),
        1
    );
    let halted: Vec<_> = vms
        .values()
        .filter(|v| {
            v["power_state"] == "Halted"
                && v["is_a_template"] == false
                && v["is_a_snapshot"] == false
        })
        .collect();
    assert_eq!(halted.len(), 1);
    assert_eq!(halted[0]["resident_on"], "OpaqueRef:NULL");

    let hosts = call(&c, &base, "host.get_all_records", json!([session])).await;
    let hosts = hosts["result"].as_object().expect("hosts");
    let addresses: Vec<&str> = hosts
        .values()
        .map(|h| h["address"].as_str().expect("address"))
        .collect();
    assert!(addresses.contains(&sim.host_address(1).as_str()));
    let host_ref = hosts.keys().next().expect("a host").clone();
    let t = call(&c, &base, "host.get_servertime", json!([session, host_ref])).await;
    assert!(
        t["result"]
            .as_str()
            .is_some_and(|s| s.len() == 18 && s.ends_with('Z')),
        "{t}"
    );
    let mi = call(
        &c,
        &base,
        "host.get_management_interface",
        json!([session, host_ref]),
    )
    .await;
    assert_eq!(mi["error"]["message"], "RBAC_PERMISSION_DENIED");

    let pbds = call(&c, &base, "PBD.get_all_records", json!([session])).await;
    let mpaths: Vec<String> = pbds["result"]
        .as_object()
        .expect("pbds")
        .values()
        .filter_map(|p| p["other_config"].as_object())
        .flat_map(|o| o.iter())
        .filter(|(k, _)| k.starts_with("mpath-"))
        .filter_map(|(_, v)| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(mpaths.len(), 4, "iSCSI and FC PBDs on 2 hosts: {mpaths:?}");
    assert!(mpaths.iter().all(|v| v == "[2, 2]" || v == "[4, 4]"));
    let srs = call(&c, &base, "SR.get_all_records", json!([session])).await;
    let types: Vec<&str> = srs["result"]
        .as_object()
        .expect("srs")
        .values()
        .filter_map(|s| s["type"].as_str())
        .collect();
    for ty in ["ext", "udev", "nfs", "lvmoiscsi", "lvmohba", "iso"] {
        assert!(types.contains(&ty), "{ty} in {types:?}");
    }
    for class in [
        "pool",
        "host_metrics",
        "VM_metrics",
        "VM_guest_metrics",
        "PIF",
        "VDI",
    ] {
        let r = call(
            &c,
            &base,
            &format!("{class}.get_all_records"),
            json!([session]),
        )
        .await;
        assert!(
            r["result"].as_object().is_some_and(|m| !m.is_empty()),
            "{class}: {r}"
        );
    }

    let unknown = call(&c, &base, "VM.frobnicate", json!([session])).await;
    assert_eq!(unknown["error"]["data"], json!(["VM.frobnicate"]));
    let count = call(&c, &base, "VM.get_all_records", json!([])).await;
    assert_eq!(
        count["error"]["message"],
        "MESSAGE_PARAMETER_COUNT_MISMATCH"
    );

    // JSON-RPC 1.0 shape.
    let v1 = json!({"method": "session.logout", "params": [session], "id": "x"}).to_string();
    let (_, _, text) = post(&c, format!("{base}/jsonrpc"), v1.clone()).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"result": "", "error": null, "id": "x"})
    );
    let (_, _, text) = post(&c, format!("{base}/jsonrpc"), v1).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"result": null, "error": ["SESSION_INVALID", session], "id": "x"})
    );

    // A notification (null id) is an HTTP 500 page.
    let note =
        json!({"jsonrpc": "2.0", "method": "session.logout", "params": [], "id": null}).to_string();
    let (status, _, _) = post(&c, format!("{base}/jsonrpc"), note).await;
    assert_eq!(status, 500);

    let counters = sim.counters();
    assert_eq!(
        (counters.logins, counters.failed_logins, counters.logouts),
        (1, 1, 1)
    );
    assert_eq!(counters.originators, vec!["sim-tests".to_string()]);
    // The notification was rejected before dispatch.
    assert_eq!(counters.rpc.get("session.logout"), Some(&2));
    assert_eq!(counters.rpc.get("VM.get_all_records"), Some(&2));
    sim.reset_counters();
    assert_eq!(sim.counters().logins, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn members_answer_host_is_slave() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let c = client(&sim);
    let member = sim.host_url(1);
    assert_eq!(
        member,
        format!("https://{}:{}", sim.host_address(1), sim.port())
    );
    let body = json!({"jsonrpc": "2.0", "method": "session.login_with_password", "params": ["nobody", "x"], "id": 1}).to_string();
    let r = c
        .post(format!("{member}/jsonrpc"))
        .header(
            "x-xenapi-request-host-certificate-thumbprint",
            "sha-256:master",
        )
        .body(body)
        .send()
        .await
        .expect("answered");
    let fp = r
        .headers()
        .get("x-xenapi-response-host-certificate-thumbprint")
        .cloned();
    let v: Value = serde_json::from_str(&r.text().await.expect("body")).expect("json");
    assert_eq!(
        v["error"],
        json!({"code": 1, "message": "HOST_IS_SLAVE", "data": [sim.host_address(0)]})
    );
    assert_eq!(
        fp.and_then(|h| h.to_str().ok().map(str::to_string)),
        Some(sim.host_cert_fingerprint(0))
    );
    assert_ne!(sim.host_cert_fingerprint(0), sim.host_cert_fingerprint(1));
    assert_ne!(sim.host_cert_der(0), sim.host_cert_der(1));

    // XML-RPC on a member: same error in the Status/ErrorDescription envelope.
    let xml = "<?xml version=\"1.0\"?><methodCall><methodName>session.login_with_password</methodName><params><param><value><string>root</string></value></param><param><value><string>x</string></value></param></params></methodCall>";
    let (status, headers, text) = post(&c, format!("{member}/RPC2"), xml.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/xml"[..])
    );
    assert_eq!(
        text,
        format!(
            "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value><array><data><value>HOST_IS_SLAVE</value><value>{}</value></data></array></value></member></struct></value></param></params></methodResponse>",
            sim.host_address(0)
        )
    );
    assert_eq!(sim.counters().logins, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn xml_rpc_round_trip_and_renames() {
    let names = vec![
        "quote \" and <tag> & co".to_string(),
        "back\\slash\nnew line".to_string(),
        "Ünïcødé ☃".to_string(),
        "dup".to_string(),
        "dup".to_string(),
    ];
    let sim = Sim::start(SimConfig {
        tls: false,
        vm_names: names.clone(),
        ..SimConfig::default()
    })
    .await
    .expect("sim starts");
    assert!(sim.master_url().starts_with("http://"));
    let c = plain_client();
    let base = sim.master_url();
    let login = "<?xml version=\"1.0\"?>\n<methodCall><methodName>session.login_with_password</methodName><params><param><value><string>root</string></value></param><param><value>xen-sim-password</value></param><param><value><string>1.0</string></value></param><param><value><string>xml-test</string></value></param></params></methodCall>";
    let (_, _, text) = post(&c, format!("{base}/"), login.to_string()).await;
    let session = text
        .split("<name>Value</name><value>")
        .nth(1)
        .and_then(|s| s.split("</value>").next())
        .expect("Success envelope")
        .to_string();
    assert!(session.starts_with("OpaqueRef:"), "{text}");

    let call_xml = |m: &str| {
        format!(
            "<methodCall><methodName>{m}</methodName><params><param><value>{session}</value></param></params></methodCall>"
        )
    };
    let (_, _, vms) = post(&c, format!("{base}/RPC2"), call_xml("VM.get_all_records")).await;
    assert!(vms.starts_with("<?xml version=\"1.0\"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value>"));
    assert!(vms.contains("<name>is_a_template</name><value><boolean>0</boolean></value>"));
    assert!(
        vms.contains("<name>VCPUs_max</name><value>2</value>"),
        "ints are untyped"
    );
    assert!(vms.contains("<name>HVM_shadow_multiplier</name><value><double>1</double></value>"));
    assert!(vms.contains("<dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601>"));
    assert!(vms.contains("<value>quote &quot; and &lt;tag&gt; &amp; co</value>"));
    assert!(vms.contains("<value>Ünïcødé ☃</value>"));

    let view = sim.view();
    let dup = view
        .vms
        .iter()
        .find(|v| v.name == "dup")
        .expect("named guest")
        .uuid
        .clone();
    sim.set_vm_name(&dup, "renamed \"again\"");
    let r = call(&c, &base, "VM.get_all_records", json!([session])).await;
    let names_now: Vec<&str> = r["result"]
        .as_object()
        .expect("vms")
        .values()
        .filter_map(|v| v["name_label"].as_str())
        .collect();
    assert!(names_now.contains(&"renamed \"again\""));
    assert!(names_now.contains(&"dup"));
    assert!(names_now.contains(&"back\\slash\nnew line"));
    assert_eq!(sim.view().vms.iter().filter(|v| v.name == "dup").count(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalidated_sessions_are_rejected() {
    let sim = Sim::start(SimConfig {
        session_idle_timeout: Some(Duration::from_millis(300)),
        ..frozen(Generation::Current)
    })
    .await
    .expect("sim starts");
    let c = client(&sim);
    let base = sim.master_url();
    let s = login(&c, &sim).await;
    assert_eq!(sim.session_count(), 1);
    sim.invalidate_sessions();
    let r = call(&c, &base, "pool.get_all_records", json!([s])).await;
    assert_eq!(
        r["error"],
        json!({"code": 1, "message": "SESSION_INVALID", "data": [s]})
    );
    let (status, _, _) = get(
        &c,
        format!("{}/rrd_updates?start=-10&session_id={s}", sim.host_url(1)),
    )
    .await;
    assert_eq!(status, 401);

    // Idle expiry. The sleep is the idleness under test, not a wait for something to
    // happen: it can only overshoot, which keeps the session idle past its 300 ms either way.
    // (Polling `session_count` instead would purge the session before the call could meet it.)
    let s = login(&c, &sim).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = call(&c, &base, "pool.get_all_records", json!([s])).await;
    assert_eq!(r["error"]["message"], "SESSION_INVALID");
    assert_eq!(sim.session_count(), 0);
    sim.shutdown().await;
}

pub(super) fn rrd_url(sim: &Sim, host: usize, session: &str, query: &str) -> String {
    format!(
        "{}/rrd_updates?session_id={session}&{query}",
        sim.host_url(host)
    )
}

#[tokio::test]
async fn rrd_updates_current_generation() {
    let sim = Sim::start(frozen(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let start = T - 30;
    let (status, headers, body) = get(
        &c,
        rrd_url(
            &sim,
            0,
            &s,
            &format!("start={start}&host=true&json=true&cf=AVERAGE&interval=5"),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    assert_eq!(
        headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let v: Value = serde_json::from_str(&body).expect("format C is JSON");
    let meta = &v["meta"];
    assert_eq!(meta["step"], "5");
    let rows = v["data"].as_array().expect("data at top level");
    assert_eq!(meta["rows"], rows.len().to_string());
    assert!((5..=7).contains(&rows.len()), "{}", rows.len());
    let legend: Vec<&str> = meta["legend"]
        .as_array()
        .expect("legend")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(meta["columns"], legend.len().to_string());
    let ts: Vec<i64> = rows
        .iter()
        .map(|r| {
            r["t"]
                .as_str()
                .expect("t is a string")
                .parse()
                .expect("int")
        })
        .collect();
    assert!(
        ts.windows(2).all(|w| w[0] - w[1] == 5),
        "newest first: {ts:?}"
    );
    assert!(ts[0] <= T && ts[0] > T - 10);
    assert_eq!(meta["end"], ts[0].to_string());
    assert_eq!(meta["start"], ((start / 5) * 5 + 5).to_string());
    for r in rows {
        let values = r["values"].as_array().expect("values");
        assert_eq!(values.len(), legend.len());
        assert!(values.iter().all(Value::is_string));
    }
    let view = sim.view();
    let host0 = &view.hosts[0].uuid;
    let must = [
        "cpu0",
        "cpu15-C2",
        "cpu3-P3",
        "CPU0-avg-freq",
        "cpu_avg",
        "loadavg",
        "hostload",
        "running_vcpus",
        "running_domains",
        "memory_total_kib",
        "memory_free_kib",
        "memory_reclaimed",
        "memory_reclaimed_max",
        "pif_eth0_rx",
        "pif_bond0_tx",
        "pif_aggr_rx",
        "Tapdisks_in_low_memory_mode",
        "xapi_open_fds",
        "pool_session_count",
        "pool_task_count",
        "pool_session_creation_rate",
        "xenopsd-xc_rss",
        "xenopsd-xc_ocaml_allocation_rate",
    ];
    for ds in must {
        assert!(
            legend.contains(&format!("AVERAGE:host:{host0}:{ds}").as_str()),
            "{ds}"
        );
    }
    assert_eq!(
        legend
            .iter()
            .filter(|l| l.starts_with(&format!("AVERAGE:host:{host0}:iops_read_")))
            .count(),
        4,
        "ext, nfs, iSCSI, FC"
    );
    assert_eq!(
        legend
            .iter()
            .filter(|l| l.contains(":sr_") && l.ends_with("_cache_size"))
            .count(),
        1
    );
    assert!(legend.iter().all(|l| l.starts_with("AVERAGE:")));
    let host_part: Vec<&str> = legend
        .iter()
        .filter(|l| l.contains(":host:"))
        .map(|l| l.rsplit(':').next().unwrap_or(""))
        .collect();
    assert!(
        host_part.windows(2).all(|w| w[0] < w[1]),
        "host sources sorted"
    );
    let first_vm = legend
        .iter()
        .position(|l| l.contains(":vm:"))
        .expect("VM columns");
    assert!(
        legend[first_vm..].iter().all(|l| l.contains(":vm:")),
        "host first, then VMs"
    );
    // dom0 and 3 guests on host 0; no memory_target on dom0.
    let dom0 = view
        .vms
        .iter()
        .find(|v| v.is_control_domain && v.resident_on == Some(0))
        .expect("dom0");
    assert!(legend.contains(&format!("AVERAGE:vm:{}:memory", dom0.uuid).as_str()));
    assert!(!legend.contains(&format!("AVERAGE:vm:{}:memory_target", dom0.uuid).as_str()));
    let vm_uuids: std::collections::BTreeSet<&str> = legend
        .iter()
        .filter(|l| l.contains(":vm:"))
        .filter_map(|l| l.split(':').nth(2))
        .collect();
    assert_eq!(vm_uuids.len(), 4);
    let guest = view
        .vms
        .iter()
        .find(|v| v.name == "web-001")
        .expect("guest");
    for ds in [
        "cpu0",
        "cpu1",
        "cpu_usage",
        "memory",
        "memory_target",
        "memory_internal_free",
        "vif_0_rx",
        "vif_0_tx",
        "vbd_xvda_read",
        "vbd_xvda_iops_total",
        "vbd_xvda_avgqu_sz",
    ] {
        assert!(
            legend.contains(&format!("AVERAGE:vm:{}:{ds}", guest.uuid).as_str()),
            "{ds}"
        );
    }

    // pool_session_count reflects the live sessions; the newest row is kept.
    let last = sim.last_rrd(0).expect("a served row");
    assert_eq!(last.t, ts[0]);
    let newest: Vec<&str> = rows[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(last.values.len(), newest.len());
    for (i, (l, text)) in last.values.iter().enumerate() {
        assert_eq!((l.as_str(), text.as_str()), (legend[i], newest[i]));
    }
    let count = last
        .values
        .iter()
        .find(|(l, _)| l.ends_with(":pool_session_count"))
        .expect("master source");
    assert_eq!(count.1, "1");

    // Deterministic: the same request gives the same body.
    let (_, _, again) = get(
        &c,
        rrd_url(
            &sim,
            0,
            &s,
            &format!("start={start}&host=true&json=true&cf=AVERAGE&interval=5"),
        ),
    )
    .await;
    assert_eq!(again, body);

    // Member: no pool_* sources; XML when asked for it.
    let (status, headers, xml) = c
        .get(rrd_url(&sim, 1, &s, &format!("start={start}&host=true")))
        .header("accept", "text/xml")
        .send()
        .await
        .map(|r| (r.status().as_u16(), r.headers().clone(), r))
        .expect("answered");
    let xml = xml.text().await.expect("body");
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/xml"[..])
    );
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xport><meta><start>"));
    assert!(xml.ends_with("</row></data></xport>"));
    assert!(!xml.contains("pool_session_count"));
    // No cf ⇒ every CF of the chosen archive, and the 5 s archive only has AVERAGE.
    assert!(!xml.contains("<entry>MIN:"));
    sim.shutdown().await;
}

#[tokio::test]
async fn rrd_updates_legacy_and_nested_shapes() {
    let legacy = Sim::start(SimConfig {
        nan_ratio: 0.2,
        tls: false,
        ..frozen(Generation::Legacy)
    })
    .await
    .expect("sim starts");
    let c = plain_client();
    let s = login(&c, &legacy).await;
    let q = format!("start={}&host=true&json=true&cf=AVERAGE", T - 20);
    let (status, headers, body) = get(&c, rrd_url(&legacy, 0, &s, &q)).await;
    assert_eq!(status, 200);
    assert!(
        headers.get("content-type").is_none(),
        "legacy JSON has no Content-Type"
    );
    assert!(body.starts_with("{meta: {start:"), "{}", &body[..40]);
    assert!(body.contains("]},data:[{t:"));
    assert!(body.contains(",NaN") || body.contains("[NaN"));
    assert!(serde_json::from_str::<Value>(&body).is_err());
    let last = legacy.last_rrd(0).expect("row");
    for (l, v) in &last.values {
        let fixed4 = v.split_once('.').is_some_and(|(i, f)| {
            !i.is_empty()
                && i.bytes().all(|b| b.is_ascii_digit())
                && f.len() == 4
                && f.bytes().all(|b| b.is_ascii_digit())
        });
        assert!(fixed4 || v == "NaN" || v == "0.0", "%0.4f: {l} = {v}");
    }
    // Legacy ignores Accept: XML without `json`, even if JSON is preferred.
    let r = c
        .get(rrd_url(
            &legacy,
            0,
            &s,
            &format!("start={}&host=true", T - 20),
        ))
        .header("accept", "application/json")
        .send()
        .await
        .expect("answered");
    let xml = r.text().await.expect("body");
    assert!(xml.starts_with("<?xml"));
    // Zero rows make the legacy JSON writer fail.
    let (status, _, _) = get(
        &c,
        rrd_url(&legacy, 0, &s, &format!("start={}&host=true&json", T + 30)),
    )
    .await;
    assert_eq!(status, 500);
    legacy.shutdown().await;

    let nested = Sim::start(SimConfig {
        tls: false,
        ..frozen(Generation::Nested)
    })
    .await
    .expect("sim starts");
    let s = login(&c, &nested).await;
    let (status, headers, body) = get(&c, rrd_url(&nested, 0, &s, &q)).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let v: Value = serde_json::from_str(&body).expect("format B is JSON");
    assert!(v.get("data").is_none());
    let rows = v["meta"]["data"].as_array().expect("data inside meta");
    assert!(rows.iter().all(|r| r["t"].is_string()));
    let last = nested.last_rrd(0).expect("row");
    for (l, v) in &last.values {
        let mantissa = v.split('e').next().unwrap_or("");
        let digits = mantissa
            .bytes()
            .filter(u8::is_ascii_digit)
            .skip_while(|&b| b == b'0')
            .count();
        assert!(digits <= 5 || v == "NaN", "%0.5g: {l} = {v}");
    }
    assert!(
        last.values.iter().any(|(_, v)| v.contains("e+0")),
        "big values in exponent form"
    );
    // Accept: */* selects JSON without `json` on ≥ 23.17.
    let r = c
        .get(rrd_url(
            &nested,
            0,
            &s,
            &format!("start={}&host=true", T - 20),
        ))
        .header("accept", "*/*")
        .send()
        .await
        .expect("answered");
    assert!(r.text().await.expect("body").starts_with("{\"meta\""));
    nested.shutdown().await;
}

#[tokio::test]
async fn rrd_updates_query_semantics() {
    let sim = plain_sim().await;
    let c = plain_client();
    let s = login(&c, &sim).await;
    let base = sim.master_url();
    let meta = |body: &str| -> (i64, i64, i64, usize, Vec<String>) {
        let v: Value = serde_json::from_str(body).expect("json");
        let n = |k: &str| {
            v["meta"][k]
                .as_str()
                .and_then(|x| x.parse::<i64>().ok())
                .expect("number")
        };
        let legend = v["meta"]["legend"]
            .as_array()
            .expect("legend")
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        (
            n("start"),
            n("end"),
            n("step"),
            v["data"].as_array().map_or(0, Vec::len),
            legend,
        )
    };

    // Auth failures and bad queries.
    let (status, headers, _) = get(&c, format!("{base}/rrd_updates?start=-10&json")).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers.get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Basic realm=\"rrd_updates\""[..])
    );
    let (status, _, _) = get(&c, rrd_url(&sim, 0, "OpaqueRef:nope", "start=-10")).await;
    assert_eq!(status, 401);
    let (status, _, _) = get(&c, rrd_url(&sim, 0, &s, "host=true")).await;
    assert_eq!(status, 400);
    let (status, _, _) = get(&c, rrd_url(&sim, 0, &s, "start=12.5")).await;
    assert_eq!(status, 500);
    let r = c
        .get(format!("{base}/rrd_updates?start=-10&json&host=true"))
        .basic_auth("root", Some("xen-sim-password"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 200);
    let r = c
        .get(format!("{base}/rrd_updates?start=-10&json"))
        .basic_auth("root", Some("bad"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .get(format!("{base}/rrd_updates?start=-10&json"))
        .header("cookie", format!("session_id={s}"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 200);

    // Archive choice and row counts (§1.6).
    let (_, _, b) = get(
        &c,
        rrd_url(&sim, 0, &s, &format!("json&host=true&start={}", T - 900)),
    )
    .await;
    let (_, _, step, rows, legend) = meta(&b);
    assert_eq!((step, rows), (60, 15));
    assert!(
        legend.iter().any(|l| l.starts_with("MIN:host:"))
            && legend.iter().any(|l| l.starts_with("MAX:host:"))
    );
    assert!(
        !legend.iter().any(|l| l.starts_with("MIN:vm:")),
        "VM RRDs have no min/max"
    );
    let first_min = legend
        .iter()
        .position(|l| l.starts_with("MIN:"))
        .expect("MIN");
    assert!(
        legend[..first_min]
            .iter()
            .all(|l| l.starts_with("AVERAGE:host:")),
        "CF-grouped per RRD"
    );
    let (_, _, b) = get(
        &c,
        rrd_url(
            &sim,
            0,
            &s,
            &format!("json&host=true&cf=AVERAGE&start={}&interval=60", T - 120),
        ),
    )
    .await;
    let (_, _, step, rows, legend) = meta(&b);
    assert_eq!((step, rows), (60, 2));
    assert!(legend.iter().all(|l| l.starts_with("AVERAGE:")));
    let (_, _, b) = get(&c, rrd_url(&sim, 0, &s, "json&start=0")).await;
    let (_, _, step, rows, _) = meta(&b);
    assert_eq!((step, rows), (86_400, 366));
    let (_, _, b) = get(
        &c,
        rrd_url(&sim, 0, &s, &format!("json&host=true&start={}", T + 30)),
    )
    .await;
    let (start, end, _, rows, _) = meta(&b);
    assert_eq!(rows, 0);
    assert!(start > end);
    // reqwest sends `Accept: */*`, which selects JSON on this generation: ask for XML.
    let r = c
        .get(rrd_url(&sim, 0, &s, &format!("host=true&start={}", T + 30)))
        .header("accept", "text/xml")
        .send()
        .await
        .expect("answered");
    let xml = r.text().await.expect("body");
    assert!(xml.contains("<rows>0</rows>") && xml.contains("<data/>"));
    let (status, _, _) = get(&c, rrd_url(&sim, 0, &s, "json&host=true&start=-10&cf=LAST")).await;
    assert_eq!(status, 500);
    let (status, _, _) = get(&c, rrd_url(&sim, 0, &s, "json&start=-10&cf=MIN&host=true")).await;
    assert_eq!(status, 500, "VM RRDs have no MIN archive");

    // VM selection.
    let view = sim.view();
    let guest = view
        .vms
        .iter()
        .find(|v| v.resident_on == Some(0) && !v.is_control_domain)
        .expect("guest");
    let (_, _, b) = get(
        &c,
        rrd_url(
            &sim,
            0,
            &s,
            &format!("json&start=-10&vm_uuid={}", guest.uuid),
        ),
    )
    .await;
    let (_, _, _, _, legend) = meta(&b);
    assert!(!legend.is_empty() && legend.iter().all(|l| l.contains(&guest.uuid)));
    let (_, _, b) = get(&c, rrd_url(&sim, 0, &s, "json&start=-10&vm_uuid=all")).await;
    assert_eq!(
        meta(&b)
            .4
            .iter()
            .filter_map(|l| l.split(':').nth(2))
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        4
    );
    let (_, _, b) = get(
        &c,
        rrd_url(&sim, 0, &s, "json&start=-10&vm_uuid=none&host=true"),
    )
    .await;
    assert!(meta(&b).4.iter().all(|l| l.contains(":host:")));
    let (status, _, _) = get(&c, rrd_url(&sim, 0, &s, "json&start=-10&vm_uuid=none")).await;
    assert_eq!(status, 500, "nothing selected");
    let halted = view
        .vms
        .iter()
        .find(|v| v.power_state == "Halted" && !v.is_a_template && !v.is_a_snapshot)
        .expect("halted guest");
    for h in 0..2 {
        let (_, _, b) = get(&c, rrd_url(&sim, h, &s, "json&start=-10&host=true")).await;
        assert!(!b.contains(&halted.uuid));
    }

    let counters = sim.counters();
    assert_eq!(counters.rrd_unauthorised, 3);
    assert_eq!(counters.rrd_basic_auth, 1);
    let total: u64 = counters.rrd_updates.iter().sum();
    assert_eq!(total as usize, counters.rrd_queries.len());
    assert!(
        counters
            .rrd_queries
            .iter()
            .any(|q| q.contains("session_id=<session>"))
    );
    assert!(!counters.rrd_queries.iter().any(|q| q.contains(&s)));
    sim.shutdown().await;
}

/// The owners (`host:<uuid>`, `vm:<uuid>`) of a JSON reply's legend.
fn owners(body: &str) -> std::collections::BTreeSet<String> {
    let v: Value = serde_json::from_str(body).expect("json");
    v["meta"]["legend"]
        .as_array()
        .expect("legend")
        .iter()
        .filter_map(|l| {
            let mut parts = l.as_str()?.splitn(4, ':');
            parts.next();
            Some(format!("{}:{}", parts.next()?, parts.next()?))
        })
        .collect()
}

#[tokio::test]
async fn vm_uuid_selects_as_each_xapi_does() {
    const NIL: &str = "00000000-0000-0000-0000-000000000000";
    for filter in [VmUuidFilter::Single, VmUuidFilter::Literal] {
        let sim = Sim::start(SimConfig {
            tls: false,
            vm_uuid_filter: filter,
            ..frozen(Generation::Current)
        })
        .await
        .expect("sim starts");
        let c = plain_client();
        let s = login(&c, &sim).await;
        let view = sim.view();
        let host = format!("host:{}", view.hosts[0].uuid);
        let resident: Vec<String> = view
            .vms
            .iter()
            .filter(|v| v.resident_on == Some(0))
            .map(|v| format!("vm:{}", v.uuid))
            .collect();
        let select = async |query: &str| {
            let (status, _, body) = get(
                &c,
                rrd_url(&sim, 0, &s, &format!("json&start=-10&host=true&{query}")),
            )
            .await;
            assert_eq!(status, 200, "{filter:?} {query}");
            (owners(&body), body.len() as u64)
        };
        let mut served = 0;
        let (every, bytes) = select("").await;
        served += bytes;
        assert_eq!(every.len(), 1 + resident.len(), "{filter:?}: {every:?}");
        // An unknown UUID selects no VM on both; the host stays.
        let (none, bytes) = select(&format!("vm_uuid={NIL}")).await;
        served += bytes;
        assert_eq!(none, [host.clone()].into(), "{filter:?}");
        let (all, bytes) = select("vm_uuid=all").await;
        served += bytes;
        let (two, bytes) = select(&format!(
            "vm_uuid={}&vm_uuid={}",
            &resident[0][3..],
            &resident[1][3..]
        ))
        .await;
        served += bytes;
        match filter {
            VmUuidFilter::Single => {
                assert_eq!(all, every);
                assert_eq!(two, [host.clone(), resident[0].clone()].into());
            }
            VmUuidFilter::Literal => {
                assert_eq!(all, [host.clone()].into());
                assert_eq!(
                    two,
                    [host.clone(), resident[0].clone(), resident[1].clone()].into()
                );
            }
        }
        // With neither the host nor a VM there is nothing to export: xcp-rrdd's 500.
        let (status, _, _) = get(
            &c,
            rrd_url(&sim, 0, &s, &format!("json&start=-10&vm_uuid={NIL}")),
        )
        .await;
        assert_eq!(status, 500);
        assert_eq!(sim.counters().rrd_bytes, [served, 0]);
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn negative_start_gives_the_last_rows() {
    let sim = Sim::start(SimConfig {
        tls: false,
        ..SimConfig::default()
    })
    .await
    .expect("sim starts");
    let c = plain_client();
    let s = login(&c, &sim).await;
    for h in 0..2 {
        let (status, _, body) = get(
            &c,
            rrd_url(&sim, h, &s, "start=-10&host=true&json=true&cf=AVERAGE"),
        )
        .await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).expect("json");
        let rows = v["data"].as_array().expect("rows").len();
        assert!((1..=3).contains(&rows), "{rows} rows");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn tls_policy_rejects_tls13_only_clients() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let tls13 = client_with(&sim, &[&rustls::version::TLS13]);
    assert!(
        tls13
            .get(format!("{}/", sim.master_url()))
            .send()
            .await
            .is_err()
    );
    // Outside stunnel's policy: X25519-only key exchange, or a CHACHA20 suite.
    let narrowed = |provider: rustls::crypto::CryptoProvider| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(sim.ca_der())).expect("CA");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("TLS 1.2")
            .with_root_certificates(roots)
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .no_proxy()
            .build()
            .expect("client builds")
    };
    let ring = rustls::crypto::ring::default_provider;
    let x25519 = rustls::crypto::CryptoProvider {
        kx_groups: vec![rustls::crypto::ring::kx_group::X25519],
        ..ring()
    };
    assert!(
        narrowed(x25519)
            .get(format!("{}/", sim.master_url()))
            .send()
            .await
            .is_err()
    );
    let chacha = rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..ring()
    };
    assert!(
        narrowed(chacha)
            .get(format!("{}/", sim.master_url()))
            .send()
            .await
            .is_err()
    );
    let tls12 = client_with(&sim, &[&rustls::version::TLS12]);
    let r = tls12
        .get(format!("{}/", sim.host_url(1)))
        .send()
        .await
        .expect("TLS 1.2 works");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.expect("body").contains("<html"));
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_refuse_hang_and_http500() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;

    sim.set_host_fault(1, HostFault::Refuse);
    let refused = c
        .get(rrd_url(&sim, 1, &s, "start=-10"))
        .send()
        .await
        .expect_err("refused");
    // Closed, not left waiting: the client's own timeout did not end it.
    assert!(!refused.is_timeout(), "{refused:?}");

    sim.set_host_fault(1, HostFault::Hang);
    let quick = client(&sim);
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        quick.get(rrd_url(&sim, 1, &s, "start=-10")).send(),
    )
    .await;
    assert!(r.is_err(), "hangs");

    sim.set_host_fault(1, HostFault::Http500);
    let (status, _, _) = get(&c, rrd_url(&sim, 1, &s, "start=-10&host=true")).await;
    assert_eq!(status, 500);

    sim.set_host_fault(1, HostFault::Delay(Duration::from_millis(150)));
    let t0 = Instant::now();
    let (status, _, _) = get(&c, rrd_url(&sim, 1, &s, "start=-10&host=true")).await;
    assert_eq!(status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(150));

    sim.set_host_fault(1, HostFault::None);
    let (status, _, _) = get(&c, rrd_url(&sim, 1, &s, "start=-10&host=true")).await;
    assert_eq!(status, 200);
    assert_eq!(
        sim.counters().rrd_updates[1],
        3,
        "refused and hung requests never reach HTTP"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_held_request_is_answered_once_the_hold_is_lifted() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    sim.set_host_fault(1, HostFault::Hold);
    let held = tokio::spawn(c.get(rrd_url(&sim, 1, &s, "start=-10&host=true")).send());
    // Whether or not the request has reached the simulator yet, it is not answered while held.
    assert_eq!(sim.counters().rrd_updates[1], 0, "held, not answered");
    assert!(!held.is_finished());
    sim.set_host_fault(1, HostFault::None);
    let response = held.await.expect("task").expect("answered after the hold");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(sim.counters().rrd_updates[1], 1);
    sim.shutdown().await;
}

#[test]
fn sim_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Sim>();
    assert_send_sync::<Counters>();
    assert_send_sync::<PoolView>();
}

#[tokio::test]
async fn host_data_sources_declare_units_and_follow_new_plugins() {
    let sim = Sim::start(frozen(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let base = sim.master_url();
    let hosts = call(&c, &base, "host.get_all", json!([s])).await;
    let host = hosts["result"][0].as_str().expect("a host ref").to_string();
    let units = async || {
        let r = call(&c, &base, "host.get_data_sources", json!([s, host])).await;
        r["result"]
            .as_array()
            .expect("an array of data_source records")
            .iter()
            .map(|d| {
                (
                    d["name_label"].as_str().unwrap().to_string(),
                    d["units"].as_str().unwrap().to_string(),
                )
            })
            .collect::<std::collections::BTreeMap<String, String>>()
    };
    let before = units().await;
    for (name, unit) in [
        ("memory_free_kib", "KiB"),
        ("memory_reclaimed", "B"),
        ("cpu_avg", "(fraction)"),
        ("CPU0-avg-freq", "MHz"),
        ("pif_eth0_rx", "B/s"),
        ("xapi_open_fds", "count"),
    ] {
        assert_eq!(before.get(name).map(String::as_str), Some(unit), "{name}");
    }
    assert!(
        before
            .iter()
            .any(|(n, u)| n.starts_with("read_latency_") && u == "μs")
    );
    assert!(
        before
            .iter()
            .any(|(n, u)| n.starts_with("io_throughput_") && u == "MiB/s")
    );
    assert!(sim.add_host_data_source(0, "gpu0_power", "W"));
    assert!(
        !sim.add_host_data_source(0, "gpu0_power", "W"),
        "already there"
    );
    let after = units().await;
    assert_eq!(after.get("gpu0_power").map(String::as_str), Some("W"));
    assert_eq!(after.len(), before.len() + 1);
    // The RRD has it too.
    let (status, _, body) = get(&c, rrd_url(&sim, 0, &s, "start=-10&host=true&json=true")).await;
    assert_eq!(status, 200);
    assert!(body.contains(":gpu0_power\""), "{body}");
    let r = call(
        &c,
        &base,
        "host.get_data_sources",
        json!([s, "OpaqueRef:nope"]),
    )
    .await;
    assert_eq!(r["error"]["message"], "HANDLE_INVALID", "{r}");
    sim.shutdown().await;
}
