use ballot_model::model::{BallotModel, ModelConfig};
use stateright::{Checker, Model};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let crashes: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let elections: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(2);
    let ops: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(1);
    let dfs = args.get(4).is_some();
    let config = ModelConfig {
        max_crashes: crashes,
        max_elections: elections,
        ops_per_client: ops,
        ..ModelConfig::default()
    };
    let t = std::time::Instant::now();
    let b = BallotModel::new(config)
        .checker()
        .threads(2)
        .timeout(std::time::Duration::from_secs(20));
    let c = if dfs {
        Box::new(b.spawn_dfs().join()) as Box<dyn Checker<BallotModel>>
    } else {
        Box::new(b.spawn_bfs().join())
    };
    println!(
        "unique={} states={} depth={} t={:?}",
        c.unique_state_count(),
        c.state_count(),
        c.max_depth(),
        t.elapsed()
    );
    for p in c.model().properties() {
        let d = c.discovery(p.name);
        println!(
            "{:?} {} {}",
            p.expectation,
            p.name,
            if d.is_some() { "DISCOVERED" } else { "-" }
        );
        if let Some(d) = d {
            if matches!(p.expectation, stateright::Expectation::Always) {
                println!("{}", d);
            }
        }
    }
    if std::env::var("SAMPLE").is_ok() {
        // print a deep sample path
        let m = c.model();
        let mut s = m.init_states().pop().unwrap();
        use rand::Rng;
        let mut rng = rand::rng();
        for i in 0..200 {
            let acts = m.next_steps(&s);
            if acts.is_empty() {
                break;
            }
            let (a, n) = acts[rng.random_range(0..acts.len())].clone();
            println!("{i}: {}", m.format_action(&a));
            s = n;
        }
        println!("{:#?}", s.system.network);
    }
}
