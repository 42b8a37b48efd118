//! `/rrd_updates` bodies: the data-source catalogue of each host and VM RRD, deterministic
//! values, xapi-rrd's archive and row selection, format negotiation, and the XML / JSON
//! (A legacy, B nested, C current) writers.
//!
//! Legends are precomputed per host layout and rebuilt only when the model's RRD epoch
//! changes, so serving a body is mostly value generation and memcpy.

use std::sync::Arc;

use super::model::{Host, Model, Vm};
use super::numfmt::{NumStyle, push_rrd_value, quantize};
use super::rng::{hash_str, mix, unit};
use super::{Generation, VmUuidFilter};

/// Consolidation function of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cf {
    Average,
    Min,
    Max,
}

impl Cf {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Cf::Average => "AVERAGE",
            Cf::Min => "MIN",
            Cf::Max => "MAX",
        }
    }
    fn index(self) -> usize {
        match self {
            Cf::Average => 0,
            Cf::Min => 1,
            Cf::Max => 2,
        }
    }
}

/// The `cf` query parameter: a known CF, `LAST` (parsed but never archived), or absent /
/// unknown, which means every CF of the chosen archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CfFilter {
    All,
    Only(Cf),
    Last,
}

/// xcp-rrdd's timescales: (PDPs per row, rows), base step 5 s.
const BASE_STEP: i64 = 5;
const ARCHIVES: [(i64, i64); 4] = [(1, 120), (12, 120), (720, 168), (17_280, 366)];

/// How a data source's values are generated.
#[derive(Debug, Clone, Copy)]
enum Gen {
    /// A fraction in [0, 1): `u^pow`, 15 significant digits (busy CPUs skew low).
    Frac { pow: f64 },
    /// Uniform in [lo, hi), rounded to `dp` places (`dp` < 0: 15 significant digits).
    Lin { lo: f64, hi: f64, dp: i32 },
    /// Log-uniform in [lo, hi): rates spanning several orders of magnitude.
    Log { lo: f64, hi: f64, dp: i32 },
    /// Constant (memory sizes, domain counts).
    Fixed(f64),
    /// `base × uniform(lo, hi)`.
    Ratio {
        base: f64,
        lo: f64,
        hi: f64,
        dp: i32,
    },
    /// The number of live sessions at the time of the request.
    SessionCount,
    /// Successful logins per second during the row's interval.
    SessionRate,
}

#[derive(Debug)]
struct Ds {
    name: String,
    source: Gen,
    key: u64,
}

/// One RRD (the host's or a VM's) with its legends precomputed.
#[derive(Debug)]
pub(super) struct OwnerRrd {
    pub(super) is_host: bool,
    pub(super) uuid: String,
    ds: Vec<Ds>,
    has_min_max: bool,
    /// Per CF: `"AVERAGE:host:<uuid>:cpu0","…"` (JSON, also used by format A).
    legend_json: [String; 3],
    /// Per CF: `<entry>…</entry>…`.
    legend_xml: [String; 3],
}

impl OwnerRrd {
    fn new(is_host: bool, uuid: &str, seed: u64, mut ds: Vec<(String, Gen)>) -> OwnerRrd {
        // xcp-rrdd creates RRDs from a sorted map, so a fresh RRD lists sources in byte order.
        ds.sort_by(|a, b| a.0.cmp(&b.0));
        let ds: Vec<Ds> = ds
            .into_iter()
            .map(|(name, source)| Ds {
                key: hash_str(seed, &format!("{uuid}/{name}")),
                name,
                source,
            })
            .collect();
        let owner = if is_host { "host" } else { "vm" };
        let mut legend_json: [String; 3] = Default::default();
        let mut legend_xml: [String; 3] = Default::default();
        let cfs: &[Cf] = if is_host {
            &[Cf::Average, Cf::Min, Cf::Max]
        } else {
            &[Cf::Average]
        };
        for cf in cfs {
            let (j, x) = (&mut legend_json[cf.index()], &mut legend_xml[cf.index()]);
            for (i, d) in ds.iter().enumerate() {
                if i > 0 {
                    j.push(',');
                }
                // Legend parts are UUIDs and source names: nothing needs escaping.
                j.push('"');
                for part in [cf.as_str(), ":", owner, ":", uuid, ":", &d.name] {
                    j.push_str(part);
                }
                j.push('"');
                x.push_str("<entry>");
                for part in [cf.as_str(), ":", owner, ":", uuid, ":", &d.name] {
                    x.push_str(part);
                }
                x.push_str("</entry>");
            }
        }
        OwnerRrd {
            is_host,
            uuid: uuid.to_string(),
            ds,
            has_min_max: is_host,
            legend_json,
            legend_xml,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ds.len()
    }

    /// The data source names, in legend order.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.ds.iter().map(|d| d.name.as_str())
    }

    pub(super) fn legend_entry(&self, cf: Cf, i: usize) -> String {
        let owner = if self.is_host { "host" } else { "vm" };
        format!("{}:{owner}:{}:{}", cf.as_str(), self.uuid, self.ds[i].name)
    }

    /// This RRD's archives as (pdp, rows, cf), in creation order.
    fn rras(&self) -> impl Iterator<Item = (i64, i64, Cf)> + '_ {
        ARCHIVES.iter().flat_map(move |&(pdp, rows)| {
            let mm = self.has_min_max && pdp > 1;
            [
                Some(Cf::Average),
                mm.then_some(Cf::Min),
                mm.then_some(Cf::Max),
            ]
            .into_iter()
            .flatten()
            .map(move |cf| (pdp, rows, cf))
        })
    }
}

/// The RRDs one host's xcp-rrdd holds: its own and those of the running VMs resident on it.
#[derive(Debug)]
pub(super) struct HostLayout {
    pub(super) epoch: u64,
    pub(super) host: Arc<OwnerRrd>,
    /// Sorted by UUID.
    pub(super) vms: Vec<Arc<OwnerRrd>>,
}

/// Builds host `h`'s layout from the model.
pub(super) fn build_layout(model: &Model, h: usize) -> HostLayout {
    let seed = model.seed;
    let host = &model.hosts[h];
    let master = model.pool.master == h;
    let mut ds: Vec<(String, Gen)> = Vec::with_capacity(host.pcpus * 9 + 128);
    let frac = |pow| Gen::Frac { pow };
    for n in 0..host.pcpus {
        ds.push((format!("cpu{n}"), frac(2.5)));
        for c in 0..3 {
            ds.push((format!("cpu{n}-C{c}"), frac(1.0)));
        }
        for p in 0..4 {
            ds.push((format!("cpu{n}-P{p}"), frac(1.0)));
        }
        ds.push((
            format!("CPU{n}-avg-freq"),
            Gen::Lin {
                lo: 800.0,
                hi: 3500.0,
                dp: 1,
            },
        ));
    }
    let resident: Vec<&Vm> = model.resident_running(h).collect();
    let running_vcpus: usize = resident.iter().map(|v| v.vcpus).sum();
    let total_kib = (host.memory_total / 1024) as f64;
    let fixed: [(&str, Gen); 10] = [
        ("cpu_avg", frac(2.0)),
        (
            "loadavg",
            Gen::Lin {
                lo: 0.0,
                hi: 4.0,
                dp: 2,
            },
        ),
        (
            "hostload",
            Gen::Lin {
                lo: 0.0,
                hi: 2.5,
                dp: 3,
            },
        ),
        ("running_vcpus", Gen::Fixed(running_vcpus as f64)),
        ("running_domains", Gen::Fixed(resident.len() as f64)),
        ("memory_total_kib", Gen::Fixed(total_kib)),
        (
            "memory_free_kib",
            Gen::Ratio {
                base: total_kib,
                lo: 0.55,
                hi: 0.95,
                dp: 0,
            },
        ),
        (
            "memory_reclaimed",
            Gen::Lin {
                lo: 0.0,
                hi: 2e9,
                dp: 0,
            },
        ),
        (
            "memory_reclaimed_max",
            Gen::Lin {
                lo: 2e9,
                hi: 8e9,
                dp: 0,
            },
        ),
        ("Tapdisks_in_low_memory_mode", Gen::Fixed(0.0)),
    ];
    ds.extend(fixed.iter().map(|(n, g)| ((*n).to_string(), *g)));
    for dev in ["eth0", "eth1", "bond0", "aggr"] {
        for dir in ["rx", "tx"] {
            ds.push((
                format!("pif_{dev}_{dir}"),
                Gen::Log {
                    lo: 100.0,
                    hi: 1e8,
                    dp: 3,
                },
            ));
        }
    }
    for s in model.attached_srs(h) {
        let sr = &model.srs[s];
        // ISO SRs (incl. DVD drives) have no tapdisk statistics.
        if sr.content_type == "iso" {
            continue;
        }
        let sr8 = &sr.id.uuid[..8];
        for (prefix, source) in io_sources() {
            ds.push((format!("{prefix}_{sr8}"), source));
        }
    }
    if h == 0
        && let Some(s) = model.local_sr(h)
    {
        let u = &model.srs[s].id.uuid;
        ds.push((format!("sr_{u}_cache_size"), Gen::Fixed(53_687_091_200.0)));
        ds.push((
            format!("sr_{u}_cache_hits"),
            Gen::Lin {
                lo: 0.0,
                hi: 500.0,
                dp: 1,
            },
        ));
        ds.push((
            format!("sr_{u}_cache_misses"),
            Gen::Lin {
                lo: 0.0,
                hi: 50.0,
                dp: 1,
            },
        ));
    }
    let xapi: [(&str, Gen); 5] = [
        (
            "xapi_memory_usage_kib",
            Gen::Lin {
                lo: 250_000.0,
                hi: 400_000.0,
                dp: 0,
            },
        ),
        (
            "xapi_free_memory_kib",
            Gen::Lin {
                lo: 20_000.0,
                hi: 65_000.0,
                dp: 0,
            },
        ),
        (
            "xapi_live_memory_kib",
            Gen::Lin {
                lo: 100_000.0,
                hi: 150_000.0,
                dp: 0,
            },
        ),
        (
            "xapi_allocation_kib",
            Gen::Lin {
                lo: 1_000.0,
                hi: 7_000.0,
                dp: 3,
            },
        ),
        (
            "xapi_open_fds",
            Gen::Lin {
                lo: 60.0,
                hi: 180.0,
                dp: 0,
            },
        ),
    ];
    ds.extend(xapi.iter().map(|(n, g)| ((*n).to_string(), *g)));
    if master {
        ds.push(("pool_session_count".into(), Gen::SessionCount));
        ds.push((
            "pool_task_count".into(),
            Gen::Lin {
                lo: 0.0,
                hi: 4.0,
                dp: 0,
            },
        ));
        ds.push(("pool_session_creation_rate".into(), Gen::SessionRate));
    }
    for field in [
        "threads",
        "fdsize",
        "vmsize",
        "vmlck",
        "vmpin",
        "vmdata",
        "vmstk",
        "vmpte",
        "rss",
        "ocaml_total",
        "ocaml_allocation_rate",
        "ocaml_maybe_live",
        "ocaml_free",
        "mem_extra",
    ] {
        let source = match field {
            "threads" => Gen::Lin {
                lo: 20.0,
                hi: 45.0,
                dp: 0,
            },
            "fdsize" => Gen::Lin {
                lo: 64.0,
                hi: 256.0,
                dp: 0,
            },
            "ocaml_allocation_rate" => Gen::Lin {
                lo: 100.0,
                hi: 5_000.0,
                dp: 3,
            },
            _ => Gen::Lin {
                lo: 1_000.0,
                hi: 90_000.0,
                dp: 0,
            },
        };
        ds.push((format!("xenopsd-xc_{field}"), source));
    }
    for (name, _) in &host.plugin_sources {
        ds.push((
            name.clone(),
            Gen::Lin {
                lo: 0.0,
                hi: 100.0,
                dp: 2,
            },
        ));
    }
    let host_rrd = Arc::new(OwnerRrd::new(true, &host.id.uuid, seed, ds));

    let mut vms: Vec<Arc<OwnerRrd>> = resident
        .iter()
        .map(|vm| Arc::new(vm_rrd(vm, seed)))
        .collect();
    vms.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    HostLayout {
        epoch: model.rrd_epoch,
        host: host_rrd,
        vms,
    }
}

/// The unit XAPI declares for host data source `name` (`data_source.units` of
/// `host.get_data_sources`), as the plugins that report it write it.
pub(super) fn host_units<'a>(host: &'a Host, name: &str) -> &'a str {
    if let Some((_, units)) = host.plugin_sources.iter().find(|(n, _)| n == name) {
        return units;
    }
    let sr_source = |base: &str| {
        name.strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|sr8| sr8.len() == 8)
    };
    if name.starts_with("CPU") {
        "MHz"
    } else if name.starts_with("cpu") || matches!(name, "loadavg" | "hostload") {
        "(fraction)"
    } else if name.starts_with("pif_") || sr_source("read") || sr_source("write") {
        "B/s"
    } else if name.contains("latency") {
        "μs"
    } else if name.starts_with("io_throughput_") {
        "MiB/s"
    } else if name.starts_with("iops_") {
        "requests/s"
    } else if sr_source("iowait") {
        "s/s"
    } else if sr_source("inflight") || sr_source("avgqu_sz") {
        "requests"
    } else if name.ends_with("_cache_size") || name.starts_with("memory_reclaimed") {
        "B"
    } else if name.ends_with("_cache_hits") {
        "hits/s"
    } else if name.ends_with("_cache_misses") {
        "misses/s"
    } else if matches!(
        name,
        "xapi_allocation_kib" | "xenopsd-xc_ocaml_allocation_rate"
    ) {
        "KiB/s"
    } else if name.ends_with("_kib")
        || name.starts_with("xenopsd-xc_")
            && !name.ends_with("threads")
            && !name.ends_with("fdsize")
    {
        "KiB"
    } else if name == "pool_session_creation_rate" {
        "sessions/s"
    } else {
        "count"
    }
}

/// The 14 tapdisk statistics, shared by host SR sources (`<name>_<sr8>`) and VM VBD sources
/// (`vbd_<dev>_<name>`).
fn io_sources() -> [(&'static str, Gen); 14] {
    [
        (
            "read",
            Gen::Log {
                lo: 1e3,
                hi: 5e7,
                dp: 3,
            },
        ),
        (
            "write",
            Gen::Log {
                lo: 1e3,
                hi: 5e7,
                dp: 3,
            },
        ),
        (
            "read_latency",
            Gen::Lin {
                lo: 20.0,
                hi: 6_000.0,
                dp: 0,
            },
        ),
        (
            "write_latency",
            Gen::Lin {
                lo: 20.0,
                hi: 6_000.0,
                dp: 0,
            },
        ),
        (
            "latency",
            Gen::Lin {
                lo: 20.0,
                hi: 6_000.0,
                dp: 0,
            },
        ),
        (
            "io_throughput_read",
            Gen::Lin {
                lo: 0.0,
                hi: 200.0,
                dp: -1,
            },
        ),
        (
            "io_throughput_write",
            Gen::Lin {
                lo: 0.0,
                hi: 200.0,
                dp: -1,
            },
        ),
        (
            "io_throughput_total",
            Gen::Lin {
                lo: 0.0,
                hi: 400.0,
                dp: -1,
            },
        ),
        (
            "iops_read",
            Gen::Lin {
                lo: 0.0,
                hi: 2_000.0,
                dp: 1,
            },
        ),
        (
            "iops_write",
            Gen::Lin {
                lo: 0.0,
                hi: 2_000.0,
                dp: 1,
            },
        ),
        (
            "iops_total",
            Gen::Lin {
                lo: 0.0,
                hi: 4_000.0,
                dp: 1,
            },
        ),
        (
            "iowait",
            Gen::Log {
                lo: 1e-9,
                hi: 0.2,
                dp: -1,
            },
        ),
        (
            "inflight",
            Gen::Lin {
                lo: 0.0,
                hi: 8.0,
                dp: 0,
            },
        ),
        (
            "avgqu_sz",
            Gen::Lin {
                lo: 0.0,
                hi: 3.0,
                dp: 3,
            },
        ),
    ]
}

fn vm_rrd(vm: &Vm, seed: u64) -> OwnerRrd {
    let mut ds: Vec<(String, Gen)> = Vec::with_capacity(vm.vcpus + 40);
    for n in 0..vm.vcpus {
        ds.push((format!("cpu{n}"), Gen::Frac { pow: 3.0 }));
    }
    ds.push(("cpu_usage".into(), Gen::Frac { pow: 2.0 }));
    let mem = vm.memory_dynamic_max as f64;
    ds.push(("memory".into(), Gen::Fixed(mem)));
    // dom0 has no balloon target: the source is absent rather than 0.
    if !vm.is_control_domain() {
        ds.push(("memory_target".into(), Gen::Fixed(mem)));
    }
    ds.push((
        "memory_internal_free".into(),
        Gen::Ratio {
            base: mem / 1024.0,
            lo: 0.05,
            hi: 0.8,
            dp: 0,
        },
    ));
    for vif in &vm.vifs {
        for dir in ["rx", "tx"] {
            ds.push((
                format!("vif_{}_{dir}", vif.device),
                Gen::Log {
                    lo: 10.0,
                    hi: 5e7,
                    dp: 3,
                },
            ));
        }
    }
    for vbd in vm.vbds.iter().filter(|b| b.vdi.is_some() && !b.is_cd) {
        for (suffix, source) in io_sources() {
            ds.push((format!("vbd_{}_{suffix}", vbd.device), source));
        }
    }
    OwnerRrd::new(false, &vm.id.uuid, seed, ds)
}

/// Parsed `/rrd_updates` query (rrdd_http_handler.ml semantics).
#[derive(Debug, Clone)]
pub(super) struct RrdQuery {
    pub(super) start: i64,
    pub(super) interval: i64,
    pub(super) cf: CfFilter,
    pub(super) host: bool,
    /// `None` = every resident VM; `Some(uuids)` = only the VMs of those UUIDs.
    pub(super) vm_uuids: Option<Vec<String>>,
    pub(super) json: bool,
}

/// Why a query cannot be answered with a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RrdError {
    /// 400: `start` missing.
    MissingStart,
    /// 500: `start` not an integer.
    BadStart,
    /// 500: no RRD or no archive matches (`No_RRA_Available`).
    NoRra,
    /// 500: format A indexes `data.(-1)` when there are no rows.
    LegacyEmpty,
}

impl RrdQuery {
    /// From decoded query pairs; the first occurrence of a key wins, as with `List.assoc`,
    /// except `vm_uuid` from xapi 26.7, where every occurrence counts.
    pub(super) fn parse(
        pairs: &[(String, String)],
        vm_filter: VmUuidFilter,
    ) -> Result<RrdQuery, RrdError> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let start = get("start").ok_or(RrdError::MissingStart)?;
        let start = parse_ocaml_int64(start).ok_or(RrdError::BadStart)?;
        // A non-integer interval silently becomes 0.
        let interval = get("interval").and_then(parse_ocaml_int64).unwrap_or(0);
        let cf = match get("cf") {
            Some("AVERAGE") => CfFilter::Only(Cf::Average),
            Some("MIN") => CfFilter::Only(Cf::Min),
            Some("MAX") => CfFilter::Only(Cf::Max),
            Some("LAST") => CfFilter::Last,
            _ => CfFilter::All,
        };
        Ok(RrdQuery {
            start,
            interval,
            cf,
            host: get("host") == Some("true"),
            vm_uuids: match vm_filter {
                VmUuidFilter::Single => match get("vm_uuid") {
                    None | Some("all") => None,
                    // `none` is no VM's UUID: it selects none the same way.
                    Some(uuid) => Some(vec![uuid.to_string()]),
                },
                VmUuidFilter::Literal => {
                    let uuids: Vec<String> = pairs
                        .iter()
                        .filter(|(key, _)| key == "vm_uuid")
                        .map(|(_, uuid)| uuid.clone())
                        .collect();
                    (!uuids.is_empty()).then_some(uuids)
                }
            },
            json: get("json").is_some(),
        })
    }
}

fn parse_ocaml_int64(s: &str) -> Option<i64> {
    let s = s.strip_prefix('+').unwrap_or(s);
    s.parse().ok()
}

/// Body format of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFormat {
    Xml,
    /// Legacy printf JSON: unquoted keys, bare numbers.
    JsonA,
    /// yojson, `data` inside `meta`, every number a string.
    JsonB,
    /// yojson, `data` top level, every number a string.
    JsonC,
}

impl BodyFormat {
    pub(super) fn content_type(self, generation: Generation) -> Option<&'static str> {
        match (self, generation) {
            (BodyFormat::Xml, _) => Some("text/xml"),
            // Before CP-27910 JSON replies had no Content-Type at all.
            (_, Generation::Legacy) => None,
            _ => Some("application/json"),
        }
    }
}

/// The value text style of a generation.
pub(super) fn num_style(generation: Generation) -> NumStyle {
    match generation {
        Generation::Legacy => NumStyle::Fixed4,
        Generation::Nested => NumStyle::Sig5,
        Generation::Current => NumStyle::Sig15,
    }
}

/// Chooses XML or JSON (`client_prefers_json`); `Err(())` = unparsable `Accept` on a
/// generation that answers that with HTTP 500.
pub(super) fn choose_format(
    generation: Generation,
    json_param: bool,
    accept: Option<&str>,
) -> Result<BodyFormat, ()> {
    let json_fmt = match generation {
        Generation::Legacy => BodyFormat::JsonA,
        Generation::Nested => BodyFormat::JsonB,
        Generation::Current => BodyFormat::JsonC,
    };
    let by_param = if json_param {
        json_fmt
    } else {
        BodyFormat::Xml
    };
    // xapi 1.249 predates the Accept negotiation (IH-393).
    if generation == Generation::Legacy {
        return Ok(by_param);
    }
    let Some(accept) = accept else {
        return Ok(by_param);
    };
    match negotiate(accept) {
        Some((qj, qx)) if qj > 0.0 || qx > 0.0 => {
            Ok(if qj >= qx { json_fmt } else { BodyFormat::Xml })
        }
        Some(_) => Ok(by_param),
        // Unparsable Accept: HTTP 500 from 23.17 until CA-406403 (25.7); the Nested generation
        // sits in that window, Current is treated as fixed.
        None if generation == Generation::Nested => Err(()),
        None => Ok(by_param),
    }
}

/// q-values of `application/json` and `text/xml` in an Accept header, using the most
/// specific matching range; `None` if the header does not parse.
fn negotiate(accept: &str) -> Option<(f64, f64)> {
    let mut best = [(0u8, 0.0f64); 2];
    for range in accept.split(',') {
        let range = range.trim();
        if range.is_empty() {
            continue;
        }
        let mut parts = range.split(';');
        let media = parts.next()?.trim().to_ascii_lowercase();
        let (ty, sub) = media.split_once('/')?;
        if ty.is_empty() || sub.is_empty() {
            return None;
        }
        let mut q = 1.0;
        for p in parts {
            let (k, v) = p.split_once('=')?;
            if k.trim().eq_ignore_ascii_case("q") {
                q = v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))?;
            }
        }
        for (i, (cty, csub)) in [("application", "json"), ("text", "xml")]
            .iter()
            .enumerate()
        {
            let specificity = if ty == *cty && sub == *csub {
                3
            } else if ty == *cty && sub == "*" {
                2
            } else if ty == "*" && sub == "*" {
                1
            } else {
                0
            };
            if specificity > best[i].0 {
                best[i] = (specificity, q);
            }
        }
    }
    Some((best[0].1, best[1].1))
}

/// Everything a render needs besides the layout and the query.
#[derive(Debug, Clone)]
pub(super) struct RenderCtx {
    pub(super) last_updated: i64,
    pub(super) format: BodyFormat,
    pub(super) style: NumStyle,
    pub(super) nan_ratio: f64,
    pub(super) live_sessions: usize,
    /// Epoch seconds of recent logins (for `pool_session_creation_rate`).
    pub(super) login_times: Vec<i64>,
}

/// The newest row of a reply, kept for `Sim::last_rrd`.
#[derive(Debug, Clone)]
pub(super) struct NewestRow {
    pub(super) t: i64,
    pub(super) columns: Vec<(Arc<OwnerRrd>, Cf)>,
    pub(super) texts: String,
    pub(super) ends: Vec<u32>,
}

#[derive(Debug)]
pub(super) struct Rendered {
    pub(super) body: String,
    pub(super) newest: Option<NewestRow>,
}

/// Renders the body for `query` (start already absolute or negative as sent).
pub(super) fn render(
    layout: &HostLayout,
    query: &RrdQuery,
    ctx: &RenderCtx,
) -> Result<Rendered, RrdError> {
    if query.cf == CfFilter::Last {
        return Err(RrdError::NoRra);
    }
    let mut owners: Vec<&Arc<OwnerRrd>> = Vec::with_capacity(layout.vms.len() + 1);
    if query.host {
        owners.push(&layout.host);
    }
    for vm in &layout.vms {
        let keep = query
            .vm_uuids
            .as_ref()
            .is_none_or(|uuids| uuids.iter().any(|u| *u == vm.uuid));
        if keep {
            owners.push(vm);
        }
    }
    let Some(first) = owners.first() else {
        return Err(RrdError::NoRra);
    };

    let last_updated = ctx.last_updated;
    let start = if query.start < 0 {
        last_updated + query.start
    } else {
        query.start
    };
    let pdp_interval = query.interval / BASE_STEP;
    let wanted = |cf: Cf| match query.cf {
        CfFilter::All => true,
        CfFilter::Only(c) => c == cf,
        CfFilter::Last => false,
    };
    // Rrd.find_best_rras on the first RRD: the first archive fine enough that still covers
    // `start`, else the coarsest acceptable one.
    let last_pdp_time = last_updated.div_euclid(BASE_STEP) * BASE_STEP;
    let candidates: Vec<(i64, i64)> = first
        .rras()
        .filter(|&(pdp, _, cf)| wanted(cf) && pdp >= pdp_interval)
        .map(|(pdp, rows, _)| (pdp, rows))
        .collect();
    let (pdp, rows_cap) = candidates
        .iter()
        .copied()
        .find(|&(pdp, rows)| start > last_pdp_time - BASE_STEP * pdp * rows)
        .or_else(|| candidates.iter().copied().max_by_key(|&(pdp, _)| pdp))
        .ok_or(RrdError::NoRra)?;

    let mut columns: Vec<(&Arc<OwnerRrd>, Cf)> = Vec::with_capacity(owners.len() * 3);
    for o in &owners {
        let before = columns.len();
        for (p, _, cf) in o.rras() {
            if p == pdp && wanted(cf) {
                columns.push((o, cf));
            }
        }
        if columns.len() == before {
            return Err(RrdError::NoRra);
        }
    }
    let ncols: usize = columns.iter().map(|(o, _)| o.len()).sum();

    let step = BASE_STEP * pdp;
    let last_cdp = last_updated.div_euclid(step) * step;
    let mut nrows = 0i64;
    while nrows < rows_cap && last_cdp - nrows * step >= start {
        nrows += 1;
    }
    let meta_start = start.div_euclid(step) * step + step;
    if nrows == 0 && ctx.format == BodyFormat::JsonA {
        return Err(RrdError::LegacyEmpty);
    }

    let fmt = ctx.format;
    let legend_len: usize = columns
        .iter()
        .map(|(o, cf)| match fmt {
            BodyFormat::Xml => o.legend_xml[cf.index()].len(),
            _ => o.legend_json[cf.index()].len() + 1,
        })
        .sum();
    let mut out = String::with_capacity(legend_len + 256 + nrows as usize * (ncols * 12 + 40));
    let num = |out: &mut String, n: i64, quoted: bool| {
        if quoted {
            out.push('"');
        }
        let mut b = itoa::Buffer::new();
        out.push_str(b.format(n));
        if quoted {
            out.push('"');
        }
    };
    match fmt {
        BodyFormat::Xml => {
            out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xport><meta><start>");
            num(&mut out, meta_start, false);
            out.push_str("</start><step>");
            num(&mut out, step, false);
            out.push_str("</step><end>");
            num(&mut out, last_cdp, false);
            out.push_str("</end><rows>");
            num(&mut out, nrows, false);
            out.push_str("</rows><columns>");
            num(&mut out, ncols as i64, false);
            out.push_str("</columns><legend>");
            for (o, cf) in &columns {
                out.push_str(&o.legend_xml[cf.index()]);
            }
            out.push_str("</legend></meta>");
            // xmlm writes an element with no children as an empty-element tag.
            out.push_str(if nrows == 0 { "<data/>" } else { "<data>" });
        }
        BodyFormat::JsonA => {
            out.push_str("{meta: {start:");
            num(&mut out, meta_start, false);
            out.push_str(",step:");
            num(&mut out, step, false);
            out.push_str(",end:");
            num(&mut out, last_cdp, false);
            out.push_str(",rows:");
            num(&mut out, nrows, false);
            out.push_str(",columns:");
            num(&mut out, ncols as i64, false);
            out.push_str(",legend:[");
            push_json_legend(&mut out, &columns);
            out.push_str("]},data:[");
        }
        BodyFormat::JsonB | BodyFormat::JsonC => {
            out.push_str("{\"meta\":{\"start\":");
            num(&mut out, meta_start, true);
            out.push_str(",\"step\":");
            num(&mut out, step, true);
            out.push_str(",\"end\":");
            num(&mut out, last_cdp, true);
            out.push_str(",\"rows\":");
            num(&mut out, nrows, true);
            out.push_str(",\"columns\":");
            num(&mut out, ncols as i64, true);
            out.push_str(",\"legend\":[");
            push_json_legend(&mut out, &columns);
            out.push_str(if fmt == BodyFormat::JsonB {
                "],\"data\":["
            } else {
                "]},\"data\":["
            });
        }
    }

    let mut newest: Option<NewestRow> = None;
    let mut spans: Vec<(u32, u32)> = Vec::new();
    let vctx = ValueCtx {
        nan_ratio: ctx.nan_ratio,
        sessions: ctx.live_sessions as f64,
        logins: &ctx.login_times,
    };
    for i in 0..nrows {
        let t = last_cdp - i * step;
        let capture = i == 0;
        if capture {
            spans.reserve(ncols);
        }
        match fmt {
            BodyFormat::Xml => {
                out.push_str("<row><t>");
                num(&mut out, t, false);
                out.push_str("</t>");
            }
            BodyFormat::JsonA => {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{t:");
                num(&mut out, t, false);
                out.push_str(",values:[");
            }
            BodyFormat::JsonB | BodyFormat::JsonC => {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"t\":");
                num(&mut out, t, true);
                out.push_str(",\"values\":[");
            }
        }
        let mut first_value = true;
        for (o, cf) in &columns {
            for d in &o.ds {
                let v = value(d, t, step, *cf, &vctx);
                match fmt {
                    BodyFormat::Xml => out.push_str("<v>"),
                    BodyFormat::JsonA => {
                        if !first_value {
                            out.push(',');
                        }
                    }
                    BodyFormat::JsonB | BodyFormat::JsonC => {
                        out.push_str(if first_value { "\"" } else { ",\"" });
                    }
                }
                first_value = false;
                let s = out.len();
                push_rrd_value(&mut out, v, ctx.style);
                if capture {
                    spans.push((s as u32, out.len() as u32));
                }
                match fmt {
                    BodyFormat::Xml => out.push_str("</v>"),
                    BodyFormat::JsonA => {}
                    BodyFormat::JsonB | BodyFormat::JsonC => out.push('"'),
                }
            }
        }
        out.push_str(if fmt == BodyFormat::Xml {
            "</row>"
        } else {
            "]}"
        });
        if capture {
            let mut texts = String::with_capacity(ncols * 8);
            let mut ends = Vec::with_capacity(ncols);
            for &(s, e) in &spans {
                texts.push_str(&out[s as usize..e as usize]);
                ends.push(texts.len() as u32);
            }
            newest = Some(NewestRow {
                t,
                columns: columns.iter().map(|(o, cf)| (Arc::clone(o), *cf)).collect(),
                texts,
                ends,
            });
        }
    }
    match fmt {
        BodyFormat::Xml => {
            if nrows > 0 {
                out.push_str("</data>");
            }
            out.push_str("</xport>");
        }
        BodyFormat::JsonA | BodyFormat::JsonC => out.push_str("]}"),
        BodyFormat::JsonB => out.push_str("]}}"),
    }
    Ok(Rendered { body: out, newest })
}

fn push_json_legend(out: &mut String, columns: &[(&Arc<OwnerRrd>, Cf)]) {
    for (i, (o, cf)) in columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&o.legend_json[cf.index()]);
    }
}

struct ValueCtx<'a> {
    nan_ratio: f64,
    sessions: f64,
    logins: &'a [i64],
}

const NAN_SALT: u64 = 0x4E61_4E5F_5341_4C54;
const CF_SALT: u64 = 0x4346_5F53_414C_5421;

/// The value of one source at (t, step, cf): a pure function of the source key (seed, owner
/// UUID, source name) and of t, except for the two session sources which reflect the live
/// session table.
fn value(d: &Ds, t: i64, step: i64, cf: Cf, ctx: &ValueCtx<'_>) -> f64 {
    let h = mix(d.key ^ mix((t as u64) ^ ((step as u64) << 40)));
    // Constants and the live session count have no spread between MIN, AVERAGE and MAX.
    let steady = matches!(d.source, Gen::SessionCount | Gen::Fixed(_));
    if ctx.nan_ratio > 0.0
        && !matches!(d.source, Gen::SessionCount)
        && unit(mix(h ^ NAN_SALT)) < ctx.nan_ratio
    {
        return f64::NAN;
    }
    let u = unit(h);
    let (avg, dp, hi) = match d.source {
        Gen::Frac { pow } => (u.powf(pow), -1, 1.0),
        Gen::Lin { lo, hi, dp } => (lo + (hi - lo) * u, dp, hi),
        Gen::Log { lo, hi, dp } => (lo * (hi / lo).powf(u), dp, hi),
        Gen::Fixed(x) => (x, 0, x),
        Gen::Ratio { base, lo, hi, dp } => (base * (lo + (hi - lo) * u), dp, base),
        Gen::SessionCount => (ctx.sessions, 0, f64::MAX),
        Gen::SessionRate => {
            let n = ctx
                .logins
                .iter()
                .filter(|&&l| l > t - step && l <= t)
                .count();
            (n as f64 / step as f64, -1, f64::MAX)
        }
    };
    let v = match cf {
        Cf::Average => avg,
        _ if steady => avg,
        Cf::Min => avg * (0.4 + 0.6 * unit(mix(h ^ CF_SALT))),
        Cf::Max => (avg * (1.0 + 0.8 * unit(mix(h ^ CF_SALT)))).min(hi.max(avg)),
    };
    quantize(v, dp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_client_prefers_json() {
        let c = Generation::Current;
        assert_eq!(choose_format(c, false, Some("*/*")), Ok(BodyFormat::JsonC));
        assert_eq!(
            choose_format(c, false, Some("text/xml")),
            Ok(BodyFormat::Xml)
        );
        assert_eq!(
            choose_format(c, true, Some("text/xml")),
            Ok(BodyFormat::Xml)
        );
        assert_eq!(
            choose_format(c, true, Some("application/xml")),
            Ok(BodyFormat::JsonC)
        );
        assert_eq!(
            choose_format(c, false, Some("application/xml")),
            Ok(BodyFormat::Xml)
        );
        assert_eq!(
            choose_format(c, false, Some("application/json;q=0.5, text/xml;q=0.9")),
            Ok(BodyFormat::Xml)
        );
        assert_eq!(choose_format(c, false, None), Ok(BodyFormat::Xml));
        assert_eq!(
            choose_format(Generation::Nested, true, None),
            Ok(BodyFormat::JsonB)
        );
        assert_eq!(
            choose_format(Generation::Nested, false, Some("garbage")),
            Err(())
        );
        assert_eq!(
            choose_format(Generation::Legacy, false, Some("application/json")),
            Ok(BodyFormat::Xml)
        );
        assert_eq!(
            choose_format(Generation::Legacy, true, Some("text/xml")),
            Ok(BodyFormat::JsonA)
        );
    }

    #[test]
    fn query_parsing() {
        let q = |s: &[(&str, &str)]| {
            RrdQuery::parse(
                &s.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
                VmUuidFilter::Single,
            )
        };
        assert_eq!(q(&[("host", "true")]).err(), Some(RrdError::MissingStart));
        assert_eq!(q(&[("start", "1.5")]).err(), Some(RrdError::BadStart));
        let r = q(&[
            ("start", "-10"),
            ("interval", "x"),
            ("cf", "average"),
            ("host", "True"),
            ("json", "false"),
        ])
        .expect("parses");
        assert_eq!(
            (r.start, r.interval, r.cf, r.host, r.json),
            (-10, 0, CfFilter::All, false, true)
        );
    }

    #[test]
    fn vm_uuid_follows_each_xapi_generation() {
        let vms = |filter, s: &[&str]| {
            let mut pairs = vec![("start".to_string(), "-10".to_string())];
            pairs.extend(s.iter().map(|u| ("vm_uuid".to_string(), u.to_string())));
            RrdQuery::parse(&pairs, filter).expect("parses").vm_uuids
        };
        let owned = |s: &[&str]| Some(s.iter().map(|u| u.to_string()).collect::<Vec<_>>());
        // Before 26.7: one value, `all` is every VM, anything else one literal UUID.
        assert_eq!(vms(VmUuidFilter::Single, &[]), None);
        assert_eq!(vms(VmUuidFilter::Single, &["all"]), None);
        assert_eq!(vms(VmUuidFilter::Single, &["none"]), owned(&["none"]));
        assert_eq!(vms(VmUuidFilter::Single, &["a", "b"]), owned(&["a"]));
        // From 26.7: every value, each literal, `all` included.
        assert_eq!(vms(VmUuidFilter::Literal, &[]), None);
        assert_eq!(vms(VmUuidFilter::Literal, &["all"]), owned(&["all"]));
        assert_eq!(vms(VmUuidFilter::Literal, &["a", "b"]), owned(&["a", "b"]));
    }
}
