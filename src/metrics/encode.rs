//! Encodes families in the Prometheus text format 0.0.4 or OpenMetrics 1.0.0 and picks the
//! format from an `Accept` header. Infallible: it writes into a `Vec<u8>`, never sorts and
//! never allocates per sample, so output order is the order the families arrive in.

use std::ops::Range;
use std::sync::Arc;

use memchr::{memchr2_iter, memchr3_iter};

use super::{Family, Kind, Label, Labels};

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` header value for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Picks the format for an `Accept` header: OpenMetrics when the client rates it above zero and
/// at least as high as plain text, text otherwise (also for a missing or unreadable header).
///
/// OpenMetrics 0.0.1 and 1.0.0 differ only in details this exporter never emits, so a client
/// asking for either gets 1.0.0.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut best_openmetrics = 0.0_f32;
    let mut best_text = 0.0_f32;
    for range in accept.split(',') {
        let mut params = range.split(';');
        let media = params.next().unwrap_or_default().trim();
        let mut q = 1.0_f32;
        let mut version = None;
        let mut readable = true;
        for param in params {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim().trim_matches('"'));
            if key.eq_ignore_ascii_case("q") {
                match value.parse::<f32>() {
                    Ok(v) if (0.0..=1.0).contains(&v) => q = v,
                    _ => readable = false,
                }
            } else if key.eq_ignore_ascii_case("version") {
                version = Some(value);
            }
        }
        if !readable {
            continue;
        }
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            if version.is_none_or(|v| v == "1.0.0" || v == "0.0.1") {
                best_openmetrics = best_openmetrics.max(q);
            }
        } else if media.eq_ignore_ascii_case("text/plain")
            || media.eq_ignore_ascii_case("text/*")
            || media == "*/*"
        {
            best_text = best_text.max(q);
        }
    }
    if best_openmetrics > 0.0 && best_openmetrics >= best_text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Appends one family: its metadata lines, then one line per sample in the given order.
pub fn encode_family(family: &Family, format: Format, out: &mut Vec<u8>) {
    let name = family.name.as_ref();
    debug_assert!(
        family
            .samples
            .windows(2)
            .all(|w| w[0].labels != w[1].labels),
        "duplicate series in {name}"
    );
    let suffix = write_header(name, &family.help, family.kind, format, out);
    // Samples of one object are adjacent and share their head, so its encoding is copied from
    // the previous line instead of being escaped again.
    let mut previous_head: Option<(&Arc<[Label]>, Range<usize>)> = None;
    for sample in &family.samples {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(suffix);
        let Labels { head, tail } = &sample.labels;
        let mut open = !head.is_empty();
        match &previous_head {
            Some((previous, range)) if open && Arc::ptr_eq(previous, head) => {
                out.extend_from_within(range.clone());
            }
            _ if open => {
                let start = out.len();
                out.push(b'{');
                for (i, label) in head.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_label(out, label);
                }
                previous_head = Some((head, start..out.len()));
            }
            _ => {}
        }
        for label in tail {
            out.push(if open { b',' } else { b'{' });
            open = true;
            write_label(out, label);
        }
        if open {
            out.push(b'}');
        }
        out.push(b' ');
        write_value(out, sample.value);
        out.push(b'\n');
    }
}

/// Appends the metadata lines of a family and returns what its sample names need after the
/// family name.
pub(super) fn write_header(
    name: &str,
    help: &str,
    kind: Kind,
    format: Format,
    out: &mut Vec<u8>,
) -> &'static [u8] {
    debug_assert!(is_metric_name(name), "illegal metric name {name:?}");
    let suffix = sample_suffix(name, kind, format);
    let meta_name = match (format, kind) {
        (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    match format {
        Format::Text => {
            write_meta(out, b"# HELP ", meta_name);
            write_help_text(out, help);
            out.push(b'\n');
            write_meta(out, b"# TYPE ", meta_name);
            out.extend_from_slice(match kind {
                Kind::Gauge => b"gauge\n",
                Kind::Counter => b"counter\n",
                Kind::Untyped => b"untyped\n",
            });
        }
        Format::OpenMetrics => {
            write_meta(out, b"# TYPE ", meta_name);
            out.extend_from_slice(match kind {
                Kind::Gauge => b"gauge\n",
                Kind::Counter => b"counter\n",
                Kind::Untyped => b"unknown\n",
            });
            write_meta(out, b"# HELP ", meta_name);
            write_escaped_quoted(out, help);
            out.push(b'\n');
        }
    }
    suffix
}

/// What sample names need after the family name: OpenMetrics names a counter family without
/// `_total` and requires it on the samples, so a counter that lacks it gets it there rather
/// than producing an invalid exposition.
pub(super) fn sample_suffix(name: &str, kind: Kind, format: Format) -> &'static [u8] {
    match (format, kind) {
        (Format::OpenMetrics, Kind::Counter) if !name.ends_with("_total") => b"_total",
        _ => b"",
    }
}

/// Appends what ends an exposition (`# EOF` in OpenMetrics, nothing in text).
pub fn encode_end(format: Format, out: &mut Vec<u8>) {
    if format == Format::OpenMetrics {
        out.extend_from_slice(b"# EOF\n");
    }
}

/// Encodes a whole exposition.
pub fn encode(families: &[Family], format: Format, out: &mut Vec<u8>) {
    for family in families {
        encode_family(family, format, out);
    }
    encode_end(format, out);
}

fn write_meta(out: &mut Vec<u8>, keyword: &[u8], name: &str) {
    out.extend_from_slice(keyword);
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
}

pub(super) fn write_label(out: &mut Vec<u8>, label: &Label) {
    out.extend_from_slice(label.name.as_bytes());
    out.extend_from_slice(b"=\"");
    write_escaped_quoted(out, &label.value);
    out.push(b'"');
}

/// Escapes `\`, `"` and newline (label values in both formats, HELP in OpenMetrics). The
/// common case, nothing to escape, is one memchr scan and one copy.
fn write_escaped_quoted(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for i in memchr3_iter(b'\\', b'"', b'\n', bytes) {
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape(bytes[i]));
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Escapes `\` and newline: HELP in the text format, where `"` stays as it is.
fn write_help_text(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for i in memchr2_iter(b'\\', b'\n', bytes) {
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape(bytes[i]));
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn escape(byte: u8) -> &'static [u8] {
    match byte {
        b'\\' => b"\\\\",
        b'"' => b"\\\"",
        _ => b"\\n",
    }
}

/// Writes `v` so that parsing it gives `v` back: integers without a fraction (as XAPI prints
/// them, and cheaper to read), everything else as the shortest round-trip decimal.
pub(super) fn write_value(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Exact: every integer below 2^53 is representable, and 1e15 < 2^53.
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::metrics::Sample;

    fn family(name: &'static str, help: &'static str, kind: Kind, samples: Vec<Sample>) -> Family {
        Family {
            name: Cow::Borrowed(name),
            help: Cow::Borrowed(help),
            kind,
            samples,
        }
    }

    fn sample(head: &[(&'static str, &str)], tail: &[(&'static str, &str)], value: f64) -> Sample {
        let head: Arc<[Label]> = head.iter().map(|(k, v)| Label::new(k, *v)).collect();
        Sample {
            labels: Labels {
                head,
                tail: tail.iter().map(|(k, v)| Label::new(k, *v)).collect(),
            },
            value,
        }
    }

    fn encoded(families: &[Family], format: Format) -> String {
        let mut out = Vec::new();
        encode(families, format, &mut out);
        String::from_utf8(out).expect("the encoder writes UTF-8")
    }

    fn example() -> Vec<Family> {
        let host = [("host", "xcp-ng-01"), ("host_uuid", "4826")];
        vec![
            family(
                "xen_host_cpu",
                "Busy fraction of the physical CPU, 0–1.",
                Kind::Gauge,
                vec![
                    sample(&host, &[("cpu", "2")], 0.0116978868614843),
                    sample(&host, &[("cpu", "10")], 1.0),
                ],
            ),
            family(
                "xen_host_iops_total",
                "Requests per second. Untyped.",
                Kind::Untyped,
                vec![sample(
                    &host,
                    &[("sr", "NFS"), ("sr_uuid", "a80d")],
                    16777216.0,
                )],
            ),
            family(
                "xen_host_scrape_errors_total",
                "Failed fetches.",
                Kind::Counter,
                vec![sample(&host, &[("reason", "timeout")], 3.0)],
            ),
            family(
                "xen_collector_duration_seconds",
                "Wall time.",
                Kind::Gauge,
                vec![sample(&[], &[], 0.25)],
            ),
        ]
    }

    #[test]
    fn text_format_matches_golden_output() {
        assert_eq!(
            encoded(&example(), Format::Text),
            "# HELP xen_host_cpu Busy fraction of the physical CPU, 0–1.\n\
             # TYPE xen_host_cpu gauge\n\
             xen_host_cpu{host=\"xcp-ng-01\",host_uuid=\"4826\",cpu=\"2\"} 0.0116978868614843\n\
             xen_host_cpu{host=\"xcp-ng-01\",host_uuid=\"4826\",cpu=\"10\"} 1\n\
             # HELP xen_host_iops_total Requests per second. Untyped.\n\
             # TYPE xen_host_iops_total untyped\n\
             xen_host_iops_total{host=\"xcp-ng-01\",host_uuid=\"4826\",sr=\"NFS\",sr_uuid=\"a80d\"} 16777216\n\
             # HELP xen_host_scrape_errors_total Failed fetches.\n\
             # TYPE xen_host_scrape_errors_total counter\n\
             xen_host_scrape_errors_total{host=\"xcp-ng-01\",host_uuid=\"4826\",reason=\"timeout\"} 3\n\
             # HELP xen_collector_duration_seconds Wall time.\n\
             # TYPE xen_collector_duration_seconds gauge\n\
             xen_collector_duration_seconds 0.25\n"
        );
    }

    #[test]
    fn openmetrics_format_matches_golden_output() {
        assert_eq!(
            encoded(&example(), Format::OpenMetrics),
            "# TYPE xen_host_cpu gauge\n\
             # HELP xen_host_cpu Busy fraction of the physical CPU, 0–1.\n\
             xen_host_cpu{host=\"xcp-ng-01\",host_uuid=\"4826\",cpu=\"2\"} 0.0116978868614843\n\
             xen_host_cpu{host=\"xcp-ng-01\",host_uuid=\"4826\",cpu=\"10\"} 1\n\
             # TYPE xen_host_iops_total unknown\n\
             # HELP xen_host_iops_total Requests per second. Untyped.\n\
             xen_host_iops_total{host=\"xcp-ng-01\",host_uuid=\"4826\",sr=\"NFS\",sr_uuid=\"a80d\"} 16777216\n\
             # TYPE xen_host_scrape_errors counter\n\
             # HELP xen_host_scrape_errors Failed fetches.\n\
             xen_host_scrape_errors_total{host=\"xcp-ng-01\",host_uuid=\"4826\",reason=\"timeout\"} 3\n\
             # TYPE xen_collector_duration_seconds gauge\n\
             # HELP xen_collector_duration_seconds Wall time.\n\
             xen_collector_duration_seconds 0.25\n\
             # EOF\n"
        );
    }

    #[test]
    fn openmetrics_adds_total_when_a_counter_lacks_it() {
        let f = family("xen_odd", "h", Kind::Counter, vec![sample(&[], &[], 1.0)]);
        assert_eq!(
            encoded(&[f], Format::OpenMetrics),
            "# TYPE xen_odd counter\n# HELP xen_odd h\nxen_odd_total 1\n# EOF\n"
        );
    }

    #[test]
    fn escaping_covers_quotes_backslashes_newlines_and_keeps_non_ascii() {
        let f = family(
            "xen_vm_memory",
            "Back\\slash, \"quoted\",\nnew line, μs.",
            Kind::Gauge,
            vec![sample(
                &[("vm", "a \"b\" \\c\nd ü€😀"), ("vm_uuid", "")],
                &[],
                1.5,
            )],
        );
        let series = "xen_vm_memory{vm=\"a \\\"b\\\" \\\\c\\nd ü€😀\",vm_uuid=\"\"} 1.5\n";
        assert_eq!(
            encoded(std::slice::from_ref(&f), Format::Text),
            format!(
                "# HELP xen_vm_memory Back\\\\slash, \"quoted\",\\nnew line, μs.\n\
                 # TYPE xen_vm_memory gauge\n{series}"
            )
        );
        assert_eq!(
            encoded(&[f], Format::OpenMetrics),
            format!(
                "# TYPE xen_vm_memory gauge\n\
                 # HELP xen_vm_memory Back\\\\slash, \\\"quoted\\\",\\nnew line, μs.\n\
                 {series}# EOF\n"
            )
        );
    }

    fn value_text(v: f64) -> String {
        let mut out = Vec::new();
        write_value(&mut out, v);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn values_are_exact_and_integral_ones_have_no_fraction() {
        for (v, text) in [
            (16777216.0, "16777216"),
            (0.0, "0"),
            (-0.0, "0"),
            (-3.0, "-3"),
            (999_999_999_999_999.0, "999999999999999"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e16"),
            (-2.5e20, "-2.5e20"),
            (0.1, "0.1"),
            (1.5e-5, "0.000015"),
            (1.5e-9, "1.5e-9"),
            (0.0116978868614843, "0.0116978868614843"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(value_text(v), text, "{v:?}");
        }
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                assert_eq!(parse_value(&value_text(v)), Some(v), "{v:?}");
            }
        }
        for v in [
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            1e15 - 1.0,
            2f64.powi(53),
        ] {
            assert_eq!(parse_value(&value_text(v)), Some(v), "{v:?}");
        }
    }

    #[test]
    fn negotiation_follows_q_values() {
        const PROMETHEUS_2: &str = "application/openmetrics-text;version=1.0.0,\
            application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        const PROMETHEUS_2_55: &str = "application/openmetrics-text;version=1.0.0;q=0.5,\
            application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
            application/openmetrics-text;version=0.0.1;q=0.5,\
            text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        const PROMETHEUS_3_PROTOBUF: &str = "application/vnd.google.protobuf;\
            proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,\
            application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.5,\
            application/openmetrics-text;version=0.0.1;q=0.4,\
            text/plain;version=1.0.0;escaping=underscores;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        let table: &[(Option<&str>, Format)] = &[
            (None, Format::Text),
            (Some(""), Format::Text),
            (Some("garbage"), Format::Text),
            (Some(";;;,,,=;q"), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain;version=0.0.4"), Format::Text),
            (Some("text/plain"), Format::Text),
            (
                Some("text/html,application/xhtml+xml,*/*;q=0.8"),
                Format::Text,
            ),
            (Some(PROMETHEUS_2), Format::OpenMetrics),
            (Some(PROMETHEUS_2_55), Format::OpenMetrics),
            (Some(PROMETHEUS_3), Format::OpenMetrics),
            (Some(PROMETHEUS_3_PROTOBUF), Format::OpenMetrics),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("Application/OpenMetrics-Text; Version=\"1.0.0\""),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;version=0.0.1"),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;version=2.0.0"),
                Format::Text,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Text),
            (
                Some("application/openmetrics-text;q=0.5,*/*;q=0.5"),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0.4,text/plain;q=0.5"),
                Format::Text,
            ),
            (
                Some("application/openmetrics-text;q=0.4,text/*;q=0.5"),
                Format::Text,
            ),
            (
                Some("application/openmetrics-text;q=abc,text/plain;q=0.1"),
                Format::Text,
            ),
            (Some("application/openmetrics-text;q=2"), Format::Text),
            (
                Some("text/plain;q=0, application/openmetrics-text ; q=0.1"),
                Format::OpenMetrics,
            ),
        ];
        for &(accept, format) in table {
            assert_eq!(negotiate(accept), format, "{accept:?}");
        }
    }

    #[test]
    fn content_types_name_the_versions() {
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }

    /// A family as read back by [`parse_exposition`].
    #[derive(Debug, PartialEq)]
    struct Parsed {
        name: String,
        kind: String,
        help: String,
        samples: Vec<ParsedSample>,
    }

    /// Sample name, labels in order, value.
    type ParsedSample = (String, Vec<(String, String)>, f64);

    fn parse_value(s: &str) -> Option<f64> {
        match s {
            "NaN" => Some(f64::NAN),
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            _ => s.parse().ok(),
        }
    }

    /// Undoes the escapes (`\"` only when `quotes`); `None` for an escape not defined or a
    /// lone backslash. Stops at an unescaped `"` when `quoted`, returning the rest.
    fn unescape(s: &str, quotes: bool, quoted: bool) -> Option<(String, &str)> {
        let mut out = String::new();
        let mut chars = s.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    '\\' => out.push('\\'),
                    'n' => out.push('\n'),
                    '"' if quotes => out.push('"'),
                    _ => return None,
                },
                '"' if quoted => return Some((out, &s[i + 1..])),
                '\n' => return None,
                c => out.push(c),
            }
        }
        (!quoted).then_some((out, ""))
    }

    /// An independent reader for what this encoder writes: metadata first, then samples whose
    /// name is the family name (plus `_total` for OpenMetrics counters), labels in quotes.
    fn parse_exposition(text: &str, format: Format) -> Option<Vec<Parsed>> {
        let mut families: Vec<Parsed> = Vec::new();
        let mut lines = text.split_terminator('\n');
        let mut ended = false;
        for line in lines.by_ref() {
            if ended {
                return None;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                if rest == "EOF" && format == Format::OpenMetrics {
                    ended = true;
                    continue;
                }
                let (keyword, rest) = rest.split_once(' ')?;
                let (name, value) = rest.split_once(' ')?;
                let starts_family = match format {
                    Format::Text => keyword == "HELP",
                    Format::OpenMetrics => keyword == "TYPE",
                };
                if starts_family {
                    families.push(Parsed {
                        name: name.to_owned(),
                        kind: String::new(),
                        help: String::new(),
                        samples: Vec::new(),
                    });
                }
                let family = families.last_mut().filter(|f| f.name == name)?;
                match keyword {
                    "TYPE" => family.kind = value.to_owned(),
                    "HELP" => {
                        family.help = unescape(value, format == Format::OpenMetrics, false)?.0
                    }
                    _ => return None,
                }
                continue;
            }
            let family = families.last_mut()?;
            let end = line.find(['{', ' '])?;
            let (name, mut rest) = line.split_at(end);
            let mut labels = Vec::new();
            if let Some(inner) = rest.strip_prefix('{') {
                rest = inner;
                loop {
                    let (label, after) = rest.split_once("=\"")?;
                    let (value, after) = unescape(after, true, true)?;
                    labels.push((label.to_owned(), value));
                    match after.as_bytes().first()? {
                        b',' => rest = &after[1..],
                        b'}' => {
                            rest = &after[1..];
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            let value = parse_value(rest.strip_prefix(' ')?)?;
            family.samples.push((name.to_owned(), labels, value));
        }
        (ended == (format == Format::OpenMetrics)).then_some(families)
    }

    fn same_value(a: f64, b: f64) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }

    /// Checks that `families` read back exactly, whichever the format.
    fn assert_round_trip(families: &[Family]) {
        for format in [Format::Text, Format::OpenMetrics] {
            let text = encoded(families, format);
            let parsed = parse_exposition(&text, format)
                .unwrap_or_else(|| panic!("unreadable {format:?} output:\n{text}"));
            assert_eq!(parsed.len(), families.len());
            for (f, p) in families.iter().zip(&parsed) {
                let counter_om = format == Format::OpenMetrics && f.kind == Kind::Counter;
                let meta = if counter_om {
                    f.name.strip_suffix("_total").unwrap_or(&f.name)
                } else {
                    &f.name
                };
                assert_eq!(p.name, meta);
                assert_eq!(p.help, f.help);
                assert_eq!(p.samples.len(), f.samples.len());
                for (s, (name, labels, value)) in f.samples.iter().zip(&p.samples) {
                    assert_eq!(
                        name,
                        &format!("{meta}{}", if counter_om { "_total" } else { "" })
                    );
                    let expected: Vec<(String, String)> = s
                        .labels
                        .iter()
                        .map(|l| (l.name.to_owned(), l.value.to_string()))
                        .collect();
                    assert_eq!(labels, &expected);
                    assert!(same_value(*value, s.value), "{value} != {}", s.value);
                }
            }
        }
    }

    #[test]
    fn output_reads_back_exactly_when_parsed_independently() {
        assert_round_trip(&example());
        let f = family(
            "xen_vm_memory",
            "",
            Kind::Untyped,
            vec![sample(
                &[("vm", "\\\"\n\\n\\\\\"")],
                &[("vbd", "")],
                f64::NAN,
            )],
        );
        assert_round_trip(&[f]);
    }

    #[test]
    fn arbitrary_strings_read_back_exactly() {
        const ALPHABET: [char; 12] = ['a', '\\', '"', '\n', 'n', ' ', '{', '}', ',', '=', 'é', '#'];
        let mut x = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2_000 {
            let mut text = |len: u64| -> String {
                (0..len)
                    .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                    .collect()
            };
            let help = text(8);
            let (a, b) = (text(6), text(3));
            let f = Family {
                name: Cow::Borrowed("xen_fuzz_total"),
                help: Cow::Owned(help),
                kind: [Kind::Gauge, Kind::Counter, Kind::Untyped][(next() % 3) as usize],
                samples: vec![
                    sample(&[("a", &a)], &[("b", &b)], f64::from_bits(next())),
                    sample(&[("a", &a)], &[("b", &b), ("c", "")], -1.0),
                ],
            };
            assert_round_trip(&[f]);
        }
    }

    #[test]
    fn shared_heads_are_copied_correctly_when_samples_alternate() {
        let vm = |name: &str| -> Arc<[Label]> {
            Arc::from(vec![Label::new("vm", name), Label::new("host", "h\"1\"")])
        };
        let (a, b) = (vm("a\\"), vm("b"));
        let with = |head: &Arc<[Label]>, tail: &[(&'static str, &str)], value| Sample {
            labels: Labels {
                head: head.clone(),
                tail: tail.iter().map(|(k, v)| Label::new(k, *v)).collect(),
            },
            value,
        };
        let empty: Arc<[Label]> = Arc::from(Vec::new());
        let f = family(
            "xen_vm_vbd_read",
            "h",
            Kind::Gauge,
            vec![
                with(&a, &[("vbd", "xvda")], 1.0),
                with(&a, &[("vbd", "xvdb")], 2.0),
                with(&a, &[], 3.0),
                with(&b, &[("vbd", "xvda")], 4.0),
                with(&a, &[("vbd", "xvdc")], 5.0),
                with(&empty, &[("vbd", "xvda")], 6.0),
                with(&empty, &[], 7.0),
            ],
        );
        assert_eq!(
            encoded(std::slice::from_ref(&f), Format::Text),
            "# HELP xen_vm_vbd_read h\n\
             # TYPE xen_vm_vbd_read gauge\n\
             xen_vm_vbd_read{vm=\"a\\\\\",host=\"h\\\"1\\\"\",vbd=\"xvda\"} 1\n\
             xen_vm_vbd_read{vm=\"a\\\\\",host=\"h\\\"1\\\"\",vbd=\"xvdb\"} 2\n\
             xen_vm_vbd_read{vm=\"a\\\\\",host=\"h\\\"1\\\"\"} 3\n\
             xen_vm_vbd_read{vm=\"b\",host=\"h\\\"1\\\"\",vbd=\"xvda\"} 4\n\
             xen_vm_vbd_read{vm=\"a\\\\\",host=\"h\\\"1\\\"\",vbd=\"xvdc\"} 5\n\
             xen_vm_vbd_read{vbd=\"xvda\"} 6\n\
             xen_vm_vbd_read 7\n"
        );
        assert_round_trip(&[f]);
    }

    #[test]
    fn encode_end_is_eof_only_in_openmetrics() {
        let mut out = Vec::new();
        encode_end(Format::Text, &mut out);
        assert!(out.is_empty());
        encode_end(Format::OpenMetrics, &mut out);
        assert_eq!(out, b"# EOF\n");
    }
}
