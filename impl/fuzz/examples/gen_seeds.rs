//! Writes the seed corpus, `corpus/<target>/<name>`, from `ballot_fuzz::seeds`:
//!
//! ```text
//! cargo run --manifest-path impl/fuzz/Cargo.toml --example gen_seeds
//! ```
//!
//! Every file in a target's seed directory is replaced, so a seed that is no longer
//! made disappears; `tests/seeds.rs` fails until this has been run after a change.

use ballot_fuzz::{seeds, TARGETS};
use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let all = seeds::all();
    for target in TARGETS {
        let dir = corpus.join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mine: Vec<_> = all.iter().filter(|seed| seed.target == target).collect();
        let total: usize = mine.iter().map(|seed| seed.bytes.len()).sum();
        for seed in &mine {
            std::fs::write(dir.join(&seed.name), &seed.bytes)?;
        }
        println!("{target}: {} seeds, {total} bytes", mine.len());
    }
    Ok(())
}
