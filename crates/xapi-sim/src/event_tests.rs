//! Loopback tests of `event.from` and `event.inject` in both encodings, the event-stream
//! faults, and what the runtime mutators do to records, views and `/rrd_updates`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::records::{CLASSES, iso8601};
use super::tests::{T, call, client, frozen, get, login, plain_client, plain_sim, post, rrd_url};
use super::*;

/// Longest any single step may take before a test fails instead of hanging: each takes
/// milliseconds, and a busy machine must not reach this.
pub(super) const BOUND: Duration = Duration::from_secs(30);

/// An `event.from` timeout no test waits out (an hour): a call given it and answered within
/// [`BOUND`] was ended by what the test did, not by its timeout.
pub(super) const NEVER: f64 = 3600.0;

pub(super) type Records = BTreeMap<String, serde_json::Map<String, Value>>;

pub(super) async fn event_from(
    c: &reqwest::Client,
    sim: &Sim,
    session: &str,
    classes: Value,
    token: &str,
    timeout: Value,
) -> Value {
    tokio::time::timeout(
        BOUND,
        call(
            c,
            &sim.master_url(),
            "event.from",
            json!([session, classes, token, timeout]),
        ),
    )
    .await
    .expect("event.from answers in time")
}

/// An `event.from` call in the background, on its own client so that it has its own
/// connection.
pub(super) fn spawn_event_from(
    sim: &Sim,
    session: &str,
    classes: Value,
    token: &str,
    timeout: f64,
) -> tokio::task::JoinHandle<Result<Value, reqwest::Error>> {
    let c = client(sim);
    let url = format!("{}/jsonrpc", sim.master_url());
    let body = json!({"jsonrpc": "2.0", "method": "event.from", "params": [session, classes, token, timeout], "id": 1})
        .to_string();
    tokio::spawn(async move {
        let r = c.post(url).body(body).send().await?;
        let text = r.text().await?;
        Ok(serde_json::from_str(&text).expect("JSON-RPC reply is JSON"))
    })
}

/// Waits until the simulator has received `n` `event.from` calls in all.
pub(super) async fn until_event_from_calls(sim: &Sim, n: u64) {
    let deadline = Instant::now() + BOUND;
    while sim.counters().rpc.get("event.from").copied().unwrap_or(0) < n {
        assert!(Instant::now() < deadline, "event.from call never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) fn events(reply: &Value) -> &Vec<Value> {
    reply["result"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("an event.from result: {reply}"))
}

pub(super) fn token_of(reply: &Value) -> String {
    reply["result"]["token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// (class, operation, ref) of every event.
pub(super) fn summary(reply: &Value) -> BTreeSet<(String, String, String)> {
    events(reply)
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().expect("string field").to_string();
            (f("class"), f("operation"), f("ref"))
        })
        .collect()
}

/// Every record of every served class, by lower-case class name.
pub(super) async fn all_records(c: &reqwest::Client, sim: &Sim, session: &str) -> Records {
    let mut out = BTreeMap::new();
    for class in CLASSES {
        let r = call(
            c,
            &sim.master_url(),
            &format!("{class}.get_all_records"),
            json!([session]),
        )
        .await;
        let recs = r["result"].as_object().expect("records").clone();
        out.insert(class.to_ascii_lowercase(), recs);
    }
    out
}

/// The events an exact log reports between two full fetches, found without the log.
pub(super) fn expected_between(
    before: &Records,
    after: &Records,
) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (class, now) in after {
        let was = &before[class];
        for (r, rec) in now {
            match was.get(r) {
                None => out.insert((class.clone(), "add".into(), r.clone())),
                Some(old) if old != rec => out.insert((class.clone(), "mod".into(), r.clone())),
                Some(_) => false,
            };
        }
        for r in was.keys().filter(|r| !now.contains_key(*r)) {
            out.insert((class.clone(), "del".into(), r.clone()));
        }
    }
    out
}

pub(super) fn ref_of(recs: &Records, class: &str, uuid: &str) -> String {
    recs[class]
        .iter()
        .find(|(_, rec)| rec["uuid"] == uuid)
        .map(|(r, _)| r.clone())
        .unwrap_or_else(|| panic!("{class} {uuid} in the records"))
}

#[tokio::test]
async fn empty_token_returns_every_object_as_add() {
    let sim = Sim::start(frozen(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let r = event_from(&c, &sim, &s, json!(["*"]), "", json!(0.0)).await;
    let all = all_records(&c, &sim, &s).await;
    // `*` includes messages, which are outside the database (tested on their own).
    let (messages, evs): (Vec<&Value>, Vec<&Value>) =
        events(&r).iter().partition(|e| e["class"] == "message");
    assert_eq!(messages.len(), sim.view().messages.len());
    assert_eq!(
        evs.len(),
        all.values().map(serde_json::Map::len).sum::<usize>()
    );
    for e in evs {
        assert_eq!(e["operation"], "add", "{e}");
        assert_eq!(e["timestamp"], "0.0");
        assert!(e["id"].as_str().is_some_and(|id| id.parse::<u64>().is_ok()));
        let class = e["class"].as_str().expect("class");
        let r = e["ref"].as_str().expect("ref");
        assert_eq!(
            &e["snapshot"], &all[class][r],
            "{class} {r}: snapshot = record"
        );
    }
    let counts = r["result"]["valid_ref_counts"].as_object().expect("counts");
    assert_eq!(counts.len(), CLASSES.len());
    for (class, recs) in &all {
        assert_eq!(counts[class], json!(recs.len()), "{class}");
    }
    let token = token_of(&r);
    let parts: Vec<&str> = token.split(',').collect();
    assert_eq!(parts.len(), 2);
    assert!(
        parts
            .iter()
            .all(|p| p.len() == 20 && p.bytes().all(|b| b.is_ascii_digit()))
    );

    // Case-insensitive class names; unknown names never match and are no error.
    let r = event_from(&c, &sim, &s, json!(["VM", "nonsense"]), "", json!(0)).await;
    assert_eq!(events(&r).len(), all["vm"].len());
    assert!(events(&r).iter().all(|e| e["class"] == "vm"));
    let r = event_from(&c, &sim, &s, json!(["nonsense"]), "", json!(0)).await;
    assert!(events(&r).is_empty());
    // Same database generation; the message generation is 0 when `message` is not
    // subscribed (xapi_event.ml `grab_range`).
    let (db, _) = token.split_once(',').expect("two parts");
    assert_eq!(token_of(&r), format!("{db},{:020}", 0));
    // One object.
    let host = all["host"].keys().next().expect("a host").clone();
    let r = event_from(&c, &sim, &s, json!([format!("host/{host}")]), "", json!(0)).await;
    assert_eq!(
        summary(&r),
        BTreeSet::from([("host".into(), "add".into(), host)])
    );
    assert_eq!(sim.counters().rpc.get("event.from"), Some(&4));
    sim.shutdown().await;
}

#[tokio::test]
async fn mutations_produce_exactly_the_changed_objects() {
    let sim = Sim::start(frozen(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let t0 = token_of(&event_from(&c, &sim, &s, json!(["*"]), "", json!(0)).await);
    let before = all_records(&c, &sim, &s).await;
    let view = sim.view();
    let vm = view
        .vms
        .iter()
        .find(|v| v.resident_on == Some(0) && !v.is_control_domain)
        .expect("a guest on host 0")
        .clone();
    let vm_ref = ref_of(&before, "vm", &vm.uuid);

    // A rename touches the VM only.
    sim.set_vm_name(&vm.uuid, "renamed");
    let r = event_from(&c, &sim, &s, json!(["*"]), &t0, json!(1.0)).await;
    assert_eq!(
        summary(&r),
        BTreeSet::from([("vm".into(), "mod".into(), vm_ref.clone())])
    );
    assert_eq!(events(&r)[0]["snapshot"]["name_label"], "renamed");
    let t1 = token_of(&r);
    assert!(t1 > t0, "tokens compare as strings");

    // A migration: the VM and both hosts' resident_VMs (and whatever else changed).
    let before = all_records(&c, &sim, &s).await;
    assert!(sim.migrate_vm(&vm.uuid, 1));
    let r = event_from(&c, &sim, &s, json!(["*"]), &t1, json!(1.0)).await;
    let after = all_records(&c, &sim, &s).await;
    let got = summary(&r);
    assert_eq!(got, expected_between(&before, &after));
    let host_refs: Vec<String> = view
        .hosts
        .iter()
        .map(|h| ref_of(&before, "host", &h.uuid))
        .collect();
    for want in [
        ("vm", vm_ref.as_str()),
        ("host", host_refs[0].as_str()),
        ("host", host_refs[1].as_str()),
    ] {
        assert!(
            got.contains(&(want.0.into(), "mod".into(), want.1.into())),
            "{want:?} in {got:?}"
        );
    }
    assert!(got.iter().all(|(_, op, _)| op == "mod"));
    let snap = events(&r)
        .iter()
        .find(|e| e["ref"] == vm_ref)
        .expect("VM event");
    assert_eq!(snap["snapshot"]["resident_on"], json!(host_refs[1]));
    let t2 = token_of(&r);

    // A new VM: adds with snapshots, mods of what refers to it.
    let new = sim.start_vm(1).expect("host 1 can run a VM");
    let r = event_from(&c, &sim, &s, json!(["*"]), &t2, json!(1.0)).await;
    let before = after;
    let after = all_records(&c, &sim, &s).await;
    assert_eq!(summary(&r), expected_between(&before, &after));
    let new_ref = ref_of(&after, "vm", &new);
    let add = events(&r)
        .iter()
        .find(|e| e["ref"] == new_ref)
        .expect("VM add");
    assert_eq!(add["operation"], "add");
    assert_eq!(add["snapshot"]["uuid"], json!(new));
    let t3 = token_of(&r);

    // Its removal: dels without snapshot for the VM and what belonged to it.
    assert!(sim.remove_vm(&new));
    let r = event_from(&c, &sim, &s, json!(["*"]), &t3, json!(1.0)).await;
    let before = after;
    let after = all_records(&c, &sim, &s).await;
    assert_eq!(summary(&r), expected_between(&before, &after));
    let dels: Vec<&Value> = events(&r)
        .iter()
        .filter(|e| e["operation"] == "del")
        .collect();
    let del_classes: BTreeSet<&str> = dels.iter().filter_map(|e| e["class"].as_str()).collect();
    for class in ["vm", "vm_metrics", "vbd", "vif"] {
        assert!(del_classes.contains(class), "{class} in {del_classes:?}");
    }
    assert!(dels.iter().all(|e| e.get("snapshot").is_none()));
    let t4 = token_of(&r);

    // Created and destroyed between two calls: never reported.
    let tmp = sim.start_vm(0).expect("host 0 can run a VM");
    let mid = all_records(&c, &sim, &s).await;
    let tmp_ref = ref_of(&mid, "vm", &tmp);
    assert!(sim.remove_vm(&tmp));
    let r = event_from(&c, &sim, &s, json!(["vm"]), &t4, json!(0.3)).await;
    assert!(events(&r).is_empty(), "{r}");
    assert!(!summary(&r).iter().any(|(_, _, r)| *r == tmp_ref));

    // A hidden SR is gone for clients: a del.
    let nfs = view
        .srs
        .iter()
        .find(|sr| sr.sr_type == "nfs")
        .expect("NFS SR");
    let nfs_ref = ref_of(&after, "sr", &nfs.uuid);
    let t5 = token_of(&r);
    assert!(sim.hide_sr(&nfs.uuid));
    let r = event_from(&c, &sim, &s, json!(["sr"]), &t5, json!(1.0)).await;
    assert_eq!(
        summary(&r),
        BTreeSet::from([("sr".into(), "del".into(), nfs_ref)])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn event_from_blocks_until_a_matching_change_or_the_timeout() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let t = token_of(&event_from(&c, &sim, &s, json!(["vm"]), "", json!(0)).await);

    let t0 = Instant::now();
    let r = event_from(&c, &sim, &s, json!(["vm"]), &t, json!(0.3)).await;
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert!(events(&r).is_empty());
    assert_eq!(token_of(&r), t);
    assert!(r["result"]["valid_ref_counts"]["vm"].as_i64() > Some(0));

    let calls = sim.counters().rpc.get("event.from").copied().unwrap_or(0);
    let blocked = spawn_event_from(&sim, &s, json!(["vm"]), &t, NEVER);
    let hosts = spawn_event_from(&sim, &s, json!(["host"]), &t, NEVER);
    until_event_from_calls(&sim, calls + 2).await;
    // A change the call did not subscribe to does not end it: the same wake-up answers the
    // call that did subscribe, and by then the other has looked and gone back to waiting.
    sim.set_host_enabled(1, false);
    let r = tokio::time::timeout(BOUND, hosts)
        .await
        .expect("the host change ends the call on hosts")
        .expect("task")
        .expect("answered");
    assert!(!events(&r).is_empty());
    assert!(!blocked.is_finished());
    // Other requests go through meanwhile.
    let r = call(&c, &sim.master_url(), "pool.get_all_records", json!([s])).await;
    assert!(r["result"].is_object());
    let vm = sim
        .view()
        .vms
        .into_iter()
        .find(|v| !v.is_control_domain && v.resident_on.is_some())
        .expect("guest");
    sim.set_vm_name(&vm.uuid, "wake up");
    // Answered at all, with its hour-long timeout: woken by the change.
    let r = tokio::time::timeout(BOUND, blocked)
        .await
        .expect("woken by the change")
        .expect("task")
        .expect("answered");
    assert_eq!(events(&r).len(), 1);
    assert_eq!(events(&r)[0]["snapshot"]["name_label"], "wake up");
    assert!(token_of(&r) > t);
    sim.shutdown().await;
}

#[tokio::test]
async fn event_from_errors_and_lost_events() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let r = event_from(&c, &sim, &s, json!(["vm"]), "garbage", json!(0)).await;
    assert_eq!(
        r["error"],
        json!({"code": 1, "message": "EVENT_FROM_TOKEN_PARSE_FAILURE", "data": ["garbage"]})
    );
    let r = event_from(&c, &sim, "OpaqueRef:nope", json!(["vm"]), "", json!(0)).await;
    assert_eq!(r["error"]["message"], "SESSION_INVALID");
    let r = call(&c, &sim.master_url(), "event.from", json!([s, ["vm"], ""])).await;
    assert_eq!(r["error"]["data"], json!(["event.from", "4", "3"]), "{r}");
    let r = call(
        &c,
        &sim.host_url(1),
        "event.from",
        json!([s, ["vm"], "", 0.0]),
    )
    .await;
    assert_eq!(r["error"]["message"], "HOST_IS_SLAVE");

    sim.lose_events();
    let r = event_from(&c, &sim, &s, json!(["vm"]), "", json!(0)).await;
    assert_eq!(
        r["error"],
        json!({"code": 1, "message": "EVENTS_LOST", "data": []})
    );
    let r = event_from(&c, &sim, &s, json!(["vm"]), "", json!(0)).await;
    assert!(!events(&r).is_empty(), "only once");

    // A blocked call whose session dies ends at once (rather than at its hour-long timeout).
    let t = token_of(&r);
    let calls = sim.counters().rpc.get("event.from").copied().unwrap_or(0);
    let blocked = spawn_event_from(&sim, &s, json!(["vm"]), &t, NEVER);
    until_event_from_calls(&sim, calls + 1).await;
    sim.invalidate_sessions();
    let r = tokio::time::timeout(BOUND, blocked)
        .await
        .expect("ended by the session's end")
        .expect("task")
        .expect("answered");
    assert_eq!(
        r["error"],
        json!({"code": 1, "message": "SESSION_INVALID", "data": [s]})
    );

    // Same after a logout on another connection.
    let s = login(&c, &sim).await;
    let blocked = spawn_event_from(&sim, &s, json!(["vm"]), &t, NEVER);
    until_event_from_calls(&sim, calls + 2).await;
    let r = call(&c, &sim.master_url(), "session.logout", json!([s])).await;
    assert_eq!(r["result"], "");
    let r = tokio::time::timeout(BOUND, blocked)
        .await
        .expect("ended in time")
        .expect("task")
        .expect("answered");
    assert_eq!(r["error"]["message"], "SESSION_INVALID");
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_event_streams_lose_their_connection() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let t = token_of(&event_from(&c, &sim, &s, json!(["vm"]), "", json!(0)).await);
    let calls = sim.counters().rpc.get("event.from").copied().unwrap_or(0);
    let first = spawn_event_from(&sim, &s, json!(["vm"]), &t, NEVER);
    let second = spawn_event_from(&sim, &s, json!(["host"]), &t, NEVER);
    until_event_from_calls(&sim, calls + 2).await;
    sim.drop_event_streams();
    // Ended by the cut: neither answered nor timed out.
    for blocked in [first, second] {
        let r = tokio::time::timeout(BOUND, blocked)
            .await
            .expect("ended by the cut")
            .expect("task");
        let e = r.expect_err("no HTTP response");
        assert!(!e.is_timeout() && !e.is_status(), "{e:?}");
    }
    // Later calls work, also blocking ones.
    let r = event_from(&c, &sim, &s, json!(["vm"]), &t, json!(0.2)).await;
    assert!(events(&r).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn event_inject_gives_a_token_that_sees_the_injected_object() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let base = sim.master_url();
    let pools = call(&c, &base, "pool.get_all", json!([s])).await;
    let pool = pools["result"][0].as_str().expect("pool ref").to_string();
    let r = call(&c, &base, "event.inject", json!([s, "pool", pool])).await;
    let token = r["result"].as_str().expect("a token").to_string();
    assert_eq!(token.len(), 41);
    // Answered at once, not at the end of its hour-long wait: the token sees the injection.
    let r = event_from(&c, &sim, &s, json!(["pool"]), &token, json!(NEVER)).await;
    assert_eq!(
        summary(&r),
        BTreeSet::from([("pool".into(), "mod".into(), pool)])
    );
    let r = call(
        &c,
        &base,
        "event.inject",
        json!([s, "VM", "OpaqueRef:nope"]),
    )
    .await;
    assert_eq!(r["error"]["data"], json!(["VM", "OpaqueRef:nope"]));
    assert_eq!(r["error"]["message"], "HANDLE_INVALID");
    sim.shutdown().await;
}

#[tokio::test]
async fn xml_rpc_event_from_types() {
    let sim = plain_sim().await;
    let c = plain_client();
    let s = login(&c, &sim).await;
    let body = |token: &str, timeout: &str| {
        format!(
            "<?xml version=\"1.0\"?><methodCall><methodName>event.from</methodName><params>\
             <param><value>{s}</value></param>\
             <param><value><array><data><value>VM_metrics</value><value><string>pool</string></value></data></array></value></param>\
             <param><value>{token}</value></param>\
             <param><value>{timeout}</value></param></params></methodCall>"
        )
    };
    let (status, _, xml) = post(
        &c,
        format!("{}/RPC2", sim.master_url()),
        body("", "<double>0.5</double>"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(xml.starts_with("<?xml version=\"1.0\"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value>"));
    let view = sim.view();
    assert!(xml.contains(&format!(
        "<member><name>vm_metrics</name><value><i4>{}</i4></value></member>",
        view.vms.len()
    )));
    assert!(xml.contains("<member><name>pool</name><value><i4>1</i4></value></member>"));
    assert!(xml.contains("<name>timestamp</name><value>0.0</value>"));
    assert!(xml.contains("<name>class</name><value>vm_metrics</value>"));
    assert!(xml.contains("<name>operation</name><value>add</value>"));
    let running = view
        .vms
        .iter()
        .find(|v| !v.is_control_domain && v.resident_on.is_some())
        .expect("guest");
    assert!(xml.contains(&format!(
        "<name>start_time</name><value><dateTime.iso8601>{}</dateTime.iso8601></value>",
        iso8601(running.start_time)
    )));
    let token = xml
        .split("<name>token</name><value>")
        .nth(1)
        .and_then(|r| r.split("</value>").next())
        .expect("token member")
        .to_string();
    // An int timeout is accepted too; nothing changed, so no events.
    let (_, _, xml) = post(
        &c,
        format!("{}/RPC2", sim.master_url()),
        body(&token, "<int>0</int>"),
    )
    .await;
    assert!(
        xml.contains("<name>events</name><value><array><data></data></array></value>"),
        "{xml}"
    );
    // A del in XML: ref only.
    let guest = view
        .vms
        .iter()
        .find(|v| v.name == "web-001")
        .expect("guest");
    assert!(sim.remove_vm(&guest.uuid));
    let (_, _, xml) = post(
        &c,
        format!("{}/RPC2", sim.master_url()),
        body(&token, "<double>1</double>"),
    )
    .await;
    assert!(xml.contains("<member><name>operation</name><value>del</value></member><member><name>ref</name><value>OpaqueRef:"));
    assert!(!xml.contains("<name>snapshot</name>"), "{xml}");
    let (_, _, xml) = post(
        &c,
        format!("{}/RPC2", sim.master_url()),
        body("not-a-token", "<double>0</double>"),
    )
    .await;
    assert!(
        xml.contains("<value>EVENT_FROM_TOKEN_PARSE_FAILURE</value><value>not-a-token</value>")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn storage_records_and_multipath_changes() {
    let sim = Sim::start(frozen(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let view = sim.view();
    let all = all_records(&c, &sim, &s).await;
    let sr_of = |ty: &str| {
        view.srs
            .iter()
            .find(|sr| sr.sr_type == ty)
            .unwrap_or_else(|| panic!("{ty} SR"))
            .clone()
    };
    let hba = sr_of("lvmohba");
    let iscsi = sr_of("lvmoiscsi");
    let nfs = sr_of("nfs");
    let hba_rec = &all["sr"][&ref_of(&all, "sr", &hba.uuid)];
    assert_eq!(hba_rec["shared"], true);
    assert_eq!(hba_rec["content_type"], "user");
    assert_eq!(hba_rec["sm_config"]["multipathable"], "true");
    assert_eq!(hba_rec["VDIs"].as_array().map(Vec::len), Some(hba.vdis));
    assert_eq!(hba.vdis, 1);
    assert_eq!(hba_rec["PBDs"].as_array().map(Vec::len), Some(2));

    let pbd_recs = &all["pbd"];
    for p in &view.pbds {
        let rec = &pbd_recs[&ref_of(&all, "pbd", &p.uuid)];
        let as_map = |pairs: &[(String, String)]| {
            Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            )
        };
        assert_eq!(rec["device_config"], as_map(&p.device_config));
        assert_eq!(rec["other_config"], as_map(&p.other_config));
        assert_eq!(rec["currently_attached"], p.attached);
        let dc = &rec["device_config"];
        let oc = &rec["other_config"];
        if p.sr_uuid == hba.uuid {
            let id = dc["SCSIid"].as_str().expect("SCSIid");
            assert_eq!(oc[format!("mpath-{id}")], "[4, 4]");
            assert_eq!(oc["multipathed"], "true");
        } else if p.sr_uuid == iscsi.uuid {
            for k in ["target", "targetIQN", "port", "SCSIid", "chapuser"] {
                assert!(dc[k].is_string(), "iSCSI {k}");
            }
            let secret = dc["chappassword_secret"].as_str().expect("CHAP secret");
            assert_eq!((secret.len(), secret.matches('-').count()), (36, 4));
            assert!(dc.get("chappassword").is_none(), "never a password");
            let id = dc["SCSIid"].as_str().expect("SCSIid");
            assert_eq!(oc[format!("mpath-{id}")], "[2, 2]");
            assert_eq!(oc["multipathed"], "true");
        } else if p.sr_uuid == nfs.uuid {
            for k in ["server", "serverpath", "nfsversion"] {
                assert!(dc[k].is_string(), "NFS {k}");
            }
        }
    }

    let t = token_of(&event_from(&c, &sim, &s, json!(["pbd"]), "", json!(0)).await);
    assert!(sim.set_multipath_paths(&hba.uuid, 1, 2, 4));
    assert!(
        !sim.set_multipath_paths(&nfs.uuid, 1, 2, 4),
        "NFS has no SCSIid"
    );
    assert!(!sim.set_multipath_paths(&hba.uuid, 7, 2, 4), "no such host");
    let pbd = sim
        .view()
        .pbds
        .into_iter()
        .find(|p| p.sr_uuid == hba.uuid && p.host == 1)
        .expect("PBD");
    assert!(
        pbd.other_config
            .iter()
            .any(|(k, v)| k.starts_with("mpath-") && v == "[2, 4]")
    );
    let r = event_from(&c, &sim, &s, json!(["pbd"]), &t, json!(1.0)).await;
    assert_eq!(events(&r).len(), 1);
    let snap = &events(&r)[0]["snapshot"];
    assert_eq!(snap["uuid"], json!(pbd.uuid));
    let id = snap["device_config"]["SCSIid"].as_str().expect("SCSIid");
    assert_eq!(snap["other_config"][format!("mpath-{id}")], "[2, 4]");

    // A detached PBD: the host stops reporting that SR's I/O.
    let sr8 = &iscsi.uuid[..8];
    let legend = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body).expect("json");
        v["meta"]["legend"]
            .as_array()
            .expect("legend")
            .iter()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect()
    };
    let q = "json&start=-10&host=true&vm_uuid=none";
    let (_, _, b) = get(&c, rrd_url(&sim, 0, &s, q)).await;
    assert!(
        legend(&b)
            .iter()
            .any(|l| l.ends_with(&format!(":iops_read_{sr8}")))
    );
    assert!(sim.set_pbd_attached(&iscsi.uuid, 0, false));
    let (_, _, b) = get(&c, rrd_url(&sim, 0, &s, q)).await;
    assert!(
        !legend(&b)
            .iter()
            .any(|l| l.ends_with(&format!(":iops_read_{sr8}")))
    );
    let (_, _, b) = get(&c, rrd_url(&sim, 1, &s, q)).await;
    assert!(
        legend(&b)
            .iter()
            .any(|l| l.ends_with(&format!(":iops_read_{sr8}")))
    );
    let pbds = call(&c, &sim.master_url(), "PBD.get_all_records", json!([s])).await;
    let detached: Vec<&Value> = pbds["result"]
        .as_object()
        .expect("pbds")
        .values()
        .filter(|p| p["currently_attached"] == false)
        .collect();
    assert_eq!(detached.len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn vm_rrds_follow_migration_power_and_removal() {
    let sim = Sim::start(frozen(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let has = |body: &str, uuid: &str| body.contains(&format!(":vm:{uuid}:"));
    let rrd = |h: usize| get(&c, rrd_url(&sim, h, &s, "json&start=-10"));
    let view = sim.view();
    let vm = view
        .vms
        .iter()
        .find(|v| v.resident_on == Some(0) && !v.is_control_domain)
        .expect("guest on host 0")
        .clone();
    let vm_record = |recs: &Value| -> Value {
        recs["result"]
            .as_object()
            .expect("vms")
            .values()
            .find(|v| v["uuid"] == vm.uuid)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert!(has(&rrd(0).await.2, &vm.uuid));

    assert!(sim.migrate_vm(&vm.uuid, 1));
    assert!(!has(&rrd(0).await.2, &vm.uuid));
    assert!(has(&rrd(1).await.2, &vm.uuid));
    assert_eq!(
        sim.view()
            .vms
            .iter()
            .find(|v| v.uuid == vm.uuid)
            .and_then(|v| v.resident_on),
        Some(1)
    );

    assert!(sim.set_vm_power_state(&vm.uuid, "Paused"));
    assert!(has(&rrd(1).await.2, &vm.uuid), "paused keeps its domain");
    let recs = call(&c, &sim.master_url(), "VM.get_all_records", json!([s])).await;
    assert_eq!(vm_record(&recs)["power_state"], "Paused");

    assert!(sim.set_vm_power_state(&vm.uuid, "Halted"));
    assert!(!has(&rrd(1).await.2, &vm.uuid));
    assert!(!has(&rrd(0).await.2, &vm.uuid));
    let recs = call(&c, &sim.master_url(), "VM.get_all_records", json!([s])).await;
    let rec = vm_record(&recs);
    assert_eq!(rec["power_state"], "Halted");
    assert_eq!(rec["resident_on"], "OpaqueRef:NULL");
    assert_eq!(rec["guest_metrics"], "OpaqueRef:NULL");
    assert_eq!(rec["domid"], -1);
    let halted = sim
        .view()
        .vms
        .into_iter()
        .find(|v| v.uuid == vm.uuid)
        .expect("vm");
    assert_eq!((halted.resident_on, halted.os_name), (None, None));

    // Started again on its affinity host (host 0), now.
    assert!(sim.set_vm_power_state(&vm.uuid, "Running"));
    assert!(has(&rrd(0).await.2, &vm.uuid));
    let again = sim
        .view()
        .vms
        .into_iter()
        .find(|v| v.uuid == vm.uuid)
        .expect("vm");
    assert_eq!(again.resident_on, Some(0));
    assert_eq!(again.start_time, T);
    assert_eq!(again.os_name.is_some(), vm.os_name.is_some());

    assert!(sim.set_vm_power_state(&vm.uuid, "Suspended"));
    assert!(!has(&rrd(0).await.2, &vm.uuid));

    let other = view
        .vms
        .iter()
        .find(|v| v.resident_on == Some(1) && !v.is_control_domain)
        .expect("guest on host 1");
    assert!(has(&rrd(1).await.2, &other.uuid));
    assert!(sim.remove_vm(&other.uuid));
    assert!(!has(&rrd(1).await.2, &other.uuid));
    let recs = call(&c, &sim.master_url(), "VM.get_all_records", json!([s])).await;
    assert!(
        !recs["result"]
            .as_object()
            .expect("vms")
            .values()
            .any(|v| v["uuid"] == other.uuid)
    );

    let dom0 = view.vms.iter().find(|v| v.is_control_domain).expect("dom0");
    assert!(!sim.remove_vm(&dom0.uuid));
    assert!(!sim.set_vm_power_state(&dom0.uuid, "Halted"));
    assert!(!sim.migrate_vm(&dom0.uuid, 1));
    assert!(!sim.set_vm_power_state(&vm.uuid, "Crashed"));
    assert!(!sim.migrate_vm(&vm.uuid, 1), "suspended: no domain to move");
    assert!(!sim.remove_vm("no-such-uuid"));
    sim.shutdown().await;
}

#[tokio::test]
async fn views_agree_with_records_and_host_flags_change_them() {
    for generation in [Generation::Legacy, Generation::Current] {
        let sim = Sim::start(frozen(generation)).await.expect("sim starts");
        let c = client(&sim);
        let s = login(&c, &sim).await;
        let all = all_records(&c, &sim, &s).await;
        let view = sim.view();
        let (pool_ref, pool) = all["pool"].iter().next().expect("pool");
        let _ = pool_ref;
        assert_eq!(
            pool["master"],
            json!(ref_of(&all, "host", &view.hosts[view.master].uuid))
        );
        assert_eq!(
            pool["default_SR"],
            json!(ref_of(&all, "sr", &view.default_sr))
        );
        assert_eq!(pool["ha_enabled"], view.ha_enabled);
        for h in &view.hosts {
            let rec = &all["host"][&ref_of(&all, "host", &h.uuid)];
            assert_eq!(rec["enabled"], h.enabled);
            assert_eq!(rec["multipathing"], h.multipathing);
            assert_eq!(
                rec["other_config"]["multipathing"],
                h.multipathing.to_string()
            );
            assert_eq!(rec["cpu_info"]["cpu_count"], h.cpu_count.to_string());
            assert_eq!(rec["cpu_info"]["modelname"], json!(h.cpu_model));
            assert_eq!(rec["host_CPUs"].as_array().map(Vec::len), Some(h.cpu_count));
            assert_eq!(
                rec["software_version"]["product_version"],
                json!(h.product_version)
            );
            assert_eq!(rec["software_version"]["xen"], json!(h.xen_version));
            assert_eq!(rec["address"], json!(h.address));
            let metrics = &all["host_metrics"][rec["metrics"].as_str().expect("metrics ref")];
            assert_eq!(metrics["live"], h.live);
            assert_eq!(metrics["memory_total"], h.memory_total);
        }
        if generation == Generation::Legacy {
            assert_eq!(view.hosts[0].product_version, "8.2.1");
        }
        for v in &view.vms {
            let rec = &all["vm"][&ref_of(&all, "vm", &v.uuid)];
            assert_eq!(rec["VCPUs_max"], v.vcpus);
            assert_eq!(rec["VCPUs_at_startup"], v.vcpus);
            assert_eq!(rec["memory_static_max"], v.memory_static_max);
            assert_eq!(rec["memory_static_min"], v.memory_static_min);
            assert_eq!(rec["memory_dynamic_max"], v.memory_dynamic_max);
            assert_eq!(rec["memory_dynamic_min"], v.memory_dynamic_min);
            assert_eq!(rec["domain_type"], json!(v.domain_type));
            assert_eq!(rec["power_state"], json!(v.power_state));
            let metrics = &all["vm_metrics"][rec["metrics"].as_str().expect("metrics ref")];
            assert_eq!(metrics["start_time"], json!(iso8601(v.start_time)));
            let gm = rec["guest_metrics"].as_str().expect("guest metrics ref");
            match &v.os_name {
                None => assert_eq!(gm, "OpaqueRef:NULL"),
                Some(name) => {
                    assert_eq!(
                        all["vm_guest_metrics"][gm]["os_version"]["name"],
                        json!(name)
                    );
                }
            }
            if v.is_control_domain {
                assert_eq!(v.domain_type, "pv");
            }
        }
        for sr in &view.srs {
            let rec = &all["sr"][&ref_of(&all, "sr", &sr.uuid)];
            assert_eq!(rec["VDIs"].as_array().map(Vec::len), Some(sr.vdis));
            let sm: serde_json::Map<String, Value> = sr
                .sm_config
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            assert_eq!(rec["sm_config"], Value::Object(sm));
        }
        assert!(
            view.vms
                .iter()
                .any(|v| v.os_name.as_deref() == Some("Debian GNU/Linux 12 (bookworm)"))
        );

        // Host flags, and their events.
        let t = token_of(
            &event_from(&c, &sim, &s, json!(["host", "host_metrics"]), "", json!(0)).await,
        );
        sim.set_host_enabled(1, false);
        sim.set_host_live(1, false);
        sim.set_host_multipathing(1, false);
        let r = event_from(
            &c,
            &sim,
            &s,
            json!(["host", "host_metrics"]),
            &t,
            json!(1.0),
        )
        .await;
        let h1 = &sim.view().hosts[1];
        assert!(!h1.enabled && !h1.live && !h1.multipathing);
        let host_ref = ref_of(&all, "host", &h1.uuid);
        let metrics_ref = all["host"][&host_ref]["metrics"]
            .as_str()
            .expect("ref")
            .to_string();
        assert_eq!(
            summary(&r),
            BTreeSet::from([
                ("host".into(), "mod".into(), host_ref),
                ("host_metrics".into(), "mod".into(), metrics_ref),
            ])
        );
        for e in events(&r) {
            let snap = &e["snapshot"];
            if e["class"] == "host" {
                assert_eq!(snap["enabled"], false);
                assert_eq!(snap["multipathing"], false);
                assert_eq!(snap["other_config"]["multipathing"], "false");
            } else {
                assert_eq!(snap["live"], false);
            }
        }
        sim.shutdown().await;
    }
}
