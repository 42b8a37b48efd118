//! The catalog: how each RRD data source name becomes a Prometheus family name, labels, help
//! text and type, and the help of the exporter's own families. The only place that knows raw
//! RRD units. Pure string work, no I/O.
//!
//! Two namings ([`Naming`]). The default, compatible one keeps the names of the Python exporter
//! MikeDombo/xen-exporter, so dashboards and alerts written for it keep working, and values in
//! XAPI's units (KiB stays KiB) for the same reason; every help text says which unit that is.
//! The Prometheus one is data in the same rows: each says what its family is called there and
//! how its value converts to a base unit ([`Scale`]), from which its help text derives.

use std::borrow::Cow;
use std::sync::OnceLock;

use super::Kind;

/// Which kind of object an RRD belongs to (the second field of a legend entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// `host:<uuid>`
    Host,
    /// `vm:<uuid>` (including dom0)
    Vm,
    /// `sr:<uuid>`
    Sr,
}

impl Owner {
    fn prefix(self) -> &'static str {
        match self {
            Owner::Host => "xen_host_",
            Owner::Vm => "xen_vm_",
            Owner::Sr => "xen_sr_",
        }
    }
}

/// How families are named and valued: `--metrics.naming`, chosen per pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Naming {
    /// The original exporter's names, values in the units XAPI declares (the default).
    #[default]
    Compatible,
    /// Prometheus' conventions: base units in the name and the value, `_total` only on
    /// counters, fractions as `_ratio`.
    Prometheus,
}

/// The conversion of a value to a base unit under [`Naming::Prometheus`], named after the
/// unit XAPI declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Already a base unit (bytes, seconds, a fraction, a count, something per second).
    One,
    /// KiB, or KiB per second: × 1024.
    Kib,
    /// MiB/s: × 2^20.
    MibPerSecond,
    /// μs: ÷ 10^6.
    Microseconds,
    /// MHz: × 10^6.
    Megahertz,
}

impl Scale {
    /// `value` in the base unit. Microseconds are divided by 10^6 rather than multiplied by
    /// 10^-6, which has no exact binary form, so that the result is the rounded quotient.
    #[inline]
    pub fn apply(self, value: f64) -> f64 {
        match self {
            Scale::One => value,
            Scale::Kib => value * 1024.0,
            Scale::MibPerSecond => value * 1_048_576.0,
            Scale::Microseconds => value / 1e6,
            Scale::Megahertz => value * 1e6,
        }
    }

    /// The unit phrase of a compatible help text and what it becomes.
    fn phrases(self) -> Option<(&'static str, &'static str)> {
        match self {
            Scale::One => None,
            Scale::Kib => Some(("in KiB", "in bytes")),
            Scale::MibPerSecond => Some(("in MiB/s", "in bytes per second")),
            Scale::Microseconds => Some(("in μs", "in seconds")),
            Scale::Megahertz => Some(("in MHz", "in hertz")),
        }
    }

    /// The sentence a converted family's help ends with.
    fn note(self) -> &'static str {
        match self {
            Scale::One => "",
            Scale::Kib => "Converted from the KiB XAPI reports (× 1024).",
            Scale::MibPerSecond => "Converted from the MiB/s XAPI reports (× 2^20).",
            Scale::Microseconds => "Converted from the μs XAPI reports (÷ 10^6).",
            Scale::Megahertz => "Converted from the MHz XAPI reports (× 10^6).",
        }
    }

    /// How the reference describes the conversion.
    fn describe(self) -> &'static str {
        match self {
            Scale::One => "",
            Scale::Kib => "× 1024",
            Scale::MibPerSecond => "× 2^20",
            Scale::Microseconds => "÷ 10^6",
            Scale::Megahertz => "× 10^6",
        }
    }
}

/// A family as a naming exports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Renamed {
    /// The family name.
    pub family: Cow<'static, str>,
    /// How its values are converted.
    pub scale: Scale,
}

/// The family `compatible` (from [`map_data_source`], or a record family) under `naming`;
/// `None` when that naming leaves it out because another family carries the same value. A
/// family the catalog does not know keeps its name. Known names come back borrowed.
pub fn rename(naming: Naming, compatible: Cow<'static, str>) -> Option<Renamed> {
    let same = |family| Renamed {
        family,
        scale: Scale::One,
    };
    if naming == Naming::Compatible {
        return Some(same(compatible));
    }
    let spec = find(&compatible).or_else(|| pattern_of(&compatible).and_then(find));
    let Some(spec) = spec else {
        return Some(same(compatible));
    };
    let family = match spec.prometheus {
        Prometheus::Same => compatible,
        Prometheus::Renamed(name, _) => Cow::Borrowed(name),
        Prometheus::Suffixed(suffix, _) => Cow::Owned(format!("{compatible}{suffix}")),
        Prometheus::Omitted(_) => return None,
    };
    Some(Renamed {
        family,
        scale: spec.scale(),
    })
}

/// A reference to an SR found inside a host data source name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrRef<'a> {
    /// The first 8 hex characters of the SR UUID (`read_<sr8>`, `iops_total_<sr8>`, ...).
    Prefix(&'a str),
    /// A full SR UUID (`sr_<uuid>_cache_size`, ...).
    Full(&'a str),
}

/// The result of mapping one data source name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped<'a> {
    /// The full family name, e.g. `xen_vm_vbd_read`.
    pub family: Cow<'static, str>,
    /// The per-sample label carved out of the name (`cpu`, `pif`, `vbd`, `vif`, ...), if any.
    pub label: Option<(&'static str, &'a str)>,
    /// The SR this data source is about, if any; the caller resolves it to `sr`/`sr_uuid`.
    pub sr: Option<SrRef<'a>>,
}

/// Host data sources that end in `_<first 8 hex chars of an SR UUID>` (rrdp_iostat.ml).
const SR_PREFIXED: [&str; 14] = [
    "avgqu_sz",
    "inflight",
    "io_throughput_read",
    "io_throughput_total",
    "io_throughput_write",
    "iops_read",
    "iops_total",
    "iops_write",
    "iowait",
    "latency",
    "read",
    "read_latency",
    "write",
    "write_latency",
];

macro_rules! states {
    ($prefix:literal) => {
        [
            concat!($prefix, 0),
            concat!($prefix, 1),
            concat!($prefix, 2),
            concat!($prefix, 3),
            concat!($prefix, 4),
            concat!($prefix, 5),
            concat!($prefix, 6),
            concat!($prefix, 7),
            concat!($prefix, 8),
            concat!($prefix, 9),
            concat!($prefix, 10),
            concat!($prefix, 11),
            concat!($prefix, 12),
            concat!($prefix, 13),
            concat!($prefix, 14),
            concat!($prefix, 15),
        ]
    };
}

/// C- and P-state families come from a digit in the data source name, so they cannot be found
/// in [`SPECS`] by name; these tables keep the common ones allocation-free.
const CPU_C_STATES: [&str; 16] = states!("xen_host_cpu_c");
const CPU_P_STATES: [&str; 16] = states!("xen_host_cpu_p");

/// Maps a data source name of an RRD owned by `owner` to its family.
///
/// Known families come back borrowed; only names the catalog does not know allocate.
pub fn map_data_source(owner: Owner, ds: &str) -> Mapped<'_> {
    let unlabelled = |prefix: &'static str, rest: &str| Mapped {
        family: family_name(prefix, rest),
        label: None,
        sr: None,
    };
    if let Some(mapped) = map_cpu(owner, ds) {
        return mapped;
    }
    match owner {
        Owner::Host => {
            if let Some((dev, rest)) = split_device(ds, "pif_") {
                return Mapped {
                    family: family_name("xen_host_pif_", rest),
                    label: Some(("pif", dev)),
                    sr: None,
                };
            }
            if let Some((base, sr8)) = split_sr_prefix(ds) {
                return Mapped {
                    family: family_name("xen_host_", base),
                    label: None,
                    sr: Some(SrRef::Prefix(sr8)),
                };
            }
            if let Some((uuid, rest)) = split_full_sr(ds) {
                return Mapped {
                    family: family_name("xen_host_sr_", rest),
                    label: None,
                    sr: Some(SrRef::Full(uuid)),
                };
            }
            if let Some(vdi) = split_statefile(ds) {
                // The original exported `xen_host_statefile/<uuid>/latency`, which no
                // Prometheus accepts; one family with the VDI as a label is what it meant.
                return Mapped {
                    family: Cow::Borrowed("xen_host_statefile_latency"),
                    label: Some(("vdi_uuid", vdi)),
                    sr: None,
                };
            }
            unlabelled("xen_host_", ds)
        }
        Owner::Vm => {
            if let Some((dev, rest)) = split_device(ds, "vbd_") {
                return Mapped {
                    family: family_name("xen_vm_vbd_", rest),
                    label: Some(("vbd", dev)),
                    sr: None,
                };
            }
            if let Some((dev, rest)) = split_device(ds, "vif_") {
                return Mapped {
                    family: family_name("xen_vm_vif_", rest),
                    label: Some(("vif", dev)),
                    sr: None,
                };
            }
            unlabelled("xen_vm_", ds)
        }
        Owner::Sr => unlabelled("xen_sr_", ds),
    }
}

/// `cpu<N>` (pCPU or vCPU), `cpu<N>-<state>` and `CPU<N>-avg-freq`.
fn map_cpu(owner: Owner, ds: &str) -> Option<Mapped<'_>> {
    let (upper, rest) = match ds.strip_prefix("cpu") {
        Some(rest) => (false, rest),
        None => (true, ds.strip_prefix("CPU")?),
    };
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let (n, after) = rest.split_at(digits);
    let family = if after.is_empty() && !upper {
        family_name(owner.prefix(), "cpu")
    } else if let Some(state) = after.strip_prefix('-') {
        match (owner, cpu_state_family(state)) {
            (Owner::Host, Some(name)) => Cow::Borrowed(name),
            _ => {
                let prefix = match owner {
                    Owner::Host => "xen_host_cpu_",
                    Owner::Vm => "xen_vm_cpu_",
                    Owner::Sr => "xen_sr_cpu_",
                };
                family_name(prefix, state)
            }
        }
    } else {
        return None;
    };
    Some(Mapped {
        family,
        label: Some(("cpu", n)),
        sr: None,
    })
}

/// `C<k>` / `P<k>` with a small canonical `k` (no leading zero) → its static family name.
fn cpu_state_family(state: &str) -> Option<&'static str> {
    let table = match state.as_bytes().first()? {
        b'C' => &CPU_C_STATES,
        b'P' => &CPU_P_STATES,
        _ => return None,
    };
    let k = &state[1..];
    if k.is_empty() || (k.len() > 1 && k.starts_with('0')) || !k.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    table.get(k.parse::<usize>().ok()?).copied()
}

/// `<kind><dev>_<rest>` → (`dev`, `rest`); the device ends at the first `_`, as in the original.
fn split_device<'a>(ds: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let (dev, rest) = ds.strip_prefix(kind)?.split_once('_')?;
    (!dev.is_empty() && !rest.is_empty()).then_some((dev, rest))
}

/// `<base>_<sr8>` with `base` one of [`SR_PREFIXED`] and `sr8` exactly 8 lower-case hex digits.
fn split_sr_prefix(ds: &str) -> Option<(&str, &str)> {
    let (base, sr8) = ds.rsplit_once('_')?;
    let is_hex = sr8.len() == 8 && sr8.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (is_hex && SR_PREFIXED.contains(&base)).then_some((base, sr8))
}

/// `sr_<full uuid>_<rest>` → (`uuid`, `rest`).
fn split_full_sr(ds: &str) -> Option<(&str, &str)> {
    let rest = ds.strip_prefix("sr_")?;
    let uuid = rest.get(..36)?;
    let rest = rest[36..].strip_prefix('_')?;
    (is_uuid(uuid) && !rest.is_empty()).then_some((uuid, rest))
}

/// `statefile/<vdi uuid>/latency` → the VDI UUID.
fn split_statefile(ds: &str) -> Option<&str> {
    let vdi = ds.strip_prefix("statefile/")?.strip_suffix("/latency")?;
    (!vdi.is_empty() && !vdi.contains('/')).then_some(vdi)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The original's name mangling (lower case, `-` → `_`), plus every other character outside
/// `[a-z0-9_]` → `_` so that names are always legal.
fn sanitise(c: char) -> u8 {
    match c {
        'a'..='z' | '0'..='9' | '_' => c as u8,
        'A'..='Z' => c.to_ascii_lowercase() as u8,
        _ => b'_',
    }
}

fn mangled<'a>(prefix: &'a str, raw: &'a str) -> impl Iterator<Item = u8> + 'a {
    prefix.bytes().chain(raw.chars().map(sanitise))
}

/// `prefix` followed by the mangled `raw`: borrowed from the catalog when it is a known family,
/// so the hot path does not allocate; compared lazily so the lookup does not either.
fn family_name(prefix: &'static str, raw: &str) -> Cow<'static, str> {
    match SPECS.binary_search_by(|spec| spec.name.bytes().cmp(mangled(prefix, raw))) {
        Ok(i) => Cow::Borrowed(SPECS[i].name),
        Err(_) => Cow::Owned(mangled(prefix, raw).map(char::from).collect()),
    }
}

/// The help text and type of a family name produced by [`map_data_source`] or one of the
/// record-derived families, as [`Naming::Compatible`] names them.
pub fn describe(family: &str) -> (Cow<'static, str>, Kind) {
    describe_as(Naming::Compatible, family, None)
}

/// The help text and type of a family as `naming` names it (see [`rename`]). `declared` is
/// the unit XAPI declares for the data source behind a family the catalog does not know, if
/// known: its help says it, since the value is exported unconverted.
pub fn describe_as(
    naming: Naming,
    family: &str,
    declared: Option<&str>,
) -> (Cow<'static, str>, Kind) {
    let spec = match naming {
        Naming::Compatible => find(family).or_else(|| pattern_of(family).and_then(find)),
        Naming::Prometheus => find_prometheus(family),
    };
    if let Some(spec) = spec {
        return (spec.help_as(naming), spec.kind_as(naming, family));
    }
    let owner = if family.starts_with("xen_host_") {
        "a host RRD data source, exported as xen_host_<data source name>"
    } else if family.starts_with("xen_vm_") {
        "a VM RRD data source, exported as xen_vm_<data source name>"
    } else if family.starts_with("xen_sr_") {
        "an SR RRD data source, exported as xen_sr_<data source name>"
    } else {
        "an RRD data source"
    };
    let mut help = match (naming, declared) {
        (Naming::Compatible, _) => format!(
            "Not in the catalog: {owner} (lower-cased, characters outside [a-z0-9_] replaced by _), \
             in the unit XAPI declares for it (see host.get_data_sources), average over the RRD step."
        ),
        (Naming::Prometheus, Some(unit)) => format!(
            "Not in the catalog: {owner} (lower-cased, characters outside [a-z0-9_] replaced by _), \
             unconverted, in {unit:?}, the unit XAPI declares for it (host.get_data_sources), average over the RRD step."
        ),
        (Naming::Prometheus, None) => format!(
            "Not in the catalog: {owner} (lower-cased, characters outside [a-z0-9_] replaced by _), \
             unconverted, in the unit XAPI declares for it (see host.get_data_sources or VM.get_data_sources), average over the RRD step."
        ),
    };
    match untyped_suffix(family) {
        Some(suffix) => {
            help.push_str(" Untyped: the inherited name ends in ");
            help.push_str(suffix);
            help.push_str(" but this is a per-step average, not a counter, histogram or summary.");
            (Cow::Owned(help), Kind::Untyped)
        }
        None => (Cow::Owned(help), Kind::Gauge),
    }
}

/// Whether the catalog has a row for the family `family` as `naming` names it.
pub fn knows(naming: Naming, family: &str) -> bool {
    match naming {
        Naming::Compatible => find(family)
            .or_else(|| pattern_of(family).and_then(find))
            .is_some(),
        Naming::Prometheus => find_prometheus(family).is_some(),
    }
}

/// The catalog row of a family as [`Naming::Prometheus`] names it. Where two data sources
/// export into one family (a source XAPI renamed), the row named so under both namings wins.
fn find_prometheus(family: &str) -> Option<&'static Spec> {
    static INDEX: OnceLock<Vec<(&'static str, &'static Spec)>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut index: Vec<(&'static str, &'static Spec)> = SPECS
            .iter()
            .filter(|s| !s.name.contains('<'))
            .filter_map(|s| match s.prometheus {
                Prometheus::Same => Some((s.name, s)),
                Prometheus::Renamed(name, _) => Some((name, s)),
                Prometheus::Suffixed(..) | Prometheus::Omitted(_) => None,
            })
            .collect();
        index.sort_by_key(|&(name, s)| (name, s.name != name));
        index
    });
    let first = index.partition_point(|&(name, _)| name < family);
    if let Some(&(name, spec)) = index.get(first)
        && name == family
    {
        return Some(spec);
    }
    // Pattern rows: their suffix, then the compatible pattern.
    SPECS
        .iter()
        .filter(|s| s.name.contains('<'))
        .find(|s| match s.prometheus {
            Prometheus::Suffixed(suffix, _) => family
                .strip_suffix(suffix)
                .and_then(pattern_of)
                .is_some_and(|p| p == s.name),
            Prometheus::Same => pattern_of(family) == Some(s.name),
            Prometheus::Renamed(..) | Prometheus::Omitted(_) => false,
        })
}

/// The suffix that promtool reserves for counters, histograms and summaries, if `name` has one.
fn untyped_suffix(name: &str) -> Option<&'static str> {
    ["_total", "_count", "_sum", "_bucket"]
        .into_iter()
        .find(|suffix| name.ends_with(suffix))
}

fn find(name: &str) -> Option<&'static Spec> {
    SPECS
        .binary_search_by(|spec| spec.name.cmp(name))
        .ok()
        .map(|i| &SPECS[i])
}

/// The catalog row of a family whose name carries a number or a free-form part.
fn pattern_of(family: &str) -> Option<&'static str> {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if family
        .strip_prefix("xen_host_cpu_c")
        .is_some_and(all_digits)
    {
        Some("xen_host_cpu_c<k>")
    } else if family
        .strip_prefix("xen_host_cpu_p")
        .is_some_and(all_digits)
    {
        Some("xen_host_cpu_p<k>")
    } else if family
        .strip_prefix("xen_vm_memory_numa_node_")
        .is_some_and(all_digits)
    {
        Some("xen_vm_memory_numa_node_<N>")
    } else if let Some(group) = family.strip_prefix("xen_host_group_") {
        if group.strip_suffix("_tokens").is_some_and(|g| !g.is_empty()) {
            Some("xen_host_group_<g>_tokens")
        } else if group.strip_suffix("_calls").is_some_and(|g| !g.is_empty()) {
            Some("xen_host_group_<g>_calls")
        } else {
            None
        }
    } else {
        None
    }
}

/// Renders the Markdown metric reference (`docs/metrics.md`): one row per known family, with
/// its name under each naming.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Metric reference\n\
         \n\
         <!-- Generated by xen_exporter::metrics::catalog::reference_markdown(); do not edit. -->\n\
         \n\
         Every family has two names, one per naming (`--metrics.naming`, `XEN_METRICS_NAMING`, \
         `naming:` per pool in a configuration file).\n\
         \n\
         **`compatible`** (the default): the names and labels of the Python exporter \
         MikeDombo/xen-exporter, so existing dashboards (Grafana 16588), the shipped dashboard \
         and the shipped alerts keep working. RRD values are exported as XAPI reports them, \
         without unit conversion: each value is the average over the RRD step (5 s) of a gauge, \
         or of a per-second rate for sources that XAPI derives from counters. The unit column \
         is the unit XAPI declares.\n\
         \n\
         **`prometheus`**: Prometheus' conventions for new installations. Values in base units, \
         named in the suffix (KiB × 1024 → `_bytes`, MiB/s × 2^20 → `_bytes_per_second`, \
         μs ÷ 10^6 → `_seconds`, MHz × 10^6 → `_hertz`; B/s → `_bytes_per_second`, fractions \
         → `_ratio`), the help text saying so; inherited names ending in `_total` or `_count` \
         that are not counters renamed, so that only counters end in `_total`. RRD \
         `memory_total_kib` is left out: xapi sets the host record's memory_total from it, \
         exported as `xen_host_memory_total_bytes` under both namings. Labels are the same \
         under both.\n\
         \n\
         A data source the catalog does not know is exported as `xen_<owner>_<name>` under \
         both namings, the name lower-cased and every character outside `[a-z0-9_]` replaced \
         by `_`, its value unconverted; it is a gauge unless the name ends in `_total`, \
         `_count`, `_sum` or `_bucket`, which makes it untyped. Under `prometheus` its help \
         gives the unit XAPI declares for it (host.get_data_sources, read with the inventory; \
         host data sources only).\n\
         \n\
         | Name (`compatible`) | Name (`prometheus`) | Type | Labels | Unit | Help |\n\
         |---|---|---|---|---|---|\n",
    );
    let kind_name = |kind| match kind {
        Kind::Gauge => "gauge",
        Kind::Counter => "counter",
        Kind::Untyped => "untyped",
    };
    for spec in SPECS {
        let labels: Vec<String> = spec
            .labels
            .split(", ")
            .filter(|l| !l.is_empty())
            .map(|l| format!("`{l}`"))
            .collect();
        let prometheus = match spec.prometheus_name() {
            None => match spec.prometheus {
                Prometheus::Omitted(why) => format!("left out: {why}"),
                _ => String::new(),
            },
            Some(name) => {
                let mut notes = Vec::new();
                let kind = spec.kind_as(Naming::Prometheus, &name);
                if kind != spec.kind {
                    notes.push(kind_name(kind).to_string());
                }
                if spec.scale() != Scale::One {
                    notes.push(spec.scale().describe().to_string());
                }
                if notes.is_empty() {
                    format!("`{name}`")
                } else {
                    format!("`{name}` ({})", notes.join(", "))
                }
            }
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            spec.name,
            prometheus.replace('|', "\\|"),
            kind_name(spec.kind),
            labels.join(", "),
            spec.unit,
            spec.help.replace('|', "\\|"),
        ));
    }
    out
}

/// One known family.
#[derive(Debug)]
struct Spec {
    /// The family name; a pattern with `<…>` for families named after a number or a group.
    name: &'static str,
    kind: Kind,
    /// Every label the collector attaches, in output order, comma-separated.
    labels: &'static str,
    /// The unit of the exported value as XAPI declares it.
    unit: &'static str,
    help: &'static str,
    /// What the family is under [`Naming::Prometheus`].
    prometheus: Prometheus,
}

/// A family under [`Naming::Prometheus`], relative to its compatible name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Prometheus {
    /// The compatible name already follows the conventions.
    Same,
    /// Another name, the value converted to base units by the scale.
    Renamed(&'static str, Scale),
    /// A pattern row: the compatible name with this suffix, the value converted by the scale.
    Suffixed(&'static str, Scale),
    /// Not exported: another family carries the same value. Says which.
    Omitted(&'static str),
}

impl Spec {
    const fn with(self, prometheus: Prometheus) -> Spec {
        Spec { prometheus, ..self }
    }

    const fn renamed(self, name: &'static str, scale: Scale) -> Spec {
        self.with(Prometheus::Renamed(name, scale))
    }

    const fn suffixed(self, suffix: &'static str, scale: Scale) -> Spec {
        self.with(Prometheus::Suffixed(suffix, scale))
    }

    const fn omitted(self, why: &'static str) -> Spec {
        self.with(Prometheus::Omitted(why))
    }

    /// Whether the family comes from `/rrd_updates` (its help names the data source).
    #[cfg(test)]
    fn is_rrd(&self) -> bool {
        self.help.contains("(RRD ")
    }

    /// The name under [`Naming::Prometheus`] (a pattern for pattern rows); `None` when omitted.
    fn prometheus_name(&self) -> Option<Cow<'static, str>> {
        match self.prometheus {
            Prometheus::Same => Some(Cow::Borrowed(self.name)),
            Prometheus::Renamed(name, _) => Some(Cow::Borrowed(name)),
            Prometheus::Suffixed(suffix, _) => Some(Cow::Owned(format!("{}{suffix}", self.name))),
            Prometheus::Omitted(_) => None,
        }
    }

    fn scale(&self) -> Scale {
        match self.prometheus {
            Prometheus::Renamed(_, scale) | Prometheus::Suffixed(_, scale) => scale,
            Prometheus::Same | Prometheus::Omitted(_) => Scale::One,
        }
    }

    /// The type under `naming`: a renamed inherited name loses its reserved suffix, and with
    /// it the reason to be untyped.
    fn kind_as(&self, naming: Naming, name: &str) -> Kind {
        match (naming, self.kind) {
            (Naming::Compatible, kind) | (_, kind @ Kind::Counter) => kind,
            (Naming::Prometheus, _) if untyped_suffix(name).is_some() => Kind::Untyped,
            (Naming::Prometheus, _) => Kind::Gauge,
        }
    }

    /// The help under `naming`: under [`Naming::Prometheus`] the unit phrase of a converted
    /// value names the base unit and the conversion, and the note on an inherited reserved
    /// suffix goes with the suffix.
    fn help_as(&self, naming: Naming) -> Cow<'static, str> {
        if naming == Naming::Compatible || self.prometheus == Prometheus::Same {
            return Cow::Borrowed(self.help);
        }
        let mut help = match self.help.split_once(" Untyped: ") {
            Some((kept, _)) => kept.to_string(),
            None => self.help.to_string(),
        };
        let scale = self.scale();
        if let Some((from, to)) = scale.phrases() {
            help = help.replacen(from, to, 1);
            help.push(' ');
            help.push_str(scale.note());
        }
        Cow::Owned(help)
    }
}

const fn spec(
    name: &'static str,
    kind: Kind,
    labels: &'static str,
    unit: &'static str,
    help: &'static str,
) -> Spec {
    Spec {
        name,
        kind,
        labels,
        unit,
        help,
        prometheus: Prometheus::Same,
    }
}

const fn gauge(
    name: &'static str,
    labels: &'static str,
    unit: &'static str,
    help: &'static str,
) -> Spec {
    spec(name, Kind::Gauge, labels, unit, help)
}

const fn untyped(
    name: &'static str,
    labels: &'static str,
    unit: &'static str,
    help: &'static str,
) -> Spec {
    spec(name, Kind::Untyped, labels, unit, help)
}

const fn counter(
    name: &'static str,
    labels: &'static str,
    unit: &'static str,
    help: &'static str,
) -> Spec {
    spec(name, Kind::Counter, labels, unit, help)
}

const H: &str = "host, host_uuid";
const H_CPU: &str = "host, host_uuid, cpu";
const H_PIF: &str = "host, host_uuid, pif";
const H_SR: &str = "host, host_uuid, sr, sr_uuid";
const VM: &str = "vm, vm_uuid, host, host_uuid";
const VM_CPU: &str = "vm, vm_uuid, host, host_uuid, cpu";
const VM_VIF: &str = "vm, vm_uuid, host, host_uuid, vif";
const VM_VBD: &str = "vm, vm_uuid, host, host_uuid, vbd";
const SR: &str = "sr_uuid, sr, type, content_type";

/// Every known family, sorted by name (byte order) so lookups can bisect; a test keeps it so.
static SPECS: &[Spec] = &[
    gauge(
        "xen_certificate_expiry_time_seconds",
        "host, host_uuid, type, name",
        "seconds",
        "When the certificate expires (notAfter), in seconds since the Unix epoch: every Certificate record (not_after; type host, host_internal, ca or pinned, and name; records before xapi 1.294 have neither and show as host with an empty name; host labels empty for a pool-wide one), and for a host without a host-type record the certificate it serves (host.get_server_certificate, read at each full read of the inventory).",
    ),
    gauge(
        "xen_collector_duration_seconds",
        "",
        "seconds",
        "Wall time of the whole collection for this scrape (every host and the records), in seconds.",
    ),
    counter(
        "xen_collector_errors_total",
        "source, reason",
        "errors",
        "Failures of the collector outside a single host's /rrd_updates since the exporter started, by source (inventory: a full read of the records; events: the event stream) and bounded reason; 0 until the first.",
    ),
    gauge(
        "xen_exporter_build_info",
        "version",
        "",
        "Always 1; the version label says which xen-exporter build is running.",
    ),
    counter(
        "xen_exporter_xapi_logins_total",
        "pool",
        "logins",
        "Successful XAPI logins of the pool's session since the exporter started: one at start, then one per expired session or master change.",
    ),
    counter(
        "xen_exporter_xapi_request_duration_seconds_total",
        "pool, kind, outcome",
        "seconds",
        "Seconds spent in XAPI requests since the exporter started, by kind and outcome; divide by xen_exporter_xapi_requests_total for the mean (event long polls wait up to 30 s by design).",
    ),
    counter(
        "xen_exporter_xapi_requests_total",
        "pool, kind, outcome",
        "requests",
        "XAPI requests since the exporter started, by kind (login, logout, call, event, rrd) and outcome (ok or a bounded error reason).",
    ),
    gauge(
        "xen_exporter_xapi_tls_verify",
        "mode",
        "",
        "1 for the way the TLS certificates of the pool's hosts are checked, 0 for the others: ca_file (XEN_SSL_CA_FILE or system roots), fingerprint (pinned master, members as XAPI reports them), system (system roots), off (not checked, XEN_SSL_VERIFY=false).",
    ),
    gauge(
        "xen_host_avgqu_sz",
        H_SR,
        "requests",
        "Average I/O request queue size of this host's tapdisks on the SR, in requests (RRD avgqu_sz_<sr8>, average over the step).",
    ),
    gauge(
        "xen_host_boot_time_seconds",
        "host, host_uuid",
        "seconds",
        "When the host last booted, in seconds since the Unix epoch (host record other_config boot_time); absent when XAPI could not read it (0.) or the text is not a number.",
    ),
    gauge(
        "xen_host_cpu",
        H_CPU,
        "fraction 0–1",
        "Busy fraction of the physical CPU, 0–1 (RRD cpu<N>, average over the step).",
    )
    .renamed("xen_host_cpu_busy_ratio", Scale::One),
    gauge(
        "xen_host_cpu_avg",
        H,
        "fraction 0–1",
        "Busy fraction averaged over all physical CPUs, 0–1 (RRD cpu_avg, average over the step).",
    )
    .renamed("xen_host_cpu_avg_busy_ratio", Scale::One),
    gauge(
        "xen_host_cpu_avg_freq",
        H_CPU,
        "MHz",
        "Average frequency of the physical CPU, in MHz (RRD CPU<N>-avg-freq, average over the step).",
    )
    .renamed("xen_host_cpu_avg_freq_hertz", Scale::Megahertz),
    gauge(
        "xen_host_cpu_c<k>",
        H_CPU,
        "fraction 0–1",
        "Fraction of time the physical CPU spent in the C-state named by the metric, 0–1 (RRD cpu<N>-C<k>, average over the step).",
    )
    .suffixed("_residency_ratio", Scale::One),
    gauge(
        "xen_host_cpu_p<k>",
        H_CPU,
        "fraction 0–1",
        "Fraction of time the physical CPU spent in the P-state named by the metric, 0–1 (RRD cpu<N>-P<k>, average over the step).",
    )
    .suffixed("_residency_ratio", Scale::One),
    gauge(
        "xen_host_cpus",
        "host, host_uuid",
        "",
        "Physical CPUs (threads) of the host (host record host_CPUs).",
    ),
    gauge(
        "xen_host_dcmi_power_reading",
        H,
        "W",
        "Host power draw read over IPMI DCMI, in watts (RRD DCMI-power-reading, average over the step).",
    )
    .renamed("xen_host_dcmi_power_reading_watts", Scale::One),
    gauge(
        "xen_host_enabled",
        "host, host_uuid",
        "",
        "1 if the host is enabled, 0 if disabled, e.g. in maintenance mode (host record enabled).",
    ),
    gauge(
        "xen_host_group_<g>_calls",
        H,
        "calls/s",
        "Calls by the xapi rate-limiter caller group named by the metric, in calls per second (RRD group_<g>_calls, pool master, average over the step).",
    )
    .suffixed("_per_second", Scale::One),
    gauge(
        "xen_host_group_<g>_tokens",
        H,
        "tokens/s",
        "Tokens used by the xapi rate-limiter caller group named by the metric, in tokens per second (RRD group_<g>_tokens, pool master, average over the step).",
    )
    .suffixed("_per_second", Scale::One),
    gauge(
        "xen_host_hostload",
        H,
        "vCPUs per pCPU",
        "Runnable and running vCPUs per physical CPU; can exceed 1 (RRD hostload, average over the step).",
    ),
    gauge(
        "xen_host_inflight",
        H_SR,
        "requests",
        "I/O requests in flight from this host to the SR, in requests (RRD inflight_<sr8>, average over the step).",
    ),
    gauge(
        "xen_host_info",
        "host, host_uuid, address, product_brand, product_version, xen_version, cpu_model",
        "",
        "Always 1; the labels describe the host: management address, product brand and version, Xen version and CPU model (host record software_version and cpu_info).",
    ),
    gauge(
        "xen_host_io_throughput_read",
        H_SR,
        "MiB/s",
        "Data read from the SR by this host, in MiB/s (RRD io_throughput_read_<sr8>, average over the step).",
    )
    .renamed("xen_host_io_throughput_read_bytes_per_second", Scale::MibPerSecond),
    untyped(
        "xen_host_io_throughput_total",
        H_SR,
        "MiB/s",
        "Data read from and written to the SR by this host, in MiB/s (RRD io_throughput_total_<sr8>, average over the step). Untyped: the inherited name ends in _total but this is a per-second average, not a counter.",
    )
    .renamed("xen_host_io_throughput_bytes_per_second", Scale::MibPerSecond),
    gauge(
        "xen_host_io_throughput_write",
        H_SR,
        "MiB/s",
        "Data written to the SR by this host, in MiB/s (RRD io_throughput_write_<sr8>, average over the step).",
    )
    .renamed("xen_host_io_throughput_write_bytes_per_second", Scale::MibPerSecond),
    gauge(
        "xen_host_iops_read",
        H_SR,
        "requests/s",
        "Read requests from this host to the SR, in requests per second (RRD iops_read_<sr8>, average over the step).",
    ),
    untyped(
        "xen_host_iops_total",
        H_SR,
        "requests/s",
        "Read and write requests from this host to the SR, in requests per second (RRD iops_total_<sr8>, average over the step). Untyped: the inherited name ends in _total but this is a per-second average, not a counter.",
    )
    .renamed("xen_host_iops", Scale::One),
    gauge(
        "xen_host_iops_write",
        H_SR,
        "requests/s",
        "Write requests from this host to the SR, in requests per second (RRD iops_write_<sr8>, average over the step).",
    ),
    gauge(
        "xen_host_iowait",
        H_SR,
        "s/s",
        "Time this host's tapdisks spent waiting for I/O on the SR, in seconds per second (RRD iowait_<sr8>, average over the step).",
    )
    .renamed("xen_host_iowait_seconds_per_second", Scale::One),
    gauge(
        "xen_host_latency",
        H_SR,
        "μs",
        "Highest I/O latency over the SR's VDIs on this host, in μs (RRD latency_<sr8>, average over the step).",
    )
    .renamed("xen_host_latency_seconds", Scale::Microseconds),
    gauge(
        "xen_host_license_expiry_time_seconds",
        "host, host_uuid",
        "seconds",
        "When the host's licence expires, in seconds since the Unix epoch (host record license_params expiry); absent for never, an absent key or unreadable text.",
    ),
    gauge(
        "xen_host_live",
        "host, host_uuid",
        "",
        "1 if the pool master hears the host's heartbeat, 0 if the host is down or unreachable (host_metrics record live).",
    ),
    gauge(
        "xen_host_loadavg",
        H,
        "load",
        "1-minute load average of dom0 (its /proc/loadavg), not of the hypervisor (RRD loadavg, average over the step).",
    ),
    gauge(
        "xen_host_memory_free_kib",
        H,
        "KiB",
        "Free host memory as seen by Xen, in KiB (RRD memory_free_kib, average over the step).",
    )
    .renamed("xen_host_memory_free_bytes", Scale::Kib),
    gauge(
        "xen_host_memory_reclaimed",
        H,
        "bytes",
        "Memory reclaimed from VMs by ballooning, the sum over VMs of dynamic_max minus target, in bytes (RRD memory_reclaimed, average over the step).",
    )
    .renamed("xen_host_memory_reclaimed_bytes", Scale::One),
    gauge(
        "xen_host_memory_reclaimed_max",
        H,
        "bytes",
        "Memory that ballooning could still reclaim, the sum over VMs of target minus dynamic_min, in bytes (RRD memory_reclaimed_max, average over the step).",
    )
    .renamed("xen_host_memory_reclaimed_max_bytes", Scale::One),
    gauge(
        "xen_host_memory_total_bytes",
        "host, host_uuid",
        "bytes",
        "Physical memory of the host, in bytes (host_metrics record memory_total).",
    ),
    gauge(
        "xen_host_memory_total_kib",
        H,
        "KiB",
        "Total physical memory of the host, in KiB (RRD memory_total_kib, average over the step).",
    )
    .omitted(
        "the same value as xen_host_memory_total_bytes, which xapi sets from this data source (host_metrics memory_total = memory_total_kib × 1024)",
    ),
    gauge(
        "xen_host_multipath_enabled",
        "host, host_uuid",
        "",
        "1 if storage multipathing is enabled on the host, else 0 (host record multipathing, or other_config multipathing on older hosts).",
    ),
    gauge(
        "xen_host_network_latency",
        H,
        "seconds",
        "HA network heartbeat latency, in seconds (RRD network/latency, HA only, average over the step).",
    )
    .renamed("xen_host_network_latency_seconds", Scale::One),
    gauge(
        "xen_host_pif_attached",
        "host, host_uuid, pif, vlan",
        "",
        "1 if the network interface is plugged, else 0 (PIF record currently_attached); vlan is empty for untagged interfaces.",
    ),
    gauge(
        "xen_host_pif_rx",
        H_PIF,
        "B/s",
        "Bytes received on the dom0 network device (pif=\"aggr\": all devices summed), in B/s (RRD pif_<dev>_rx, average over the step).",
    )
    .renamed("xen_host_pif_rx_bytes_per_second", Scale::One),
    gauge(
        "xen_host_pif_rx_errors",
        H_PIF,
        "errors/s",
        "Receive errors on the dom0 network device, in errors per second (RRD pif_<dev>_rx_errors, average over the step).",
    )
    .renamed("xen_host_pif_rx_errors_per_second", Scale::One),
    gauge(
        "xen_host_pif_tx",
        H_PIF,
        "B/s",
        "Bytes sent on the dom0 network device (pif=\"aggr\": all devices summed), in B/s (RRD pif_<dev>_tx, average over the step).",
    )
    .renamed("xen_host_pif_tx_bytes_per_second", Scale::One),
    gauge(
        "xen_host_pif_tx_errors",
        H_PIF,
        "errors/s",
        "Transmit errors on the dom0 network device, in errors per second (RRD pif_<dev>_tx_errors, average over the step).",
    )
    .renamed("xen_host_pif_tx_errors_per_second", Scale::One),
    untyped(
        "xen_host_pool_session_count",
        H,
        "sessions",
        "Live XAPI sessions in the pool, a count (RRD pool_session_count, pool master only, average over the step). Untyped: the inherited name ends in _count but this is a gauge, not a histogram or summary count.",
    )
    .renamed("xen_host_pool_sessions", Scale::One),
    gauge(
        "xen_host_pool_session_creation_rate",
        H,
        "sessions/s",
        "XAPI sessions created in the pool, in sessions per second (RRD pool_session_creation_rate, pool master only, average over the step).",
    ),
    untyped(
        "xen_host_pool_task_count",
        H,
        "tasks",
        "XAPI tasks in the pool, a count (RRD pool_task_count, pool master only, average over the step). Untyped: the inherited name ends in _count but this is a gauge, not a histogram or summary count.",
    )
    .renamed("xen_host_pool_tasks", Scale::One),
    untyped(
        "xen_host_pool_total_session_count",
        H,
        "sessions/s",
        "XAPI sessions created in the pool, in sessions per second (RRD pool_total_session_count, the name of pool_session_creation_rate before xapi 23.9, pool master only, average over the step). Untyped: the inherited name ends in _count but this is a per-second average, not a histogram or summary count.",
    )
    .renamed("xen_host_pool_session_creation_rate", Scale::One),
    gauge(
        "xen_host_pool_vgpu_migration_rate",
        H,
        "migrations/s",
        "vGPU migrations in the pool, in migrations per second (RRD pool_vgpu_migration_rate, pool master only, average over the step).",
    ),
    gauge(
        "xen_host_read",
        H_SR,
        "B/s",
        "Bytes read from the SR by this host, in B/s (RRD read_<sr8>, average over the step).",
    )
    .renamed("xen_host_read_bytes_per_second", Scale::One),
    gauge(
        "xen_host_read_latency",
        H_SR,
        "μs",
        "Read latency of this host on the SR, in μs (RRD read_latency_<sr8>, average over the step).",
    )
    .renamed("xen_host_read_latency_seconds", Scale::Microseconds),
    gauge(
        "xen_host_reboot_required",
        "host, host_uuid",
        "",
        "1 if an installed update waits for a host reboot, else 0: a reboot_host guidance in pending_guidances (xapi 1.303+), a non-empty updates_requiring_reboot, or other_config rpm_patch_installation_time later than boot_time (yum updates, as Xen Orchestra records them).",
    ),
    gauge(
        "xen_host_running_domains",
        H,
        "domains",
        "Unpaused domains on the host, dom0 included, a count (RRD running_domains, average over the step).",
    ),
    gauge(
        "xen_host_running_vcpus",
        H,
        "vCPUs",
        "Online vCPUs that are not blocked, a count (RRD running_vcpus, average over the step).",
    ),
    gauge(
        "xen_host_running_vms",
        "host, host_uuid",
        "",
        "Guests running on the host, control domains excluded (VM records power_state and resident_on).",
    ),
    gauge(
        "xen_host_scrape_duration_seconds",
        H,
        "seconds",
        "Time spent fetching and parsing the host's /rrd_updates in this scrape, in seconds.",
    ),
    counter(
        "xen_host_scrape_errors_total",
        "host, host_uuid, reason",
        "errors",
        "Failed collections of the host's /rrd_updates since the exporter started, by bounded reason (timeout, connect, tls, auth, http_5xx, parse, ...); 0 until the first.",
    ),
    gauge(
        "xen_host_sr_cache_hits",
        H_SR,
        "hits/s",
        "IntelliCache hits on the host's local cache SR, in hits per second (RRD sr_<uuid>_cache_hits, average over the step).",
    )
    .renamed("xen_host_sr_cache_hits_per_second", Scale::One),
    gauge(
        "xen_host_sr_cache_misses",
        H_SR,
        "misses/s",
        "IntelliCache misses on the host's local cache SR, in misses per second (RRD sr_<uuid>_cache_misses, average over the step).",
    )
    .renamed("xen_host_sr_cache_misses_per_second", Scale::One),
    gauge(
        "xen_host_sr_cache_size",
        H_SR,
        "bytes",
        "Size of the IntelliCache local cache on the SR, in bytes (RRD sr_<uuid>_cache_size, average over the step).",
    )
    .renamed("xen_host_sr_cache_size_bytes", Scale::One),
    gauge(
        "xen_host_statefile_latency",
        "host, host_uuid, vdi_uuid",
        "seconds",
        "HA state-file access latency for the state-file VDI, in seconds (RRD statefile/<vdi-uuid>/latency, HA only, average over the step).",
    )
    .renamed("xen_host_statefile_latency_seconds", Scale::One),
    gauge(
        "xen_host_tag",
        "host, host_uuid, tag",
        "",
        "Always 1, one series per user tag of the host (host record tags, repeats merged); none for a host without tags.",
    ),
    gauge(
        "xen_host_tapdisks_in_low_memory_mode",
        H,
        "tapdisks",
        "Tapdisk processes in low-memory mode, a count (RRD Tapdisks_in_low_memory_mode, average over the step).",
    ),
    gauge(
        "xen_host_up",
        H,
        "",
        "1 if the host's /rrd_updates was fetched and parsed in this scrape, 0 if not.",
    ),
    gauge(
        "xen_host_write",
        H_SR,
        "B/s",
        "Bytes written to the SR by this host, in B/s (RRD write_<sr8>, average over the step).",
    )
    .renamed("xen_host_write_bytes_per_second", Scale::One),
    gauge(
        "xen_host_write_latency",
        H_SR,
        "μs",
        "Write latency of this host on the SR, in μs (RRD write_latency_<sr8>, average over the step).",
    )
    .renamed("xen_host_write_latency_seconds", Scale::Microseconds),
    gauge(
        "xen_host_xapi_allocation_kib",
        H,
        "KiB/s",
        "Memory allocated by xapi's OCaml runtime, in KiB per second (RRD xapi_allocation_kib, average over the step).",
    )
    .renamed("xen_host_xapi_allocation_bytes_per_second", Scale::Kib),
    gauge(
        "xen_host_xapi_free_memory_kib",
        H,
        "KiB",
        "Free memory in xapi's OCaml heap, in KiB (RRD xapi_free_memory_kib, average over the step).",
    )
    .renamed("xen_host_xapi_free_memory_bytes", Scale::Kib),
    gauge(
        "xen_host_xapi_healthcheck_latency",
        H,
        "seconds",
        "HA xapi health-check latency, in seconds (RRD xapi_healthcheck/latency, HA only, average over the step).",
    )
    .renamed("xen_host_xapi_healthcheck_latency_seconds", Scale::One),
    gauge(
        "xen_host_xapi_live_memory_kib",
        H,
        "KiB",
        "Live memory in xapi's OCaml heap, in KiB (RRD xapi_live_memory_kib, average over the step).",
    )
    .renamed("xen_host_xapi_live_memory_bytes", Scale::Kib),
    gauge(
        "xen_host_xapi_memory_usage_kib",
        H,
        "KiB",
        "Memory used by the xapi process, in KiB (RRD xapi_memory_usage_kib, average over the step).",
    )
    .renamed("xen_host_xapi_memory_usage_bytes", Scale::Kib),
    gauge(
        "xen_host_xapi_open_fds",
        H,
        "file descriptors",
        "File descriptors open in the xapi process, a count (RRD xapi_open_fds, average over the step).",
    ),
    gauge(
        "xen_host_xenopsd_xc_fdsize",
        H,
        "file descriptors",
        "File descriptor slots allocated by xenopsd-xc (FDSize), a count (RRD xenopsd-xc_fdsize, average over the step).",
    ),
    gauge(
        "xen_host_xenopsd_xc_mem_extra",
        H,
        "KiB",
        "Extra memory used by xenopsd-xc outside its OCaml heap, in KiB (RRD xenopsd-xc_mem_extra, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_mem_extra_bytes", Scale::Kib),
    gauge(
        "xen_host_xenopsd_xc_ocaml_allocation_rate",
        H,
        "KiB/s",
        "Memory allocated by xenopsd-xc's OCaml runtime, in KiB per second (RRD xenopsd-xc_ocaml_allocation_rate, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_ocaml_allocation_bytes_per_second", Scale::Kib),
    gauge(
        "xen_host_xenopsd_xc_ocaml_free",
        H,
        "KiB",
        "Free memory in xenopsd-xc's OCaml heap, in KiB (RRD xenopsd-xc_ocaml_free, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_ocaml_free_bytes", Scale::Kib),
    gauge(
        "xen_host_xenopsd_xc_ocaml_maybe_live",
        H,
        "KiB",
        "Possibly live memory in xenopsd-xc's OCaml heap, in KiB (RRD xenopsd-xc_ocaml_maybe_live, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_ocaml_maybe_live_bytes", Scale::Kib),
    untyped(
        "xen_host_xenopsd_xc_ocaml_total",
        H,
        "KiB",
        "Size of xenopsd-xc's OCaml heap, in KiB (RRD xenopsd-xc_ocaml_total, average over the step). Untyped: the inherited name ends in _total but this is a gauge, not a counter.",
    )
    .renamed("xen_host_xenopsd_xc_ocaml_heap_bytes", Scale::Kib),
    gauge(
        "xen_host_xenopsd_xc_rss",
        H,
        "KiB",
        "Resident set size of xenopsd-xc (VmRSS), in KiB (RRD xenopsd-xc_rss, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_rss_bytes", Scale::Kib),
    gauge(
        "xen_host_xenopsd_xc_threads",
        H,
        "threads",
        "Threads of xenopsd-xc, a count (RRD xenopsd-xc_threads, average over the step).",
    ),
    gauge(
        "xen_host_xenopsd_xc_vmdata",
        H,
        "KiB",
        "Data segment size of xenopsd-xc (VmData), in KiB (RRD xenopsd-xc_vmdata, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_vmdata_bytes", Scale::Kib),
    gauge(
        "xen_host_xenopsd_xc_vmlck",
        H,
        "KiB",
        "Locked memory of xenopsd-xc (VmLck), in KiB (RRD xenopsd-xc_vmlck, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_vmlck_bytes", Scale::Kib),
    gauge(
        "xen_host_xenopsd_xc_vmpin",
        H,
        "KiB",
        "Pinned memory of xenopsd-xc (VmPin), in KiB (RRD xenopsd-xc_vmpin, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_vmpin_bytes", Scale::Kib),
    gauge(
        "xen_host_xenopsd_xc_vmpte",
        H,
        "KiB",
        "Page-table size of xenopsd-xc (VmPTE), in KiB (RRD xenopsd-xc_vmpte, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_vmpte_bytes", Scale::Kib),
    gauge(
        "xen_host_xenopsd_xc_vmsize",
        H,
        "KiB",
        "Virtual memory size of xenopsd-xc (VmSize), in KiB (RRD xenopsd-xc_vmsize, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_vmsize_bytes", Scale::Kib),
    gauge(
        "xen_host_xenopsd_xc_vmstk",
        H,
        "KiB",
        "Stack size of xenopsd-xc (VmStk), in KiB (RRD xenopsd-xc_vmstk, average over the step).",
    )
    .renamed("xen_host_xenopsd_xc_vmstk_bytes", Scale::Kib),
    gauge(
        "xen_messages",
        "name, priority, class",
        "",
        "XAPI messages (alerts) that exist now, by name, priority (1 most severe) and class of the object they are about (message records name, priority, cls). A name outside [A-Z0-9_]{1,64} is counted as other, as are a priority outside 0–9 and an odd class. Followed by event.from, re-read every 15 minutes.",
    ),
    gauge(
        "xen_messages_newest_time_seconds",
        "name, priority, class",
        "seconds",
        "When the newest XAPI message of the group was created, in seconds since the Unix epoch (message record timestamp); absent when no timestamp of the group is readable.",
    ),
    gauge(
        "xen_pbd_attached",
        "sr, sr_uuid, host, host_uuid, type",
        "",
        "1 if the host's PBD for the SR is plugged (currently_attached), 0 if detached: the host cannot reach that SR.",
    ),
    gauge(
        "xen_pool_collection_duration_seconds",
        "pool",
        "seconds",
        "Seconds the pool's last completed collection took (the previous scrape's, as seen from this one).",
    ),
    gauge(
        "xen_pool_ha_enabled",
        "pool, pool_uuid",
        "",
        "1 if high availability is enabled on the pool, else 0 (pool record ha_enabled).",
    ),
    gauge(
        "xen_pool_ha_host_failures_to_tolerate",
        "pool, pool_uuid",
        "",
        "Host failures high availability is configured to survive (pool record ha_host_failures_to_tolerate); exported with HA off too.",
    ),
    gauge(
        "xen_pool_ha_overcommitted",
        "pool, pool_uuid",
        "",
        "1 if the pool can no longer survive the configured host failures (pool record ha_overcommitted), else 0.",
    ),
    gauge(
        "xen_pool_ha_plan_exists_for",
        "pool, pool_uuid",
        "",
        "Host failures the current HA plan can survive (pool record ha_plan_exists_for); below ha_host_failures_to_tolerate the pool is at risk.",
    ),
    gauge(
        "xen_pool_hosts",
        "pool, pool_uuid",
        "",
        "Hosts in the pool.",
    ),
    gauge(
        "xen_pool_info",
        "pool, pool_uuid, master, master_uuid, default_sr, default_sr_uuid",
        "",
        "Always 1; the labels name the pool, its master host and its default SR.",
    ),
    gauge(
        "xen_pool_last_success_timestamp_seconds",
        "pool",
        "seconds",
        "Unix time of the last collection that reached every host of the pool.",
    ),
    counter(
        "xen_pool_master_failovers_total",
        "pool",
        "failovers",
        "Times the exporter moved its session to a new pool master since it started.",
    ),
    gauge(
        "xen_pool_up",
        "pool",
        "",
        "1 if the exporter holds a current inventory of the pool (logged in, records read, event stream following), else 0.",
    ),
    gauge(
        "xen_sr_fc_info",
        "sr, sr_uuid, scsi_id",
        "",
        "Always 1; the SCSI ID of the Fibre Channel / HBA LUN behind the SR (PBD device_config).",
    ),
    gauge(
        "xen_sr_info",
        "sr, sr_uuid, type, content_type, shared",
        "",
        "Always 1; the labels describe the SR: driver type, content type and whether every host shares it.",
    ),
    gauge(
        "xen_sr_iscsi_target_info",
        "sr, sr_uuid, target, iqn, port",
        "",
        "Always 1; the iSCSI target portal(s), IQN and port of the SR (PBD device_config).",
    ),
    gauge(
        "xen_sr_multipath_active",
        "sr, sr_uuid",
        "",
        "1 if any host reaches the SR through multipath (PBD other_config multipathed), else 0.",
    ),
    gauge(
        "xen_sr_multipath_paths",
        "sr, sr_uuid, host, host_uuid, scsi_id",
        "",
        "Multipath paths currently up from the host to the LUN (first number of PBD other_config mpath-<SCSIid>, written by storage manager).",
    ),
    gauge(
        "xen_sr_multipath_paths_max",
        "sr, sr_uuid, host, host_uuid, scsi_id",
        "",
        "Most multipath paths seen from the host to the LUN (second number of PBD other_config mpath-<SCSIid>); paths lost = this minus xen_sr_multipath_paths.",
    ),
    gauge(
        "xen_sr_nfs_target_info",
        "sr, sr_uuid, server, path",
        "",
        "Always 1; the NFS server and exported path of the SR (PBD device_config).",
    ),
    gauge(
        "xen_sr_physical_size",
        SR,
        "bytes",
        "Physical size of the SR, in bytes (SR record physical_size, read when the records were last loaded).",
    )
    .renamed("xen_sr_physical_size_bytes", Scale::One),
    gauge(
        "xen_sr_physical_utilization",
        SR,
        "bytes",
        "Physical space used on the SR, in bytes (SR record physical_utilisation, read when the records were last loaded).",
    )
    .renamed("xen_sr_physical_utilization_bytes", Scale::One),
    gauge(
        "xen_sr_tag",
        "sr, sr_uuid, tag",
        "",
        "Always 1, one series per user tag of the SR (SR record tags, repeats merged); none for an SR without tags.",
    ),
    gauge(
        "xen_sr_vdis",
        "sr, sr_uuid",
        "",
        "Virtual disk images (VDIs) on the SR, snapshots included (SR record VDIs).",
    ),
    gauge(
        "xen_sr_virtual_allocation",
        SR,
        "bytes",
        "Sum of the virtual sizes of the SR's VDIs, in bytes (SR record virtual_allocation, read when the records were last loaded).",
    )
    .renamed("xen_sr_virtual_allocation_bytes", Scale::One),
    gauge(
        "xen_vm_cpu",
        VM_CPU,
        "fraction 0–1",
        "Busy fraction of the vCPU, its run time over wall time, 0–1 (RRD cpu<N>, average over the step).",
    )
    .renamed("xen_vm_cpu_busy_ratio", Scale::One),
    gauge(
        "xen_vm_cpu_usage",
        VM,
        "fraction 0–1",
        "CPU time of the domain over wall time times its online vCPUs, 0–1 (RRD cpu_usage, average over the step).",
    )
    .renamed("xen_vm_cpu_usage_ratio", Scale::One),
    gauge(
        "xen_vm_disk_physical_utilization_bytes",
        "vm, vm_uuid, vbd, userdevice, vdi, vdi_uuid, sr, sr_uuid",
        "bytes",
        "Bytes the VM's disk image takes in its SR (VDI record physical_utilisation), per VBD of type Disk: vbd is VBD device as recorded (empty for a disk never plugged), userdevice its slot; the SR labels are empty when the SR is unknown. Any power state; not for control domains.",
    ),
    gauge(
        "xen_vm_disk_virtual_size_bytes",
        "vm, vm_uuid, vbd, userdevice, vdi, vdi_uuid, sr, sr_uuid",
        "bytes",
        "Size of the VM's disk as the guest sees it (VDI record virtual_size), per VBD of type Disk: vbd is VBD device as recorded (empty for a disk never plugged), userdevice its slot; the SR labels are empty when the SR is unknown. Any power state; not for control domains.",
    ),
    gauge(
        "xen_vm_info",
        "vm, vm_uuid, host, host_uuid, os, domain_type, is_control_domain, distro, pv_drivers_version",
        "",
        "Always 1; the labels describe the VM: resident host (empty when not running), guest OS name from the guest agent (VM_guest_metrics os_version name up to its first |), domain type, whether it is a control domain (dom0), distribution (os_version distro) and PV driver version (PV_drivers_version major.minor.micro, -build when present). The guest labels are empty unless the VM is running or paused: a halted VM keeps stale guest metrics.",
    ),
    gauge(
        "xen_vm_memory",
        VM,
        "bytes",
        "Memory currently allocated to the VM, in bytes (RRD memory, average over the step).",
    )
    .renamed("xen_vm_memory_bytes", Scale::One),
    gauge(
        "xen_vm_memory_dynamic_max_bytes",
        "vm, vm_uuid",
        "bytes",
        "Dynamic maximum memory of the VM, in bytes (VM record memory_dynamic_max).",
    ),
    gauge(
        "xen_vm_memory_dynamic_min_bytes",
        "vm, vm_uuid",
        "bytes",
        "Dynamic minimum memory of the VM, in bytes (VM record memory_dynamic_min).",
    ),
    gauge(
        "xen_vm_memory_internal_free",
        VM,
        "KiB",
        "Free memory as seen inside the VM (guest agent; MemAvailable for dom0), in KiB (RRD memory_internal_free, average over the step).",
    )
    .renamed("xen_vm_memory_internal_free_bytes", Scale::Kib),
    gauge(
        "xen_vm_memory_numa_node_<N>",
        VM,
        "bytes",
        "Memory of the VM on the NUMA node named by the metric, in bytes (RRD memory_numa_node_<N>, average over the step).",
    )
    .suffixed("_bytes", Scale::One),
    gauge(
        "xen_vm_memory_static_max_bytes",
        "vm, vm_uuid",
        "bytes",
        "Static maximum memory of the VM, in bytes (VM record memory_static_max).",
    ),
    gauge(
        "xen_vm_memory_static_min_bytes",
        "vm, vm_uuid",
        "bytes",
        "Static minimum memory of the VM, in bytes (VM record memory_static_min).",
    ),
    gauge(
        "xen_vm_memory_target",
        VM,
        "bytes",
        "Balloon target of the VM, in bytes; absent while unknown (RRD memory_target, average over the step).",
    )
    .renamed("xen_vm_memory_target_bytes", Scale::One),
    gauge(
        "xen_vm_numa_node_nonaffine_vcpus",
        VM,
        "fraction",
        "Share of vCPU time spent running outside the VM's NUMA node affinity (RRD numa_node_nonaffine_vcpus, average over the step).",
    )
    .renamed("xen_vm_numa_node_nonaffine_vcpus_ratio", Scale::One),
    gauge(
        "xen_vm_numa_nodes",
        VM,
        "nodes",
        "NUMA nodes the VM's memory is spread over, a count (RRD numa_nodes, average over the step).",
    ),
    gauge(
        "xen_vm_oldest_snapshot_time_seconds",
        "vm, vm_uuid",
        "seconds",
        "When the VM's oldest snapshot was taken, in seconds since the Unix epoch (snapshot_time of the snapshots whose snapshot_of is the VM); absent without snapshots.",
    ),
    gauge(
        "xen_vm_power_state",
        "vm, vm_uuid, state",
        "",
        "Always 1; the state label is the VM's power state: running, halted, paused or suspended (VM record power_state). Templates and snapshots are not exported.",
    ),
    gauge(
        "xen_vm_reboot_required",
        "vm, vm_uuid",
        "",
        "1 if the VM waits for a restart, else 0: restart_vm or restart_device_model in its pending_guidances, or requires_reboot (fields of newer XAPIs; absent counts as empty).",
    ),
    gauge(
        "xen_vm_runnable_any",
        VM,
        "fraction 0–1",
        "Fraction of time at least one vCPU of the VM was runnable but not running (RRD runnable_any, average over the step).",
    )
    .renamed("xen_vm_runnable_any_ratio", Scale::One),
    gauge(
        "xen_vm_runnable_vcpus",
        VM,
        "fraction",
        "Average share of the VM's vCPUs that were runnable but not running (RRD runnable_vcpus, average over the step).",
    )
    .renamed("xen_vm_runnable_vcpus_ratio", Scale::One),
    gauge(
        "xen_vm_runstate_blocked",
        VM,
        "fraction 0–1",
        "Fraction of time all vCPUs of the VM were blocked (RRD runstate_blocked, average over the step).",
    )
    .renamed("xen_vm_runstate_blocked_ratio", Scale::One),
    gauge(
        "xen_vm_runstate_concurrency_hazard",
        VM,
        "fraction 0–1",
        "Fraction of time some vCPUs of the VM were running while others waited to run (RRD runstate_concurrency_hazard, average over the step).",
    )
    .renamed("xen_vm_runstate_concurrency_hazard_ratio", Scale::One),
    gauge(
        "xen_vm_runstate_full_contention",
        VM,
        "fraction 0–1",
        "Fraction of time all vCPUs of the VM were runnable but waiting for a physical CPU (RRD runstate_full_contention, average over the step).",
    )
    .renamed("xen_vm_runstate_full_contention_ratio", Scale::One),
    gauge(
        "xen_vm_runstate_fullrun",
        VM,
        "fraction 0–1",
        "Fraction of time all vCPUs of the VM were running (RRD runstate_fullrun, average over the step).",
    )
    .renamed("xen_vm_runstate_fullrun_ratio", Scale::One),
    gauge(
        "xen_vm_runstate_partial_contention",
        VM,
        "fraction 0–1",
        "Fraction of time some vCPUs of the VM waited to run while none was running (RRD runstate_partial_contention, average over the step).",
    )
    .renamed("xen_vm_runstate_partial_contention_ratio", Scale::One),
    gauge(
        "xen_vm_runstate_partial_run",
        VM,
        "fraction 0–1",
        "Fraction of time some vCPUs of the VM were running while the others were blocked (RRD runstate_partial_run, average over the step).",
    )
    .renamed("xen_vm_runstate_partial_run_ratio", Scale::One),
    gauge(
        "xen_vm_snapshots",
        "vm, vm_uuid",
        "",
        "Snapshots of the VM (VM records with is_a_snapshot whose snapshot_of is the VM); 0 when none.",
    ),
    gauge(
        "xen_vm_start_time_seconds",
        "vm, vm_uuid",
        "seconds",
        "When the running VM's domain started, in seconds since the Unix epoch (VM_metrics record start_time); absent when the VM is not running.",
    ),
    gauge(
        "xen_vm_tag",
        "vm, vm_uuid, tag",
        "",
        "Always 1, one series per user tag of the VM (VM record tags, repeats merged); none for a VM without tags. Templates and snapshots are not VMs.",
    ),
    gauge(
        "xen_vm_vbd_avgqu_sz",
        VM_VBD,
        "requests",
        "Average I/O request queue size of the virtual disk, in requests (RRD vbd_<dev>_avgqu_sz, average over the step).",
    ),
    gauge(
        "xen_vm_vbd_inflight",
        VM_VBD,
        "requests",
        "I/O requests in flight on the virtual disk, in requests (RRD vbd_<dev>_inflight, average over the step).",
    ),
    gauge(
        "xen_vm_vbd_io_throughput_read",
        VM_VBD,
        "MiB/s",
        "Data read from the virtual disk, in MiB/s (RRD vbd_<dev>_io_throughput_read, average over the step).",
    )
    .renamed("xen_vm_vbd_io_throughput_read_bytes_per_second", Scale::MibPerSecond),
    untyped(
        "xen_vm_vbd_io_throughput_total",
        VM_VBD,
        "MiB/s",
        "Data read from and written to the virtual disk, in MiB/s (RRD vbd_<dev>_io_throughput_total, average over the step). Untyped: the inherited name ends in _total but this is a per-second average, not a counter.",
    )
    .renamed("xen_vm_vbd_io_throughput_bytes_per_second", Scale::MibPerSecond),
    gauge(
        "xen_vm_vbd_io_throughput_write",
        VM_VBD,
        "MiB/s",
        "Data written to the virtual disk, in MiB/s (RRD vbd_<dev>_io_throughput_write, average over the step).",
    )
    .renamed("xen_vm_vbd_io_throughput_write_bytes_per_second", Scale::MibPerSecond),
    gauge(
        "xen_vm_vbd_iops_read",
        VM_VBD,
        "requests/s",
        "Read requests on the virtual disk, in requests per second (RRD vbd_<dev>_iops_read, average over the step).",
    ),
    untyped(
        "xen_vm_vbd_iops_total",
        VM_VBD,
        "requests/s",
        "Read and write requests on the virtual disk, in requests per second (RRD vbd_<dev>_iops_total, average over the step). Untyped: the inherited name ends in _total but this is a per-second average, not a counter.",
    )
    .renamed("xen_vm_vbd_iops", Scale::One),
    gauge(
        "xen_vm_vbd_iops_write",
        VM_VBD,
        "requests/s",
        "Write requests on the virtual disk, in requests per second (RRD vbd_<dev>_iops_write, average over the step).",
    ),
    gauge(
        "xen_vm_vbd_iowait",
        VM_VBD,
        "s/s",
        "Time spent waiting for I/O on the virtual disk, in seconds per second (RRD vbd_<dev>_iowait, average over the step).",
    )
    .renamed("xen_vm_vbd_iowait_seconds_per_second", Scale::One),
    gauge(
        "xen_vm_vbd_latency",
        VM_VBD,
        "μs",
        "I/O latency of the virtual disk, in μs (RRD vbd_<dev>_latency, average over the step).",
    )
    .renamed("xen_vm_vbd_latency_seconds", Scale::Microseconds),
    gauge(
        "xen_vm_vbd_read",
        VM_VBD,
        "B/s",
        "Bytes read from the virtual disk, in B/s (RRD vbd_<dev>_read, average over the step).",
    )
    .renamed("xen_vm_vbd_read_bytes_per_second", Scale::One),
    gauge(
        "xen_vm_vbd_read_latency",
        VM_VBD,
        "μs",
        "Read latency of the virtual disk, in μs (RRD vbd_<dev>_read_latency, average over the step).",
    )
    .renamed("xen_vm_vbd_read_latency_seconds", Scale::Microseconds),
    gauge(
        "xen_vm_vbd_write",
        VM_VBD,
        "B/s",
        "Bytes written to the virtual disk, in B/s (RRD vbd_<dev>_write, average over the step).",
    )
    .renamed("xen_vm_vbd_write_bytes_per_second", Scale::One),
    gauge(
        "xen_vm_vbd_write_latency",
        VM_VBD,
        "μs",
        "Write latency of the virtual disk, in μs (RRD vbd_<dev>_write_latency, average over the step).",
    )
    .renamed("xen_vm_vbd_write_latency_seconds", Scale::Microseconds),
    gauge(
        "xen_vm_vcpus",
        "vm, vm_uuid",
        "",
        "Virtual CPUs of the VM: the running domain's count, or VCPUs_at_startup when it is not running.",
    ),
    gauge(
        "xen_vm_vif_rx",
        VM_VIF,
        "B/s",
        "Bytes received by the VM on the virtual interface (guest's view), in B/s (RRD vif_<N>_rx, average over the step).",
    )
    .renamed("xen_vm_vif_rx_bytes_per_second", Scale::One),
    gauge(
        "xen_vm_vif_rx_errors",
        VM_VIF,
        "errors/s",
        "Receive errors on the virtual interface, in errors per second (RRD vif_<N>_rx_errors, average over the step).",
    )
    .renamed("xen_vm_vif_rx_errors_per_second", Scale::One),
    gauge(
        "xen_vm_vif_tx",
        VM_VIF,
        "B/s",
        "Bytes sent by the VM on the virtual interface (guest's view), in B/s (RRD vif_<N>_tx, average over the step).",
    )
    .renamed("xen_vm_vif_tx_bytes_per_second", Scale::One),
    gauge(
        "xen_vm_vif_tx_errors",
        VM_VIF,
        "errors/s",
        "Transmit errors on the virtual interface, in errors per second (RRD vif_<N>_tx_errors, average over the step).",
    )
    .renamed("xen_vm_vif_tx_errors_per_second", Scale::One),
];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const HOST1: &str = include_str!("../../tests/fixtures/rrd/rrd_updates.host1.formatC.json");
    const HOST2: &str = include_str!("../../tests/fixtures/rrd/rrd_updates.host2.formatC.json");
    const POOL: &str =
        include_str!("../../tests/fixtures/original/original-exporter.pool-mode.prom");
    const POOL_A: &str =
        include_str!("../../tests/fixtures/original/original-exporter.pool-mode.formatA.prom");
    const HOST_MODE: &str =
        include_str!("../../tests/fixtures/original/original-exporter.host-mode.prom");

    /// Labels the collector adds from the inventory, not from the data source name.
    const IDENTITY: [&str; 6] = ["host", "host_uuid", "vm", "vm_uuid", "sr", "sr_uuid"];

    fn legend(body: &str) -> Vec<String> {
        let json: serde_json::Value = serde_json::from_str(body).expect("fixture is JSON");
        json["meta"]["legend"]
            .as_array()
            .expect("meta.legend is an array")
            .iter()
            .map(|v| v.as_str().expect("legend entries are strings").to_owned())
            .collect()
    }

    struct OriginalLine {
        name: String,
        labels: BTreeMap<String, String>,
    }

    /// Reads the labelled lines of the original exporter's output: `name{k="v", k="v"} value`, values unescaped (it
    /// never escaped them, and the fixtures contain no `"`).
    fn parse_original(text: &str) -> Vec<OriginalLine> {
        // The last line, xen_collector_duration_seconds, has no labels and no legend entry.
        text.lines()
            .filter_map(|line| line.split_once('{'))
            .map(|(name, rest)| {
                let (body, _value) = rest.rsplit_once("} ").expect("labels end with '} '");
                let labels = body
                    .split(", ")
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect("k=\"v\"");
                        (
                            k.to_owned(),
                            v.strip_suffix('"').expect("closing quote").to_owned(),
                        )
                    })
                    .collect();
                OriginalLine {
                    name: name.to_owned(),
                    labels,
                }
            })
            .collect()
    }

    fn check_against_original(legend: &[String], prom: &str) {
        let lines = parse_original(prom);
        assert!(
            lines.len() > legend.len(),
            "one line per legend entry, then SR lines"
        );
        for (entry, line) in legend.iter().zip(&lines) {
            let mut fields = entry.splitn(4, ':');
            let (_cf, owner, uuid, ds) = (
                fields.next().expect("cf"),
                fields.next().expect("owner"),
                fields.next().expect("uuid"),
                fields.next().expect("ds"),
            );
            let (owner, uuid_label) = match owner {
                "host" => (Owner::Host, "host_uuid"),
                "vm" => (Owner::Vm, "vm_uuid"),
                other => panic!("unexpected owner {other}"),
            };
            assert_eq!(
                line.labels[uuid_label], uuid,
                "{entry}: lines are paired by column"
            );
            let mapped = map_data_source(owner, ds);
            assert_eq!(mapped.family, line.name, "{entry}");
            assert!(
                matches!(mapped.family, Cow::Borrowed(_)),
                "{entry}: a known family must not allocate"
            );
            let carved: BTreeSet<(&str, &str)> = line
                .labels
                .iter()
                .filter(|(k, _)| !IDENTITY.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let ours: BTreeSet<(&str, &str)> = mapped.label.into_iter().collect();
            assert_eq!(ours, carved, "{entry}");
            match mapped.sr {
                Some(SrRef::Prefix(p)) => assert!(line.labels["sr_uuid"].starts_with(p), "{entry}"),
                Some(SrRef::Full(u)) => assert_eq!(line.labels["sr_uuid"], u, "{entry}"),
                None => assert!(!line.labels.contains_key("sr_uuid"), "{entry}"),
            }
            let (help, _) = describe(&mapped.family);
            assert!(!help.starts_with("Not in the catalog"), "{entry}: {help}");
        }
    }

    #[test]
    fn names_match_the_original_exporter_when_mapping_fixture_legends() {
        let pool: Vec<String> = legend(HOST1).into_iter().chain(legend(HOST2)).collect();
        assert_eq!(pool.len(), 649);
        check_against_original(&pool, POOL);
        check_against_original(&pool, POOL_A);
        check_against_original(&legend(HOST1), HOST_MODE);
    }

    fn mapped(owner: Owner, ds: &str) -> (String, Option<(&'static str, &str)>, Option<SrRef<'_>>) {
        let m = map_data_source(owner, ds);
        (m.family.into_owned(), m.label, m.sr)
    }

    fn is_borrowed(owner: Owner, ds: &str) -> bool {
        matches!(map_data_source(owner, ds).family, Cow::Borrowed(_))
    }

    fn is_legal_name(name: &str) -> bool {
        let mut bytes = name.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }

    #[test]
    fn names_are_lower_cased_and_sanitised_when_sources_have_odd_characters() {
        for (ds, family) in [
            (
                "Tapdisks_in_low_memory_mode",
                "xen_host_tapdisks_in_low_memory_mode",
            ),
            ("xenopsd-xc_rss", "xen_host_xenopsd_xc_rss"),
            ("DCMI-power-reading", "xen_host_dcmi_power_reading"),
            ("network/latency", "xen_host_network_latency"),
            (
                "xapi_healthcheck/latency",
                "xen_host_xapi_healthcheck_latency",
            ),
        ] {
            assert_eq!(mapped(Owner::Host, ds), (family.to_owned(), None, None));
            assert!(is_borrowed(Owner::Host, ds), "{ds}");
        }
        for (owner, ds, family) in [
            (Owner::Host, "Foo.Bar-baz/ü€", "xen_host_foo_bar_baz___"),
            (
                Owner::Host,
                "group_api:ro_calls",
                "xen_host_group_api_ro_calls",
            ),
            (Owner::Vm, "Weird Name", "xen_vm_weird_name"),
            (Owner::Sr, "physical-Size", "xen_sr_physical_size"),
            (Owner::Sr, "", "xen_sr_"),
        ] {
            let m = map_data_source(owner, ds);
            assert_eq!(m.family, family);
            assert!(is_legal_name(&m.family), "{}", m.family);
        }
        assert!(!is_borrowed(Owner::Host, "something_new"));
    }

    #[test]
    fn statefile_latency_is_one_family_with_the_vdi_as_label() {
        let vdi = "1b6c4a2e-5f3d-4c1a-9e8b-7d6f5e4c3b2a";
        let ds = format!("statefile/{vdi}/latency");
        let m = map_data_source(Owner::Host, &ds);
        assert_eq!(m.family, "xen_host_statefile_latency");
        assert!(matches!(m.family, Cow::Borrowed(_)));
        assert_eq!(m.label, Some(("vdi_uuid", vdi)));
        assert_eq!(m.sr, None);
        // Shapes that are not a state file fall back to plain sanitising.
        assert_eq!(
            mapped(Owner::Host, "statefile//latency").0,
            "xen_host_statefile__latency"
        );
        assert_eq!(mapped(Owner::Host, "statefile/a/b/latency").1, None);
        assert_eq!(mapped(Owner::Vm, &ds).1, None);
    }

    #[test]
    fn sr_prefix_is_carved_only_when_it_is_exactly_8_hex_digits() {
        let sr = |ds| map_data_source(Owner::Host, ds).sr;
        assert_eq!(sr("read_6e6d703c"), Some(SrRef::Prefix("6e6d703c")));
        assert_eq!(
            sr("io_throughput_total_0123abcd"),
            Some(SrRef::Prefix("0123abcd"))
        );
        assert_eq!(sr("avgqu_sz_ffffffff"), Some(SrRef::Prefix("ffffffff")));
        assert_eq!(
            mapped(Owner::Host, "write_latency_6e6d703c").0,
            "xen_host_write_latency"
        );
        for not_sr in [
            "read_6e6d703",
            "read_6e6d703cc",
            "read_6e6d70zz",
            "read_6E6D703C",
            "foo_6e6d703c",
            "read6e6d703c",
        ] {
            assert_eq!(sr(not_sr), None, "{not_sr}");
        }
        assert_eq!(
            mapped(Owner::Host, "read_6e6d703").0,
            "xen_host_read_6e6d703"
        );
        assert_eq!(map_data_source(Owner::Vm, "read_6e6d703c").sr, None);
    }

    #[test]
    fn full_sr_uuid_is_carved_when_cache_sources_name_it() {
        let uuid = "a80d46ce-3aed-4a57-a9a8-447da3bc9ae2";
        for rest in ["cache_size", "cache_hits", "cache_misses"] {
            let ds = format!("sr_{uuid}_{rest}");
            let m = map_data_source(Owner::Host, &ds);
            assert_eq!(m.family, format!("xen_host_sr_{rest}"));
            assert!(matches!(m.family, Cow::Borrowed(_)));
            assert_eq!(m.sr, Some(SrRef::Full(uuid)));
            assert_eq!(m.label, None);
        }
        assert_eq!(
            map_data_source(Owner::Host, "sr_notauuid_cache_size").sr,
            None
        );
        assert_eq!(
            map_data_source(Owner::Host, &format!("sr_{uuid}_")).sr,
            None
        );
    }

    #[test]
    fn devices_and_cpus_become_labels() {
        assert_eq!(
            mapped(Owner::Host, "pif_aggr_rx"),
            ("xen_host_pif_rx".into(), Some(("pif", "aggr")), None)
        );
        assert_eq!(
            mapped(Owner::Host, "pif_eth0_rx_errors"),
            ("xen_host_pif_rx_errors".into(), Some(("pif", "eth0")), None)
        );
        assert_eq!(
            mapped(Owner::Vm, "vif_2_tx"),
            ("xen_vm_vif_tx".into(), Some(("vif", "2")), None)
        );
        assert_eq!(
            mapped(Owner::Vm, "vbd_hda_io_throughput_total"),
            (
                "xen_vm_vbd_io_throughput_total".into(),
                Some(("vbd", "hda")),
                None
            )
        );
        assert_eq!(
            mapped(Owner::Host, "cpu12"),
            ("xen_host_cpu".into(), Some(("cpu", "12")), None)
        );
        assert_eq!(
            mapped(Owner::Vm, "cpu3"),
            ("xen_vm_cpu".into(), Some(("cpu", "3")), None)
        );
        assert_eq!(
            mapped(Owner::Host, "cpu0-C3"),
            ("xen_host_cpu_c3".into(), Some(("cpu", "0")), None)
        );
        assert_eq!(
            mapped(Owner::Host, "CPU7-avg-freq"),
            ("xen_host_cpu_avg_freq".into(), Some(("cpu", "7")), None)
        );
        // Beyond the static table the name still comes out right, it just allocates.
        assert_eq!(
            mapped(Owner::Host, "cpu1-P20"),
            ("xen_host_cpu_p20".into(), Some(("cpu", "1")), None)
        );
        assert!(is_borrowed(Owner::Host, "cpu15-P15"));
        assert!(!is_borrowed(Owner::Host, "cpu1-P16"));
        assert_eq!(mapped(Owner::Host, "cpu1-P01").0, "xen_host_cpu_p01");
        for (owner, ds) in [
            (Owner::Host, "cpu_avg"),
            (Owner::Vm, "cpu_usage"),
            (Owner::Host, "running_vcpus"),
            (Owner::Vm, "runnable_vcpus"),
        ] {
            let m = map_data_source(owner, ds);
            assert_eq!(m.family, format!("{}{ds}", owner.prefix()));
            assert_eq!(m.label, None);
            assert!(matches!(m.family, Cow::Borrowed(_)), "{ds}");
        }
        // Devices are only carved from the owner that has them.
        assert_eq!(mapped(Owner::Vm, "pif_eth0_rx").1, None);
        assert_eq!(mapped(Owner::Host, "vbd_xvda_read").1, None);
    }

    #[test]
    fn catalog_is_sorted_and_unique_so_lookups_can_bisect() {
        for pair in SPECS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} !< {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn every_known_family_is_found_by_describe_and_borrowed() {
        for spec in SPECS.iter().filter(|s| !s.name.contains('<')) {
            let (help, kind) = describe(spec.name);
            assert!(
                matches!(help, Cow::Borrowed(h) if h == spec.help),
                "{}",
                spec.name
            );
            assert_eq!(kind, spec.kind);
        }
        for (name, pattern) in [
            ("xen_host_cpu_c3", "xen_host_cpu_c<k>"),
            ("xen_host_cpu_p17", "xen_host_cpu_p<k>"),
            ("xen_vm_memory_numa_node_1", "xen_vm_memory_numa_node_<N>"),
            ("xen_host_group_api_ro_calls", "xen_host_group_<g>_calls"),
            ("xen_host_group_x_tokens", "xen_host_group_<g>_tokens"),
        ] {
            let expected = find(pattern).expect("pattern row exists");
            assert_eq!(describe(name), (Cow::Borrowed(expected.help), Kind::Gauge));
        }
    }

    #[test]
    fn help_states_the_source_unit_when_describing_rrd_families() {
        let (help, kind) = describe("xen_host_memory_free_kib");
        assert_eq!(
            help,
            "Free host memory as seen by Xen, in KiB (RRD memory_free_kib, average over the step)."
        );
        assert_eq!(kind, Kind::Gauge);
        assert!(describe("xen_vm_vbd_read_latency").0.contains("μs"));
        assert!(
            describe("xen_vm_vbd_io_throughput_read")
                .0
                .contains("MiB/s")
        );
        assert!(describe("xen_vm_memory").0.contains("bytes"));
        assert!(describe("xen_vm_memory_internal_free").0.contains("KiB"));
        for spec in SPECS {
            assert!(spec.help.ends_with('.'), "{}", spec.name);
            assert!(!spec.help.contains('\n'), "{}", spec.name);
            if spec.help.contains("(RRD ") {
                assert!(spec.help.contains("average over the step"), "{}", spec.name);
            }
        }
    }

    #[test]
    fn reserved_suffixes_make_rrd_families_untyped_and_say_why() {
        for name in [
            "xen_host_iops_total",
            "xen_host_io_throughput_total",
            "xen_vm_vbd_iops_total",
            "xen_vm_vbd_io_throughput_total",
            "xen_host_pool_session_count",
            "xen_host_pool_task_count",
            "xen_host_xenopsd_xc_ocaml_total",
        ] {
            let (help, kind) = describe(name);
            assert_eq!(kind, Kind::Untyped, "{name}");
            assert!(
                help.contains("Untyped: the inherited name ends in _"),
                "{name}"
            );
        }
        for name in [
            "xen_host_new_total",
            "xen_vm_thing_count",
            "xen_sr_x_sum",
            "xen_host_le_bucket",
        ] {
            let (help, kind) = describe(name);
            assert_eq!(kind, Kind::Untyped, "{name}");
            assert!(help.contains("Untyped"), "{name}");
        }
        let (help, kind) = describe("xen_vm_brand_new");
        assert_eq!(kind, Kind::Gauge);
        assert!(help.contains("xen_vm_<data source name>"), "{help}");
        assert_eq!(describe("xen_host_scrape_errors_total").1, Kind::Counter);
        assert_eq!(describe("xen_collector_errors_total").1, Kind::Counter);
    }

    /// The checks of promtool's `check metrics` lint (client_golang promlint) that a name alone
    /// can fail, re-stated here so the test does not need promtool.
    fn promlint(name: &str, kind: Kind) -> Vec<&'static str> {
        const ABBREVIATIONS: [&str; 14] = [
            "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d",
        ];
        const UNITS: [&str; 10] = [
            "amperes", "bytes", "celsius", "grams", "joules", "kelvin", "meters", "metres",
            "seconds", "volts",
        ];
        const PREFIXES: [&str; 18] = [
            "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi",
            "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
        ];
        let mut problems = Vec::new();
        if !is_legal_name(name) || name.contains(':') {
            problems.push("illegal name");
        }
        if name
            .as_bytes()
            .windows(2)
            .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
        {
            problems.push("camelCase");
        }
        for token in name.split('_') {
            if ABBREVIATIONS.contains(&token)
                && (name.ends_with(&format!("_{token}")) || name.contains(&format!("_{token}_")))
            {
                problems.push("abbreviated unit");
            }
            if PREFIXES
                .iter()
                .any(|p| token.strip_prefix(p).is_some_and(|u| UNITS.contains(&u)))
            {
                problems.push("non-base unit");
            }
            if ["counter", "gauge", "untyped", "histogram", "summary"].contains(&token) {
                problems.push("type in name");
            }
        }
        let total = name.ends_with("_total");
        match kind {
            Kind::Counter if !total => problems.push("counter without _total"),
            Kind::Gauge if untyped_suffix(name).is_some() => problems.push("reserved suffix"),
            _ => {}
        }
        problems
    }

    #[test]
    fn every_known_family_passes_promtool_lint() {
        for spec in SPECS {
            let name = concrete(spec.name);
            assert_eq!(promlint(&name, spec.kind), Vec::<&str>::new(), "{name}");
            assert!(!spec.help.is_empty());
            if let Some(name) = spec.prometheus_name() {
                let name = concrete(&name);
                let kind = spec.kind_as(Naming::Prometheus, &name);
                assert_eq!(promlint(&name, kind), Vec::<&str>::new(), "{name}");
            }
        }
        assert!(!promlint("xen_latency_ms", Kind::Gauge).is_empty());
        assert!(!promlint("xen_memory_kilobytes", Kind::Gauge).is_empty());
        assert!(!promlint("xen_iops_total", Kind::Gauge).is_empty());
        assert!(!promlint("xen_errors", Kind::Counter).is_empty());
    }

    #[test]
    fn reference_markdown_has_one_row_per_known_family() {
        let md = reference_markdown();
        assert!(md.starts_with("# Metric reference\n"));
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| `")).collect();
        assert_eq!(rows.len(), SPECS.len());
        assert!(md.contains(
            "| `xen_host_iops_total` | `xen_host_iops` (gauge) | untyped | `host`, `host_uuid`, `sr`, `sr_uuid` | requests/s |"
        ));
        assert!(md.contains(
            "| `xen_host_memory_free_kib` | `xen_host_memory_free_bytes` (× 1024) | gauge |"
        ));
        assert!(md.contains("| `xen_host_memory_total_kib` | left out: the same value as xen_host_memory_total_bytes"));
        assert!(md.contains(
            "| `xen_host_scrape_errors_total` | `xen_host_scrape_errors_total` | counter |"
        ));
        for row in rows {
            assert_eq!(row.matches(" | ").count(), 5, "{row}");
        }
    }

    /// `name` with a number or group in place of each `<…>` of a pattern row.
    fn concrete(name: &str) -> String {
        name.replace("<k>", "3")
            .replace("<N>", "1")
            .replace("<g>", "api")
    }

    /// The base-unit suffix and conversion the Prometheus name must have for a declared unit;
    /// `None` where the unit is a count or another rate whose name says it otherwise.
    fn expected_unit(unit: &str) -> Option<(&'static str, Scale)> {
        Some(match unit {
            "KiB" => ("_bytes", Scale::Kib),
            "KiB/s" => ("_bytes_per_second", Scale::Kib),
            "MiB/s" => ("_bytes_per_second", Scale::MibPerSecond),
            "μs" => ("_seconds", Scale::Microseconds),
            "MHz" => ("_hertz", Scale::Megahertz),
            "B/s" => ("_bytes_per_second", Scale::One),
            "bytes" => ("_bytes", Scale::One),
            "seconds" => ("_seconds", Scale::One),
            "s/s" => ("_seconds_per_second", Scale::One),
            "W" => ("_watts", Scale::One),
            "fraction" | "fraction 0–1" => ("_ratio", Scale::One),
            "errors/s" | "hits/s" | "misses/s" | "calls/s" | "tokens/s" => {
                ("_per_second", Scale::One)
            }
            _ => return None,
        })
    }

    #[test]
    fn every_rrd_family_has_a_prometheus_name_in_base_units() {
        let mut rrd = 0;
        for spec in SPECS.iter().filter(|s| s.is_rrd()) {
            rrd += 1;
            let Some(name) = spec.prometheus_name() else {
                assert_eq!(
                    spec.name, "xen_host_memory_total_kib",
                    "only one is left out"
                );
                continue;
            };
            let name = concrete(&name);
            let kind = spec.kind_as(Naming::Prometheus, &name);
            assert_eq!(kind, Kind::Gauge, "{name}: every RRD value is a gauge");
            assert_eq!(promlint(&name, kind), Vec::<&str>::new(), "{name}");
            // Only counters end in _total; not even a part of an RRD family's name says it.
            assert!(
                !name.contains("_total") && !name.ends_with("_count"),
                "{name}"
            );
            for unit in ["kib", "mib", "ms", "us", "percent", "mhz", "kb", "mb"] {
                assert!(!name.split('_').any(|t| t == unit), "{name} has {unit}");
            }
            match expected_unit(spec.unit) {
                Some((suffix, scale)) => {
                    assert!(
                        name.ends_with(suffix),
                        "{name}: {} wants {suffix}",
                        spec.unit
                    );
                    assert_eq!(spec.scale(), scale, "{name}");
                }
                None => {
                    assert_eq!(spec.scale(), Scale::One, "{name}");
                    for suffix in ["_bytes", "_seconds", "_ratio", "_hertz"] {
                        assert!(!name.ends_with(suffix), "{name} ({})", spec.unit);
                    }
                }
            }
        }
        assert!(rrd > 90, "{rrd} RRD rows");
    }

    #[test]
    fn prometheus_names_are_unique_and_take_no_record_family_name() {
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for spec in SPECS {
            let Some(name) = spec.prometheus_name() else {
                continue;
            };
            if let Some(other) = seen.insert(name.to_string(), spec.name) {
                // XAPI renamed the data source in 23.9: both names are one family.
                assert_eq!(
                    (other, spec.name),
                    (
                        "xen_host_pool_session_creation_rate",
                        "xen_host_pool_total_session_count"
                    ),
                    "{name} twice"
                );
            }
        }
        // A compatible RRD name that is a record family's Prometheus name would not collide
        // (the namings never mix), but a Prometheus RRD name must not be a record family's.
        let records: BTreeSet<String> = SPECS
            .iter()
            .filter(|s| !s.is_rrd())
            .filter_map(|s| s.prometheus_name().map(|n| n.into_owned()))
            .collect();
        for spec in SPECS.iter().filter(|s| s.is_rrd()) {
            if let Some(name) = spec.prometheus_name() {
                assert!(!records.contains(name.as_ref()), "{name}");
            }
        }
        // The one that would have: memory_total_kib in bytes is the record's memory_total.
        let total = find("xen_host_memory_total_kib").unwrap();
        assert!(records.contains("xen_host_memory_total_bytes"));
        assert!(
            matches!(total.prometheus, Prometheus::Omitted(why) if why.contains("xen_host_memory_total_bytes"))
        );
    }

    #[test]
    fn converted_help_names_the_base_unit_and_the_conversion() {
        for spec in SPECS {
            let help = spec.help_as(Naming::Prometheus);
            let scale = spec.scale();
            if let Some((from, to)) = scale.phrases() {
                assert_eq!(spec.help.matches(from).count(), 1, "{}: {from}", spec.name);
                assert!(help.contains(to), "{help}");
                assert!(help.ends_with(scale.note()), "{help}");
                for unit in ["KiB", "MiB", "μs", "MHz"] {
                    assert_eq!(
                        help.matches(unit).count(),
                        usize::from(scale.note().contains(unit)),
                        "{help}"
                    );
                }
            }
            if spec.is_rrd() {
                assert!(help.contains("(RRD "), "{help}");
            }
            if let Some(name) = spec.prometheus_name() {
                let untyped = spec.kind_as(Naming::Prometheus, &name) == Kind::Untyped;
                assert_eq!(help.contains("Untyped"), untyped, "{help}");
                assert!(help.ends_with('.'), "{help}");
            }
            assert_eq!(spec.help_as(Naming::Compatible), spec.help);
        }
        let (help, kind) = describe_as(Naming::Prometheus, "xen_host_memory_free_bytes", None);
        assert_eq!(
            help,
            "Free host memory as seen by Xen, in bytes (RRD memory_free_kib, average over the step). Converted from the KiB XAPI reports (× 1024)."
        );
        assert_eq!(kind, Kind::Gauge);
        let (help, kind) = describe_as(Naming::Prometheus, "xen_vm_vbd_iops", None);
        assert!(!help.contains("Untyped"), "{help}");
        assert_eq!(kind, Kind::Gauge);
    }

    #[test]
    fn describe_as_finds_every_family_by_either_name() {
        for spec in SPECS {
            for naming in [Naming::Compatible, Naming::Prometheus] {
                let name = match naming {
                    Naming::Compatible => Cow::Borrowed(spec.name),
                    Naming::Prometheus => match spec.prometheus_name() {
                        Some(name) => name,
                        None => continue,
                    },
                };
                let name = concrete(&name);
                let (help, kind) = describe_as(naming, &name, None);
                if spec.name == "xen_host_pool_total_session_count" && naming == Naming::Prometheus
                {
                    // One family with the current data source's row.
                    assert!(help.contains("RRD pool_session_creation_rate"), "{help}");
                    continue;
                }
                assert_eq!(help, spec.help_as(naming), "{name}");
                assert_eq!(kind, spec.kind_as(naming, &name), "{name}");
            }
        }
        assert!(
            describe_as(Naming::Prometheus, "xen_host_memory_free_kib", None)
                .0
                .starts_with("Not in the catalog"),
            "compatible names are not Prometheus names"
        );
    }

    #[test]
    fn rename_maps_data_sources_under_each_naming() {
        let renamed = |naming, owner, ds| {
            rename(naming, map_data_source(owner, ds).family).map(|r| (r.family, r.scale))
        };
        for (owner, ds, family, scale) in [
            (
                Owner::Host,
                "memory_free_kib",
                "xen_host_memory_free_bytes",
                Scale::Kib,
            ),
            (
                Owner::Host,
                "read_latency_6e6d703c",
                "xen_host_read_latency_seconds",
                Scale::Microseconds,
            ),
            (
                Owner::Host,
                "io_throughput_total_6e6d703c",
                "xen_host_io_throughput_bytes_per_second",
                Scale::MibPerSecond,
            ),
            (
                Owner::Host,
                "iops_total_6e6d703c",
                "xen_host_iops",
                Scale::One,
            ),
            (
                Owner::Host,
                "CPU7-avg-freq",
                "xen_host_cpu_avg_freq_hertz",
                Scale::Megahertz,
            ),
            (Owner::Host, "cpu12", "xen_host_cpu_busy_ratio", Scale::One),
            (
                Owner::Host,
                "pool_session_count",
                "xen_host_pool_sessions",
                Scale::One,
            ),
            (
                Owner::Host,
                "pif_eth0_rx",
                "xen_host_pif_rx_bytes_per_second",
                Scale::One,
            ),
            (Owner::Host, "loadavg", "xen_host_loadavg", Scale::One),
            (
                Owner::Host,
                "memory_reclaimed",
                "xen_host_memory_reclaimed_bytes",
                Scale::One,
            ),
            (
                Owner::Vm,
                "vbd_xvda_io_throughput_read",
                "xen_vm_vbd_io_throughput_read_bytes_per_second",
                Scale::MibPerSecond,
            ),
            (Owner::Vm, "cpu_usage", "xen_vm_cpu_usage_ratio", Scale::One),
            (Owner::Vm, "memory", "xen_vm_memory_bytes", Scale::One),
            (
                Owner::Vm,
                "memory_internal_free",
                "xen_vm_memory_internal_free_bytes",
                Scale::Kib,
            ),
        ] {
            let (name, got) = renamed(Naming::Prometheus, owner, ds).unwrap();
            assert_eq!((name.as_ref(), got), (family, scale), "{ds}");
            assert!(matches!(name, Cow::Borrowed(_)), "{ds}: known names borrow");
            let compatible = renamed(Naming::Compatible, owner, ds).unwrap();
            assert_eq!(compatible.0, map_data_source(owner, ds).family);
            assert_eq!(compatible.1, Scale::One);
        }
        for (owner, ds, family, scale) in [
            (
                Owner::Host,
                "cpu3-C2",
                "xen_host_cpu_c2_residency_ratio",
                Scale::One,
            ),
            (
                Owner::Host,
                "cpu0-P20",
                "xen_host_cpu_p20_residency_ratio",
                Scale::One,
            ),
            (
                Owner::Vm,
                "memory_numa_node_2",
                "xen_vm_memory_numa_node_2_bytes",
                Scale::One,
            ),
            (
                Owner::Host,
                "group_api:ro_calls",
                "xen_host_group_api_ro_calls_per_second",
                Scale::One,
            ),
        ] {
            let (name, got) = renamed(Naming::Prometheus, owner, ds).unwrap();
            assert_eq!((name.as_ref(), got), (family, scale), "{ds}");
            let (help, _) = describe_as(Naming::Prometheus, &name, None);
            assert!(!help.starts_with("Not in the catalog"), "{name}: {help}");
        }
        assert_eq!(
            renamed(Naming::Prometheus, Owner::Host, "memory_total_kib"),
            None
        );
        assert!(renamed(Naming::Compatible, Owner::Host, "memory_total_kib").is_some());
        // Unknown sources keep their sanitised name and value under either naming.
        for ds in ["Brand-New_gauge", "new_plugin_total", "weird/µ"] {
            assert_eq!(
                renamed(Naming::Prometheus, Owner::Host, ds),
                renamed(Naming::Compatible, Owner::Host, ds)
            );
        }
        assert_eq!(
            rename(Naming::Prometheus, Cow::Borrowed("xen_sr_physical_size"))
                .unwrap()
                .family,
            "xen_sr_physical_size_bytes"
        );
        assert_eq!(
            rename(Naming::Prometheus, Cow::Borrowed("xen_host_up"))
                .unwrap()
                .family,
            "xen_host_up"
        );
    }

    #[test]
    fn every_fixture_data_source_is_known_under_prometheus_naming() {
        let pool: Vec<String> = legend(HOST1).into_iter().chain(legend(HOST2)).collect();
        let mut left_out = 0;
        for entry in &pool {
            let mut fields = entry.splitn(4, ':');
            let (owner, ds) = (fields.nth(1).unwrap(), fields.nth(1).unwrap());
            let owner = if owner == "host" {
                Owner::Host
            } else {
                Owner::Vm
            };
            let Some(renamed) = rename(Naming::Prometheus, map_data_source(owner, ds).family)
            else {
                left_out += 1;
                continue;
            };
            let (help, kind) = describe_as(Naming::Prometheus, &renamed.family, None);
            assert!(!help.starts_with("Not in the catalog"), "{entry}");
            assert_eq!(
                promlint(&renamed.family, kind),
                Vec::<&str>::new(),
                "{entry}"
            );
        }
        assert_eq!(left_out, 2, "memory_total_kib of each host");
    }

    #[test]
    fn unknown_sources_say_the_unit_xapi_declares_under_prometheus_naming() {
        let (help, kind) = describe_as(Naming::Prometheus, "xen_host_new_thing", Some("KiB/s"));
        assert!(
            help.contains("unconverted, in \"KiB/s\", the unit XAPI declares"),
            "{help}"
        );
        assert_eq!(kind, Kind::Gauge);
        let (help, _) = describe_as(Naming::Prometheus, "xen_vm_new_thing", None);
        assert!(
            help.contains("VM.get_data_sources") && help.contains("unconverted"),
            "{help}"
        );
        let (help, kind) = describe_as(Naming::Prometheus, "xen_host_new_total", Some("count"));
        assert_eq!(kind, Kind::Untyped, "{help}");
        // The compatible text is what it always was, declared unit or not.
        assert_eq!(
            describe_as(Naming::Compatible, "xen_host_new_thing", Some("KiB")),
            describe("xen_host_new_thing")
        );
        assert!(
            describe("xen_host_new_thing")
                .0
                .contains("(see host.get_data_sources)")
        );
    }

    #[test]
    fn scales_convert_to_base_units() {
        assert_eq!(Scale::One.apply(0.25), 0.25);
        assert_eq!(Scale::Kib.apply(1.5), 1536.0);
        assert_eq!(Scale::MibPerSecond.apply(2.0), 2_097_152.0);
        assert_eq!(Scale::Microseconds.apply(250.0), 250.0 / 1e6);
        assert_eq!(Scale::Megahertz.apply(2400.0), 2.4e9);
        assert!(Scale::Kib.apply(f64::NAN).is_nan());
    }
}
