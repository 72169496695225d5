//! Verification beside, not inside, the shipped code: the node depends on the protocol
//! core of `ballot-model` without its `model` feature, so stateright is not in its
//! dependency graph, and never on the core's deliberately broken `mutants`.
//!
//! Read from `cargo tree` on this workspace's lock file, offline: everything it needs was
//! fetched to build this test.

use std::process::Command;

/// The node's normal (not dev-, not build-) dependency graph with the features each
/// crate is built with, one `cargo tree --prefix none` line per node of the graph:
/// `name vX.Y.Z (…)` for a crate, `name feature "f"` for a feature enabled on it.
fn node_dependency_lines() -> Vec<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--manifest-path", manifest, "-p", "ballot-node"])
        .args(["-e", "normal,features", "--prefix", "none"])
        // The lock file as committed, from the local registry cache: never rewrite the
        // lock or reach the network from a test.
        .args(["--locked", "--offline"])
        .output()
        .unwrap_or_else(|e| panic!("running {} tree: {e}", env!("CARGO")));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree failed ({}):\n{}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_string).collect()
}

/// The lines of a dependency graph (as [`node_dependency_lines`] prints it) that a
/// production build must not have: a stateright crate or any of its features, and the
/// model crate's `model` (which brings stateright) or `mutants` features.
fn offences(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .map(String::as_str)
        .filter(|line| {
            line.starts_with("stateright")
                || line.starts_with("ballot-model feature \"model\"")
                || line.starts_with("ballot-model feature \"mutants\"")
        })
        .collect()
}

#[test]
fn node_dependency_tree_has_no_stateright_and_no_mutants() {
    let lines = node_dependency_lines();
    // The graph was read, and it is the node's: the core and the runtime are in it.
    assert!(
        lines.iter().any(|line| line.starts_with("ballot-model v")),
        "ballot-model missing from the node's dependency tree:\n{}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|line| line.starts_with("tokio v")),
        "tokio missing from the node's dependency tree:\n{}",
        lines.join("\n")
    );
    let found = offences(&lines);
    assert!(
        found.is_empty(),
        "the node must depend on ballot-model with `default-features = false` and \
         without `mutants`; its dependency tree has:\n{}",
        found.join("\n")
    );
}

#[test]
fn offences_are_the_model_checker_and_the_verification_features() {
    // Lines as `cargo tree -p ballot-checker -e normal,features --prefix none` prints them.
    let lines = [
        "ballot-model v0.1.0 (/src/model)",
        "ballot-model feature \"default\"",
        "ballot-model feature \"model\"",
        "ballot-model feature \"mutants\" (*)",
        "serde feature \"derive\"",
        "stateright v0.31.0",
        "stateright feature \"default\"",
        "tokio v1.54.1",
    ]
    .map(str::to_string);
    assert_eq!(
        offences(&lines),
        [
            "ballot-model feature \"model\"",
            "ballot-model feature \"mutants\" (*)",
            "stateright v0.31.0",
            "stateright feature \"default\"",
        ]
    );
}
