//! The `ballot-check` binary as users and CI run it: exit codes, text and JSON reports.

use serde_json::Value;
use std::process::{Command, Output};

const SAFETY: &str = "safety";
const REACHABILITY: &str = "reachability";
const LIVENESS: &str = "liveness";

/// Runs `ballot-check` with `args`.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ballot-check"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ballot-check {args:?}: {e}"))
}

fn describe(args: &[&str], output: &Output) -> String {
    format!(
        "ballot-check {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `ballot-check` with `args` and asserts its exit code.
fn run_expecting(args: &[&str], code: i32) -> Output {
    let output = run(args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        describe(args, &output)
    );
    output
}

/// Runs `ballot-check` with `args`, asserts its exit code, and parses stdout as JSON.
fn run_json(args: &[&str], code: i32) -> Value {
    let output = run_expecting(args, code);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e})\n{}",
            describe(args, &output)
        )
    })
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

/// The `properties` array of a check report, with each entry's shape checked.
fn properties(report: &Value) -> &Vec<Value> {
    let properties = report["properties"]
        .as_array()
        .unwrap_or_else(|| panic!("no properties array in {report}"));
    assert!([12, 16, 17].contains(&properties.len()), "{report}");
    for property in properties {
        assert!(property["name"].is_string(), "{property}");
        let kind = property["kind"].as_str().expect("kind");
        assert!(
            kind == SAFETY || kind == REACHABILITY || kind == LIVENESS,
            "{property}"
        );
        assert!(property["status"].is_string(), "{property}");
    }
    properties
}

fn status<'a>(properties: &'a [Value], name: &str) -> &'a str {
    properties
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["status"].as_str())
        .unwrap_or_else(|| panic!("no property {name:?}"))
}

fn of_kind<'a>(properties: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    properties.iter().filter(move |p| p["kind"] == kind)
}

#[test]
fn json_report_no_crash() {
    let args = ["check", "--crashes", "0", "--elections", "1", "--json"];
    // Failover and deduplication are out of reach without a crash, so the check fails
    // by design (every reachability target must be found): exit 1, but a complete,
    // well-formed report in which every safety property holds.
    let report = run_json(&args, 1);
    assert_eq!(report["unique_states"], 1569, "{report}");
    for key in ["states", "max_depth"] {
        assert!(report[key].is_u64(), "{key} in {report}");
    }
    assert!(
        report["states"].as_u64() >= report["unique_states"].as_u64(),
        "{report}"
    );
    assert!(report["duration_s"].is_f64(), "{report}");
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["passed"], false, "{report}");
    let properties = properties(&report);
    assert_eq!(of_kind(properties, SAFETY).count(), 8);
    assert_eq!(of_kind(properties, REACHABILITY).count(), 4);
    for property in of_kind(properties, SAFETY) {
        assert_eq!(property["status"], "holds", "{property}");
        assert!(property.get("trace").is_none(), "{property}");
    }
    assert_eq!(status(properties, "write commits"), "found");
    assert_eq!(status(properties, "read served by read-index"), "found");
    assert_eq!(
        status(properties, "failover commits a later write"),
        "not found"
    );
    assert_eq!(
        status(properties, "duplicate request deduplicated"),
        "not found"
    );
}

#[test]
fn client_symmetry_explores_one_state_per_class() {
    let world = [
        "check",
        "--writes-only",
        "--clients",
        "2",
        "--ops",
        "1",
        "--crashes",
        "0",
        "--safety-only",
        "--no-liveness",
        "--json",
    ];
    let full = run_json(&world, 0);
    let reduced = run_json(&[&world[..], &["--symmetry"]].concat(), 0);
    assert_eq!(full["unique_states"], 11_746, "{full}");
    assert_eq!(reduced["unique_states"], 6_326, "{reduced}");
    assert!(
        reduced["config"]
            .as_str()
            .is_some_and(|c| c.contains("symmetry=clients")),
        "{reduced}"
    );
    for property in properties(&full) {
        let name = property["name"].as_str().expect("a name");
        assert_eq!(
            status(properties(&reduced), name),
            property["status"],
            "{name}"
        );
    }
}

#[test]
fn a_leadership_transfer_is_reached_and_every_property_holds_with_it() {
    // One write (so a transfer can meet it in flight), no crash and one election: the
    // only other ballot is the transfer's. Without transfers this world has 1,569
    // states, since no second ballot is ever due.
    let args = [
        "check",
        "--transfers",
        "1",
        "--crashes",
        "0",
        "--elections",
        "1",
        "--ops",
        "1",
        "--safety-only",
        "--json",
    ];
    let report = run_json(&args, 0);
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["unique_states"], 66_288, "{report}");
    let properties = properties(&report);
    for kind in [SAFETY, LIVENESS] {
        for property in of_kind(properties, kind) {
            assert_eq!(property["status"], "holds", "{property}");
        }
    }
    assert_eq!(
        status(properties, "a transfer hands leadership over"),
        "found"
    );
}

#[test]
fn text_report_no_crash_fails_on_unreached_targets() {
    let args = ["check", "--crashes", "0", "--elections", "1"];
    let output = run_expecting(&args, 1);
    let text = stdout(&output);
    assert!(text.contains("not found"), "{}", describe(&args, &output));
    assert!(text.contains("1,569"), "{}", describe(&args, &output));
    assert!(text.contains("FAILED"), "{}", describe(&args, &output));
    assert!(!text.contains("violated"), "{}", describe(&args, &output));
}

#[test]
fn mutant_json_has_counterexample() {
    let args = ["check", "--mutant", "minority-commit", "--json"];
    let report = run_json(&args, 1);
    assert_eq!(report["passed"], false, "{report}");
    // The check stops at the first violation, so it is incomplete.
    assert_eq!(report["complete"], false, "{report}");
    let properties = properties(&report);
    let violated: Vec<&Value> = of_kind(properties, SAFETY)
        .filter(|p| p["status"] == "violated")
        .collect();
    assert!(!violated.is_empty(), "no violation in {report}");
    for property in violated {
        let trace = property["trace"]
            .as_array()
            .unwrap_or_else(|| panic!("no trace in {property}"));
        assert!(!trace.is_empty(), "{property}");
        assert!(trace.iter().all(Value::is_string), "{property}");
        assert!(property["reason"].is_string(), "{property}");
    }
    // A violated property is never reported for a reachability target.
    assert!(of_kind(properties, REACHABILITY).all(|p| p["status"] != "violated"));
}

#[test]
fn mutant_text_has_counterexample() {
    let args = ["check", "--mutant", "minority-commit"];
    let output = run_expecting(&args, 1);
    let text = stdout(&output);
    for needle in [
        "violated",
        "counterexample for",
        "final state:",
        "why:",
        "FAILED",
    ] {
        assert!(
            text.contains(needle),
            "missing {needle:?}\n{}",
            describe(&args, &output)
        );
    }
}

/// A swarm search on one thread bounded by walks is a pure function of its seed (what
/// the swarm witnesses of `mutants` rely on); another seed walks elsewhere.
#[test]
fn a_swarm_bounded_by_walks_on_one_thread_repeats_itself() {
    let search = |seed: &str| {
        let args = [
            "check",
            "--strategy",
            "swarm",
            "--walks",
            "300",
            "--threads",
            "1",
            "--seed",
            seed,
            "--clients",
            "2",
            "--ops",
            "2",
            "--safety-only",
            "--json",
        ];
        let report = run_json(&args, 0);
        assert_eq!(report["complete"], false, "{report}");
        (report["states"].clone(), report["unique_states"].clone())
    };
    let first = search("7");
    assert!(
        first.1.as_u64().is_some_and(|unique| unique > 1_000),
        "{first:?}"
    );
    assert_eq!(search("7"), first);
    assert_ne!(search("8"), first);
}

#[test]
fn bad_usage_exits_2() {
    let cases: [&[&str]; 13] = [
        &["check", "--servers", "0"],
        &["check", "--network", "bogus"],
        &["check", "--timing", "bogus"],
        // The default clients' scripts differ; liveness is not decided under it; a
        // bounded client table's expiry compares ids; walks have no classes.
        &["check", "--symmetry", "--no-liveness"],
        &["check", "--symmetry", "--writes-only", "--clients", "2"],
        &[
            "check",
            "--symmetry",
            "--no-liveness",
            "--writes-only",
            "--clients",
            "2",
            "--sessions-max",
            "1",
        ],
        &[
            "check",
            "--symmetry",
            "--no-liveness",
            "--writes-only",
            "--clients",
            "2",
            "--strategy",
            "swarm",
        ],
        // A walk budget bounds only a swarm search.
        &["check", "--walks", "100"],
        &["check", "--write-first", "--writes-only"],
        &["check", "--scenario", "bogus"],
        &["check", "--scenario", "chained", "--servers", "5"],
        &["mutants", "--only", "bogus"],
        &[],
    ];
    for args in cases {
        let output = run_expecting(args, 2);
        assert!(
            output.stdout.is_empty(),
            "bad usage printed a report\n{}",
            describe(args, &output)
        );
        assert!(
            !output.stderr.is_empty(),
            "bad usage explained nothing\n{}",
            describe(args, &output)
        );
    }
}

#[test]
fn every_mutant_caught() {
    let args = ["mutants", "--json"];
    let report = run_json(&args, 0);
    assert_eq!(report["all_caught"], true, "{report}");
    let mutants = report["mutants"]
        .as_array()
        .unwrap_or_else(|| panic!("no mutants array in {report}"));
    assert!(
        mutants.len() >= 8,
        "only {} mutants: {report}",
        mutants.len()
    );
    for mutant in mutants {
        assert!(mutant["name"].is_string(), "{mutant}");
        assert_eq!(mutant["caught"], true, "{mutant}");
        let caught_by = mutant["caught_by"]
            .as_array()
            .unwrap_or_else(|| panic!("no caught_by in {mutant}"));
        assert!(!caught_by.is_empty(), "{mutant}");
        assert!(caught_by.iter().all(Value::is_string), "{mutant}");
    }
}

/// The README's main command.
#[test]
fn default_check_passes() {
    let args = ["check", "--json"];
    let report = run_json(&args, 0);
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["unique_states"], 462_797, "{report}");
    let properties = properties(&report);
    assert_eq!(of_kind(properties, LIVENESS).count(), 4, "{report}");
    for property in properties {
        let expected = if property["kind"] == REACHABILITY {
            "found"
        } else {
            "holds"
        };
        assert_eq!(property["status"], expected, "{property}");
    }
    let liveness = &report["liveness"];
    assert_eq!(liveness["unique_states"], 462_797, "{report}");
    assert!(
        liveness["components"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    assert_eq!(liveness["truncated_states"], 0, "{report}");
}

/// A liveness mutant is caught by liveness alone, with a lasso.
#[test]
fn liveness_mutant_has_a_lasso() {
    let args = ["check", "--mutant", "ignore-recovered-slots", "--json"];
    let report = run_json(&args, 1);
    let properties = properties(&report);
    for property in of_kind(properties, SAFETY) {
        assert_eq!(property["status"], "holds", "{property}");
    }
    let violated: Vec<&Value> = of_kind(properties, LIVENESS)
        .filter(|p| p["status"] == "violated")
        .collect();
    assert!(!violated.is_empty(), "{report}");
    for property in violated {
        let trace = property["trace"].as_array().expect("a trace");
        let start = property["cycle_start"].as_u64().expect("a cycle start") as usize;
        assert!(start <= trace.len(), "{property}");
        let path = property["explorer"].as_str().expect("an explorer path");
        assert!(path.starts_with("#/steps/0/"), "{property}");
        assert_eq!(path.split('/').count(), trace.len() + 3, "{property}");
    }
}

/// The partial-connectivity presets are live: a leader is elected and stays, the write
/// is answered, live replicas converge; and no run is cut by the election budget.
/// (`quorum-loss`, the largest, is checked by CI in release mode.)
#[test]
fn partial_connectivity_scenarios_are_live() {
    for (scenario, cut) in [
        ("chained", "cut 0-2"),
        ("constrained", "cut 0-1,0-2"),
        ("learner-behind-leader", "cut 1-3,2-3"),
    ] {
        let args = ["check", "--scenario", scenario, "--json"];
        let report = run_json(&args, 0);
        assert!(
            report["config"].as_str().is_some_and(|c| c.contains(cut)),
            "{report}"
        );
        assert_eq!(report["liveness"]["truncated_states"], 0, "{report}");
        let liveness: Vec<&Value> = of_kind(properties(&report), LIVENESS).collect();
        assert_eq!(liveness.len(), 4, "{report}");
        for property in liveness {
            assert_eq!(property["status"], "holds", "{property}");
        }
    }
}
