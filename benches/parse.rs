//! Throughput of `xapi::rrd::parse` on a realistic `/rrd_updates` body of one busy host (250
//! VMs), in the current JSON generation (C), the legacy one (A) and XML.
//!
//! The bodies are generated here rather than stored: a 250-VM body is large, and generating it
//! keeps the shape (sources per VM, value formats, NaN rate) explicit. Host data sources are
//! taken from the host-1 fixture so they match what the simulator and XAPI emit.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xen_exporter::xapi::rrd::{Legend, parse};

const FIXTURE: &[u8] = include_bytes!("../tests/fixtures/rrd/rrd_updates.host1.formatC.json");
const VMS: usize = 250;
const ROWS: i64 = 2;
const NEWEST_T: i64 = 1_767_225_600;
const STEP: i64 = 5;

/// Per-VM sources of a guest with 2 vCPUs, 2 VIFs and one disk, as xcp-rrdd names them.
const VM_SOURCES: &[&str] = &[
    "cpu0",
    "cpu1",
    "cpu_usage",
    "memory",
    "memory_internal_free",
    "memory_target",
    "vbd_xvda_avgqu_sz",
    "vbd_xvda_inflight",
    "vbd_xvda_io_throughput_read",
    "vbd_xvda_io_throughput_total",
    "vbd_xvda_io_throughput_write",
    "vbd_xvda_iops_read",
    "vbd_xvda_iops_total",
    "vbd_xvda_iops_write",
    "vbd_xvda_iowait",
    "vbd_xvda_latency",
    "vbd_xvda_read",
    "vbd_xvda_read_latency",
    "vbd_xvda_write",
    "vbd_xvda_write_latency",
    "vif_0_rx",
    "vif_0_tx",
    "vif_1_rx",
    "vif_1_tx",
];

/// xorshift64*: deterministic, so every run times the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

/// A plausible value for a data source, by the kind its name implies; ~2 % NaN as in the
/// fixtures.
fn value(rng: &mut Rng, name: &str) -> f64 {
    if rng.next().is_multiple_of(50) {
        return f64::NAN;
    }
    let u = rng.unit();
    if name.ends_with("avg-freq") {
        ((800.0 + 2800.0 * u) * 10.0).round() / 10.0
    } else if name == "memory" || name == "memory_target" || name.starts_with("memory_total") {
        4_294_967_296.0
    } else if name.contains("memory") || name.contains("kib") {
        (u * 16_000_000.0).round()
    } else if name.contains("latency") || name.contains("_rx") || name.contains("_tx") {
        (u * 1_000_000.0 * 1000.0).round() / 1000.0
    } else if name.contains("iops") || name.contains("inflight") || name.contains("throughput") {
        (u * 5000.0 * 10.0).round() / 10.0
    } else if u < 0.05 {
        0.0
    } else {
        u
    }
}

/// `%0.15g` as current XAPI prints values (zero as `0.0`), close enough for timing.
fn g15(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == 0.0 {
        "0.0".to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let int_digits = v.abs().log10().floor() as i64 + 1;
        let precision = (15 - int_digits).max(0) as usize;
        let s = format!("{v:.precision$}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// `%0.4f` as legacy XAPI prints values, with bare `NaN`.
fn f4(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == 0.0 {
        "0.0".to_owned()
    } else {
        format!("{v:.4}")
    }
}

struct Table {
    legend: Vec<String>,
    /// Newest first, as XAPI sends them.
    rows: Vec<(i64, Vec<f64>)>,
}

fn table() -> Table {
    let mut rng = Rng(0x5EED_0000_0000_0250);
    let fixture = parse(FIXTURE).expect("the host-1 fixture parses");
    let host_uuid = rng.uuid();
    let mut legend: Vec<String> = fixture
        .legend
        .iter()
        .filter_map(|l| Legend::parse(l))
        .filter(|l| l.owner == "host")
        .map(|l| format!("AVERAGE:host:{host_uuid}:{}", l.name))
        .collect();
    for _ in 0..VMS {
        let vm = rng.uuid();
        legend.extend(VM_SOURCES.iter().map(|s| format!("AVERAGE:vm:{vm}:{s}")));
    }
    let rows = (0..ROWS)
        .map(|i| {
            let values = legend
                .iter()
                .map(|l| value(&mut rng, l.rsplit(':').next().unwrap_or_default()))
                .collect();
            (NEWEST_T - i * STEP, values)
        })
        .collect();
    Table { legend, rows }
}

fn format_c(t: &Table) -> String {
    let mut s = String::new();
    let oldest = NEWEST_T - (ROWS - 1) * STEP;
    let _ = write!(
        s,
        r#"{{"meta":{{"start":"{oldest}","step":"{STEP}","end":"{NEWEST_T}","rows":"{ROWS}","columns":"{}","legend":["#,
        t.legend.len()
    );
    let legend: Vec<String> = t.legend.iter().map(|l| format!("\"{l}\"")).collect();
    s.push_str(&legend.join(","));
    s.push_str(r#"]},"data":["#);
    let rows: Vec<String> = t
        .rows
        .iter()
        .map(|(time, values)| {
            let values: Vec<String> = values.iter().map(|v| format!("\"{}\"", g15(*v))).collect();
            format!(r#"{{"t":"{time}","values":[{}]}}"#, values.join(","))
        })
        .collect();
    s.push_str(&rows.join(","));
    s.push_str("]}");
    s
}

fn format_a(t: &Table) -> String {
    let oldest = NEWEST_T - (ROWS - 1) * STEP;
    let legend: Vec<String> = t.legend.iter().map(|l| format!("\"{l}\"")).collect();
    let rows: Vec<String> = t
        .rows
        .iter()
        .map(|(time, values)| {
            let values: Vec<String> = values.iter().map(|v| f4(*v)).collect();
            format!("{{t:{time},values:[{}]}}", values.join(","))
        })
        .collect();
    format!(
        "{{meta: {{start:{oldest},step:{STEP},end:{NEWEST_T},rows:{ROWS},columns:{},legend:[{}]}},data:[{}]}}",
        t.legend.len(),
        legend.join(","),
        rows.join(",")
    )
}

fn xml(t: &Table) -> String {
    let oldest = NEWEST_T - (ROWS - 1) * STEP;
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xport><meta><start>{oldest}</start><step>{STEP}</step><end>{NEWEST_T}</end><rows>{ROWS}</rows><columns>{}</columns><legend>",
        t.legend.len()
    );
    for l in &t.legend {
        let _ = write!(s, "<entry>{l}</entry>");
    }
    s.push_str("</legend></meta><data>");
    for (time, values) in &t.rows {
        let _ = write!(s, "<row><t>{time}</t>");
        for v in values {
            let _ = write!(s, "<v>{}</v>", g15(*v));
        }
        s.push_str("</row>");
    }
    s.push_str("</data></xport>");
    s
}

fn bench(c: &mut Criterion) {
    let table = table();
    let bodies = [
        ("format_c_250_vms", format_c(&table)),
        ("format_a_250_vms", format_a(&table)),
        ("xml_250_vms", xml(&table)),
    ];
    let mut group = c.benchmark_group("parse");
    for (name, body) in &bodies {
        let parsed = parse(body.as_bytes()).expect("generated body parses");
        assert_eq!(parsed.legend.len(), table.legend.len());
        assert_eq!(parsed.newest.as_ref().map(|r| r.t), Some(NEWEST_T));
        eprintln!(
            "{name}: {} bytes, {} columns, {ROWS} rows",
            body.len(),
            table.legend.len()
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| b.iter(|| parse(black_box(body.as_bytes()))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
