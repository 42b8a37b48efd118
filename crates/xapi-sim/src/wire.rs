//! XenAPI RPC values and their two encodings: JSON-RPC text and XML-RPC text exactly as
//! xapi's rpclib writes them (untyped strings and ints, one line), plus a minimal
//! `methodCall` parser for incoming XML-RPC requests.

use std::fmt::Write as _;

/// An RPC value, typed the way XAPI's datamodel types it (int vs string vs datetime matter
/// on the XML-RPC wire even though JSON cannot tell a datetime from a string).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum V {
    Str(String),
    Int(i64),
    Bool(bool),
    Float(f64),
    /// `YYYYMMDDTHH:MM:SSZ`.
    DateTime(String),
    Array(Vec<V>),
    /// Struct or map, in insertion order.
    Map(Vec<(String, V)>),
    /// The only typed int XAPI emits (`event.from`'s `valid_ref_counts`).
    I32(i32),
}

impl V {
    pub(super) fn str(s: impl Into<String>) -> V {
        V::Str(s.into())
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn strings<I, S>(items: I) -> V
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        V::Array(items.into_iter().map(|s| V::Str(s.into())).collect())
    }

    pub(super) fn string_map(pairs: &[(String, String)]) -> V {
        V::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), V::Str(v.clone())))
                .collect(),
        )
    }

    pub(super) fn write_json(&self, out: &mut String) {
        match self {
            V::Str(s) | V::DateTime(s) => push_json_string(out, s),
            V::Int(i) => {
                let _ = write!(out, "{i}");
            }
            V::I32(i) => {
                let _ = write!(out, "{i}");
            }
            V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            V::Float(f) => push_json_float(out, *f),
            V::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            V::Map(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_string(out, k);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }

    pub(super) fn write_xml(&self, out: &mut String) {
        out.push_str("<value>");
        match self {
            // rpclib writes strings (and ints) untyped.
            V::Str(s) => push_xml_text(out, s),
            V::Int(i) => {
                let _ = write!(out, "{i}");
            }
            V::I32(i) => {
                let _ = write!(out, "<i4>{i}</i4>");
            }
            V::Bool(b) => out.push_str(if *b {
                "<boolean>1</boolean>"
            } else {
                "<boolean>0</boolean>"
            }),
            V::Float(f) => {
                out.push_str("<double>");
                if f.is_nan() {
                    out.push_str("nan");
                } else if f.is_infinite() {
                    out.push_str(if *f > 0.0 { "inf" } else { "-inf" });
                } else {
                    super::numfmt::push_g(out, *f, 16);
                }
                out.push_str("</double>");
            }
            V::DateTime(s) => {
                out.push_str("<dateTime.iso8601>");
                push_xml_text(out, s);
                out.push_str("</dateTime.iso8601>");
            }
            V::Array(items) => {
                out.push_str("<array><data>");
                for item in items {
                    item.write_xml(out);
                }
                out.push_str("</data></array>");
            }
            V::Map(members) => {
                out.push_str("<struct>");
                for (k, v) in members {
                    out.push_str("<member><name>");
                    // rpclib leaves member names unescaped; escaping here only differs for keys
                    // with markup characters, which would otherwise produce broken XML.
                    push_xml_text(out, k);
                    out.push_str("</name>");
                    v.write_xml(out);
                    out.push_str("</member>");
                }
                out.push_str("</struct>");
            }
        }
        out.push_str("</value>");
    }

    /// From a JSON-RPC parameter.
    pub(super) fn from_json(j: &serde_json::Value) -> V {
        match j {
            serde_json::Value::Null => V::Str(String::new()),
            serde_json::Value::Bool(b) => V::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => V::Int(i),
                None => V::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => V::Str(s.clone()),
            serde_json::Value::Array(a) => V::Array(a.iter().map(V::from_json).collect()),
            serde_json::Value::Object(o) => V::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), V::from_json(v)))
                    .collect(),
            ),
        }
    }
}

pub(super) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// yojson-style float: `1.0`, `0.25`, bare `NaN` / `Infinity` (invalid JSON, as XAPI would).
fn push_json_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        // Shortest round-trip text; ryu writes integral values as `1.0`.
        out.push_str(ryu::Buffer::new().format_finite(f));
    }
}

/// XML character data as rpclib writes it: `& < > "` escaped, control characters other than
/// tab, LF and CR dropped (XML 1.0 cannot carry them).
pub(super) fn push_xml_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
}

/// Parses an XML-RPC `methodCall` into (method name, params).
pub(super) fn parse_method_call(body: &str) -> Result<(String, Vec<V>), String> {
    let mut p = Parser { s: body, pos: 0 };
    p.skip_misc();
    p.expect_open("methodCall")?;
    p.skip_misc();
    p.expect_open("methodName")?;
    let name = p.text()?;
    p.expect_close("methodName")?;
    p.skip_misc();
    let mut params = Vec::new();
    match p.open_tag()? {
        Tag::Open("params") => loop {
            p.skip_misc();
            match p.open_tag()? {
                Tag::Open("param") => {
                    p.skip_misc();
                    params.push(p.value()?);
                    p.skip_misc();
                    p.expect_close("param")?;
                }
                Tag::Close("params") => break,
                other => return Err(format!("unexpected {other:?} in <params>")),
            }
        },
        Tag::Empty("params") => {}
        Tag::Close("methodCall") => return Ok((name.trim().to_string(), params)),
        other => return Err(format!("unexpected {other:?} in <methodCall>")),
    }
    p.skip_misc();
    p.expect_close("methodCall")?;
    Ok((name.trim().to_string(), params))
}

#[derive(Debug)]
enum Tag<'a> {
    Open(&'a str),
    Close(&'a str),
    Empty(&'a str),
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    /// Skips whitespace, the XML declaration, processing instructions and comments.
    fn skip_misc(&mut self) {
        loop {
            let r = self.rest();
            let t = r.trim_start();
            self.pos += r.len() - t.len();
            if t.starts_with("<?") {
                match t.find("?>") {
                    Some(e) => self.pos += e + 2,
                    None => self.pos = self.s.len(),
                }
            } else if t.starts_with("<!--") {
                match t.find("-->") {
                    Some(e) => self.pos += e + 3,
                    None => self.pos = self.s.len(),
                }
            } else {
                return;
            }
        }
    }

    fn open_tag(&mut self) -> Result<Tag<'a>, String> {
        let r = self.rest();
        if !r.starts_with('<') {
            return Err(format!("expected a tag at byte {}", self.pos));
        }
        let end = r.find('>').ok_or("unterminated tag")?;
        let inner = &r[1..end];
        self.pos += end + 1;
        if let Some(name) = inner.strip_prefix('/') {
            Ok(Tag::Close(name.trim()))
        } else if let Some(name) = inner.strip_suffix('/') {
            Ok(Tag::Empty(tag_name(name)))
        } else {
            Ok(Tag::Open(tag_name(inner)))
        }
    }

    fn expect_open(&mut self, name: &str) -> Result<(), String> {
        match self.open_tag()? {
            Tag::Open(t) if t == name => Ok(()),
            other => Err(format!("expected <{name}>, got {other:?}")),
        }
    }

    fn expect_close(&mut self, name: &str) -> Result<(), String> {
        self.skip_misc();
        match self.open_tag()? {
            Tag::Close(t) if t == name => Ok(()),
            other => Err(format!("expected </{name}>, got {other:?}")),
        }
    }

    /// Character data up to the next tag, entities decoded.
    fn text(&mut self) -> Result<String, String> {
        let r = self.rest();
        let end = r.find('<').unwrap_or(r.len());
        self.pos += end;
        unescape(&r[..end])
    }

    /// Parses `<value>…</value>` (the opening tag not yet consumed).
    fn value(&mut self) -> Result<V, String> {
        match self.open_tag()? {
            Tag::Empty("value") => return Ok(V::Str(String::new())),
            Tag::Open("value") => {}
            other => return Err(format!("expected <value>, got {other:?}")),
        }
        let text = self.text()?;
        let v = match self.open_tag()? {
            Tag::Close("value") => return Ok(V::Str(text)),
            Tag::Empty(t) => empty_typed(t)?,
            Tag::Open(t) => self.typed(t)?,
            Tag::Close(t) => return Err(format!("unexpected </{t}> in <value>")),
        };
        self.expect_close("value")?;
        Ok(v)
    }

    fn typed(&mut self, t: &str) -> Result<V, String> {
        let v = match t {
            "array" => {
                self.skip_misc();
                let mut items = Vec::new();
                match self.open_tag()? {
                    Tag::Empty("data") => {}
                    Tag::Open("data") => loop {
                        self.skip_misc();
                        if self.rest().starts_with("</") {
                            self.expect_close("data")?;
                            break;
                        }
                        items.push(self.value()?);
                    },
                    other => return Err(format!("expected <data>, got {other:?}")),
                }
                self.expect_close("array")?;
                return Ok(V::Array(items));
            }
            "struct" => {
                let mut members = Vec::new();
                loop {
                    self.skip_misc();
                    match self.open_tag()? {
                        Tag::Close("struct") => break,
                        Tag::Open("member") => {
                            self.skip_misc();
                            self.expect_open("name")?;
                            let name = self.text()?;
                            self.expect_close("name")?;
                            self.skip_misc();
                            let v = self.value()?;
                            self.expect_close("member")?;
                            members.push((name, v));
                        }
                        other => return Err(format!("unexpected {other:?} in <struct>")),
                    }
                }
                return Ok(V::Map(members));
            }
            _ => {
                let text = self.text()?;
                scalar(t, &text)?
            }
        };
        self.expect_close(t)?;
        Ok(v)
    }
}

fn tag_name(inner: &str) -> &str {
    inner.split_whitespace().next().unwrap_or("")
}

fn empty_typed(t: &str) -> Result<V, String> {
    match t {
        "nil" | "string" => Ok(V::Str(String::new())),
        "array" => Ok(V::Array(Vec::new())),
        "struct" => Ok(V::Map(Vec::new())),
        other => Err(format!("empty <{other}/>")),
    }
}

fn scalar(t: &str, text: &str) -> Result<V, String> {
    let bad = || format!("bad <{t}> value {text:?}");
    match t {
        "string" | "base64" => Ok(V::Str(text.to_string())),
        "int" | "i4" | "i8" => text.trim().parse().map(V::Int).map_err(|_| bad()),
        "boolean" => match text.trim() {
            "1" | "true" => Ok(V::Bool(true)),
            "0" | "false" => Ok(V::Bool(false)),
            _ => Err(bad()),
        },
        "double" => text.trim().parse().map(V::Float).map_err(|_| bad()),
        "dateTime.iso8601" => Ok(V::DateTime(text.trim().to_string())),
        other => Err(format!("unknown type <{other}>")),
    }
}

fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or("unterminated entity")?;
        let ent = &after[..end];
        match ent {
            "amp" => out.push('&'),
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            _ => {
                let code =
                    if let Some(hex) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                        u32::from_str_radix(hex, 16).ok()
                    } else if let Some(dec) = ent.strip_prefix('#') {
                        dec.parse().ok()
                    } else {
                        None
                    };
                out.push(
                    code.and_then(char::from_u32)
                        .ok_or_else(|| format!("bad entity &{ent};"))?,
                );
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// XML-RPC response envelope: `{Status: Success, Value: v}`.
pub(super) fn xml_success(v: &V) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name>");
    v.write_xml(&mut out);
    out.push_str("</member></struct></value></param></params></methodResponse>");
    out
}

/// XML-RPC response envelope: `{Status: Failure, ErrorDescription: [code, params…]}`.
pub(super) fn xml_failure(err: &[String]) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name>");
    V::strings(err.iter().cloned()).write_xml(&mut out);
    out.push_str("</member></struct></value></param></params></methodResponse>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_values_are_untyped_like_rpclib() {
        let v = V::Map(vec![
            ("s".into(), V::str("a<b & \"c\"\u{1}")),
            ("i".into(), V::Int(4294967296)),
            ("b".into(), V::Bool(true)),
            ("f".into(), V::Float(1.0)),
            ("d".into(), V::DateTime("19700101T00:00:00Z".into())),
            ("a".into(), V::Array(vec![])),
            ("m".into(), V::Map(vec![])),
            ("c".into(), V::I32(12)),
        ]);
        let mut out = String::new();
        v.write_xml(&mut out);
        assert_eq!(
            out,
            "<value><struct><member><name>s</name><value>a&lt;b &amp; &quot;c&quot;</value></member>\
             <member><name>i</name><value>4294967296</value></member>\
             <member><name>b</name><value><boolean>1</boolean></value></member>\
             <member><name>f</name><value><double>1</double></value></member>\
             <member><name>d</name><value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value></member>\
             <member><name>a</name><value><array><data></data></array></value></member>\
             <member><name>m</name><value><struct></struct></value></member>\
             <member><name>c</name><value><i4>12</i4></value></member></struct></value>"
        );
        let mut j = String::new();
        v.write_json(&mut j);
        assert_eq!(
            j,
            r#"{"s":"a<b & \"c\"\u0001","i":4294967296,"b":true,"f":1.0,"d":"19700101T00:00:00Z","a":[],"m":{},"c":12}"#
        );
    }

    #[test]
    fn parses_typed_and_untyped_method_calls() {
        let body = "<?xml version=\"1.0\"?>\n<methodCall><methodName>session.login_with_password</methodName><params>\n\
            <param><value><string>root</string></value></param>\n\
            <param><value>p&amp;ss &#x3c;w&#62;</value></param>\n\
            <param><value><i4>7</i4></value></param>\n\
            <param><value><array><data><value>vm</value><value><string/></value></data></array></value></param>\n\
            <param><value><double>60.0</double></value></param>\n\
            <param><value><struct><member><name>k</name><value><boolean>1</boolean></value></member></struct></value></param>\n\
            <param><value/></param>\n\
            </params></methodCall>";
        let (m, p) = parse_method_call(body).expect("parses");
        assert_eq!(m, "session.login_with_password");
        assert_eq!(
            p,
            vec![
                V::str("root"),
                V::str("p&ss <w>"),
                V::Int(7),
                V::Array(vec![V::str("vm"), V::str("")]),
                V::Float(60.0),
                V::Map(vec![("k".into(), V::Bool(true))]),
                V::str(""),
            ]
        );
        let (m, p) = parse_method_call("<methodCall><methodName>x.y</methodName></methodCall>")
            .expect("no params");
        assert_eq!((m.as_str(), p.len()), ("x.y", 0));
        assert!(
            parse_method_call("<methodCall><methodName>x</methodName><params><param>").is_err()
        );
        assert!(parse_method_call("not xml").is_err());
    }
}
