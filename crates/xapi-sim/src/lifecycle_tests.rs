//! Loopback tests of the records operators check beyond load — disks, tags, messages,
//! certificates, host and VM lifecycle — over JSON-RPC (and XML-RPC where the encoding
//! matters), their generation differences, and the events their mutations produce.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::event_tests::{
    BOUND, NEVER, all_records, event_from, events, expected_between, ref_of, spawn_event_from,
    summary, token_of, until_event_from_calls,
};
use super::records::iso8601;
use super::tests::{T, call, client, frozen, login, plain_client, plain_sim, post};
use super::*;

/// `<class>.get_all_records` as a map ref → record.
async fn records_of(
    c: &reqwest::Client,
    sim: &Sim,
    s: &str,
    class: &str,
) -> serde_json::Map<String, Value> {
    let r = call(
        c,
        &sim.master_url(),
        &format!("{class}.get_all_records"),
        json!([s]),
    )
    .await;
    r["result"]
        .as_object()
        .unwrap_or_else(|| panic!("{class} records: {r}"))
        .clone()
}

fn by_uuid<'a>(recs: &'a serde_json::Map<String, Value>, uuid: &str) -> (&'a str, &'a Value) {
    recs.iter()
        .find(|(_, r)| r["uuid"] == uuid)
        .map(|(k, v)| (k.as_str(), v))
        .unwrap_or_else(|| panic!("{uuid} in the records"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("a string list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn three_hosts(generation: Generation) -> SimConfig {
    SimConfig {
        hosts: 3,
        halted_vms: 2,
        ..frozen(generation)
    }
}

#[tokio::test]
async fn disks_of_every_vm_with_their_vdis() {
    let sim = Sim::start(three_hosts(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let vbds = records_of(&c, &sim, &s, "VBD").await;
    let vdis = records_of(&c, &sim, &s, "VDI").await;
    let vms = records_of(&c, &sim, &s, "VM").await;
    let view = sim.view();
    let mut iso_cds = 0;
    let mut empty_cds = 0;
    for vm in view
        .vms
        .iter()
        .filter(|v| !v.is_a_template && !v.is_control_domain)
    {
        let (vm_ref, rec) = by_uuid(&vms, &vm.uuid);
        let refs = strings(&rec["VBDs"]);
        assert_eq!(refs.len(), vm.disks.len(), "{}", vm.name);
        assert!(
            vm.disks.iter().any(|d| d.vbd_type == "Disk"),
            "{} has a disk",
            vm.name
        );
        for (r, d) in refs.iter().zip(&vm.disks) {
            let b = &vbds[r.as_str()];
            assert_eq!(b["uuid"], json!(d.vbd_uuid));
            assert_eq!(b["VM"], json!(vm_ref));
            assert_eq!(b["type"], json!(d.vbd_type));
            assert!(matches!(b["type"].as_str(), Some("Disk" | "CD")));
            assert_eq!(b["device"], json!(d.device));
            assert_eq!(b["userdevice"], json!(d.userdevice));
            assert_eq!(b["currently_attached"], json!(d.currently_attached));
            assert_eq!(
                d.currently_attached,
                vm.power_state == "Running",
                "{}",
                vm.name
            );
            assert_eq!(d.device.is_empty(), vm.power_state != "Running");
            match &d.vdi_uuid {
                None => {
                    assert_eq!(d.vbd_type, "CD");
                    assert_eq!(b["VDI"], "OpaqueRef:NULL");
                    assert_eq!(b["empty"], true);
                    empty_cds += 1;
                }
                Some(u) => {
                    let (vdi_ref, vdi) = by_uuid(&vdis, u);
                    assert_eq!(b["VDI"], json!(vdi_ref));
                    assert!(strings(&vdi["VBDs"]).contains(r));
                    let v = view.vdis.iter().find(|x| &x.uuid == u).expect("VDI view");
                    // Ints are JSON numbers in JSON-RPC.
                    assert_eq!(vdi["virtual_size"], json!(v.virtual_size));
                    assert_eq!(vdi["physical_utilisation"], json!(v.physical_utilisation));
                    assert!(vdi["virtual_size"].is_i64());
                    assert_eq!(vdi["name_label"], json!(v.name));
                    let snapshot_disk = vm.is_a_snapshot && d.vbd_type == "Disk";
                    assert_eq!(vdi["is_a_snapshot"], json!(snapshot_disk));
                    let srs = records_of(&c, &sim, &s, "SR").await;
                    assert_eq!(vdi["SR"], json!(by_uuid(&srs, &v.sr_uuid).0));
                    if d.vbd_type == "CD" {
                        iso_cds += 1;
                    }
                }
            }
        }
    }
    assert!(
        iso_cds > 0 && empty_cds > 0,
        "{iso_cds} ISO, {empty_cds} empty"
    );
    // Halted guests have disks too.
    assert!(
        view.vms
            .iter()
            .any(|v| v.power_state == "Halted" && !v.is_a_template && !v.disks.is_empty())
    );
    // The snapshot's disks are snapshot VDIs of the originals.
    let snap = view
        .vms
        .iter()
        .find(|v| v.is_a_snapshot)
        .expect("a snapshot");
    for d in snap.disks.iter().filter(|d| d.vbd_type == "Disk") {
        let v = view
            .vdis
            .iter()
            .find(|x| Some(&x.uuid) == d.vdi_uuid.as_ref())
            .expect("snapshot VDI");
        assert!(v.is_a_snapshot);
        let orig = v.snapshot_of.as_ref().expect("snapshot_of");
        let (orig_ref, _) = by_uuid(&vdis, orig);
        assert_eq!(by_uuid(&vdis, &v.uuid).1["snapshot_of"], json!(orig_ref));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn tags_and_lifecycle_fields() {
    let sim = Sim::start(three_hosts(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let view = sim.view();
    let hosts = records_of(&c, &sim, &s, "host").await;
    let vms = records_of(&c, &sim, &s, "VM").await;
    let srs = records_of(&c, &sim, &s, "SR").await;
    let gms = records_of(&c, &sim, &s, "VM_guest_metrics").await;
    let pool = records_of(&c, &sim, &s, "pool").await;

    // Tags: some objects have none, some have free text with awkward characters.
    let mut all_tags = Vec::new();
    for h in &view.hosts {
        let rec = by_uuid(&hosts, &h.uuid).1;
        assert_eq!(strings(&rec["tags"]), h.tags);
        all_tags.extend(h.tags.clone());
    }
    for sr in &view.srs {
        assert_eq!(strings(&by_uuid(&srs, &sr.uuid).1["tags"]), sr.tags);
        all_tags.extend(sr.tags.clone());
    }
    for vm in &view.vms {
        assert_eq!(strings(&by_uuid(&vms, &vm.uuid).1["tags"]), vm.tags);
        all_tags.extend(vm.tags.clone());
    }
    for ch in ['"', '\\', '\n', 'é', '☃'] {
        assert!(all_tags.iter().any(|t| t.contains(ch)), "a tag with {ch:?}");
    }
    assert!(view.hosts.iter().any(|h| h.tags.is_empty()));
    assert!(view.vms.iter().any(|v| v.tags.is_empty()));
    assert!(view.srs.iter().any(|s| s.tags.is_empty()));

    // Host lifecycle keys.
    let mut expiries = BTreeSet::new();
    for h in &view.hosts {
        let rec = by_uuid(&hosts, &h.uuid).1;
        let oc = &rec["other_config"];
        assert_eq!(oc["boot_time"], json!(format!("{}.", h.boot_time)));
        assert_eq!(
            oc.get("rpm_patch_installation_time")
                .map(|v| v.as_str().expect("string").to_string()),
            h.rpm_patch_installation_time
        );
        let expiry = rec["license_params"]["expiry"].as_str().expect("expiry");
        match h.license_expiry {
            None => assert_eq!(expiry, "never"),
            Some(t) => assert_eq!(expiry, iso8601(t)),
        }
        expiries.insert(expiry.len());
        assert_eq!(strings(&rec["pending_guidances"]), h.pending_guidances);
        assert!(rec["updates_requiring_reboot"].is_array());
    }
    assert_eq!(expiries, BTreeSet::from([5, 18]), "never and dates");
    // Patched after boot on one host, before on another, never on the third.
    let h0 = &view.hosts[0];
    assert!(h0.rpm_patch_installation_ms.expect("patched") > h0.boot_time * 1000);
    assert_eq!(
        h0.rpm_patch_installation_time.as_deref(),
        Some(format!("{}.25", h0.boot_time + 2 * 86_400).as_str())
    );
    let h1 = &view.hosts[1];
    assert!(h1.rpm_patch_installation_ms.expect("patched") < h1.boot_time * 1000);
    assert_eq!(view.hosts[2].rpm_patch_installation_time, None);

    // VM lifecycle: snapshots both ways, guidances, requires_reboot, guest metrics.
    let snap = view.vms.iter().find(|v| v.is_a_snapshot).expect("snapshot");
    let of = snap.snapshot_of.as_ref().expect("snapshot_of");
    let (snap_ref, snap_rec) = by_uuid(&vms, &snap.uuid);
    let (of_ref, of_rec) = by_uuid(&vms, of);
    assert_eq!(snap_rec["is_a_snapshot"], true);
    assert_eq!(snap_rec["snapshot_of"], json!(of_ref));
    assert_eq!(
        snap_rec["snapshot_time"],
        json!(iso8601(snap.snapshot_time))
    );
    assert_eq!(strings(&of_rec["snapshots"]), vec![snap_ref.to_string()]);
    assert!(
        view.vms
            .iter()
            .any(|v| v.pending_guidances == ["restart_device_model"])
    );
    for vm in &view.vms {
        let rec = by_uuid(&vms, &vm.uuid).1;
        assert_eq!(strings(&rec["pending_guidances"]), vm.pending_guidances);
        assert_eq!(rec["requires_reboot"], json!(vm.requires_reboot));
        let Some(name) = &vm.os_name else {
            continue;
        };
        let gm = &gms[rec["guest_metrics"].as_str().expect("ref")];
        assert_eq!(gm["os_version"]["name"], json!(name));
        assert_eq!(gm["os_version"]["distro"], json!(vm.os_distro));
        let (major, minor, micro, build) = vm.pv_drivers_version.clone().expect("PV");
        assert_eq!(
            gm["PV_drivers_version"],
            json!({"major": major, "minor": minor, "micro": micro, "build": build})
        );
    }
    assert!(
        view.vms
            .iter()
            .any(|v| v.os_name.as_deref().is_some_and(|n| n.contains('|')))
    );

    // Pool HA fields, then changed.
    let p = pool.values().next().expect("pool");
    assert_eq!(p["ha_host_failures_to_tolerate"], 0);
    assert_eq!(p["ha_plan_exists_for"], 0);
    assert_eq!(p["ha_overcommitted"], false);
    sim.set_pool_ha(true, 1, 1, true);
    let pool = records_of(&c, &sim, &s, "pool").await;
    let p = pool.values().next().expect("pool");
    assert_eq!(p["ha_enabled"], true);
    assert_eq!(p["ha_host_failures_to_tolerate"], 1);
    assert_eq!(p["ha_plan_exists_for"], 1);
    assert_eq!(p["ha_overcommitted"], true);
    let v = sim.view();
    assert_eq!(
        (
            v.ha_enabled,
            v.ha_host_failures_to_tolerate,
            v.ha_plan_exists_for,
            v.ha_overcommitted
        ),
        (true, 1, 1, true)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn legacy_records_lack_newer_fields() {
    let sim = Sim::start(frozen(Generation::Legacy))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    for rec in records_of(&c, &sim, &s, "host").await.values() {
        assert!(rec.get("pending_guidances").is_none());
        assert!(rec.get("pending_guidances_full").is_none());
        assert!(rec["updates_requiring_reboot"].is_array());
        assert!(rec["tags"].is_array());
    }
    for rec in records_of(&c, &sim, &s, "VM").await.values() {
        assert!(rec.get("pending_guidances").is_none());
        assert!(rec["requires_reboot"].is_boolean());
    }
    // 1.249: one installed certificate on host 0, in the old shape.
    let certs = records_of(&c, &sim, &s, "Certificate").await;
    assert_eq!(certs.len(), 1);
    let rec = certs.values().next().expect("a certificate");
    let fields: BTreeSet<&str> = rec
        .as_object()
        .expect("record")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["uuid", "host", "not_before", "not_after", "fingerprint"])
    );
    let hosts = records_of(&c, &sim, &s, "host").await;
    let view = sim.view();
    let (h0, h0_rec) = by_uuid(&hosts, &view.hosts[0].uuid);
    assert_eq!(rec["host"], json!(h0));
    assert_eq!(
        strings(&h0_rec["certificates"]),
        certs.keys().cloned().collect::<Vec<_>>()
    );
    assert_eq!(rec["fingerprint"], json!(sim.host_cert_fingerprint(0)));
    assert_eq!(
        view.hosts[0].certificate_not_after,
        sim.server_certificate_not_after()
    );
    assert_eq!(view.hosts[1].certificate_not_after, None);
    // Renewal works on the old shape too.
    assert!(sim.renew_certificate(0, T + 86_400));
    assert!(!sim.renew_certificate(1, T + 86_400));
    assert_eq!(sim.view().hosts[0].certificate_not_after, Some(T + 86_400));
    sim.shutdown().await;
}

#[tokio::test]
async fn current_certificates_and_their_renewal() {
    let sim = Sim::start(three_hosts(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let view = sim.view();
    let certs = records_of(&c, &sim, &s, "Certificate").await;
    let hosts = records_of(&c, &sim, &s, "host").await;
    assert_eq!(certs.len(), view.certificates.len());
    let mut types = BTreeMap::new();
    for cv in &view.certificates {
        let (r, rec) = by_uuid(&certs, &cv.uuid);
        assert_eq!(r, cv.opaque_ref);
        assert_eq!(rec["type"], json!(cv.cert_type));
        assert_eq!(rec["name"], json!(cv.name));
        assert_eq!(rec["not_before"], json!(iso8601(cv.not_before)));
        assert_eq!(rec["not_after"], json!(iso8601(cv.not_after)));
        assert_eq!(rec["fingerprint_sha256"], json!(cv.fingerprint_sha256));
        assert_eq!(rec["fingerprint"], json!(cv.fingerprint_sha256));
        assert_eq!(rec["fingerprint_sha1"], json!(cv.fingerprint_sha1));
        assert_eq!(cv.fingerprint_sha256.len(), 32 * 3 - 1);
        assert_eq!(cv.fingerprint_sha1.len(), 20 * 3 - 1);
        match cv.host {
            None => assert_eq!(rec["host"], "OpaqueRef:NULL"),
            Some(h) => {
                let (hr, hrec) = by_uuid(&hosts, &view.hosts[h].uuid);
                assert_eq!(rec["host"], json!(hr));
                assert!(strings(&hrec["certificates"]).contains(&r.to_string()));
            }
        }
        *types.entry(cv.cert_type.clone()).or_insert(0) += 1;
    }
    assert_eq!(
        types,
        BTreeMap::from([
            ("ca".to_string(), 1),
            ("host".to_string(), 2),
            ("host_internal".to_string(), 2)
        ])
    );
    // The served certificate of a host with a record is the one it describes.
    let h0 = view
        .certificates
        .iter()
        .find(|c| c.host == Some(0) && c.cert_type == "host")
        .expect("host 0's certificate");
    assert_eq!(h0.fingerprint_sha256, sim.host_cert_fingerprint(0));
    assert_eq!(Some(h0.not_after), sim.server_certificate_not_after());
    // The last host has no record: its expiry comes from what it serves.
    assert_eq!(view.hosts[2].certificate_not_after, None);
    assert_eq!(sim.server_certificate_not_after(), Some(2_051_222_400));
    let hr = by_uuid(&hosts, &view.hosts[2].uuid).0;
    let pem = call(
        &c,
        &sim.master_url(),
        "host.get_server_certificate",
        json!([s, hr]),
    )
    .await;
    assert_eq!(pem["result"], json!(sim.host_cert_pem(2)));

    // Renewal replaces the record: del + add, and the host's `certificates` changes.
    let t0 =
        token_of(&event_from(&c, &sim, &s, json!(["certificate", "host"]), "", json!(0)).await);
    let before = all_records(&c, &sim, &s).await;
    assert!(sim.renew_certificate(1, T + 90 * 86_400));
    assert!(!sim.renew_certificate(2, T + 90 * 86_400));
    let r = event_from(
        &c,
        &sim,
        &s,
        json!(["certificate", "host"]),
        &t0,
        json!(NEVER),
    )
    .await;
    let after = all_records(&c, &sim, &s).await;
    assert_eq!(summary(&r), expected_between(&before, &after));
    let ops: BTreeSet<(String, String)> = summary(&r)
        .into_iter()
        .map(|(class, op, _)| (class, op))
        .collect();
    assert_eq!(
        ops,
        BTreeSet::from([
            ("certificate".into(), "add".into()),
            ("certificate".into(), "del".into()),
            ("host".into(), "mod".into())
        ])
    );
    let add = events(&r)
        .iter()
        .find(|e| e["operation"] == "add")
        .expect("add");
    assert_eq!(
        add["snapshot"]["not_after"],
        json!(iso8601(T + 90 * 86_400))
    );
    assert_eq!(add["snapshot"]["not_before"], json!(iso8601(T)));
    assert_eq!(
        sim.view().hosts[1].certificate_not_after,
        Some(T + 90 * 86_400)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn messages_records_and_their_peculiar_events() {
    let sim = Sim::start(three_hosts(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let view = sim.view();
    assert!((5..100).contains(&view.messages.len()));
    let msgs = records_of(&c, &sim, &s, "message").await;
    assert_eq!(msgs.len(), view.messages.len());
    for m in &view.messages {
        let (r, rec) = by_uuid(&msgs, &m.uuid);
        assert_eq!(r, m.opaque_ref);
        assert_eq!(
            rec,
            &json!({
                "uuid": m.uuid, "name": m.name, "priority": m.priority, "cls": m.cls,
                "obj_uuid": m.obj_uuid, "timestamp": iso8601(m.timestamp), "body": m.body,
            })
        );
        assert!((1..=5).contains(&m.priority));
    }
    let classes: BTreeSet<&str> = view.messages.iter().map(|m| m.cls.as_str()).collect();
    assert_eq!(classes, BTreeSet::from(["Host", "Pool", "SR", "VM"]));
    let one = &view.messages[0];
    let r = call(
        &c,
        &sim.master_url(),
        "message.get_by_uuid",
        json!([s, one.uuid]),
    )
    .await;
    assert_eq!(r["result"], json!(one.opaque_ref));

    // After event.inject, the first event.from returns every message as `add`; messages
    // are not counted in valid_ref_counts.
    let pool_ref = records_of(&c, &sim, &s, "pool")
        .await
        .keys()
        .next()
        .expect("pool")
        .clone();
    let inj = call(
        &c,
        &sim.master_url(),
        "event.inject",
        json!([s, "pool", pool_ref]),
    )
    .await;
    let tok = inj["result"].as_str().expect("token").to_string();
    assert!(tok.ends_with(&format!(",{:020}", 0)), "{tok}");
    let r = event_from(&c, &sim, &s, json!(["message", "pool"]), &tok, json!(NEVER)).await;
    let adds: BTreeSet<String> = events(&r)
        .iter()
        .filter(|e| e["class"] == "message")
        .map(|e| {
            assert_eq!(e["operation"], "add");
            assert_eq!(e["id"], "0");
            assert_eq!(e["timestamp"], "0.0");
            let r = e["ref"].as_str().expect("ref");
            assert_eq!(e["snapshot"], msgs[r]);
            r.to_string()
        })
        .collect();
    assert_eq!(adds, msgs.keys().cloned().collect::<BTreeSet<_>>());
    assert!(r["result"]["valid_ref_counts"].get("message").is_none());
    assert!(r["result"]["valid_ref_counts"].get("certificate").is_some());
    let t1 = token_of(&r);
    assert_ne!(
        t1.split_once(',').expect("two parts").1,
        format!("{:020}", 0)
    );

    // Nothing new: an empty reply keeps the message generation.
    let r = event_from(&c, &sim, &s, json!(["message"]), &t1, json!(0.1)).await;
    assert!(events(&r).is_empty());
    assert_eq!(token_of(&r), t1);

    // A new message (any name) wakes a blocked call and comes alone, as `add`.
    let calls = sim.counters().rpc.get("event.from").copied().unwrap_or(0);
    let waiting = spawn_event_from(&sim, &s, json!(["message"]), &t1, NEVER);
    until_event_from_calls(&sim, calls + 1).await;
    let odd = "custom alert: «ünïcode» / lower-case";
    let uuid = sim.create_message(odd, 2, "VM", &view.vms[0].uuid, "line 1\nline \"2\"");
    let r = tokio::time::timeout(BOUND, waiting)
        .await
        .expect("woken")
        .expect("joins")
        .expect("answered");
    let evs = events(&r);
    assert_eq!(evs.len(), 1, "{r}");
    assert_eq!(evs[0]["operation"], "add");
    assert_eq!(evs[0]["snapshot"]["name"], odd);
    assert_eq!(evs[0]["snapshot"]["uuid"], json!(uuid));
    assert_eq!(evs[0]["snapshot"]["priority"], 2);
    assert_eq!(evs[0]["snapshot"]["timestamp"], json!(iso8601(T)));
    let new_ref = evs[0]["ref"].as_str().expect("ref").to_string();
    let t2 = token_of(&r);
    assert!(t2 > t1);

    // Destroyed: `del` without snapshot, for an old message and the new one alike.
    assert!(sim.destroy_message(&uuid));
    assert!(sim.destroy_message(&one.uuid));
    assert!(!sim.destroy_message(&uuid));
    let r = event_from(&c, &sim, &s, json!(["message"]), &t2, json!(NEVER)).await;
    assert_eq!(
        summary(&r),
        BTreeSet::from([
            ("message".into(), "del".into(), new_ref),
            ("message".into(), "del".into(), one.opaque_ref.clone())
        ])
    );
    assert!(events(&r).iter().all(|e| e.get("snapshot").is_none()));
    assert_eq!(
        records_of(&c, &sim, &s, "message").await.len(),
        view.messages.len() - 1
    );
    // Database-only subscriptions never see messages, and their token says 0.
    let r = event_from(&c, &sim, &s, json!(["vm"]), &t1, json!(0.1)).await;
    assert!(events(&r).is_empty());
    assert!(token_of(&r).ends_with(&format!(",{:020}", 0)));
    sim.shutdown().await;
}

#[tokio::test]
async fn message_deletions_live_in_a_ring() {
    let sim = Sim::start(SimConfig {
        hosts: 1,
        vms_per_host: 1,
        ..frozen(Generation::Current)
    })
    .await
    .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let r = event_from(&c, &sim, &s, json!(["message"]), "", json!(0)).await;
    let t0 = token_of(&r);
    // 1100 deletions: past 1024 the ring is cut back to the newest 512.
    for k in 0..1100 {
        let u = sim.create_message(&format!("TEST_{k}"), 5, "Pool", "", "");
        assert!(sim.destroy_message(&u));
    }
    let r = event_from(&c, &sim, &s, json!(["message"]), &t0, json!(0)).await;
    let dels = events(&r)
        .iter()
        .filter(|e| e["operation"] == "del")
        .count();
    assert_eq!(dels, 512 + (1100 - 1025));
    assert!(events(&r).iter().all(|e| e["operation"] == "del"));
    sim.shutdown().await;
}

#[tokio::test]
async fn lifecycle_mutations_produce_exactly_their_events() {
    let sim = Sim::start(three_hosts(Generation::Current))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let view = sim.view();
    let guest = view
        .vms
        .iter()
        .find(|v| v.power_state == "Running" && !v.is_control_domain)
        .expect("a running guest")
        .clone();
    let sr = view.srs[0].uuid.clone();
    let host = view.hosts[1].uuid.clone();
    let disk = guest.disks[0].vdi_uuid.clone().expect("a disk");
    let mut token = token_of(&event_from(&c, &sim, &s, json!(["*"]), "", json!(0)).await);
    let mut before = all_records(&c, &sim, &s).await;

    type Step<'a> = (
        &'a str,
        Box<dyn Fn(&Sim) -> bool + 'a>,
        &'a [(&'a str, &'a str)],
    );
    let steps: Vec<Step> = vec![
        (
            "retag VM",
            Box::new(|sim| sim.set_tags(&guest.uuid, &["a \"b\"", "c\\d", "e\nf", "ü"])),
            &[("vm", "mod")],
        ),
        (
            "retag host",
            Box::new(|sim| sim.set_tags(&host, &[])),
            &[("host", "mod")],
        ),
        (
            "retag SR",
            Box::new(|sim| sim.set_tags(&sr, &["new"])),
            &[("sr", "mod")],
        ),
        (
            "resize VDI",
            Box::new(|sim| sim.resize_vdi(&disk, 200 << 30, 123 << 30)),
            &[("vdi", "mod")],
        ),
        (
            "host guidance",
            Box::new(|sim| sim.set_pending_guidances(&host, &["reboot_host", "restart_toolstack"])),
            &[("host", "mod")],
        ),
        (
            "VM guidance",
            Box::new(|sim| sim.set_pending_guidances(&guest.uuid, &["restart_vm"])),
            &[("vm", "mod")],
        ),
        (
            "clear VM guidance",
            Box::new(|sim| sim.set_pending_guidances(&guest.uuid, &[])),
            &[("vm", "mod")],
        ),
        (
            "requires_reboot",
            Box::new(|sim| sim.set_vm_requires_reboot(&guest.uuid, true)),
            &[("vm", "mod")],
        ),
        (
            "rpm patch time",
            Box::new(|sim| sim.set_rpm_patch_installation_time(1, Some(T * 1000 + 5))),
            &[("host", "mod")],
        ),
        (
            "boot time",
            Box::new(|sim| sim.set_host_boot_time(1, T - 60)),
            // PIF_metrics.last_updated follows the boot.
            &[("host", "mod"), ("pif_metrics", "mod")],
        ),
        (
            "licence",
            Box::new(|sim| sim.set_license_expiry(1, None)),
            &[("host", "mod")],
        ),
    ];
    for (what, step, want) in &steps {
        assert!(step(&sim), "{what} applies");
        let r = event_from(&c, &sim, &s, json!(["*"]), &token, json!(NEVER)).await;
        let after = all_records(&c, &sim, &s).await;
        let got = summary(&r);
        assert_eq!(got, expected_between(&before, &after), "{what}");
        let ops: BTreeSet<(&str, &str)> = got
            .iter()
            .map(|(c, o, _)| (c.as_str(), o.as_str()))
            .collect();
        assert_eq!(ops, want.iter().copied().collect(), "{what}");
        token = token_of(&r);
        before = after;
    }
    let hosts = records_of(&c, &sim, &s, "host").await;
    let h1 = by_uuid(&hosts, &host).1;
    assert_eq!(
        h1["other_config"]["rpm_patch_installation_time"],
        json!(format!("{T}.005"))
    );
    assert_eq!(
        h1["other_config"]["boot_time"],
        json!(format!("{}.", T - 60))
    );
    assert_eq!(h1["license_params"]["expiry"], "never");
    assert_eq!(
        strings(&h1["pending_guidances"]),
        ["reboot_host", "restart_toolstack"]
    );
    let v = sim.view();
    let vdi = v.vdis.iter().find(|d| d.uuid == disk).expect("VDI");
    assert_eq!(
        (vdi.virtual_size, vdi.physical_utilisation),
        (200 << 30, 123 << 30)
    );
    assert_eq!(
        v.hosts[1].rpm_patch_installation_time.as_deref(),
        Some(format!("{T}.005").as_str())
    );
    let g = v.vms.iter().find(|x| x.uuid == guest.uuid).expect("guest");
    assert_eq!(g.tags, ["a \"b\"", "c\\d", "e\nf", "ü"]);
    assert!(g.requires_reboot);

    // A snapshot: the snapshot VM, its VBDs/VIFs/VDIs and metrics come; the source's
    // `snapshots` and the SRs' `VDIs` change. Removal takes them away again.
    let snap = sim
        .snapshot_vm(&guest.uuid, "before the test")
        .expect("snapshot");
    let r = event_from(&c, &sim, &s, json!(["*"]), &token, json!(NEVER)).await;
    let after = all_records(&c, &sim, &s).await;
    assert_eq!(summary(&r), expected_between(&before, &after));
    let snap_ref = ref_of(&after, "vm", &snap);
    let guest_ref = ref_of(&after, "vm", &guest.uuid);
    assert!(summary(&r).contains(&("vm".into(), "add".into(), snap_ref.clone())));
    assert!(summary(&r).contains(&("vm".into(), "mod".into(), guest_ref.clone())));
    assert!(summary(&r).iter().any(|(c, o, _)| c == "vdi" && o == "add"));
    assert_eq!(after["vm"][&snap_ref]["snapshot_of"], json!(guest_ref));
    assert_eq!(after["vm"][&snap_ref]["snapshot_time"], json!(iso8601(T)));
    assert!(strings(&after["vm"][&guest_ref]["snapshots"]).contains(&snap_ref));
    let sv = sim.view();
    assert!(
        sv.vms
            .iter()
            .find(|x| x.uuid == guest.uuid)
            .expect("guest")
            .snapshots
            .contains(&snap)
    );
    token = token_of(&r);
    before = after;
    assert!(sim.remove_snapshot(&snap));
    assert!(!sim.remove_snapshot(&guest.uuid));
    let r = event_from(&c, &sim, &s, json!(["*"]), &token, json!(NEVER)).await;
    let after = all_records(&c, &sim, &s).await;
    assert_eq!(summary(&r), expected_between(&before, &after));
    assert!(summary(&r).contains(&("vm".into(), "del".into(), snap_ref)));
    assert!(summary(&r).iter().any(|(c, o, _)| c == "vdi" && o == "del"));
    sim.shutdown().await;
}

#[tokio::test]
async fn xml_rpc_encodes_message_and_certificate_fields() {
    let sim = plain_sim().await;
    let c = plain_client();
    let base = sim.master_url();
    let login = "<?xml version=\"1.0\"?><methodCall><methodName>session.login_with_password</methodName><params><param><value>root</value></param><param><value>xen-sim-password</value></param></params></methodCall>";
    let (_, _, text) = post(&c, format!("{base}/"), login.to_string()).await;
    let session = text
        .split("<name>Value</name><value>")
        .nth(1)
        .and_then(|s| s.split("</value>").next())
        .expect("Success envelope")
        .to_string();
    let uuid = sim.create_message("TAGGED", 4, "Host", "", "a & b <c> \"d\"");
    let m = sim
        .view()
        .messages
        .into_iter()
        .find(|m| m.uuid == uuid)
        .expect("message");
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>message.get_record</methodName><params><param><value>{session}</value></param><param><value>{}</value></param></params></methodCall>",
        m.opaque_ref
    );
    let (status, _, text) = post(&c, format!("{base}/"), body).await;
    assert_eq!(status, 200);
    // Ints are untyped values; the timestamp is a dateTime.iso8601.
    assert!(
        text.contains("<member><name>priority</name><value>4</value></member>"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "<member><name>timestamp</name><value><dateTime.iso8601>{}</dateTime.iso8601></value></member>",
        iso8601(T)
    )));
    assert!(text.contains("a &amp; b &lt;c&gt; &quot;d&quot;"), "{text}");
    assert!(text.contains("<member><name>cls</name><value>Host</value></member>"));
    // Without TLS the simulator still keeps certificate records.
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>Certificate.get_all_records</methodName><params><param><value>{session}</value></param></params></methodCall>"
    );
    let (_, _, text) = post(&c, format!("{base}/"), body).await;
    assert!(
        text.contains("<member><name>type</name><value>host</value></member>"),
        "{text}"
    );
    assert!(text.contains("<name>not_after</name><value><dateTime.iso8601>"));
    sim.shutdown().await;
}

#[tokio::test]
async fn nested_generation_has_types_but_no_newer_fingerprints() {
    let sim = Sim::start(frozen(Generation::Nested))
        .await
        .expect("sim starts");
    let c = client(&sim);
    let s = login(&c, &sim).await;
    let certs = records_of(&c, &sim, &s, "Certificate").await;
    assert!(!certs.is_empty());
    for rec in certs.values() {
        assert!(rec["type"].is_string() && rec["name"].is_string());
        assert!(rec["fingerprint"].is_string());
        assert!(rec.get("fingerprint_sha256").is_none());
        assert!(rec.get("fingerprint_sha1").is_none());
    }
    // pending_guidances (1.303) yes, its _recommended/_full siblings (24.10) not yet.
    for rec in records_of(&c, &sim, &s, "host").await.values() {
        assert!(rec["pending_guidances"].is_array());
        assert!(rec.get("pending_guidances_full").is_none());
    }
    sim.shutdown().await;
}
