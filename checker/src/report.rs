//! Rendering outcomes as text for people and as JSON for machines.

use crate::run::Outcome;
use serde_json::{json, Value};

/// The text report of a check. With `safety_only`, unreached targets do not fail it.
pub fn text(outcome: &Outcome, safety_only: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!("model: {}\n", outcome.config));
    out.push_str(&format!(
        "strategy: {:?} with {} thread{}\n",
        outcome.strategy,
        outcome.threads,
        if outcome.threads == 1 { "" } else { "s" }
    ));
    out.push_str(&format!(
        "  states explored  {:>12}\n",
        group(outcome.states)
    ));
    out.push_str(&format!(
        "  unique states    {:>12}\n",
        group(outcome.unique_states)
    ));
    out.push_str(&format!("  max depth        {:>12}\n", outcome.max_depth));
    out.push_str(&format!(
        "  duration         {:>10.2} s  ({} states/s, {} unique/s)\n",
        outcome.duration.as_secs_f64(),
        group(outcome.rate() as usize),
        group(outcome.unique_rate() as usize)
    ));
    if let Some(bytes) = outcome.graph_bytes_per_state {
        out.push_str(&format!("  graph            {bytes:>10.0} B per state\n"));
    }
    out.push_str(&format!(
        "  complete         {:>12}\n",
        if outcome.complete { "yes" } else { "NO" }
    ));
    if let Some(liveness) = &outcome.liveness {
        out.push_str(&format!(
            "liveness: {} states, {} transitions; {} components examined, {} with a cycle, \
             {} fair; {} states cut by a bound; {:.2} s\n",
            group(liveness.unique_states),
            group(liveness.edges),
            group(liveness.components),
            group(liveness.cyclic_components),
            group(liveness.fair_components),
            group(liveness.truncated_states),
            liveness.duration.as_secs_f64()
        ));
    }
    out.push_str("properties:\n");
    for property in &outcome.properties {
        out.push_str(&format!(
            "  {:<10} {:<13} {}\n",
            property.status.name(),
            property.kind.name(),
            property.name
        ));
    }
    for property in &outcome.properties {
        let Some(counterexample) = &property.counterexample else {
            continue;
        };
        out.push_str(&format!(
            "\ncounterexample for \"{}\" ({} steps):\n",
            property.name,
            counterexample.steps.len()
        ));
        for (i, step) in counterexample.steps.iter().enumerate() {
            if counterexample.cycle_start == Some(i) {
                out.push_str("  --- the cycle, repeated forever: ---\n");
            }
            out.push_str(&format!("  {:>3}. {step}\n", i + 1));
        }
        if counterexample.cycle_start == Some(counterexample.steps.len()) {
            out.push_str("  --- and then nothing but faults can happen: the run stops ---\n");
        } else if counterexample.cycle_start.is_some() {
            out.push_str("  --- back to the start of the cycle ---\n");
        }
        if let Some(path) = &counterexample.explorer {
            out.push_str(&format!(
                "explorer: `ballot-check explore` with the same flags, then open {path}\n"
            ));
        }
        out.push_str("final state:\n");
        for line in &counterexample.final_state {
            out.push_str(&format!("  {line}\n"));
        }
        if let Some(reason) = &counterexample.reason {
            out.push_str(&format!("why: {reason}\n"));
        }
    }
    out.push_str(&format!(
        "\nresult: {}\n",
        if outcome.passed() && outcome.complete && outcome.liveness.is_some() {
            "OK: every safety and liveness property holds and every reachability target was found"
        } else if outcome.passed() && outcome.complete {
            "OK: every safety property holds and every reachability target was found"
        } else if safety_only && outcome.passed_without_targets() && outcome.complete {
            "OK: no property violated (reachability targets not required)"
        } else if outcome.passed() || (safety_only && outcome.passed_without_targets()) {
            "no violation found, but the exploration was incomplete"
        } else {
            "FAILED"
        }
    ));
    out
}

/// The JSON object of a check.
pub fn json(outcome: &Outcome) -> Value {
    json!({
        "config": outcome.config,
        "strategy": format!("{:?}", outcome.strategy).to_lowercase(),
        "threads": outcome.threads,
        "unique_states": outcome.unique_states,
        "states": outcome.states,
        "max_depth": outcome.max_depth,
        "duration_s": outcome.duration.as_secs_f64(),
        "states_per_s": outcome.rate(),
        "unique_states_per_s": outcome.unique_rate(),
        "graph_bytes_per_state": outcome.graph_bytes_per_state,
        "complete": outcome.complete,
        "passed": outcome.passed(),
        "liveness": outcome.liveness.as_ref().map(|l| json!({
            "unique_states": l.unique_states,
            "edges": l.edges,
            "components": l.components,
            "cyclic_components": l.cyclic_components,
            "fair_components": l.fair_components,
            "truncated_states": l.truncated_states,
            "duration_s": l.duration.as_secs_f64(),
        })),
        "properties": outcome.properties.iter().map(|p| {
            let mut value = json!({
                "name": p.name,
                "kind": p.kind.name(),
                "status": p.status.name(),
            });
            if let Some(counterexample) = &p.counterexample {
                value["trace"] = json!(counterexample.steps);
                value["reason"] = json!(counterexample.reason);
                if let Some(start) = counterexample.cycle_start {
                    value["cycle_start"] = json!(start);
                }
                if let Some(path) = &counterexample.explorer {
                    value["explorer"] = json!(path);
                }
            }
            value
        }).collect::<Vec<_>>(),
    })
}

/// `1234567` → `1,234,567`.
pub fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }
}
