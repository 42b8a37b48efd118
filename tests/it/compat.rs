//! Drop-in compatibility: the exporter's series for the shared fixture bodies against what the
//! original Python exporter printed for the very same bodies. Every difference must be one of
//! those listed in the README ("Differences from the original exporter").

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use xen_exporter::collect::exposition_from_bodies;
use xen_exporter::inventory::Inventory;
use xen_exporter::metrics::encode::Format;
use xen_exporter::xapi::records::Records;

use crate::harness::{Scrape, parse_sample};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A minimal XML-RPC value reader, enough for the record fixtures.
fn xmlrpc_value(xml: &str) -> Value {
    fn text_until<'a>(s: &'a str, end: &str) -> (&'a str, &'a str) {
        let i = s.find(end).unwrap_or_else(|| panic!("missing {end}"));
        (&s[..i], &s[i + end.len()..])
    }
    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }
    // Parses one <value>…</value>, returning the value and the rest.
    fn value(s: &str) -> (Value, &str) {
        let s = s.strip_prefix("<value>").expect("<value>");
        if let Some(rest) = s.strip_prefix("</value>") {
            (Value::String(String::new()), rest)
        } else if let Some(rest) = s.strip_prefix("<struct>") {
            let mut map = serde_json::Map::new();
            let mut rest = rest;
            while let Some(r) = rest.strip_prefix("<member><name>") {
                let (name, r) = text_until(r, "</name>");
                let (v, r) = value(r);
                map.insert(unescape(name), v);
                rest = r.strip_prefix("</member>").expect("</member>");
            }
            let rest = rest.strip_prefix("</struct></value>").expect("</struct>");
            (Value::Object(map), rest)
        } else if let Some(rest) = s.strip_prefix("<array><data>") {
            let mut items = Vec::new();
            let mut rest = rest;
            while rest.starts_with("<value>") {
                let (v, r) = value(rest);
                items.push(v);
                rest = r;
            }
            let rest = rest
                .strip_prefix("</data></array></value>")
                .expect("</array>");
            (Value::Array(items), rest)
        } else if let Some(rest) = s.strip_prefix("<boolean>") {
            let (b, r) = text_until(rest, "</boolean></value>");
            (Value::Bool(b == "1"), r)
        } else if s.starts_with('<') {
            let close = s.find('>').unwrap();
            let tag = &s[1..close];
            let (t, r) = text_until(&s[close + 1..], &format!("</{tag}></value>"));
            (Value::String(unescape(t)), r)
        } else {
            let (t, r) = text_until(s, "</value>");
            (Value::String(unescape(t)), r)
        }
    }
    let start = xml.find("<value>").unwrap();
    let (envelope, _) = value(&xml[start..]);
    assert_eq!(envelope["Status"], "Success");
    envelope["Value"].clone()
}

fn records<R: serde::de::DeserializeOwned>(file: &str) -> Records<R> {
    let xml = String::from_utf8(read(&format!("records/{file}"))).unwrap();
    serde_json::from_value(xmlrpc_value(&xml)).unwrap()
}

fn inventory() -> Inventory {
    Inventory::new(
        Records::new(),
        records("host.get_all_records.xml"),
        records("VM.get_all_records.xml"),
        records("SR.get_all_records.xml"),
    )
}

type Key = (String, BTreeMap<String, String>);

fn original(file: &str) -> BTreeMap<Key, f64> {
    let text = String::from_utf8(read(&format!("original/{file}"))).unwrap();
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            // The original separates labels with ", " and prints Python's `nan`.
            let line = l.replace("\", ", "\",").replace(" nan", " NaN");
            let s = parse_sample(&line);
            ((s.name, s.labels), s.value)
        })
        .collect()
}

fn ours(bodies: &[&str]) -> BTreeMap<Key, f64> {
    let bodies: Vec<Vec<u8>> = bodies.iter().map(|b| read(&format!("rrd/{b}"))).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    let exposition = exposition_from_bodies(&refs, &Arc::new(inventory()));
    let mut text = Vec::new();
    exposition.encode(Format::Text, &mut text);
    Scrape::parse(&String::from_utf8(text).unwrap())
        .series
        .into_iter()
        .map(|s| ((s.name, s.labels), s.value))
        .collect()
}

/// Compares; the only tolerated differences are the documented ones.
fn assert_compatible(theirs: BTreeMap<Key, f64>, ours: BTreeMap<Key, f64>) {
    let mut nan_left_out = 0;
    for (key, value) in &theirs {
        if key.0 == "xen_collector_duration_seconds" {
            continue; // a timing; the offline path has none
        }
        match ours.get(key) {
            Some(v) => assert_eq!(v, value, "value of {key:?}"),
            None if value.is_nan() => nan_left_out += 1,
            None => panic!("missing {key:?} = {value}"),
        }
    }
    for key in ours.keys() {
        assert!(theirs.contains_key(key), "extra series {key:?}");
    }
    assert!(nan_left_out > 0, "the fixtures contain NaN samples");
}

#[test]
fn pool_mode_matches_the_original_exporter_on_current_bodies() {
    assert_compatible(
        original("original-exporter.pool-mode.prom"),
        ours(&[
            "rrd_updates.host1.formatC.json",
            "rrd_updates.host2.formatC.json",
        ]),
    );
}

#[test]
fn host_mode_matches_the_original_exporter_on_current_bodies() {
    assert_compatible(
        original("original-exporter.host-mode.prom"),
        ours(&["rrd_updates.host1.formatC.json"]),
    );
}

#[test]
fn pool_mode_matches_the_original_exporter_on_legacy_bodies() {
    assert_compatible(
        original("original-exporter.pool-mode.formatA.prom"),
        ours(&[
            "rrd_updates.host1.formatA.json5",
            "rrd_updates.host2.formatA.json5",
        ]),
    );
}

#[test]
fn host_mode_matches_the_original_exporter_on_legacy_bodies() {
    assert_compatible(
        original("original-exporter.host-mode.formatA.prom"),
        ours(&["rrd_updates.host1.formatA.json5"]),
    );
}

#[test]
fn xml_bodies_give_the_same_series_as_json() {
    assert_eq!(
        ours(&["rrd_updates.host1.xml", "rrd_updates.host2.xml"]),
        ours(&[
            "rrd_updates.host1.formatC.json",
            "rrd_updates.host2.formatC.json"
        ])
    );
}
