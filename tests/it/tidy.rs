//! Style rules as tests: every source file opens with a `//!` header, the pipeline's layers
//! only import downstream-to-upstream, and generated documents are fresh.

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

/// (module path prefix, crate modules it must not use)
const LAYERS: &[(&str, &[&str])] = &[
    (
        "src/config.rs",
        &["xapi::Client", "inventory", "collect", "metrics", "server"],
    ),
    ("src/xapi/", &["inventory", "collect", "metrics", "server"]),
    ("src/inventory/", &["collect", "metrics", "server"]),
    (
        "src/metrics/",
        &["config", "xapi", "inventory", "collect", "server"],
    ),
    ("src/server/", &["xapi", "inventory"]),
];

#[test]
fn layers_only_depend_upstream() {
    for (path, text) in sources() {
        for (prefix, banned) in LAYERS {
            if !path.starts_with(prefix) {
                continue;
            }
            for module in *banned {
                for pattern in [
                    format!("crate::{module}"),
                    format!("super::super::{module}"),
                ] {
                    assert!(
                        !text.contains(&pattern),
                        "{path} uses {pattern}: data flows config → xapi → inventory → collect → metrics → server, and sim stands apart"
                    );
                }
            }
        }
    }
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
