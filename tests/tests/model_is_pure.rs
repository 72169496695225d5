//! The sans-IO rule, enforced: the model crate does no I/O, reads no clock, spawns no
//! thread, draws no randomness, and its core depends on nothing but serde and thiserror
//! (stateright only behind the optional `model` feature). Everything that touches the
//! world lives in other crates.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Text that must not appear in the model's code (comments aside).
const FORBIDDEN: [&str; 10] = [
    "std::net",
    "std::fs",
    "std::thread",
    "std::time",
    "Instant::now",
    "SystemTime",
    "tokio",
    "rand::",
    "std::process",
    "std::env",
];

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Each line of `text` (from `file`) that uses a forbidden item, as `file:line: …`.
/// Lines that are comments (`//`, `///`, `//!`) are skipped.
fn offences_in(file: &str, text: &str) -> Vec<String> {
    let mut offences = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for pattern in FORBIDDEN {
            if line.contains(pattern) {
                offences.push(format!(
                    "{file}:{}: `{pattern}` in: {}",
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    offences
}

#[test]
fn scanner_reports_file_and_line() {
    let text = [
        "//! Uses std::time in a doc comment only.",
        "use std::collections::BTreeMap;",
        "    // let now = Instant::now();",
        "    let now = std::time::Instant::now();",
    ]
    .join("\n");
    assert_eq!(
        offences_in("x.rs", &text),
        [
            "x.rs:4: `std::time` in: let now = std::time::Instant::now();",
            "x.rs:4: `Instant::now` in: let now = std::time::Instant::now();",
        ]
    );
}

#[test]
fn model_sources_do_no_io() {
    let src = model_dir().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("lib.rs")) && files.len() > 5,
        "expected the model's sources under {}, found {files:?}",
        src.display()
    );
    let mut offences = Vec::new();
    for file in &files {
        let text =
            fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        offences.extend(offences_in(&file.display().to_string(), &text));
    }
    assert!(
        offences.is_empty(),
        "the model crate must stay sans-IO:\n{}",
        offences.join("\n")
    );
}

/// The names in `[dependencies]` of a Cargo manifest (not dev- or build-dependencies,
/// not target-specific tables), each with whether it is optional. Handles `name = …`
/// lines and `[dependencies.name]` tables.
fn dependencies(manifest: &str) -> BTreeMap<String, bool> {
    let mut names = BTreeMap::new();
    let mut in_dependencies = false;
    // Inside `[dependencies.name]`: the name, whose `optional = …` line follows.
    let mut table: Option<String> = None;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']').trim();
            in_dependencies = header == "dependencies";
            table = header
                .strip_prefix("dependencies.")
                .map(|name| name.trim().trim_matches('"').to_string());
            if let Some(name) = &table {
                names.insert(name.clone(), false);
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if let Some(name) = &table {
            if key.trim() == "optional" {
                names.insert(name.clone(), value.trim() == "true");
            }
        } else if in_dependencies {
            let name = key.trim().trim_matches('"');
            // `name.workspace = true` and `name.version = "…"` forms.
            let name = name.split('.').next().unwrap_or(name).trim();
            let optional = value.replace(' ', "").contains("optional=true");
            names.insert(name.to_string(), optional);
        }
    }
    names
}

#[test]
fn model_core_depends_only_on_serde_thiserror_and_the_model_on_stateright() {
    let path = model_dir().join("Cargo.toml");
    let manifest =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let found = dependencies(&manifest);
    let named = |optional: bool| -> BTreeSet<&str> {
        found
            .iter()
            .filter(|(_, &o)| o == optional)
            .map(|(name, _)| name.as_str())
            .collect()
    };
    assert_eq!(
        named(false),
        BTreeSet::from(["serde", "thiserror"]),
        "{}: the core's [dependencies] must be exactly serde and thiserror",
        path.display()
    );
    assert_eq!(
        named(true),
        BTreeSet::from(["ahash", "stateright"]),
        "{}: the only optional dependencies are the `model` feature's: stateright, and \
         aHash for the fingerprints it tells states apart by",
        path.display()
    );
    // No target-specific dependency table sneaks one in either.
    assert!(
        !manifest.contains("[target."),
        "{}: target-specific dependencies in the model crate",
        path.display()
    );
}

#[test]
fn dependency_parser_reads_the_forms_cargo_accepts() {
    let manifest = r#"
[package]
name = "x"

[dependencies]
a = "1"
b.workspace = true
"c" = { version = "1" }  # comment
f = { version = "1", optional = true }

[dev-dependencies]
d = "1"

[dependencies.e]
version = "1"
optional = true
"#;
    let names: Vec<(String, bool)> = dependencies(manifest).into_iter().collect();
    let expected = [
        ("a", false),
        ("b", false),
        ("c", false),
        ("e", true),
        ("f", true),
    ]
    .map(|(name, optional)| (name.to_string(), optional));
    assert_eq!(names, expected);
}
