//! Parses `/rrd_updates` bodies: the three JSON generations (legacy JSON5 with bare NaN, `data`
//! nested in `meta`, current) and the XML `xport`. Pure: no I/O, no knowledge of Prometheus.
//!
//! One hand-written, single-pass scanner per syntax (JSON/JSON5-ish and XML), both feeding the
//! same `Sink`, so the rules that matter (newest row by `t`, row width = legend length) live
//! in one place. Legend entries are borrowed from the body unless they contain escapes or
//! entities. Every value is converted by `f64::from_str`; in JSON, the values of a row that
//! comes after a newer one (XAPI sends the newest first) are only checked to be scalars and
//! counted. Nothing is allocated in proportion to anything but the input, and deeply nested
//! unknown values are refused rather than recursed into.

use std::borrow::Cow;

/// A parsed `/rrd_updates` reply, reduced to what an exporter needs: the legend and the newest
/// row.
#[derive(Debug, Clone, PartialEq)]
pub struct RrdUpdates<'a> {
    /// `meta.step` in seconds, if present and numeric.
    pub step: Option<i64>,
    /// `meta.end` (host clock, epoch seconds), if present and numeric.
    pub end: Option<i64>,
    /// Legend entries in column order, e.g. `AVERAGE:vm:<uuid>:cpu0`.
    pub legend: Vec<Cow<'a, str>>,
    /// The row with the largest `t`, or `None` when the reply has no rows.
    pub newest: Option<Row>,
}

/// One data row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Epoch seconds (host clock).
    pub t: i64,
    /// One value per legend entry; NaN where the RRD has no value.
    pub values: Vec<f64>,
}

/// A legend entry split into its four fields: `<cf>:<owner>:<uuid>:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Legend<'a> {
    /// Consolidation function: `AVERAGE`, `MIN`, `MAX`.
    pub cf: &'a str,
    /// `host`, `vm` or `sr`.
    pub owner: &'a str,
    /// The owner's UUID.
    pub uuid: &'a str,
    /// The data source name; may contain `-`, `/` and upper case, and is split off after the
    /// third colon only.
    pub name: &'a str,
}

impl<'a> Legend<'a> {
    /// Splits an entry on its first three colons; `None` when it has fewer.
    pub fn parse(entry: &'a str) -> Option<Legend<'a>> {
        let (cf, rest) = entry.split_once(':')?;
        let (owner, rest) = rest.split_once(':')?;
        let (uuid, name) = rest.split_once(':')?;
        Some(Legend {
            cf,
            owner,
            uuid,
            name,
        })
    }
}

/// Why a body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed rrd_updates body at byte {offset}: {what}")]
pub struct ParseError {
    /// Byte offset where parsing stopped.
    pub offset: usize,
    /// What was expected or found.
    pub what: &'static str,
}

/// Parses a body in any supported generation.
///
/// The syntax is chosen from the first byte after optional whitespace (and a UTF-8 byte-order
/// mark): `{` is JSON in any of the three generations, `<` is the XML `xport`. The
/// `Content-Type` is deliberately not consulted: legacy hosts send JSON without one.
///
/// Every row is checked to have exactly one value per legend entry, even rows older than the
/// newest, because a short row anywhere means the body is not what XAPI wrote.
pub fn parse(body: &[u8]) -> Result<RrdUpdates<'_>, ParseError> {
    let mut start = 0;
    if body.starts_with(b"\xEF\xBB\xBF") {
        start = 3;
    }
    while body.get(start).is_some_and(is_blank) {
        start += 1;
    }
    match body.get(start) {
        Some(b'{') => json::parse(body, start),
        Some(b'<') => xml::parse(body, start),
        Some(_) => Err(err(start, "expected `{` or `<` at the start of the body")),
        None => Err(err(start, "empty body")),
    }
}

fn err(offset: usize, what: &'static str) -> ParseError {
    ParseError { offset, what }
}

/// Whitespace as both JSON and XML define it (not `is_ascii_whitespace`, which adds form feed).
fn is_blank(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

const ROW_WIDTH: &str = "row value count differs from the legend length";

/// What both front ends report, and the rules applied to it.
#[derive(Debug, Default)]
struct Sink<'a> {
    step: Option<i64>,
    end: Option<i64>,
    legend: Option<Vec<Cow<'a, str>>>,
    newest: Option<Row>,
    /// The row being read; swapped with `newest` when it is newer, so steady state needs no
    /// allocation per row.
    scratch: Row,
    /// Width and offset of the first row, kept because `data` may come before the legend.
    width: Option<(usize, usize)>,
}

impl<'a> Sink<'a> {
    fn set_legend(&mut self, legend: Vec<Cow<'a, str>>, at: usize) -> Result<(), ParseError> {
        if self.legend.is_some() {
            return Err(err(at, "legend appears twice"));
        }
        if let Some((width, row_at)) = self.width
            && width != legend.len()
        {
            return Err(err(row_at, ROW_WIDTH));
        }
        self.legend = Some(legend);
        Ok(())
    }

    /// Starts a row; the front end then pushes its values into `scratch`.
    fn begin_row(&mut self) {
        self.scratch.values.clear();
        // After the first row took the buffer, size the next one once instead of by doubling.
        self.scratch
            .values
            .reserve(self.expected_width().unwrap_or(0));
    }

    /// How many values a row must have: the legend's length, or before the legend is seen, the
    /// first row's.
    fn expected_width(&self) -> Option<usize> {
        match (&self.legend, self.width) {
            (Some(legend), _) => Some(legend.len()),
            (None, width) => width.map(|(width, _)| width),
        }
    }

    fn end_row(&mut self, t: i64, at: usize) -> Result<(), ParseError> {
        let n = self.scratch.values.len();
        if self.expected_width().is_some_and(|e| e != n) {
            return Err(err(at, ROW_WIDTH));
        }
        if self.width.is_none() {
            self.width = Some((n, at));
        }
        match &mut self.newest {
            // Ties keep the first row: XAPI never repeats a `t`, so either choice is arbitrary.
            Some(row) if row.t >= t => {}
            Some(row) => {
                std::mem::swap(row, &mut self.scratch);
                row.t = t;
            }
            None => {
                self.newest = Some(Row {
                    t,
                    ..std::mem::take(&mut self.scratch)
                });
            }
        }
        Ok(())
    }

    fn finish(self, at: usize) -> Result<RrdUpdates<'a>, ParseError> {
        let legend = self.legend.ok_or(err(at, "no legend in the body"))?;
        if let Some((width, row_at)) = self.width
            && width != legend.len()
        {
            return Err(err(row_at, ROW_WIDTH));
        }
        Ok(RrdUpdates {
            step: self.step,
            end: self.end,
            legend,
            newest: self.newest,
        })
    }
}

/// A value's text to `f64`: `%0.4f`, `%0.5g`, `%0.15g`, `NaN`, `Infinity`, `-Infinity`, `inf`,
/// in any case (what `f64::from_str` accepts, which is a superset of what XAPI writes).
fn text_f64(text: &str) -> Option<f64> {
    text.parse().ok()
}

/// Epoch seconds and steps are integers, but a float with no fractional part is taken too, in
/// case a serialiser ever writes `1767225600.0`.
fn text_i64(text: &str) -> Option<i64> {
    if let Ok(v) = text.parse::<i64>() {
        return Some(v);
    }
    let f: f64 = text.parse().ok()?;
    // 2^63 itself is out of range, hence the strict upper bound.
    let in_range = (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f);
    (in_range && f.fract() == 0.0).then_some(f as i64)
}

mod json {
    //! JSON and the JSON5-like extensions legacy XAPI relied on: unquoted keys, bare numbers in
    //! any spelling `f64::from_str` reads (which covers `NaN`, `Infinity` and `inf`), and
    //! trailing commas. `data` is looked for both at top level and inside `meta`. Otherwise
    //! strict: UTF-8 only, no raw control characters in strings, no bare words but numbers,
    //! `true`, `false` and `null`.

    use super::{Cow, ParseError, RrdUpdates, Sink, err, is_blank, text_f64, text_i64};

    /// Deepest nesting of an unknown value that is skipped; deeper is refused, which keeps the
    /// skipper allocation-free.
    const MAX_SKIP_DEPTH: u32 = 128;

    pub(super) fn parse(body: &[u8], start: usize) -> Result<RrdUpdates<'_>, ParseError> {
        // JSON text is UTF-8 (RFC 8259 §8.1). Checking the whole body once makes every string
        // a slice of `text`, and non-UTF-8 bytes anywhere an error, even in skipped values.
        let text = std::str::from_utf8(body).map_err(|e| err(e.valid_up_to(), "invalid UTF-8"))?;
        let mut p = Parser {
            b: body,
            s: text,
            i: start,
        };
        let mut sink = Sink::default();
        p.expect(b'{', "expected `{`")?;
        let mut first = true;
        while let Some(key) = p.next_key(&mut first)? {
            match &*key {
                "meta" => p.meta(&mut sink)?,
                "data" => p.data(&mut sink)?,
                _ => p.skip_value()?,
            }
        }
        p.ws();
        if p.i != body.len() {
            return Err(err(p.i, "unexpected bytes after the document"));
        }
        sink.finish(p.i)
    }

    #[derive(Debug)]
    struct Parser<'a> {
        b: &'a [u8],
        /// `b` as text.
        s: &'a str,
        i: usize,
    }

    /// The offset of the first `"`, `\` or control character of `bytes`, the bytes that end
    /// the plain run of a string. Strings are most of a body (the legend, and every value of
    /// the current generation), most of them a dozen bytes long: eight bytes are tested at
    /// once, as a word, which needs no setup per call, unlike a vector search.
    pub(super) fn special_byte(bytes: &[u8]) -> Option<usize> {
        const ONES: u64 = u64::from_le_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
        // A byte of `x` below `n` (`n` ≤ 0x80) has its high bit set in the result; a byte
        // above the lowest such byte may too (through the borrow), one below it never, so
        // the lowest set bit is exact.
        let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
        let mut at = 0;
        while let Some((word, _)) = bytes[at..].split_first_chunk::<8>() {
            let x = u64::from_le_bytes(*word);
            let hits = below(x ^ (ONES * u64::from(b'"')), 1)
                | below(x ^ (ONES * u64::from(b'\\')), 1)
                | below(x, 0x20);
            if hits != 0 {
                return Some(at + (hits.trailing_zeros() / 8) as usize);
            }
            at += 8;
        }
        let rest = bytes[at..]
            .iter()
            .position(|&b| matches!(b, b'"' | b'\\' | ..0x20));
        rest.map(|p| at + p)
    }

    /// Bytes that may form a bare token: numbers, `NaN`, `Infinity`, `true`, `null`, keys.
    fn is_bare(c: u8) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.' | b'_' | b'$')
    }

    impl<'a> Parser<'a> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn eof(&self) -> ParseError {
            err(self.b.len(), "unexpected end of body")
        }

        fn ws(&mut self) {
            while self.peek().is_some_and(|b| is_blank(&b)) {
                self.i += 1;
            }
        }

        fn expect(&mut self, c: u8, what: &'static str) -> Result<(), ParseError> {
            self.ws();
            match self.peek() {
                Some(x) if x == c => {
                    self.i += 1;
                    Ok(())
                }
                Some(_) => Err(err(self.i, what)),
                None => Err(self.eof()),
            }
        }

        /// Advances to the next key of an object whose `{` is consumed, and past its `:`;
        /// `None` once the closing `}` is consumed.
        fn next_key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>, ParseError> {
            if !self.next_member(first, b'}', "expected `,` or `}`")? {
                return Ok(None);
            }
            let key = match self.peek() {
                Some(b'"') => self.string()?,
                _ => {
                    let start = self.i;
                    let token = self.bare();
                    if token.is_empty() {
                        return Err(err(start, "expected a key"));
                    }
                    Cow::Borrowed(token)
                }
            };
            self.expect(b':', "expected `:` after a key")?;
            Ok(Some(key))
        }

        /// Advances to the next element of an array whose `[` is consumed; `false` once the
        /// closing `]` is consumed.
        fn next_elem(&mut self, first: &mut bool) -> Result<bool, ParseError> {
            self.next_member(first, b']', "expected `,` or `]`")
        }

        /// The separator logic shared by objects and arrays; trailing commas are JSON5.
        fn next_member(
            &mut self,
            first: &mut bool,
            close: u8,
            what: &'static str,
        ) -> Result<bool, ParseError> {
            self.ws();
            match self.peek() {
                None => return Err(self.eof()),
                Some(c) if c == close => {
                    self.i += 1;
                    return Ok(false);
                }
                Some(b',') if !*first => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(close) {
                        self.i += 1;
                        return Ok(false);
                    }
                }
                Some(_) if *first => {}
                Some(_) => return Err(err(self.i, what)),
            }
            *first = false;
            self.ws();
            if self.peek().is_none() {
                return Err(self.eof());
            }
            Ok(true)
        }

        fn bare(&mut self) -> &'a str {
            let start = self.i;
            while self.peek().is_some_and(is_bare) {
                self.i += 1;
            }
            &self.s[start..self.i]
        }

        /// A string at `"`: borrowed when free of escapes, decoded into an owned one otherwise.
        fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
            self.i += 1;
            let plain = self.plain_chars()?;
            if self.peek() == Some(b'"') {
                self.i += 1;
                return Ok(Cow::Borrowed(plain));
            }
            let mut out = plain.to_owned();
            // At a backslash.
            loop {
                let esc_at = self.i;
                self.i += 1;
                let c = self.peek().ok_or_else(|| self.eof())?;
                self.i += 1;
                let decoded = match c {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    b'u' => self.unicode_escape(esc_at)?,
                    _ => return Err(err(esc_at, "invalid escape in a string")),
                };
                out.push(decoded);
                out.push_str(self.plain_chars()?);
                if self.peek() == Some(b'"') {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
            }
        }

        /// Moves to the next `"` or `\` of a string and returns the characters before it.
        /// Control characters must be escaped in JSON (RFC 8259 §7).
        fn plain_chars(&mut self) -> Result<&'a str, ParseError> {
            let start = self.i;
            let n = special_byte(&self.b[start..]).ok_or_else(|| self.eof())?;
            self.i += n;
            if self.b[self.i] < 0x20 {
                return Err(err(self.i, "control character in a string"));
            }
            Ok(&self.s[start..self.i])
        }

        /// After `\u`: four hex digits, and for a high surrogate the `\uXXXX` low half.
        fn unicode_escape(&mut self, esc_at: usize) -> Result<char, ParseError> {
            let hi = self.hex4()?;
            let code = if (0xD800..0xDC00).contains(&hi) {
                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                    return Err(err(esc_at, "unpaired surrogate in a string"));
                }
                self.i += 2;
                let lo = self.hex4()?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return Err(err(esc_at, "unpaired surrogate in a string"));
                }
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            } else {
                hi
            };
            char::from_u32(code).ok_or(err(esc_at, "unpaired surrogate in a string"))
        }

        fn hex4(&mut self) -> Result<u32, ParseError> {
            let digits = self.b.get(self.i..self.i + 4).ok_or_else(|| self.eof())?;
            let mut v = 0;
            for &d in digits {
                let h = char::from(d)
                    .to_digit(16)
                    .ok_or(err(self.i, "expected four hex digits after `\\u`"))?;
                v = v * 16 + h;
            }
            self.i += 4;
            Ok(v)
        }

        /// The text of a scalar: a string's content, or a bare token, which must be a number
        /// as `f64::from_str` reads it, `true`, `false` or `null`.
        fn scalar(&mut self, what: &'static str) -> Result<Cow<'a, str>, ParseError> {
            self.ws();
            match self.peek() {
                Some(b'"') => self.string(),
                Some(_) => {
                    let start = self.i;
                    let token = self.bare();
                    let word = matches!(token, "true" | "false" | "null");
                    if word || text_f64(token).is_some() {
                        Ok(Cow::Borrowed(token))
                    } else {
                        Err(err(start, what))
                    }
                }
                None => Err(self.eof()),
            }
        }

        fn int(&mut self) -> Result<i64, ParseError> {
            self.ws();
            let at = self.i;
            let text = self.scalar("expected an integer")?;
            text_i64(&text).ok_or(err(at, "expected an integer"))
        }

        /// `step`/`end`: `null` means absent.
        fn opt_int(&mut self) -> Result<Option<i64>, ParseError> {
            self.ws();
            if self.b[self.i..].starts_with(b"null")
                && !self.b.get(self.i + 4).is_some_and(|&c| is_bare(c))
            {
                self.i += 4;
                return Ok(None);
            }
            self.int().map(Some)
        }

        fn meta(&mut self, sink: &mut Sink<'a>) -> Result<(), ParseError> {
            self.expect(b'{', "`meta` must be an object")?;
            let mut first = true;
            while let Some(key) = self.next_key(&mut first)? {
                match &*key {
                    "step" => sink.step = self.opt_int()?,
                    "end" => sink.end = self.opt_int()?,
                    "legend" => {
                        self.ws();
                        let at = self.i;
                        let legend = self.legend()?;
                        sink.set_legend(legend, at)?;
                    }
                    // Generation B nests `data` here.
                    "data" => self.data(sink)?,
                    _ => self.skip_value()?,
                }
            }
            Ok(())
        }

        fn legend(&mut self) -> Result<Vec<Cow<'a, str>>, ParseError> {
            self.expect(b'[', "`legend` must be an array")?;
            let mut legend = Vec::new();
            let mut first = true;
            while self.next_elem(&mut first)? {
                if self.peek() != Some(b'"') {
                    return Err(err(self.i, "legend entries must be strings"));
                }
                legend.push(self.string()?);
            }
            Ok(legend)
        }

        fn data(&mut self, sink: &mut Sink<'a>) -> Result<(), ParseError> {
            self.expect(b'[', "`data` must be an array")?;
            let mut first = true;
            while self.next_elem(&mut first)? {
                self.row(sink)?;
            }
            Ok(())
        }

        fn row(&mut self, sink: &mut Sink<'a>) -> Result<(), ParseError> {
            let at = self.i;
            self.expect(b'{', "a row must be an object")?;
            sink.begin_row();
            let mut t = None;
            let mut have_values = false;
            let mut first = true;
            while let Some(key) = self.next_key(&mut first)? {
                match &*key {
                    "t" if t.is_some() => return Err(err(self.i, "`t` appears twice in a row")),
                    "t" => t = Some(self.int()?),
                    "values" if have_values => {
                        return Err(err(self.i, "`values` appears twice in a row"));
                    }
                    "values" => {
                        have_values = true;
                        // XAPI sends the newest row first: the others are only counted.
                        let older =
                            t.is_some_and(|t| sink.newest.as_ref().is_some_and(|n| n.t >= t));
                        self.values(&mut sink.scratch.values, !older)?;
                    }
                    _ => self.skip_value()?,
                }
            }
            let t = t.ok_or(err(at, "row without `t`"))?;
            if !have_values {
                return Err(err(at, "row without `values`"));
            }
            sink.end_row(t, at)
        }

        /// A row's values, appended to `out`; with `convert` false each is only checked to be
        /// a scalar and stands as NaN, to be counted.
        fn values(&mut self, out: &mut Vec<f64>, convert: bool) -> Result<(), ParseError> {
            self.expect(b'[', "`values` must be an array")?;
            let mut first = true;
            while self.next_elem(&mut first)? {
                let at = self.i;
                let text = self.scalar("expected a number")?;
                let value = if convert {
                    text_f64(&text).ok_or(err(at, "expected a number"))?
                } else {
                    f64::NAN
                };
                out.push(value);
            }
            Ok(())
        }

        /// Skips one value of any type without recursion; the open containers are a bit stack
        /// (1 = object), which bounds the depth at [`MAX_SKIP_DEPTH`].
        fn skip_value(&mut self) -> Result<(), ParseError> {
            let mut stack: u128 = 0;
            let mut depth: u32 = 0;
            loop {
                // A value is expected here.
                self.ws();
                let at = self.i;
                match self.peek() {
                    None => return Err(self.eof()),
                    Some(c @ (b'{' | b'[')) => {
                        if depth == MAX_SKIP_DEPTH {
                            return Err(err(at, "unknown value nested too deeply"));
                        }
                        self.i += 1;
                        stack = (stack << 1) | u128::from(c == b'{');
                        depth += 1;
                        let mut first = true;
                        let more = if c == b'{' {
                            self.next_key(&mut first)?.is_some()
                        } else {
                            self.next_elem(&mut first)?
                        };
                        if more {
                            continue;
                        }
                        stack >>= 1;
                        depth -= 1;
                    }
                    Some(_) => {
                        self.scalar("expected a value")?;
                    }
                }
                // A value just ended: close containers until one wants another member.
                loop {
                    if depth == 0 {
                        return Ok(());
                    }
                    let mut first = false;
                    let more = if stack & 1 == 1 {
                        self.next_key(&mut first)?.is_some()
                    } else {
                        self.next_elem(&mut first)?
                    };
                    if more {
                        break;
                    }
                    stack >>= 1;
                    depth -= 1;
                }
            }
        }
    }
}

mod xml {
    //! The `<xport>` document: a pull reader that knows the few elements it needs and skips
    //! the rest. Attributes are ignored; comments, processing instructions and CDATA are
    //! tolerated where a generic XML writer could put them.

    use super::{Cow, ParseError, RrdUpdates, Sink, err, text_f64, text_i64};
    use memchr::{memchr, memmem};

    pub(super) fn parse(body: &[u8], start: usize) -> Result<RrdUpdates<'_>, ParseError> {
        let mut x = Reader { b: body, i: start };
        let mut sink = Sink::default();
        x.prolog()?;
        let root = x.open_tag()?;
        if root.name != b"xport" {
            return Err(err(root.at, "root element is not `xport`"));
        }
        if !root.empty {
            while let Some(tag) = x.next_child(b"xport")? {
                match tag.name {
                    b"meta" => x.meta(&mut sink, &tag)?,
                    b"data" => x.data(&mut sink, &tag)?,
                    _ => x.skip(&tag)?,
                }
            }
        }
        x.prolog()?;
        if x.i != body.len() {
            return Err(err(x.i, "unexpected bytes after the document"));
        }
        sink.finish(x.i)
    }

    #[derive(Debug)]
    struct Reader<'a> {
        b: &'a [u8],
        i: usize,
    }

    #[derive(Debug)]
    struct Open<'a> {
        name: &'a [u8],
        /// `<name/>`.
        empty: bool,
        at: usize,
    }

    fn is_name(c: u8) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':') || c >= 0x80
    }

    impl<'a> Reader<'a> {
        fn rest(&self) -> &'a [u8] {
            self.b.get(self.i..).unwrap_or_default()
        }

        fn eof(&self) -> ParseError {
            err(self.b.len(), "unexpected end of body")
        }

        fn ws(&mut self) {
            while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
                self.i += 1;
            }
        }

        /// Moves just past the next `needle`.
        fn skip_past(&mut self, needle: &[u8]) -> Result<(), ParseError> {
            let n = memmem::find(self.rest(), needle).ok_or_else(|| self.eof())?;
            self.i += n + needle.len();
            Ok(())
        }

        /// Whitespace, comments, processing instructions and a DOCTYPE, before or after the
        /// root element.
        fn prolog(&mut self) -> Result<(), ParseError> {
            loop {
                self.ws();
                let rest = self.rest();
                if rest.starts_with(b"<?") {
                    self.skip_past(b"?>")?;
                } else if rest.starts_with(b"<!--") {
                    self.skip_past(b"-->")?;
                } else if rest.starts_with(b"<!") {
                    // A DOCTYPE without an internal subset; XAPI never sends one at all.
                    self.skip_past(b">")?;
                } else {
                    return Ok(());
                }
            }
        }

        fn name(&mut self) -> Result<&'a [u8], ParseError> {
            let start = self.i;
            while self.b.get(self.i).copied().is_some_and(is_name) {
                self.i += 1;
            }
            if self.i == start {
                return Err(match self.b.get(self.i) {
                    None => self.eof(),
                    Some(_) => err(start, "expected an element name"),
                });
            }
            Ok(&self.b[start..self.i])
        }

        /// An opening tag at `<`; attributes are skipped.
        fn open_tag(&mut self) -> Result<Open<'a>, ParseError> {
            let at = self.i;
            match self.b.get(self.i) {
                Some(b'<') => self.i += 1,
                Some(_) => return Err(err(at, "expected an element")),
                None => return Err(self.eof()),
            }
            let name = self.name()?;
            loop {
                match self.b.get(self.i) {
                    None => return Err(self.eof()),
                    Some(b'>') => {
                        self.i += 1;
                        return Ok(Open {
                            name,
                            empty: false,
                            at,
                        });
                    }
                    Some(b'/') if self.b.get(self.i + 1) == Some(&b'>') => {
                        self.i += 2;
                        return Ok(Open {
                            name,
                            empty: true,
                            at,
                        });
                    }
                    Some(&q @ (b'"' | b'\'')) => {
                        self.i += 1;
                        let n = memchr(q, self.rest()).ok_or_else(|| self.eof())?;
                        self.i += n + 1;
                    }
                    Some(b'<') => return Err(err(self.i, "`<` inside a tag")),
                    Some(_) => self.i += 1,
                }
            }
        }

        /// A closing tag at `</`, which must close `name`.
        fn close_tag(&mut self, name: &[u8]) -> Result<(), ParseError> {
            let at = self.i;
            self.i += 2;
            if self.name()? != name {
                return Err(err(at, "closing tag does not match the open element"));
            }
            self.ws();
            match self.b.get(self.i) {
                Some(b'>') => {
                    self.i += 1;
                    Ok(())
                }
                Some(_) => Err(err(self.i, "expected `>`")),
                None => Err(self.eof()),
            }
        }

        /// The next child element of `parent`, or `None` once `</parent>` is consumed. Only
        /// whitespace, comments and processing instructions may sit between children.
        fn next_child(&mut self, parent: &[u8]) -> Result<Option<Open<'a>>, ParseError> {
            loop {
                self.ws();
                let rest = self.rest();
                if rest.is_empty() {
                    return Err(self.eof());
                } else if rest.starts_with(b"</") {
                    self.close_tag(parent)?;
                    return Ok(None);
                } else if rest.starts_with(b"<!--") {
                    self.skip_past(b"-->")?;
                } else if rest.starts_with(b"<?") {
                    self.skip_past(b"?>")?;
                } else if rest.starts_with(b"<!") || rest[0] != b'<' {
                    return Err(err(self.i, "unexpected text between elements"));
                } else {
                    return self.open_tag().map(Some);
                }
            }
        }

        /// Skips an element this parser has no use for, content and all.
        fn skip(&mut self, tag: &Open<'a>) -> Result<(), ParseError> {
            if tag.empty {
                return Ok(());
            }
            // Names of nested elements are not matched, only counted: the content is unused.
            let mut depth = 1usize;
            loop {
                let n = memchr(b'<', self.rest()).ok_or_else(|| self.eof())?;
                self.i += n;
                let rest = self.rest();
                if rest.starts_with(b"</") {
                    depth -= 1;
                    if depth == 0 {
                        return self.close_tag(tag.name);
                    }
                    self.skip_past(b">")?;
                } else if rest.starts_with(b"<!--") {
                    self.skip_past(b"-->")?;
                } else if rest.starts_with(b"<![CDATA[") {
                    self.skip_past(b"]]>")?;
                } else if rest.starts_with(b"<?") {
                    self.skip_past(b"?>")?;
                } else if rest.starts_with(b"<!") {
                    self.skip_past(b">")?;
                } else if !self.open_tag()?.empty {
                    depth += 1;
                }
            }
        }

        /// The text content of a leaf element (after its opening tag), entities decoded and
        /// surrounding whitespace trimmed. Borrowed unless it has entities, CDATA or comments.
        fn text(&mut self, tag: &Open<'a>) -> Result<Cow<'a, str>, ParseError> {
            if tag.empty {
                return Ok(Cow::Borrowed(""));
            }
            let chunk = self.chunk()?;
            if self.rest().starts_with(b"</") {
                self.close_tag(tag.name)?;
                return Ok(trim(chunk));
            }
            let mut out = chunk.into_owned();
            loop {
                let rest = self.rest();
                if rest.starts_with(b"</") {
                    self.close_tag(tag.name)?;
                    return Ok(trim(Cow::Owned(out)));
                } else if rest.starts_with(b"<![CDATA[") {
                    let start = self.i + 9;
                    self.skip_past(b"]]>")?;
                    let data = &self.b[start..self.i - 3];
                    out.push_str(
                        std::str::from_utf8(data)
                            .map_err(|e| err(start + e.valid_up_to(), "invalid UTF-8"))?,
                    );
                } else if rest.starts_with(b"<!--") {
                    self.skip_past(b"-->")?;
                } else if rest.starts_with(b"<?") {
                    self.skip_past(b"?>")?;
                } else {
                    return Err(err(self.i, "unexpected element inside a value"));
                }
                out.push_str(&self.chunk()?);
            }
        }

        /// Character data up to the next `<`, entities decoded.
        fn chunk(&mut self) -> Result<Cow<'a, str>, ParseError> {
            let start = self.i;
            let n = memchr(b'<', self.rest()).ok_or_else(|| self.eof())?;
            self.i += n;
            let raw = std::str::from_utf8(&self.b[start..self.i])
                .map_err(|e| err(start + e.valid_up_to(), "invalid UTF-8"))?;
            if memchr(b'&', raw.as_bytes()).is_none() {
                return Ok(Cow::Borrowed(raw));
            }
            decode_entities(raw, start).map(Cow::Owned)
        }

        fn meta(&mut self, sink: &mut Sink<'a>, meta: &Open<'a>) -> Result<(), ParseError> {
            if meta.empty {
                return Ok(());
            }
            while let Some(tag) = self.next_child(b"meta")? {
                match tag.name {
                    b"step" => sink.step = Some(self.int(&tag)?),
                    b"end" => sink.end = Some(self.int(&tag)?),
                    b"legend" => {
                        let legend = self.legend(&tag)?;
                        sink.set_legend(legend, tag.at)?;
                    }
                    // Not written by XAPI, accepted for symmetry with JSON generation B.
                    b"data" => self.data(sink, &tag)?,
                    _ => self.skip(&tag)?,
                }
            }
            Ok(())
        }

        fn legend(&mut self, legend: &Open<'a>) -> Result<Vec<Cow<'a, str>>, ParseError> {
            let mut out = Vec::new();
            if legend.empty {
                return Ok(out);
            }
            while let Some(tag) = self.next_child(b"legend")? {
                if tag.name == b"entry" {
                    out.push(self.text(&tag)?);
                } else {
                    self.skip(&tag)?;
                }
            }
            Ok(out)
        }

        fn data(&mut self, sink: &mut Sink<'a>, data: &Open<'a>) -> Result<(), ParseError> {
            if data.empty {
                return Ok(());
            }
            while let Some(tag) = self.next_child(b"data")? {
                if tag.name == b"row" {
                    self.row(sink, &tag)?;
                } else {
                    self.skip(&tag)?;
                }
            }
            Ok(())
        }

        fn row(&mut self, sink: &mut Sink<'a>, row: &Open<'a>) -> Result<(), ParseError> {
            sink.begin_row();
            let mut t = None;
            if !row.empty {
                while let Some(tag) = self.next_child(b"row")? {
                    match tag.name {
                        b"t" if t.is_some() => {
                            return Err(err(tag.at, "`t` appears twice in a row"));
                        }
                        b"t" => t = Some(self.int(&tag)?),
                        b"v" => {
                            let text = self.text(&tag)?;
                            let v = text_f64(&text).ok_or(err(tag.at, "expected a number"))?;
                            sink.scratch.values.push(v);
                        }
                        _ => self.skip(&tag)?,
                    }
                }
            }
            let t = t.ok_or(err(row.at, "row without `t`"))?;
            sink.end_row(t, row.at)
        }

        fn int(&mut self, tag: &Open<'a>) -> Result<i64, ParseError> {
            let text = self.text(tag)?;
            text_i64(&text).ok_or(err(tag.at, "expected an integer"))
        }
    }

    fn trim(text: Cow<'_, str>) -> Cow<'_, str> {
        match text {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim_ascii()),
            Cow::Owned(s) if s.trim_ascii().len() == s.len() => Cow::Owned(s),
            Cow::Owned(s) => Cow::Owned(s.trim_ascii().to_owned()),
        }
    }

    /// The five predefined entities and numeric character references.
    fn decode_entities(raw: &str, at: usize) -> Result<String, ParseError> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(amp) = memchr(b'&', rest.as_bytes()) {
            out.push_str(&rest[..amp]);
            let entity_at = at + (raw.len() - rest.len()) + amp;
            let after = &rest[amp + 1..];
            let semi =
                memchr(b';', after.as_bytes()).ok_or(err(entity_at, "unterminated entity"))?;
            let decoded = match &after[..semi] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                name => {
                    // Digits are checked first because `from_str_radix` also takes a sign.
                    let (digits, radix) = match name.strip_prefix("#x").or(name.strip_prefix("#X"))
                    {
                        Some(hex) => (hex, 16),
                        None => (name.strip_prefix('#').unwrap_or_default(), 10),
                    };
                    let all_digits =
                        !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
                    let code = all_digits
                        .then(|| u32::from_str_radix(digits, radix).ok())
                        .flatten();
                    code.and_then(char::from_u32)
                        .ok_or(err(entity_at, "unknown entity"))?
                }
            };
            out.push(decoded);
            rest = &after[semi + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST1_C: &[u8] =
        include_bytes!("../../tests/fixtures/rrd/rrd_updates.host1.formatC.json");
    const HOST2_C: &[u8] =
        include_bytes!("../../tests/fixtures/rrd/rrd_updates.host2.formatC.json");
    const HOST1_A: &[u8] =
        include_bytes!("../../tests/fixtures/rrd/rrd_updates.host1.formatA.json5");
    const HOST2_A: &[u8] =
        include_bytes!("../../tests/fixtures/rrd/rrd_updates.host2.formatA.json5");
    const HOST1_XML: &[u8] = include_bytes!("../../tests/fixtures/rrd/rrd_updates.host1.xml");
    const HOST2_XML: &[u8] = include_bytes!("../../tests/fixtures/rrd/rrd_updates.host2.xml");

    const NEWEST_T: i64 = 1_767_225_600;

    /// The spec's format B sample (§1.8): valid JSON, all numbers strings, `data` inside `meta`.
    const FORMAT_B: &str = r#"{"meta":{"start":"1767225600","step":"5","end":"1767225605","rows":"2","columns":"3","legend":["AVERAGE:host:0844f276-6eef-4658-a5a6-6d0bd5ed740a:cpu_avg","AVERAGE:host:0844f276-6eef-4658-a5a6-6d0bd5ed740a:memory_total_kib","AVERAGE:vm:3b1d7d0c-9c47-4a5f-b3b3-8f0c1e0b8a11:cpu0"],"data":[{"t":"1767225605","values":["0.0412","1.6777e+07","NaN"]},{"t":"1767225600","values":["0.0398","1.6777e+07","0.0101"]}]}}"#;

    const SMALL_A: &str = r#"{meta: {start:1767225600,step:5,end:1767225605,rows:2,columns:3,legend:["AVERAGE:host:h:cpu_avg","AVERAGE:host:h:memory_total_kib","AVERAGE:vm:v:cpu0"]},data:[{t:1767225605,values:[0.0412,16777216.0000,NaN]},{t:1767225600,values:[0.0398,16777216.0000,-Infinity]}]}"#;

    const SMALL_C: &str = r#"{"meta":{"start":"1767225600","step":"5","end":"1767225605","rows":"2","columns":"3","legend":["AVERAGE:host:h:cpu_avg","AVERAGE:host:h:memory_total_kib","AVERAGE:vm:v:cpu0"]},"data":[{"t":"1767225605","values":["0.0412345678901234","16777216","NaN"]},{"t":"1767225600","values":["0.0398","16777216","0.0101"]}]}"#;

    const SMALL_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<xport><meta><start>1767225600</start><step>5</step><end>1767225605</end><rows>2</rows><columns>3</columns><legend><entry>AVERAGE:host:h:cpu_avg</entry><entry>AVERAGE:host:h:memory_total_kib</entry><entry>AVERAGE:vm:v:cpu0</entry></legend></meta><data><row><t>1767225605</t><v>0.0412345678901234</v><v>16777216</v><v>NaN</v></row><row><t>1767225600</t><v>0.0398</v><v>16777216</v><v>0.0101</v></row></data></xport>"#;

    /// The word-at-a-time search against a byte loop: every length up to four words, every
    /// position of the first special byte, each kind of it, on backgrounds of plain ASCII, of
    /// bytes just above a control character and of UTF-8 continuation bytes (which must not
    /// borrow into a false hit), with later special bytes too.
    #[test]
    fn special_byte_finds_the_first_quote_backslash_or_control_character() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        let specials = [b'"', b'\\', 0x00, 0x01, 0x09, 0x1f];
        for background in [b'a', 0x20, 0x21, 0x80, 0xa0, 0xff] {
            for len in 0..32 {
                let mut bytes = vec![background; len];
                assert_eq!(json::special_byte(&bytes), None, "{bytes:?}");
                for at in 0..len {
                    for &special in &specials {
                        bytes[at] = special;
                        for &later in &specials {
                            if let Some(after) = bytes.get_mut(at + 3) {
                                *after = later;
                            }
                            assert_eq!(json::special_byte(&bytes), naive(&bytes), "{bytes:?}");
                        }
                        bytes.fill(background);
                    }
                }
            }
        }
    }

    fn ok(body: &[u8]) -> RrdUpdates<'_> {
        match parse(body) {
            Ok(u) => u,
            Err(e) => panic!("{e}"),
        }
    }

    fn newest<'u>(u: &'u RrdUpdates<'_>) -> &'u Row {
        u.newest.as_ref().expect("a newest row")
    }

    /// Bitwise equality, so NaN equals NaN.
    fn same_values(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// The newest row's value texts, cut out of a format C body by plain string search so the
    /// NaN check does not depend on the parser under test.
    fn newest_value_texts(body: &[u8]) -> Vec<String> {
        let body = std::str::from_utf8(body).unwrap();
        let marker = format!(r#"{{"t":"{NEWEST_T}","values":["#);
        let start = body.find(&marker).unwrap() + marker.len();
        let len = body[start..].find(']').unwrap();
        body[start..start + len]
            .split(',')
            .map(|v| v.trim_matches('"').to_owned())
            .collect()
    }

    #[test]
    fn parse_reads_current_format_fixtures() {
        for (body, columns) in [(HOST1_C, 325), (HOST2_C, 324)] {
            let u = ok(body);
            assert_eq!(u.legend.len(), columns);
            assert_eq!(u.step, Some(5));
            assert_eq!(u.end, Some(NEWEST_T));
            let row = newest(&u);
            assert_eq!(row.t, NEWEST_T);
            assert_eq!(row.values.len(), columns);
            assert!(u.legend.iter().all(|l| matches!(l, Cow::Borrowed(_))));
            let first = Legend::parse(&u.legend[0]).unwrap();
            assert_eq!((first.cf, first.owner), ("AVERAGE", "host"));
            assert_eq!(first.name, "CPU0-avg-freq");
        }
    }

    #[test]
    fn parse_keeps_nan_where_the_body_has_nan() {
        for body in [HOST1_C, HOST2_C] {
            let u = ok(body);
            let texts = newest_value_texts(body);
            assert_eq!(texts.len(), u.legend.len());
            let mut nans = 0;
            for (text, v) in texts.iter().zip(&newest(&u).values) {
                if text == "NaN" {
                    nans += 1;
                    assert!(v.is_nan());
                } else {
                    assert_eq!(text.parse::<f64>().unwrap().to_bits(), v.to_bits());
                }
            }
            assert!(nans > 0, "the fixtures carry some NaN");
        }
    }

    #[test]
    fn parse_gives_xml_and_current_json_the_same_result() {
        for (c, xml) in [(HOST1_C, HOST1_XML), (HOST2_C, HOST2_XML)] {
            let (c, xml) = (ok(c), ok(xml));
            assert_eq!(c.legend, xml.legend);
            assert_eq!((c.step, c.end), (xml.step, xml.end));
            assert_eq!(newest(&c).t, newest(&xml).t);
            assert!(same_values(&newest(&c).values, &newest(&xml).values));
        }
    }

    #[test]
    fn parse_accepts_bare_nan_from_legacy_xapi() {
        for (c, a) in [(HOST1_C, HOST1_A), (HOST2_C, HOST2_A)] {
            let (c, a) = (ok(c), ok(a));
            assert_eq!(c.legend, a.legend);
            assert_eq!((c.step, c.end), (a.step, a.end));
            let (c, a) = (newest(&c), newest(&a));
            assert_eq!(a.t, NEWEST_T);
            assert_eq!(c.values.len(), a.values.len());
            for (x, y) in c.values.iter().zip(&a.values) {
                if x.is_nan() {
                    assert!(y.is_nan());
                } else {
                    // `%0.4f` rounds to half a unit in the fourth decimal.
                    assert!((x - y).abs() <= 0.5e-4 + x.abs() * 1e-15, "{x} vs {y}");
                }
            }
        }
        let u = ok(SMALL_A.as_bytes());
        let row = newest(&u);
        assert_eq!(row.t, 1_767_225_605);
        assert_eq!(row.values[..2], [0.0412, 16_777_216.0]);
        assert!(row.values[2].is_nan());
    }

    #[test]
    fn parse_accepts_data_nested_in_meta() {
        let u = ok(FORMAT_B.as_bytes());
        assert_eq!(u.step, Some(5));
        assert_eq!(u.end, Some(1_767_225_605));
        assert_eq!(u.legend.len(), 3);
        let row = newest(&u);
        assert_eq!(row.t, 1_767_225_605);
        assert_eq!(row.values[..2], [0.0412, 16_777_000.0]);
        assert!(row.values[2].is_nan());
    }

    #[test]
    fn parse_small_bodies_agree_across_syntaxes() {
        let c = ok(SMALL_C.as_bytes());
        let xml = ok(SMALL_XML.as_bytes());
        let strip = |u: &RrdUpdates<'static>| RrdUpdates {
            newest: None,
            ..u.clone()
        };
        assert_eq!(strip(&c), strip(&xml));
        assert!(same_values(&newest(&c).values, &newest(&xml).values));
        assert_eq!(newest(&c).values[0], 0.041_234_567_890_123_4);
    }

    /// A row of one value read from the JSON text `text`.
    fn one_value_row(t: i64, text: &str) -> Row {
        Row {
            t,
            values: vec![text.parse().unwrap()],
        }
    }

    #[test]
    fn parse_picks_the_largest_t_whatever_the_row_order() {
        let body = r#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"10","values":["1"]},{"t":"30","values":["3"]},{"t":"20","values":["2"]}]}"#;
        let u = ok(body.as_bytes());
        assert_eq!(newest(&u), &one_value_row(30, "3"));

        let xml = "<xport><meta><legend><entry>a:b:c:d</entry></legend></meta><data><row><t>10</t><v>1</v></row><row><t>20</t><v>2</v></row></data></xport>";
        assert_eq!(
            newest(&ok(xml.as_bytes())),
            &Row {
                t: 20,
                values: vec![2.0],
            }
        );

        // The fixture reversed: oldest first.
        let text = std::str::from_utf8(HOST1_C).unwrap();
        let data_at = text.find(r#""data":["#).unwrap() + r#""data":["#.len();
        let rows: Vec<&str> = text[data_at..text.len() - 2].split("},{").collect();
        assert_eq!(rows.len(), 5);
        let reversed: Vec<String> = rows
            .iter()
            .rev()
            .map(|r| format!("{{{}}}", r.trim_start_matches('{').trim_end_matches('}')))
            .collect();
        let body = format!("{}{}]}}", &text[..data_at], reversed.join(","));
        let (fwd, rev) = (ok(HOST1_C), ok(body.as_bytes()));
        assert_eq!(newest(&rev).t, NEWEST_T);
        assert!(same_values(&newest(&fwd).values, &newest(&rev).values));
    }

    #[test]
    fn parse_counts_but_does_not_convert_rows_older_than_one_already_read() {
        let u = ok(br#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"30","values":["3"]},{"t":"10","values":["x"]},{"values":["2"],"t":"20"}]}"#);
        assert_eq!(newest(&u), &one_value_row(30, "3"));
        let short = br#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"30","values":["3"]},{"t":"10","values":[]}]}"#;
        assert!(parse(short).is_err());
        let nested = br#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"30","values":["3"]},{"t":"10","values":[[1]]}]}"#;
        assert!(parse(nested).is_err());
        let spaced = br#"{"meta":{"legend":["a:b:c:d","e:f:g:h"]},"data":[{"t":"30","values":["3",4]},{"t":"10","values":[ "1" , 2 ,]},{"t":"5","values":["a\"b",NaN]}]}"#;
        assert_eq!(newest(&ok(spaced)).values, [3.0, 4.0]);
        let unclosed = br#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"30","values":["3"]},{"t":"10","values":["1"#;
        assert!(parse(unclosed).is_err());
        // What the check of an older row's values accepts and refuses.
        let older = |values: &str| {
            let body = format!(
                r#"{{"meta":{{"legend":["a:b:c:d","e:f:g:h"]}},"data":[{{"t":"30","values":["3",4]}},{{"t":"10","values":{values}}}]}}"#
            );
            parse(body.as_bytes()).is_ok()
        };
        for fine in [
            r#"["1","2"]"#,
            "[NaN,-1.5e3]",
            "[ 1 ,\n 2 , ]",
            r#"["1",2]"#,
        ] {
            assert!(older(fine), "{fine}");
        }
        for wrong in [
            "[]",
            "[ ]",
            r#"["1"]"#,
            r#"["1","2","3"]"#,
            r#"[,"1","2"]"#,
            r#"["1,"2"]"#,
            r#"["1",{"2"}]"#,
            r#"["1",[2]]"#,
            r#"["1","2"}"#,
        ] {
            assert!(!older(wrong), "{wrong}");
        }
    }

    #[test]
    fn the_newest_row_reads_blanks_exponents_escapes_and_a_trailing_comma() {
        let row = |values: &str| {
            let body = format!(
                r#"{{"meta":{{"legend":["a:b:c:d","a:b:c:e","a:b:c:f","a:b:c:g","a:b:c:h"]}},"data":[{{"t":"30","values":{values}}}]}}"#
            );
            parse(body.as_bytes()).map(|u| u.newest.expect("one row"))
        };
        for values in [
            r#"[ "1", "NaN",2.5 , "-0.0",1e3, ]"#,
            r#"["\u0031","N\u0061N",2.5,"-0.0",1e3]"#,
        ] {
            let r = row(values).unwrap();
            assert_eq!(r.values[0], 1.0);
            assert!(r.values[1].is_nan());
            assert_eq!(&r.values[2..], &[2.5, -0.0, 1000.0]);
            assert!(r.values[3].is_sign_negative());
        }
        for wrong in [
            r#"["1","2","3","4"]"#,
            r#"["1","2","3","4","x"]"#,
            r#"["1","2","3","4" "5"]"#,
            r#"["1","2","3","4",,"5"]"#,
            r#"[,"1","2","3","4","5"]"#,
            r#"["1","2","3","4",["5"]]"#,
            r#"["1","2","3","4","5""#,
        ] {
            assert!(row(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn parse_accepts_empty_data() {
        for body in [
            r#"{"meta":{"legend":["a:b:c:d"]},"data":[]}"#,
            "{meta:{legend:[]},data:[]}",
            "<xport><meta><legend><entry>a:b:c:d</entry></legend></meta><data/></xport>",
            "<xport><meta><legend/></meta><data>\n</data></xport>",
        ] {
            let u = ok(body.as_bytes());
            assert_eq!(u.newest, None, "{body}");
        }
    }

    #[test]
    fn parse_accepts_zero_rows_with_start_after_end() {
        let body = r#"{"meta":{"start":"1740534010","step":"5","end":"1740533965","rows":"0","columns":"2","legend":["AVERAGE:host:h:cpu0","AVERAGE:host:h:cpu1"]},"data":[]}"#;
        let u = ok(body.as_bytes());
        assert_eq!(u.end, Some(1_740_533_965));
        assert_eq!(u.step, Some(5));
        assert_eq!(u.legend.len(), 2);
        assert_eq!(u.newest, None);
    }

    #[test]
    fn parse_decodes_escapes_in_legend_and_borrows_the_rest() {
        let body = r#"{"meta":{"legend":["AVERAGE:vm:u:a\"b\\c\/d\u00e9\ud83d\ude00\n","AVERAGE:vm:u:plain"]},"data":[{"t":1,"values":[1,2]}]}"#;
        let u = ok(body.as_bytes());
        assert_eq!(u.legend[0], "AVERAGE:vm:u:a\"b\\c/d\u{e9}\u{1f600}\n");
        assert!(matches!(u.legend[0], Cow::Owned(_)));
        assert!(matches!(u.legend[1], Cow::Borrowed("AVERAGE:vm:u:plain")));

        let xml = "<xport><meta><legend><entry>a:b:c:&lt;&amp;&gt;&quot;&apos;&#233;&#xE9;</entry><entry> a:b:c:d </entry></legend></meta><data/></xport>";
        let u = ok(xml.as_bytes());
        assert_eq!(u.legend[0], "a:b:c:<&>\"'\u{e9}\u{e9}");
        assert!(matches!(u.legend[1], Cow::Borrowed("a:b:c:d")));

        for bad in [
            r#"{"meta":{"legend":["\x"]}}"#,
            r#"{"meta":{"legend":["\ud83d"]}}"#,
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(
            parse(b"<xport><meta><legend><entry>&nbsp;</entry></legend></meta></xport>").is_err()
        );
        assert!(
            parse(b"<xport><meta><legend><entry>&#x+41;</entry></legend></meta></xport>").is_err()
        );
    }

    #[test]
    fn parse_accepts_any_key_order_unknown_keys_whitespace_and_plain_numbers() {
        let body = r#"
            {
              "extra" : { "a" : [ 1 , { "b" : null } , "x\"]" ] , "c" : true } ,
              "data" : [ { "values" : [ 1.5 , "2" , -3e2 , "Infinity", "inf", "nan" ], "t" : 100 , "note" : [ ] } ] ,
              "meta" : { "end" : 105 , "legend" : [ "a:b:c:1" , "a:b:c:2" , "a:b:c:3", "a:b:c:4", "a:b:c:5", "a:b:c:6" ] , "step" : "5" , "rows": 1, "columns": "6", "x" : { } } ,
              "tail" : false
            }
        "#;
        let u = ok(body.as_bytes());
        assert_eq!((u.step, u.end), (Some(5), Some(105)));
        let row = newest(&u);
        assert_eq!(row.t, 100);
        assert_eq!(
            row.values[..5],
            [1.5, 2.0, -300.0, f64::INFINITY, f64::INFINITY]
        );
        assert!(row.values[5].is_nan());
    }

    #[test]
    fn parse_accepts_xml_with_whitespace_comments_and_attributes() {
        let body = r#"
<?xml version="1.0"?>
<!-- a comment -->
<xport version="1">
  <meta>
    <start>1</start>
    <step> 60 </step>
    <end>120</end>
    <legend>
      <entry>AVERAGE:host:h:cpu0</entry>
      <entry><![CDATA[AVERAGE:host:h:]]>cpu1</entry>
    </legend>
    <unknown><deep a='>'><x/>text</deep></unknown>
  </meta>
  <data>
    <row><t>60</t><v>1</v><v>2</v></row>
    <row>
      <!-- rows may be oldest first -->
      <v>-Infinity</v><v>0.0</v><t>120</t>
    </row>
  </data>
</xport>
"#;
        let u = ok(body.as_bytes());
        assert_eq!((u.step, u.end), (Some(60), Some(120)));
        assert_eq!(u.legend, ["AVERAGE:host:h:cpu0", "AVERAGE:host:h:cpu1"]);
        assert_eq!(
            newest(&u),
            &Row {
                t: 120,
                values: vec![f64::NEG_INFINITY, 0.0],
            }
        );
    }

    #[test]
    fn parse_rejects_every_truncation_of_a_small_body() {
        for body in [SMALL_A, FORMAT_B, SMALL_C, SMALL_XML] {
            let body = body.as_bytes();
            assert!(parse(body).is_ok());
            for len in 0..body.len() {
                assert!(
                    parse(&body[..len]).is_err(),
                    "prefix of {len} bytes accepted"
                );
            }
        }
    }

    #[test]
    fn parse_rejects_a_row_whose_width_differs_from_the_legend() {
        for body in [
            r#"{"meta":{"legend":["a:b:c:d","a:b:c:e"]},"data":[{"t":"1","values":["1"]}]}"#,
            r#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"1","values":["1","2"]}]}"#,
            r#"{"data":[{"t":"1","values":["1"]}],"meta":{"legend":["a:b:c:d","a:b:c:e"]}}"#,
            r#"{"data":[{"t":"1","values":["1"]},{"t":"2","values":["1","2"]}],"meta":{"legend":["a:b:c:d"]}}"#,
            r#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"2","values":["1"]},{"t":"1","values":[]}]}"#,
            "<xport><meta><legend><entry>a:b:c:d</entry></legend></meta><data><row><t>1</t></row></data></xport>",
            "<xport><data><row><t>1</t><v>1</v><v>2</v></row></data><meta><legend><entry>a:b:c:d</entry></legend></meta></xport>",
        ] {
            let e = parse(body.as_bytes()).expect_err(body);
            assert_eq!(e.what, ROW_WIDTH, "{body}");
        }
    }

    #[test]
    fn parse_rejects_wrong_types_and_garbage() {
        for body in [
            "",
            "   ",
            "null",
            "[]",
            "{}",
            r#"{"meta":[]}"#,
            r#"{"meta":{"legend":"x"}}"#,
            r#"{"meta":{"legend":[1]}}"#,
            r#"{"meta":{"legend":[]},"data":{}}"#,
            r#"{"meta":{"legend":[]},"data":[[]]}"#,
            r#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"x","values":["1"]}]}"#,
            r#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"1","values":["one"]}]}"#,
            r#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"1","values":[null]}]}"#,
            r#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"1","values":[[1]]}]}"#,
            r#"{"meta":{"legend":["a:b:c:d"]},"data":[{"values":["1"]}]}"#,
            r#"{"meta":{"legend":["a:b:c:d"]},"data":[{"t":"1"}]}"#,
            r#"{"meta":{"legend":[],"step":{}}}"#,
            r#"{"meta":{"legend":[]}} x"#,
            r#"{"meta":{"legend":[]},,}"#,
            r#"{,"meta":{"legend":[]}}"#,
            r#"{"meta":{"legend":[]} "x":1}"#,
            r#"{"meta":{"legend":[]},"x":[1 2]}"#,
            r#"{"meta":{"legend":[]},"x":{"a" 1}}"#,
            r#"{"meta":{"legend":[]},"x":{"a":1]}"#,
            "<xport/>",
            "<other><meta><legend/></meta></other>",
            "<xport><meta><legend/></meta></xport> trailing",
            "<xport><meta><legend/></meta></xports>",
            "<xport>text<meta><legend/></meta></xport>",
            "<xport><meta><legend/><step>x</step></meta></xport>",
            "<xport><meta><legend><entry>a:b:c:d</entry></legend></meta><data><row><v>1</v></row></data></xport>",
            "<xport><meta><legend><entry>a:b:c:d</entry></legend></meta><data><row><t>1</t><v><b/></v></row></data></xport>",
        ] {
            assert!(parse(body.as_bytes()).is_err(), "accepted {body:?}");
        }
        let deep = format!(r#"{{"x":{}1{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(deep.as_bytes()).is_err());
        let nested = format!(
            r#"{{"meta":{{"legend":[]}},"x":{}1{}}}"#,
            "[".repeat(128),
            "]".repeat(128)
        );
        assert!(parse(nested.as_bytes()).is_ok());
    }

    /// The JSON reader once accepted these, which no JSON parser does and no documented
    /// extension covers; the `rrd_vs_serde_json` fuzz target checks for more.
    #[test]
    fn parse_rejects_json_errors_in_skipped_values_strings_and_older_rows() {
        for body in [
            &b"{\"meta\":{\"legend\":[]},\"x\":\"\xff\"}"[..],
            b"{\"meta\":{\"legend\":[\"a\"]},\"data\":[{\"t\":2,\"values\":[1]},{\"t\":1,\"values\":[\"\xc3\"]}]}",
            b"{\"meta\":{\"legend\":[\"a\nb\"]}}",
            b"{\"meta\":{\"legend\":[]},\"x\":\"\t\"}",
            b"{\"meta\":{\"legend\":[]},\"x\":\"\\u0041\x01\"}",
            br#"{"meta":{"legend":[]},"x":abc}"#,
            br#"{"meta":{"legend":[]},"x":[1,tru]}"#,
            br#"{"meta":{"legend":[]},"x":{"a":undefined}}"#,
            br#"{"meta":{"legend":["a"]},"data":[{"t":2,"values":[1]},{"t":1,"values":[x]}]}"#,
            b"\x0c{\"meta\":{\"legend\":[]}}",
        ] {
            assert!(parse(body).is_err(), "accepted {:?}", String::from_utf8_lossy(body));
        }
        let u = ok(br#"{"meta":{"legend":["a"]},"x":[true,false,null,-1.5e3,NaN,inf,"\u00e9"],"data":[{"t":2,"values":[1]},{"t":1,"values":[-Infinity]}]}"#);
        assert_eq!(newest(&u).values, [1.0]);
    }

    #[test]
    fn parse_reads_integral_floats_and_null_for_step_and_end() {
        let u = ok(br#"{"meta":{"step":5.0,"end":null,"legend":[]}}"#);
        assert_eq!((u.step, u.end), (Some(5), None));
        assert!(parse(br#"{"meta":{"step":5.5,"legend":[]}}"#).is_err());
    }

    #[test]
    fn legend_parse_splits_on_the_first_three_colons_only() {
        let l = Legend::parse(
            "AVERAGE:host:0844f276-6eef-4658-a5a6-6d0bd5ed740a:statefile/3b1d7d0c/latency",
        )
        .unwrap();
        assert_eq!(
            (l.cf, l.owner, l.uuid, l.name),
            (
                "AVERAGE",
                "host",
                "0844f276-6eef-4658-a5a6-6d0bd5ed740a",
                "statefile/3b1d7d0c/latency"
            )
        );
        let l = Legend::parse("MAX:host:u:CPU3-avg-freq").unwrap();
        assert_eq!(l.name, "CPU3-avg-freq");
        let l = Legend::parse("AVERAGE:vm:u:odd:name:with:colons").unwrap();
        assert_eq!((l.uuid, l.name), ("u", "odd:name:with:colons"));
        assert_eq!(Legend::parse("AVERAGE:vm:u"), None);
        assert_eq!(Legend::parse(""), None);
        assert_eq!(Legend::parse("a:b:c:").map(|l| l.name), Some(""));
    }
}
