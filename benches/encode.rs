//! Benchmark of the exposition encoders: 100,000 samples shaped like a pool's `xen_vm_*`
//! families (1,000 VMs × 100 series, a shared vm/vm_uuid/host/host_uuid head and one tail
//! label), with plain label values and with values that need escaping; both from samples
//! (`metrics::encode`) and from hosts' rows with cached series maps (`Exposition::encode`,
//! what a warm scrape does).

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xen_exporter::metrics::encode::{Format, encode};
use xen_exporter::metrics::exposition::{Exposition, LayoutCache};
use xen_exporter::metrics::series::{Frame, SeriesMapBuilder};
use xen_exporter::metrics::{Family, Kind, Label, Labels, Sample};

const VMS: usize = 1_000;
/// 25 families × 4 tail values = 100 series per VM.
const FAMILIES: usize = 25;
const TAILS: usize = 4;

/// Families as `FamiliesBuilder::finish` leaves them: sorted by name, one sample per VM and
/// tail value, heads shared between all samples of a VM.
fn families(escaping: bool) -> Vec<Family> {
    let heads: Vec<Arc<[Label]>> = (0..VMS)
        .map(|vm| {
            let name = if escaping {
                format!("web \"prod\" C:\\vms\\{vm:04}\nsecond line")
            } else {
                format!("web-prod-{vm:04}")
            };
            let host = vm % 16;
            Arc::from(vec![
                Label::new("vm", name),
                Label::new("vm_uuid", format!("6f0e3a1c-9b2d-4e8f-a1b3-{vm:012x}")),
                Label::new("host", format!("xcp-ng-{host:02}")),
                Label::new("host_uuid", format!("48265ed7-8560-493a-83f6-{host:012x}")),
            ])
        })
        .collect();
    let tails: Vec<Arc<str>> = ["xvda", "xvdb", "xvdc", "xvdd"].map(Arc::from).into();
    (0..FAMILIES)
        .map(|f| Family {
            name: Cow::Owned(format!("xen_vm_vbd_series_{f:02}")),
            help: Cow::Borrowed(
                "Bytes read from the virtual disk, in B/s (RRD vbd_<dev>_read, average over the step).",
            ),
            kind: Kind::Gauge,
            samples: heads
                .iter()
                .enumerate()
                .flat_map(|(vm, head)| {
                    tails.iter().enumerate().map(move |(t, tail)| Sample {
                        labels: Labels {
                            head: head.clone(),
                            tail: Box::from([Label::new("vbd", tail.clone())]),
                        },
                        // A mix of integral values and %0.15g-style fractions, as XAPI sends.
                        value: if (vm + t) % 3 == 0 {
                            (vm * 4096 + f) as f64
                        } else {
                            (vm * 100 + t * 10 + f) as f64 / 7.0
                        },
                    })
                })
                .collect(),
        })
        .collect()
}

/// The same series as rows: one series map and one row per host (16 hosts), as a warm scrape
/// hands them to the encoder.
fn exposition(families: &[Family]) -> Exposition {
    const HOSTS: usize = 16;
    let per_host = |host: usize| {
        families.iter().flat_map(move |f| {
            f.samples
                .iter()
                .filter(move |s| s.labels.head[2].value.ends_with(&format!("{host:02}")))
        })
    };
    let mut frames = Vec::with_capacity(HOSTS);
    for host in 0..HOSTS {
        let columns = per_host(host).count();
        let mut map = SeriesMapBuilder::new(columns);
        let mut heads: Vec<(*const Label, u32)> = Vec::new();
        let mut values = Vec::with_capacity(columns);
        let mut column = 0;
        for f in families {
            let family = map.family(f.name.clone(), |_| (f.help.clone(), f.kind));
            for s in f
                .samples
                .iter()
                .filter(|s| s.labels.head[2].value.ends_with(&format!("{host:02}")))
            {
                let key = s.labels.head.as_ptr();
                let head = match heads.iter().find(|(k, _)| *k == key) {
                    Some(&(_, h)) => h,
                    None => {
                        let h = map.head(s.labels.head.clone());
                        heads.push((key, h));
                        h
                    }
                };
                let tail = map.tail(s.labels.tail.clone());
                map.set(column, family, head, tail);
                values.push(s.value);
                column += 1;
            }
        }
        frames.push(Frame::new(Arc::new(map.finish()), &values));
    }
    Exposition::new(Vec::new(), frames, &LayoutCache::new()).0
}

/// One host's newest row as the parser leaves it, turned into a frame (its values formatted):
/// what every host's task does once its body is parsed. The values are shaped like XAPI's:
/// `%0.15g` fractions, integers, `0.0` and `NaN`.
fn bench_frame(c: &mut Criterion) {
    const COLUMNS: usize = 10_000;
    let mut map = SeriesMapBuilder::new(COLUMNS);
    let family = map.family(Cow::Borrowed("xen_vm_series"), |_| {
        (Cow::Borrowed("help"), Kind::Gauge)
    });
    let head = map.head(Arc::from(vec![Label::new("vm", "web")]));
    for column in 0..COLUMNS {
        let tail = map.tail(Box::from([Label::new("n", column.to_string())]));
        map.set(column, family, head, tail);
    }
    let map = Arc::new(map.finish());
    let mut values = Vec::new();
    for column in 0..COLUMNS {
        let value = match column % 8 {
            0 => "0.0".to_owned(),
            1 => "NaN".to_owned(),
            2 => format!("{}", column * 4096),
            // `%0.15g`, as xapi >= 25.3 writes values.
            _ => {
                let v = column as f64 / 7.0 + 0.001;
                let decimals = (14 - v.log10().floor() as i32).max(0) as usize;
                let fixed = format!("{v:.decimals$}");
                fixed.trim_end_matches('0').trim_end_matches('.').to_owned()
            }
        };
        values.push(value.parse::<f64>().expect("a number"));
    }
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(COLUMNS as u64));
    group.bench_function("new", |b| {
        b.iter(|| Frame::new(map.clone(), black_box(&values)))
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let samples = (VMS * FAMILIES * TAILS) as u64;
    for (escaping, label) in [(false, "plain"), (true, "escaping")] {
        let families = families(escaping);
        for (format, format_name) in [(Format::Text, "text"), (Format::OpenMetrics, "openmetrics")]
        {
            let mut out = Vec::new();
            encode(&families, format, &mut out);
            let bytes = out.len() as u64;
            let mut group = c.benchmark_group(format!("encode/{format_name}/{label}"));
            group.sample_size(30);
            group.throughput(Throughput::Elements(samples));
            group.bench_function("samples", |b| {
                b.iter(|| {
                    out.clear();
                    encode(black_box(&families), format, &mut out);
                    black_box(out.len())
                })
            });
            group.throughput(Throughput::Bytes(bytes));
            group.bench_function("bytes", |b| {
                b.iter(|| {
                    out.clear();
                    encode(black_box(&families), format, &mut out);
                    black_box(out.len())
                })
            });
            let rows = exposition(&families);
            let mut from_rows = Vec::new();
            rows.encode(format, &mut from_rows);
            assert!(from_rows == out, "rows encode to other bytes than samples");
            group.bench_function("rows", |b| {
                b.iter(|| {
                    out.clear();
                    black_box(&rows).encode(format, &mut out);
                    black_box(out.len())
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench, bench_frame);
criterion_main!(benches);
