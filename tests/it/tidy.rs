//! Style rules as tests: every source file opens with a `//!` header, the pipeline's layers
//! only use the layers before them (read from the crate paths each file of `src/` names, not
//! from its text), and generated documents are fresh.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for dir in ["src", "crates/xapi-sim/src", "tests/it", "benches"] {
        rust_files(&Path::new(ROOT).join(dir), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p.strip_prefix(ROOT).unwrap().to_string_lossy().into_owned();
            (rel, text)
        })
        .collect()
}

#[test]
fn every_source_file_opens_with_a_module_header() {
    for (path, text) in sources() {
        assert!(
            text.trim_start().starts_with("//!"),
            "{path} must start with a //! line saying what it owns"
        );
    }
}

#[test]
fn no_utils_modules() {
    for (path, _) in sources() {
        for banned in ["utils.rs", "helpers.rs", "common.rs", "types.rs"] {
            assert!(
                !path.ends_with(banned),
                "{path}: name modules after what they own"
            );
        }
    }
}

/// Each layer (a top-level module of `src/`) and the crate modules it must not use. Data
/// flows config → xapi → inventory → collect → metrics → server: a stage uses only stages
/// before it, except that metrics is the pure model collect fills and server encodes, so it
/// uses none of the stages; server never sees XAPI. `lib.rs`, `main.rs`, `check.rs` and
/// `demo.rs` are the wiring and may use everything; nothing uses `check` or `demo`.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "config",
        &[
            "xapi",
            "inventory",
            "collect",
            "metrics",
            "server",
            "check",
            "demo",
        ],
    ),
    (
        "xapi",
        &["inventory", "collect", "metrics", "server", "check", "demo"],
    ),
    (
        "inventory",
        &["collect", "metrics", "server", "check", "demo"],
    ),
    ("collect", &["server", "check", "demo"]),
    (
        "metrics",
        &[
            "config",
            "xapi",
            "inventory",
            "collect",
            "server",
            "check",
            "demo",
        ],
    ),
    ("server", &["xapi", "inventory", "check", "demo"]),
];

/// Top-level modules that wire the layers together (the crate root is `""`).
const WIRING: &[&str] = &["", "check", "demo"];

/// The module a file under `src/` is: `src/config/file.rs` → `["config", "file"]`,
/// `src/xapi/mod.rs` → `["xapi"]`, `src/lib.rs` → `[]`. `None` outside `src/`.
fn module_of(path: &str) -> Option<Vec<String>> {
    let rel = path.strip_prefix("src/")?.strip_suffix(".rs")?;
    let mut module: Vec<String> = rel.split('/').map(str::to_string).collect();
    if module.last().is_some_and(|m| m == "mod") || matches!(rel, "lib" | "main") {
        module.pop();
    }
    Some(module)
}

/// What a Rust source is made of, as far as paths are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// An identifier, keyword or number.
    Word(&'a str),
    /// `::`.
    PathSep,
    /// Any other single punctuation character.
    Punct(u8),
}

/// Splits `text` into [`Token`]s with their line numbers. Comments, string literals (plain,
/// byte, C and raw) and character literals are dropped, so that a path in them counts for
/// nothing; a lifetime's quote is dropped and its name kept as a word.
fn tokens(text: &str) -> Vec<(usize, Token<'_>)> {
    let bytes = text.as_bytes();
    let word_byte = |b: u8| b == b'_' || b.is_ascii_alphanumeric() || b >= 0x80;
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a quoted literal whose opening quote is at `i`; returns the index after it.
    let skip_quoted = |mut i: usize, quote: u8, line: &mut usize| {
        i += 1;
        while i < bytes.len() && bytes[i] != quote {
            if bytes[i] == b'\\' {
                i += 1;
            }
            if bytes.get(i) == Some(&b'\n') {
                *line += 1;
            }
            i += 1;
        }
        i + 1
    };
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        if b == b'\n' {
            line += 1;
            i += 1;
        } else if b.is_ascii_whitespace() {
            i += 1;
        } else if b == b'/' && next == Some(b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if b == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if b == b'"' {
            i = skip_quoted(i, b'"', &mut line);
        } else if b == b'\'' {
            // A character literal ('x', '\n', '\u{1F600}'), or a lifetime or label ('a).
            let char_len = text[i + 1..].chars().next().map_or(0, char::len_utf8);
            if next == Some(b'\\') || bytes.get(i + 1 + char_len) == Some(&b'\'') {
                i = skip_quoted(i, b'\'', &mut line);
            } else {
                i += 1;
            }
        } else if word_byte(b) {
            let start = i;
            while i < bytes.len() && word_byte(bytes[i]) {
                i += 1;
            }
            let word = &text[start..i];
            let after = bytes.get(i).copied();
            let hashes = bytes[i..].iter().take_while(|&&h| h == b'#').count();
            if matches!(word, "r" | "br" | "cr") && bytes.get(i + hashes) == Some(&b'"') {
                // A raw string: ends at a quote followed by as many hashes.
                let closing: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                i += hashes + 1;
                while i < bytes.len() && !bytes[i..].starts_with(&closing) {
                    if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += closing.len();
            } else if matches!(word, "b" | "c") && after == Some(b'"') {
                i = skip_quoted(i, b'"', &mut line);
            } else if word == "b" && after == Some(b'\'') {
                i = skip_quoted(i, b'\'', &mut line);
            } else if word == "r" && hashes == 1 {
                // A raw identifier, r#name: the name is the word.
                i += 1;
            } else {
                out.push((line, Token::Word(word)));
            }
        } else if b == b':' && next == Some(b':') {
            out.push((line, Token::PathSep));
            i += 2;
        } else {
            out.push((line, Token::Punct(b)));
            i += 1;
        }
    }
    out
}

/// Reads one use tree starting at `tokens[*pos]`, below `prefix`; pushes every path it names
/// (`a::b::{c, d::{self, e}}` names `a::b::c`, `a::b::d::self` and `a::b::d::e`).
fn use_tree(
    tokens: &[(usize, Token<'_>)],
    pos: &mut usize,
    prefix: &[String],
    out: &mut Vec<(usize, Vec<String>)>,
) {
    let mut path = prefix.to_vec();
    let line = tokens.get(*pos).map_or(0, |t| t.0);
    if tokens.get(*pos).map(|t| t.1) == Some(Token::PathSep) {
        // `::name`: another crate.
        path.push("::".into());
        *pos += 1;
    }
    while let Some(&(_, token)) = tokens.get(*pos) {
        match token {
            Token::Word(word) if word != "as" => {
                path.push(word.to_string());
                *pos += 1;
                if tokens.get(*pos).map(|t| t.1) == Some(Token::PathSep) {
                    *pos += 1;
                } else {
                    break;
                }
            }
            Token::Punct(b'*') => {
                path.push("*".into());
                *pos += 1;
                break;
            }
            Token::Punct(b'{') => {
                *pos += 1;
                while let Some(&(_, token)) = tokens.get(*pos) {
                    match token {
                        Token::Punct(b'}') => {
                            *pos += 1;
                            break;
                        }
                        Token::Punct(b',') => *pos += 1,
                        _ => use_tree(tokens, pos, &path, out),
                    }
                }
                return;
            }
            _ => break,
        }
    }
    if tokens.get(*pos).map(|t| t.1) == Some(Token::Word("as")) {
        *pos += 2;
    }
    out.push((line, path));
}

/// `path` as an absolute path in the crate, from module `module`; `None` for another crate's
/// path, and for a bare name outside the crate root: that is the module's own child or another
/// crate, and stays in the module's layer either way.
fn resolve(module: &[String], path: &[String]) -> Option<String> {
    let mut absolute: Vec<&str> = Vec::new();
    let mut segments = path.iter().map(String::as_str).peekable();
    match segments.peek().copied() {
        Some("crate" | "$crate") => {
            segments.next();
        }
        Some("super" | "self") => absolute.extend(module.iter().map(String::as_str)),
        Some(_) if module.is_empty() => {}
        _ => return None,
    }
    let mut leading = true;
    for segment in segments {
        match segment {
            "super" if leading => {
                absolute.pop()?;
            }
            "self" => {}
            "::" => return None,
            other => {
                leading = false;
                absolute.push(other);
            }
        }
    }
    Some(absolute.join("::"))
}

/// Every crate path `text` names, absolute, with its line: in `use` declarations (groups,
/// `self`, `super`, renames, globs, over any number of lines, `pub` or not) and written out in
/// code (`crate::xapi::tls::parse(…)`, `super::super::xapi::Client`). `module` is the file's
/// module; inline `mod name { … }` blocks are followed so that their `super` resolves.
fn crate_paths(module: &[String], text: &str) -> Vec<(usize, String)> {
    let tokens = tokens(text);
    let mut found = Vec::new();
    let mut current = module.to_vec();
    // The brace depth at which each inline module opened.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let (line, token) = tokens[i];
        let next = tokens.get(i + 1).map(|t| t.1);
        match token {
            Token::Punct(b'{') => depth += 1,
            Token::Punct(b'}') => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                    current.pop();
                }
                depth -= 1;
            }
            Token::Word("mod") => {
                if let (Some(Token::Word(name)), Some(Token::Punct(b'{'))) =
                    (next, tokens.get(i + 2).map(|t| t.1))
                {
                    current.push(name.to_string());
                    inline.push(depth + 1);
                    i += 2;
                    continue;
                }
            }
            // `use<'a>` is a precise-capturing bound, not a declaration.
            Token::Word("use") if next != Some(Token::Punct(b'<')) => {
                let mut pos = i + 1;
                let mut paths = Vec::new();
                use_tree(&tokens, &mut pos, &[], &mut paths);
                found.extend(
                    paths
                        .iter()
                        .filter_map(|(line, p)| Some((*line, resolve(&current, p)?))),
                );
                i = pos;
                continue;
            }
            Token::Word(first @ ("crate" | "super" | "self"))
                if next == Some(Token::PathSep)
                    && !matches!(
                        tokens.get(i.wrapping_sub(1)).map(|t| t.1),
                        Some(Token::PathSep)
                    ) =>
            {
                let mut path = vec![first.to_string()];
                let mut pos = i + 1;
                while tokens.get(pos).map(|t| t.1) == Some(Token::PathSep) {
                    match tokens.get(pos + 1).map(|t| t.1) {
                        Some(Token::Word(word)) => {
                            path.push(word.to_string());
                            pos += 2;
                        }
                        _ => break,
                    }
                }
                found.extend(resolve(&current, &path).map(|p| (line, p)));
                i = pos;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The layering rules `text`, the source of `path`, breaks: one message per path.
fn layering_violations(path: &str, text: &str) -> Vec<String> {
    let Some(module) = module_of(path) else {
        return Vec::new();
    };
    let layer = module.first().map_or("", String::as_str);
    if WIRING.contains(&layer) {
        return Vec::new();
    }
    let Some((_, banned)) = LAYERS.iter().find(|(name, _)| *name == layer) else {
        return vec![format!(
            "{path}: module {layer} is in no layer; add it to LAYERS in tests/it/tidy.rs"
        )];
    };
    crate_paths(&module, text)
        .into_iter()
        .filter(|(_, used)| {
            let target = used.split("::").next().unwrap_or("");
            // `crate::*` would bring in every module.
            banned.contains(&target) || target == "*"
        })
        .map(|(line, used)| {
            format!("{path}:{line} uses crate::{used}, but {layer} must not use {banned:?}")
        })
        .collect()
}

#[test]
fn layers_only_depend_upstream() {
    let violations: Vec<String> = sources()
        .iter()
        .flat_map(|(path, text)| layering_violations(path, text))
        .collect();
    assert!(
        violations.is_empty(),
        "data flows config → xapi → inventory → collect → metrics → server (metrics uses none of them, server never xapi or inventory):\n{}",
        violations.join("\n")
    );
}

/// The simulator stands apart: of the exporter's sources only the `--demo` wiring names it,
/// and the simulator names nothing of the exporter.
#[test]
fn only_the_demo_wiring_uses_the_simulator() {
    let mut offenders = Vec::new();
    for (path, text) in sources() {
        let words: Vec<&str> = tokens(&text)
            .into_iter()
            .filter_map(|(_, token)| match token {
                Token::Word(word) => Some(word),
                _ => None,
            })
            .collect();
        let names = |name: &str| words.contains(&name);
        if path.starts_with("src/") && path != "src/demo.rs" && names("xapi_sim") {
            offenders.push(format!("{path} names xapi_sim"));
        }
        if path.starts_with("crates/xapi-sim/") && names("xen_exporter") {
            offenders.push(format!("{path} names xen_exporter"));
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn the_layering_check_reads_use_paths_not_text() {
    let module = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let paths = |m: &[&str], text: &str| -> Vec<String> {
        let mut found: Vec<String> = crate_paths(&module(m), text)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        found.sort();
        found.dedup();
        found
    };
    assert_eq!(
        paths(&["config"], "use crate::xapi::{self, Client};"),
        ["xapi", "xapi::Client"]
    );
    assert_eq!(
        paths(&["config", "file"], "use crate::xapi::{self as _};"),
        ["xapi"]
    );
    assert_eq!(
        paths(
            &["collect"],
            "pub(crate) use crate::{\n    config::Endpoint,\n    xapi::{\n        rrd::{self, Row},\n        records as r,\n    },\n};\n"
        ),
        [
            "config::Endpoint",
            "xapi::records",
            "xapi::rrd",
            "xapi::rrd::Row"
        ]
    );
    assert_eq!(
        paths(&["config", "x"], "use super::super::xapi::Client;"),
        ["xapi::Client"]
    );
    assert_eq!(
        paths(
            &["config", "x"],
            "fn f() { super::super::xapi::tls::parse(b\"\"); }"
        ),
        ["xapi::tls::parse"]
    );
    assert_eq!(
        paths(
            &["config"],
            "fn f() -> X { crate::xapi::tls::parse(&pem)?; todo!() }"
        ),
        ["xapi::tls::parse"]
    );
    assert_eq!(
        paths(
            &["config"],
            "pub use self::inner::Thing;\nuse super::metrics as m;"
        ),
        ["config::inner::Thing", "metrics"]
    );
    assert_eq!(
        paths(&["config"], "use {crate::server::Exposure};"),
        ["server::Exposure"]
    );
    // Inline modules: `super` is the file's module, and the block ends where it ends.
    assert_eq!(
        paths(
            &["config", "file"],
            "mod tests { use super::*; fn f() { if x { } } }\nuse super::Env;"
        ),
        ["config::Env", "config::file::*"]
    );
    // Comments, strings, characters and other crates name nothing; nor does `use<'a>`.
    assert_eq!(
        paths(
            &["config"],
            "// use crate::xapi::Client;\n/* crate::xapi /* nested */ crate::xapi */\n\
             const A: &str = \"crate::xapi\"; const B: &str = r#\"crate::\"xapi\"#;\n\
             const C: char = '\"'; const D: u8 = b'\\''; fn f<'a>() -> impl Sized + use<'a> {}\n\
             use std::fmt; use ::serde::Deserialize; use trust::Fingerprint;\n\
             fn g() { self.crate_name(); Self::new(); }"
        ),
        Vec::<String>::new()
    );
    // At the crate root a bare name is a module of the crate.
    assert_eq!(paths(&[], "use xapi::Client;"), ["xapi::Client"]);
    // Lines are reported.
    assert_eq!(
        crate_paths(&module(&["config"]), "\n\nuse crate::{\n  xapi::Client};"),
        [(4, "xapi::Client".to_string())]
    );

    // And the check fails on them.
    assert!(
        layering_violations("src/config/file.rs", "use crate::xapi::{self as _};")[0]
            .starts_with("src/config/file.rs:1 uses crate::xapi,")
    );
    assert!(!layering_violations("src/config.rs", "fn f() { crate::inventory::x(); }").is_empty());
    assert!(
        !layering_violations(
            "src/metrics/mod.rs",
            "mod t { use super::super::collect::Pool; }"
        )
        .is_empty()
    );
    assert!(!layering_violations("src/server/tape.rs", "use crate::*;").is_empty());
    assert!(!layering_violations("src/newthing.rs", "").is_empty());
    assert!(
        layering_violations("src/xapi/tls.rs", "use crate::config::trust::Fingerprint;").is_empty()
    );
    assert!(layering_violations("src/check.rs", "use crate::xapi::{self, Client};").is_empty());
    assert!(layering_violations("tests/it/tls.rs", "use crate::xapi::Client;").is_empty());
}

#[test]
fn metrics_is_synchronous_and_does_no_io() {
    for (path, text) in sources() {
        if path.starts_with("src/metrics/") {
            for banned in ["async fn", "tokio", "std::fs", "std::net", ".await"] {
                assert!(!text.contains(banned), "{path} contains {banned}");
            }
        }
    }
}

#[test]
fn metric_reference_is_fresh() {
    let path = Path::new(ROOT).join("docs/metrics.md");
    let wanted = xen_exporter::metrics::catalog::reference_markdown();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &wanted).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == wanted,
        "docs/metrics.md is stale: run `UPDATE_GOLDEN=1 cargo test --test it tidy`"
    );
}
