//! Fuzz target `exposition`: arbitrary bytes become help text and label values, are encoded in
//! both formats, and a small parser of its own (independent of the encoder) must read back
//! exactly what went in. Catches escaping bugs that golden files miss.
//!
//! Input layout: byte 0 picks the kind, bytes 1..9 are the sample value (f64, little endian),
//! the rest splits on 0xFF (never part of UTF-8) into the help text and up to 8 label values.

#![no_main]

use std::borrow::Cow;
use std::sync::Arc;

use xen_exporter::metrics::encode::{Format, encode};
use xen_exporter::metrics::{Family, Kind, Label, Labels, Sample};

const LABEL_NAMES: [&str; 8] = ["vm", "vm_uuid", "host", "host_uuid", "a", "b", "c", "d"];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((value, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let value = f64::from_le_bytes(*value);
    let kind = [Kind::Gauge, Kind::Counter, Kind::Untyped][usize::from(selector % 3)];
    let mut parts = rest.split(|&b| b == 0xFF).map(String::from_utf8_lossy);
    let help = parts.next().unwrap_or_default().into_owned();
    let values: Vec<String> = parts.take(LABEL_NAMES.len()).map(Cow::into_owned).collect();
    let split = values.len().div_ceil(2);
    let labels: Vec<Label> = LABEL_NAMES
        .iter()
        .zip(&values)
        .map(|(name, value)| Label::new(name, value.as_str()))
        .collect();
    let head: Arc<[Label]> = labels[..split].into();
    let tail: xen_exporter::metrics::Tail = labels[split..].iter().cloned().collect();
    // A second series with one more label keeps the two label sets distinct.
    let longer: xen_exporter::metrics::Tail =
        tail.iter().cloned().chain([Label::new("z", "")]).collect();
    let family = Family {
        name: Cow::Borrowed("xen_fuzz_total"),
        help: Cow::Owned(help),
        kind,
        samples: vec![
            Sample {
                labels: Labels {
                    head: head.clone(),
                    tail,
                },
                value,
            },
            Sample {
                labels: Labels { head, tail: longer },
                value: -value,
            },
        ],
    };

    for format in [Format::Text, Format::OpenMetrics] {
        let mut out = Vec::new();
        encode(std::slice::from_ref(&family), format, &mut out);
        let text = std::str::from_utf8(&out).expect("the encoder writes UTF-8");
        let parsed = parse(text, format).expect("the encoder's output parses");
        check(&family, format, &parsed);
    }
});

/// What the parser reads back for one family.
struct Parsed {
    name: String,
    kind: String,
    help: String,
    samples: Vec<(String, Vec<(String, String)>, f64)>,
}

fn check(family: &Family, format: Format, parsed: &[Parsed]) {
    let [p] = parsed else {
        panic!("expected one family, read {}", parsed.len());
    };
    let openmetrics = format == Format::OpenMetrics;
    let counter_om = openmetrics && family.kind == Kind::Counter;
    let meta = if counter_om {
        "xen_fuzz"
    } else {
        "xen_fuzz_total"
    };
    let kind = match (family.kind, openmetrics) {
        (Kind::Gauge, _) => "gauge",
        (Kind::Counter, _) => "counter",
        (Kind::Untyped, false) => "untyped",
        (Kind::Untyped, true) => "unknown",
    };
    assert_eq!(p.name, meta);
    assert_eq!(p.kind, kind);
    assert_eq!(p.help, family.help);
    assert_eq!(p.samples.len(), family.samples.len());
    for (sample, (name, labels, value)) in family.samples.iter().zip(&p.samples) {
        assert_eq!(name, "xen_fuzz_total");
        let expected: Vec<(String, String)> = sample
            .labels
            .iter()
            .map(|l| (l.name.to_owned(), l.value.to_string()))
            .collect();
        assert_eq!(labels, &expected);
        assert!(
            *value == sample.value || (value.is_nan() && sample.value.is_nan()),
            "{value:?} read back for {:?}",
            sample.value
        );
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Undoes `\\`, `\n` and, when `quotes`, `\"`; any other escape, a lone backslash or a raw
/// newline is an error. When `quoted`, stops at the first unescaped `"` and returns the rest.
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

/// Reads an exposition line by line: a family starts at `# HELP` (text) or `# TYPE`
/// (OpenMetrics); samples are `name{label="value",...} value`; OpenMetrics must end in
/// `# EOF` and text must not.
fn parse(text: &str, format: Format) -> Option<Vec<Parsed>> {
    let openmetrics = format == Format::OpenMetrics;
    let mut families: Vec<Parsed> = Vec::new();
    let mut ended = false;
    for line in text.split_terminator('\n') {
        if ended {
            return None;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            if openmetrics && rest == "EOF" {
                ended = true;
                continue;
            }
            let (keyword, rest) = rest.split_once(' ')?;
            let (name, value) = rest.split_once(' ')?;
            if keyword == if openmetrics { "TYPE" } else { "HELP" } {
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
                "HELP" => family.help = unescape(value, openmetrics, false)?.0,
                _ => return None,
            }
            continue;
        }
        let family = families.last_mut()?;
        let (name, mut rest) = line.split_at(line.find(['{', ' '])?);
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            rest = inner;
            loop {
                let (label, after) = rest.split_once("=\"")?;
                let (value, after) = unescape(after, true, true)?;
                labels.push((label.to_owned(), value));
                let closing = after.as_bytes().first()?;
                rest = &after[1..];
                match closing {
                    b',' => {}
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        let value = parse_value(rest.strip_prefix(' ')?)?;
        family.samples.push((name.to_owned(), labels, value));
    }
    (ended == openmetrics).then_some(families)
}
