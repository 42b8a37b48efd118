//! Fuzz target: `xapi::rrd::parse` against `serde_json` on current-format ("C") JSON bodies,
//! `{"meta":{...,"legend":[...]},"data":[{"t":...,"values":[...]},...]}`.
//!
//! Property, both directions:
//!
//! - Forward: when `serde_json` reads the document as a current-format body (see
//!   [`current_format`] for exactly what that means), `parse` accepts it too, with the same
//!   legend (unescaped, byte-equal), the same `step` and `end`, and the row with the largest `t`
//!   (the first of them on a tie, as `parse` documents) with bitwise-equal values.
//! - Reverse: when `parse` accepts a document, `serde_json` accepts it as JSON too, unless the
//!   document uses one of the extensions `parse` documents (see [`excluded`]).
//!
//! Each input is checked as it is (mutated raw bytes) and also turned into a current-format
//! body by [`Gen`], which reaches the deep cases (escapes, number spellings, key order, unknown
//! keys, ties) far more often than byte mutation does.
//!
//! Deliberate differences, not failures:
//!
//! - Duplicate keys: `serde_json::Value` keeps the last, `parse` refuses a second `legend`, `t`
//!   or `values` and reads a second `meta` or `data` too. The forward direction claims nothing
//!   for a body that repeats `meta`, `data`, `legend`, `step`, `end`, `t` or `values`.
//! - `meta.data`: generation B's place for the rows, which `parse` also reads. A current-format
//!   body has none, so the forward direction claims nothing when it is there.
//! - Numbers beyond the range of `f64` (`1e400`): RFC 8259 §6 lets a parser limit the range,
//!   and `serde_json` refuses them, while `parse` reads them as `f64::from_str` does, as ±inf.
//!   Excluded from the reverse direction; in the forward one `serde_json` refuses them anyway.
//! - A leading UTF-8 byte-order mark, which RFC 8259 §8.1 lets a parser ignore and `parse`
//!   does, is stripped before `serde_json` sees the document.
//! - Nesting: `serde_json` refuses more than about 128 levels by default, `parse` allows 128
//!   in an unknown value, below the body's own levels. The forward direction keeps
//!   `serde_json`'s limit (it only claims less); the reverse one lifts it, which is safe
//!   because what `parse` accepts is at most 132 levels deep.
//!
//! Zero rows are no difference: both accept, and `parse` gives no newest row.
#![no_main]

use std::fmt;

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use xen_exporter::xapi::rrd::parse;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut generator = Gen {
        u: Unstructured::new(data),
        out: String::new(),
        valid: true,
    };
    generator.body();
    let body = generator.out.as_bytes();
    if generator.valid {
        assert!(
            current_format(body.strip_prefix(BOM).unwrap_or(body)).is_some(),
            "the generator wrote a body serde_json does not read as current-format: {}",
            generator.out
        );
    }
    check(body);
});

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn check(data: &[u8]) {
    let parsed = parse(data);
    let json = data.strip_prefix(BOM).unwrap_or(data);

    if let Some(expected) = current_format(json) {
        let u = match &parsed {
            Ok(u) => u,
            Err(e) => panic!("serde_json reads a current-format body that parse refuses: {e}"),
        };
        let legend: Vec<&str> = u.legend.iter().map(|l| &**l).collect();
        assert_eq!(legend, expected.legend);
        assert_eq!((u.step, u.end), (expected.step, expected.end));
        let newest = u.newest.as_ref().map(|r| (r.t, bits(&r.values)));
        let expected_newest = expected.newest.as_ref().map(|(t, v)| (*t, bits(v)));
        assert_eq!(newest, expected_newest);
    }

    if parsed.is_ok() && excluded(json).is_none() {
        let mut de = serde_json::Deserializer::from_slice(json);
        de.disable_recursion_limit();
        let read = Value::deserialize(&mut de).and_then(|_| de.end());
        if let Err(e) = read {
            panic!("parse accepts a document serde_json refuses: {e}");
        }
    }
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// What `parse` must give for a current-format body.
#[derive(Debug)]
struct Expected {
    step: Option<i64>,
    end: Option<i64>,
    legend: Vec<String>,
    newest: Option<(i64, Vec<f64>)>,
}

/// The document as `serde_json` reads it, when it is a current-format body: a top-level object
/// with one `meta` object and one `data` array; `meta` with one `legend` array of strings, at
/// most one `step` and one `end`, each `null` or an integer, and no `data`; each row an object
/// with one `t`, an integer, and one `values` array of as many values as the legend has
/// entries, each a number or a string `f64::from_str` reads. Any other key anywhere, with any
/// value, is allowed. An integer is a number or a string that is an `i64`, or an `f64` without
/// fraction in the range of `i64` (`parse` takes `1767225600.0`). `None` for anything else.
fn current_format(json: &[u8]) -> Option<Expected> {
    let body: Body = serde_json::from_slice(json).ok()?;
    let integer = |v: Option<Value>| match v {
        None | Some(Value::Null) => Some(None),
        Some(v) => int_of(&v).map(Some),
    };
    let mut expected = Expected {
        step: integer(body.meta.step)?,
        end: integer(body.meta.end)?,
        legend: body.meta.legend,
        newest: None,
    };
    for row in body.rows {
        let t = int_of(&row.t)?;
        if row.values.len() != expected.legend.len() {
            return None;
        }
        let values = row
            .values
            .iter()
            .map(|v| match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .collect::<Option<Vec<f64>>>()?;
        if expected
            .newest
            .as_ref()
            .is_none_or(|(newest, _)| t > *newest)
        {
            expected.newest = Some((t, values));
        }
    }
    Some(expected)
}

fn int_of(v: &Value) -> Option<i64> {
    let in_range = |f: f64| {
        ((-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
            && f.fract() == 0.0)
            .then_some(f as i64)
    };
    match v {
        Value::Number(n) => n.as_i64().or_else(|| in_range(n.as_f64()?)),
        Value::String(s) => s.parse().ok().or_else(|| in_range(s.parse().ok()?)),
        _ => None,
    }
}

/// Why `parse` may accept `json` although `serde_json` refuses it, or `None`. Only called on
/// what `parse` accepted, so the document is well formed in `parse`'s grammar. Excluded:
///
/// - XML (a first byte `<`): not JSON at all.
/// - The JSON extensions `parse` documents for legacy XAPI: an unquoted key; a bare number in
///   a spelling `f64::from_str` reads and JSON does not have (`NaN`, `Infinity`, `inf`, `+1`,
///   `1.`, `.5`, `01`); a comma before `]` or `}`. Other bare words are not excluded.
/// - A JSON number beyond the range of `f64` (see the top of the file).
fn excluded(json: &[u8]) -> Option<&'static str> {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let bare = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_' | b'$');
    let next_solid = |i: usize| json.iter().skip(i).find(|b| !blank(b)).copied();
    if next_solid(0) == Some(b'<') {
        return Some("XML");
    }
    let mut i = 0;
    while let Some(&c) = json.get(i) {
        match c {
            b'"' => {
                i += 1;
                while let Some(&c) = json.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
            }
            b',' => {
                i += 1;
                if matches!(next_solid(i), Some(b']' | b'}')) {
                    return Some("trailing comma");
                }
            }
            c if bare(&c) => {
                let start = i;
                while json.get(i).is_some_and(bare) {
                    i += 1;
                }
                let token = &json[start..i];
                if next_solid(i) == Some(b':') {
                    return Some("unquoted key");
                }
                // Any other bare word is no extension: `parse` must refuse it.
                let number = std::str::from_utf8(token)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok());
                match number {
                    Some(_) if !is_json_number(token) => {
                        return Some("bare number in a spelling JSON does not have");
                    }
                    Some(v) if v.is_infinite() => return Some("number beyond the range of f64"),
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, RFC 8259 §6.
fn is_json_number(token: &[u8]) -> bool {
    let digits = |i: &mut usize| {
        let start = *i;
        while token.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    let mut i = usize::from(token.first() == Some(&b'-'));
    match token.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if token.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(token.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(token.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == token.len()
}

// serde_json's readers, written out rather than derived: a derived struct also reads a JSON
// array (`[meta, data]`), which `parse` rightly refuses. Each reads an object only, and
// refuses a repeated known key.

struct Body {
    meta: Meta,
    rows: Vec<Row>,
}

struct Meta {
    legend: Vec<String>,
    step: Option<Value>,
    end: Option<Value>,
}

struct Row {
    t: Value,
    values: Vec<Value>,
}

fn set<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    match slot.replace(value) {
        Some(_) => Err(E::custom("duplicate key")),
        None => Ok(()),
    }
}

/// Visits an object with `$visit`, a function of the `MapAccess`.
macro_rules! object {
    ($ty:ident, $visit:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("an object")
                    }

                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        $visit(map)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

object!(Body, |mut map: A| {
    let (mut meta, mut rows) = (None, None);
    while let Some(key) = map.next_key::<String>()? {
        match key.as_str() {
            "meta" => set(&mut meta, map.next_value::<Meta>()?)?,
            "data" => set(&mut rows, map.next_value::<Vec<Row>>()?)?,
            _ => drop(map.next_value::<Value>()?),
        }
    }
    Ok(Body {
        meta: meta.ok_or_else(|| de::Error::missing_field("meta"))?,
        rows: rows.ok_or_else(|| de::Error::missing_field("data"))?,
    })
});

object!(Meta, |mut map: A| {
    let (mut legend, mut step, mut end) = (None, None, None);
    while let Some(key) = map.next_key::<String>()? {
        match key.as_str() {
            "legend" => set(&mut legend, map.next_value::<Vec<String>>()?)?,
            "step" => set(&mut step, map.next_value::<Value>()?)?,
            "end" => set(&mut end, map.next_value::<Value>()?)?,
            "data" => return Err(de::Error::custom("`data` inside `meta`")),
            _ => drop(map.next_value::<Value>()?),
        }
    }
    Ok(Meta {
        legend: legend.ok_or_else(|| de::Error::missing_field("legend"))?,
        step,
        end,
    })
});

object!(Row, |mut map: A| {
    let (mut t, mut values) = (None, None);
    while let Some(key) = map.next_key::<String>()? {
        match key.as_str() {
            "t" => set(&mut t, map.next_value::<Value>()?)?,
            "values" => set(&mut values, map.next_value::<Vec<Value>>()?)?,
            _ => drop(map.next_value::<Value>()?),
        }
    }
    Ok(Row {
        t: t.ok_or_else(|| de::Error::missing_field("t"))?,
        values: values.ok_or_else(|| de::Error::missing_field("values"))?,
    })
});

/// Writes a current-format body as the fuzz bytes direct. `valid` is cleared when it writes
/// something that on purpose is not one (a bare `NaN`, a number beyond `f64`, a row of the
/// wrong width, a lone surrogate, a fractional `t`).
struct Gen<'a> {
    u: Unstructured<'a>,
    out: String,
    valid: bool,
}

impl Gen<'_> {
    /// `true` with probability 1/`n`.
    fn one_in(&mut self, n: u8) -> bool {
        // Once the input is used up, `ratio` would say `true` for ever.
        !self.u.is_empty() && self.u.ratio(1, n).unwrap_or(false)
    }

    fn below(&mut self, n: usize) -> usize {
        self.u.choose_index(n).unwrap_or(0)
    }

    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[self.below(from.len())]
    }

    fn ws(&mut self) {
        while self.one_in(4) {
            let blank = self.pick(&[" ", "\t", "\n", "\r"]);
            self.out.push_str(blank);
        }
    }

    fn body(&mut self) {
        if self.one_in(50) {
            self.out.push('\u{feff}');
        }
        self.ws();
        let legend = self.below(7);
        let others = ["rows", "x", "", "é", "metadata", "Meta"];
        self.object(&["meta", "data"], &others, 3, |g, key| match key {
            "meta" => g.meta(legend),
            _ => g.rows(legend),
        });
        self.ws();
    }

    /// An object with the `known` keys, each written by `member`, and a few `others` with
    /// unknown values at most `depth` deep, in any order.
    fn object(
        &mut self,
        known: &[&str],
        others: &[&str],
        depth: u32,
        mut member: impl FnMut(&mut Self, &str),
    ) {
        let mut keys: Vec<Option<&str>> = known.iter().map(|&k| Some(k)).collect();
        for _ in 0..self.below(3) {
            keys.push(None);
        }
        // Fisher-Yates, driven by the input.
        for i in (1..keys.len()).rev() {
            let j = self.below(i + 1);
            keys.swap(i, j);
        }
        self.out.push('{');
        for (n, key) in keys.into_iter().enumerate() {
            if n > 0 {
                self.ws();
                self.out.push(',');
            }
            self.ws();
            match key {
                Some(key) => {
                    self.key(key);
                    member(self, key);
                }
                None => {
                    let key = self.pick(others);
                    self.key(key);
                    self.unknown(depth);
                }
            }
        }
        self.ws();
        self.out.push('}');
    }

    /// A key and its colon; sometimes with a letter escaped, which both readers must decode.
    fn key(&mut self, key: &str) {
        self.out.push('"');
        for c in key.chars() {
            if self.one_in(8) {
                self.escaped(c);
            } else {
                self.out.push(c);
            }
        }
        self.out.push('"');
        self.ws();
        self.out.push(':');
        self.ws();
    }

    fn escaped(&mut self, c: char) {
        let mut units = [0; 2];
        for unit in c.encode_utf16(&mut units) {
            let text = if self.one_in(2) {
                format!("\\u{unit:04x}")
            } else {
                format!("\\u{unit:04X}")
            };
            self.out.push_str(&text);
        }
    }

    fn meta(&mut self, legend: usize) {
        let known: &[&str] = match self.below(4) {
            0 => &["legend"],
            1 => &["legend", "step"],
            2 => &["legend", "end"],
            _ => &["start", "step", "end", "rows", "columns", "legend"],
        };
        self.object(
            known,
            &["x", "datas", "Legend", "steps"],
            3,
            |g, key| match key {
                "legend" => g.legend(legend),
                "step" | "end" if g.one_in(8) => g.out.push_str("null"),
                _ => {
                    let value = [5, 60, 0, -1, 1_767_225_605, i64::MAX, i64::MIN][g.below(7)];
                    g.int(value);
                }
            },
        );
    }

    fn legend(&mut self, len: usize) {
        self.array(len, Self::string_of_pieces);
    }

    /// A JSON array of `len` elements written by `element`, with blanks around each.
    fn array(&mut self, len: usize, element: fn(&mut Self)) {
        self.out.push('[');
        for n in 0..len {
            if n > 0 {
                self.out.push(',');
            }
            self.ws();
            element(self);
            self.ws();
        }
        self.out.push(']');
    }

    /// A string of legend-like pieces, escapes of every kind and multi-byte characters.
    fn string_of_pieces(&mut self) {
        self.out.push('"');
        for _ in 0..self.below(8) {
            match self.below(8) {
                0 => {
                    let piece = self.pick(&["AVERAGE", "MAX", ":", "host", "vm", "cpu0", "-", "/"]);
                    self.out.push_str(piece);
                }
                1 => {
                    let piece = self.pick(&["é", "😀", "\u{7f}", "\u{2028}", "\u{ffff}", "ꙮ"]);
                    self.out.push_str(piece);
                }
                2 => {
                    let escape =
                        self.pick(&[r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\n", r"\r", r"\t"]);
                    self.out.push_str(escape);
                }
                3 => {
                    // Any scalar value: BMP or a surrogate pair.
                    let code = self.u.int_in_range(0..=0x10_ffff).unwrap_or(0);
                    if let Some(c) = char::from_u32(code) {
                        self.escaped(c);
                    }
                }
                4 if self.one_in(16) => {
                    self.valid = false;
                    let lone = self.pick(&[r"\ud800", r"\udfff", r"\ud83d\u0041"]);
                    self.out.push_str(lone);
                }
                _ => {
                    let uuid = self.pick(&["48265ed7-8560-493a-83f6-3457cd45cc14", "h", ""]);
                    self.out.push_str(uuid);
                }
            }
        }
        self.out.push('"');
    }

    fn rows(&mut self, legend: usize) {
        self.out.push('[');
        for n in 0..self.below(5) {
            if n > 0 {
                self.out.push(',');
            }
            self.ws();
            self.object(
                &["t", "values"],
                &["x", "T", "value"],
                3,
                |g, key| match key {
                    "t" => {
                        // A few close times, so that ties and every order happen.
                        let t = [1_767_225_600, 1_767_225_605, 1_767_225_610, 0, -5][g.below(5)];
                        if g.one_in(32) {
                            g.valid = false;
                            g.out.push_str("1.5");
                        } else {
                            g.int(t);
                        }
                    }
                    _ => {
                        let width = if g.one_in(32) {
                            g.valid = false;
                            legend + 1
                        } else {
                            legend
                        };
                        g.values(width);
                    }
                },
            );
            self.ws();
        }
        self.out.push(']');
    }

    /// An integer as a JSON number or a string, spelled as `parse` and serde_json both take.
    fn int(&mut self, value: i64) {
        let text = match self.below(4) {
            0 if value.unsigned_abs() < 1 << 53 => format!("{value}.0"),
            1 if value.unsigned_abs() < 1 << 53 => format!("{:e}", value as f64),
            _ => value.to_string(),
        };
        if self.one_in(2) {
            self.out.push_str(&format!("\"{text}\""));
        } else {
            self.out.push_str(&text);
        }
    }

    fn values(&mut self, len: usize) {
        self.array(len, Self::value);
    }

    /// A value in one of many spellings: JSON numbers (exponents, signs, many digits,
    /// subnormals, `-0`, integers beyond `u64`) bare or quoted, and in strings also what
    /// XAPI writes for non-finite values and what `f64::from_str` takes.
    fn value(&mut self) {
        let v = match self.below(4) {
            0 => f64::from_bits(self.u.arbitrary().unwrap_or(0)),
            1 => [
                0.0,
                -0.0,
                1.0,
                0.1,
                0.0412,
                16_777_216.0,
                1e-7,
                5e-324,
                f64::MIN_POSITIVE,
                f64::MAX,
                -f64::MAX,
                1.5e300,
                18_446_744_073_709_551_616.0,
            ][self.below(13)],
            2 => f64::from(self.u.arbitrary::<i32>().unwrap_or(0)) / 1e4,
            _ => f64::NAN,
        };
        if !v.is_finite() {
            let special = if v.is_nan() {
                self.pick(&["NaN", "nan", "NAN", "-nan", "+NaN"])
            } else if v > 0.0 {
                self.pick(&["Infinity", "inf", "+infinity", "INF"])
            } else {
                self.pick(&["-Infinity", "-inf", "-INFINITY"])
            };
            if self.one_in(16) {
                // Bare: JSON5, not JSON.
                self.valid = false;
                self.out.push_str(special);
            } else {
                self.out.push_str(&format!("\"{special}\""));
            }
            return;
        }
        let mut text = match self.below(7) {
            0 => format!("{v}"),
            1 => format!("{v:e}"),
            2 => format!("{v:E}").replace("E", "E+").replace("E+-", "E-"),
            3 => format!("{v:.4}"),
            4 => format!("{v:.30e}"),
            5 => format!("{v:.40}"),
            _ => format!("{v:?}"),
        };
        if self.one_in(64) {
            // Beyond f64: serde_json refuses it, parse reads +inf.
            self.valid = false;
            text = "1e400".to_owned();
        }
        if self.one_in(2) {
            self.out.push('"');
            let mut chars = text.chars();
            if let Some(first) = chars.next()
                && self.one_in(4)
            {
                self.escaped(first);
                self.out.push_str(chars.as_str());
            } else {
                self.out.push_str(&text);
            }
            self.out.push('"');
        } else {
            self.out.push_str(&text);
        }
    }

    /// Any JSON value, nested at most `depth` deep.
    fn unknown(&mut self, depth: u32) {
        match self.below(if depth == 0 { 5 } else { 7 }) {
            0 => {
                let word = self.pick(&["null", "true", "false"]);
                self.out.push_str(word);
            }
            1 => {
                let number = self.pick(&[
                    "0",
                    "-0",
                    "1e5",
                    "-1.5E-3",
                    "123456789012345678901234567890",
                ]);
                self.out.push_str(number);
            }
            2 | 3 => self.string_of_pieces(),
            4 => self.out.push_str(r#""]}\"""#),
            5 => {
                self.out.push('[');
                for n in 0..self.below(4) {
                    if n > 0 {
                        self.out.push(',');
                    }
                    self.ws();
                    self.unknown(depth - 1);
                    self.ws();
                }
                self.out.push(']');
            }
            _ => {
                let keys = ["a", "t", "values", "legend", "meta", "data"];
                self.object(&[], &keys, depth - 1, |_, _| {});
            }
        }
    }
}
