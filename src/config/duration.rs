//! The one syntax of every duration setting (`XEN_TIMEOUT`, the `--web.*` and `--scrape.*`
//! timeouts and intervals, a pool's `timeout` in `--config.file`): Prometheus' own, as its
//! `model.ParseDuration` reads it (`500ms`, `8s`, `1m30s`, `2h`), or plain seconds (`8`,
//! `2.5`) as the original Python exporter took them. Whether zero or a long duration makes
//! sense is the setting's business, not the syntax's.

use std::time::Duration;

/// Prometheus' units, largest first, in milliseconds: a duration names each at most once, in
/// this order.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses `text` (surrounding white space ignored); the error says what is wrong with it.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.starts_with('-') {
        return Err("it is negative".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return seconds(text);
    }
    if text.contains('.') {
        return Err("with a unit the numbers must be whole, e.g. 1500ms rather than 1.5s".into());
    }
    with_units(text)
}

/// `8`, `2.5`, `0.25`: decimal seconds, read exactly (no binary rounding) to the nanosecond.
fn seconds(text: &str) -> Result<Duration, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err("it is not a number".into());
    }
    let secs = match whole {
        "" => 0,
        digits => digits.parse::<u64>().map_err(|_| too_long())?,
    };
    // Digits beyond the ninth are below a nanosecond; dropping them loses nothing.
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, digit| n * 10 + u32::from(digit - b'0'));
    Ok(Duration::new(secs, nanos))
}

/// `1h30m`, `500ms`: whole numbers, each followed by a unit, units largest first.
fn with_units(text: &str) -> Result<Duration, String> {
    let mut rest = text;
    let mut millis: u64 = 0;
    let mut previous: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("a number must come before {rest:?}"));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        rest = after;
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(if unit.is_empty() {
                format!("{number:?} at the end has no unit")
            } else {
                format!("{unit:?} is not a unit (ms, s, m, h, d, w, y)")
            });
        };
        if previous.is_some_and(|p| p >= index) {
            return Err("units must each come once, largest first, e.g. 1h30m".into());
        }
        previous = Some(index);
        let amount = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(UNITS[index].1))
            .and_then(|ms| ms.checked_add(millis))
            .ok_or_else(too_long)?;
        millis = amount;
    }
    Ok(Duration::from_millis(millis))
}

fn too_long() -> String {
    "it is too long to represent".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations_and_plain_seconds_are_accepted() {
        let ms = Duration::from_millis;
        for (text, expected) in [
            ("0", Duration::ZERO),
            ("8", ms(8_000)),
            (" 8 ", ms(8_000)),
            ("2.5", ms(2_500)),
            ("0.5", ms(500)),
            (".25", ms(250)),
            ("3.", ms(3_000)),
            ("0.0000000019", Duration::from_nanos(1)),
            ("500ms", ms(500)),
            ("1500ms", ms(1_500)),
            ("8s", ms(8_000)),
            ("0s", Duration::ZERO),
            ("1m", ms(60_000)),
            ("1m30s", ms(90_000)),
            ("1h30m", ms(5_400_000)),
            ("1h1ms", ms(3_600_001)),
            ("2d", ms(172_800_000)),
            ("1w", ms(604_800_000)),
            ("1y", ms(31_536_000_000)),
            (
                "1y2w3d4h5m6s7ms",
                ms(31_536_000_000 + 1_209_600_000 + 273_906_007),
            ),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        for (text, why) in [
            ("", "empty"),
            ("   ", "empty"),
            ("-1", "negative"),
            ("-1s", "negative"),
            ("nan", "a number must come before"),
            ("NaN", "a number must come before"),
            ("inf", "a number must come before"),
            ("8x", "\"x\" is not a unit"),
            ("8S", "not a unit"),
            ("8 s", "not a unit"),
            ("s", "a number must come before"),
            ("1.5s", "whole"),
            ("1m30", "no unit"),
            ("30s1m", "largest first"),
            ("1s1s", "largest first"),
            ("1ms1s", "largest first"),
            (".", "not a number"),
            ("1.2.3", "not a number"),
            ("1e3", "not a unit"),
            ("+8", "a number must come before"),
            ("99999999999999999999", "too long"),
            ("99999999999999999999s", "too long"),
            ("600000000y", "too long"),
            ("584942417y19w", "too long"),
        ] {
            let error = parse(text).expect_err(text);
            assert!(error.contains(why), "{text:?}: {error}");
        }
    }
}
