//! The committed seed corpus: it is exactly what `ballot_fuzz::seeds` makes (so it is
//! reproducible), every seed passes its target's check (so the corpus doubles as a
//! regression suite on stable, without cargo-fuzz), it is small, and the `core_step`
//! schedules reach the paths that matter.

use ballot_fuzz::{check, cluster, seeds, TARGETS};
use std::collections::BTreeMap;
use std::path::Path;

/// Seeds of one target stay below this, so the corpus stays reviewable.
const MAX_SEED_BYTES_PER_TARGET: usize = 20 << 10;

fn on_disk(target: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        files.insert(name, std::fs::read(&path).expect("readable"));
    }
    files
}

#[test]
fn committed_seeds_are_the_generated_ones() {
    let all = seeds::all();
    for target in TARGETS {
        let generated: BTreeMap<String, Vec<u8>> = all
            .iter()
            .filter(|seed| seed.target == target)
            .map(|seed| (seed.name.clone(), seed.bytes.clone()))
            .collect();
        assert!(!generated.is_empty(), "{target} has no seeds");
        assert!(
            on_disk(target) == generated,
            "corpus/{target} differs from the generator: run \
             `cargo run --manifest-path impl/fuzz/Cargo.toml --example gen_seeds`"
        );
        let total: usize = generated.values().map(Vec::len).sum();
        assert!(
            total < MAX_SEED_BYTES_PER_TARGET,
            "{target}: {total} bytes of seeds"
        );
    }
}

#[test]
fn every_committed_input_passes_its_check() {
    for target in TARGETS {
        for (name, bytes) in on_disk(target) {
            println!("{target}/{name}");
            check(target, &bytes);
        }
    }
}

#[test]
fn core_step_seeds_reach_the_interesting_paths() {
    let mut total = cluster::Reached::default();
    for (name, bytes) in on_disk("core_step") {
        let reached = cluster::simulate(&bytes);
        println!("{name}: {reached:?}");
        total.leader |= reached.leader;
        total.committed |= reached.committed;
        total.compacted |= reached.compacted;
        total.installed |= reached.installed;
        total.refused |= reached.refused;
        total.restarted |= reached.restarted;
        total.handed_over |= reached.handed_over;
    }
    assert_eq!(
        total,
        cluster::Reached {
            leader: true,
            committed: true,
            compacted: true,
            installed: true,
            refused: true,
            restarted: true,
            handed_over: true,
        }
    );
}
