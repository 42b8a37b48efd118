//! Parses `/rrd_updates` bodies: the three JSON generations (legacy JSON5 with bare NaN, `data`
//! nested in `meta`, current) and the XML `xport`. Pure: no I/O, no knowledge of Prometheus.
//!
//! One hand-written, single-pass scanner per syntax (JSON/JSON5-ish and XML), both feeding the
//! same `Sink`, so the rules that matter (newest row by `t`, row width = legend length) live
//! in one place. Legend entries are borrowed from the body unless they contain escapes or
//! entities. Nothing is allocated in proportion to anything but the input, and deeply nested
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
#[derive(Debug, Clone, PartialEq)]
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
        let mut parts = entry.splitn(4, ':');
        Some(Legend {
            cf: parts.next()?,
            owner: parts.next()?,
            uuid: parts.next()?,
            name: parts.next()?,
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
    while body.get(start).is_some_and(u8::is_ascii_whitespace) {
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

const ROW_WIDTH: &str = "row value count differs from the legend length";

/// What both front ends report, and the rules applied to it.
#[derive(Debug, Default)]
struct Sink<'a> {
    step: Option<i64>,
    end: Option<i64>,
    legend: Option<Vec<Cow<'a, str>>>,
    newest: Option<Row>,
    /// Values of the row being read; swapped with `newest.values` when that row is newer, so
    /// steady state needs no allocation per row.
    scratch: Vec<f64>,
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
        self.scratch.reserve(legend.len());
        self.legend = Some(legend);
        Ok(())
    }

    /// Starts a row; the front end then pushes its values into `scratch`.
    fn begin_row(&mut self) {
        self.scratch.clear();
    }

    fn end_row(&mut self, t: i64, at: usize) -> Result<(), ParseError> {
        let n = self.scratch.len();
        let expected = match (&self.legend, self.width) {
            (Some(legend), _) => Some(legend.len()),
            (None, Some((width, _))) => Some(width),
            (None, None) => None,
        };
        if expected.is_some_and(|e| e != n) {
            return Err(err(at, ROW_WIDTH));
        }
        if self.width.is_none() {
            self.width = Some((n, at));
        }
        match &mut self.newest {
            // Ties keep the first row: XAPI never repeats a `t`, so either choice is arbitrary.
            Some(row) if row.t >= t => {}
            Some(row) => {
                row.t = t;
                std::mem::swap(&mut row.values, &mut self.scratch);
            }
            None => {
                self.newest = Some(Row {
                    t,
                    values: std::mem::take(&mut self.scratch),
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
fn text_f64(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Epoch seconds and steps are integers, but a float with no fractional part is taken too, in
/// case a serialiser ever writes `1767225600.0`.
fn text_i64(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    if let Ok(v) = text.parse::<i64>() {
        return Some(v);
    }
    let f: f64 = text.parse().ok()?;
    // 2^63 itself is out of range, hence the strict upper bound.
    let in_range = (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f);
    (in_range && f.fract() == 0.0).then_some(f as i64)
}

mod json {
    //! JSON and the JSON5 subset legacy XAPI printed: unquoted keys, bare `NaN`/`Infinity`,
    //! plus trailing commas. `data` is looked for both at top level and inside `meta`.

    use super::{Cow, ParseError, RrdUpdates, Sink, err, text_f64, text_i64};
    use memchr::memchr2;

    /// Deepest nesting of an unknown value that is skipped; deeper is refused, which keeps the
    /// skipper allocation-free.
    const MAX_SKIP_DEPTH: u32 = 128;

    pub(super) fn parse(body: &[u8], start: usize) -> Result<RrdUpdates<'_>, ParseError> {
        let mut p = Parser { b: body, i: start };
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
        i: usize,
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
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
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
                    // Bare tokens are ASCII, so this cannot fail.
                    Cow::Borrowed(std::str::from_utf8(token).map_err(|_| err(start, "key"))?)
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

        fn bare(&mut self) -> &'a [u8] {
            let start = self.i;
            while self.peek().is_some_and(is_bare) {
                self.i += 1;
            }
            &self.b[start..self.i]
        }

        /// The raw bytes of a string at `"` when it has no escapes (the common case), else
        /// `None` with nothing consumed.
        fn raw_string(&mut self) -> Result<Option<&'a [u8]>, ParseError> {
            let start = self.i + 1;
            let rest = self.b.get(start..).unwrap_or_default();
            match memchr2(b'"', b'\\', rest) {
                Some(n) if rest[n] == b'"' => {
                    self.i = start + n + 1;
                    Ok(Some(&rest[..n]))
                }
                Some(_) => Ok(None),
                None => Err(self.eof()),
            }
        }

        /// A string at `"`: borrowed when free of escapes, decoded into an owned one otherwise.
        fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
            let start = self.i + 1;
            match self.raw_string()? {
                Some(raw) => std::str::from_utf8(raw)
                    .map(Cow::Borrowed)
                    .map_err(|e| err(start + e.valid_up_to(), "invalid UTF-8 in a string")),
                None => self.escaped_string().map(Cow::Owned),
            }
        }

        fn escaped_string(&mut self) -> Result<String, ParseError> {
            let mut out = String::new();
            self.i += 1;
            loop {
                let rest = &self.b[self.i..];
                let n = memchr2(b'"', b'\\', rest).ok_or_else(|| self.eof())?;
                let chunk = std::str::from_utf8(&rest[..n])
                    .map_err(|e| err(self.i + e.valid_up_to(), "invalid UTF-8 in a string"))?;
                out.push_str(chunk);
                self.i += n + 1;
                if rest[n] == b'"' {
                    return Ok(out);
                }
                let esc_at = self.i - 1;
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
            }
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
                let h = (d as char)
                    .to_digit(16)
                    .ok_or(err(self.i, "expected four hex digits after `\\u`"))?;
                v = v * 16 + h;
            }
            self.i += 4;
            Ok(v)
        }

        /// The text of a scalar that should be a number: a string's content or a bare token.
        fn scalar(&mut self, what: &'static str) -> Result<Cow<'a, [u8]>, ParseError> {
            self.ws();
            match self.peek() {
                Some(b'"') => match self.raw_string()? {
                    Some(raw) => Ok(Cow::Borrowed(raw)),
                    None => Ok(Cow::Owned(self.escaped_string()?.into_bytes())),
                },
                Some(_) => {
                    let token = self.bare();
                    if token.is_empty() {
                        Err(err(self.i, what))
                    } else {
                        Ok(Cow::Borrowed(token))
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
                        self.values(&mut sink.scratch)?;
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

        fn values(&mut self, out: &mut Vec<f64>) -> Result<(), ParseError> {
            self.expect(b'[', "`values` must be an array")?;
            let mut first = true;
            while self.next_elem(&mut first)? {
                let at = self.i;
                let text = self.scalar("expected a number")?;
                out.push(text_f64(&text).ok_or(err(at, "expected a number"))?);
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
                    Some(b'"') => {
                        if self.raw_string()?.is_none() {
                            self.escaped_string()?;
                        }
                    }
                    Some(_) => {
                        if self.bare().is_empty() {
                            return Err(err(at, "expected a value"));
                        }
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
                            let v = text_f64(text.as_bytes())
                                .ok_or(err(tag.at, "expected a number"))?;
                            sink.scratch.push(v);
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
            text_i64(text.as_bytes()).ok_or(err(tag.at, "expected an integer"))
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
