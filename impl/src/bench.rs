//! The load generator behind `ballot bench`: closed-loop RESP clients that `SET` (and
//! optionally `GET`) random keys for a fixed time, and the figures they measured.
//!
//! ```no_run
//! # async fn run() -> Result<(), String> {
//! use ballot_node::bench::{run_load, Load};
//! let load = Load { clients: 16, seconds: 5, value_size: 100, read_ratio: 0.0, keys: 10_000 };
//! let result = run_load(&["127.0.0.1:7000".to_string()], &load).await?;
//! println!("{:.0} ops/s, p99 {:.3} ms", result.ops_per_second(), result.latency_ms(0.99));
//! # Ok(())
//! # }
//! ```

use crate::client::Client;
use crate::resp::Value;
use std::time::{Duration, Instant};

/// One load's shape.
#[derive(Clone, Debug)]
pub struct Load {
    /// Concurrent closed-loop clients (each waits for its reply before the next request).
    pub clients: usize,
    /// How long the load runs.
    pub seconds: u64,
    /// Bytes per value written.
    pub value_size: usize,
    /// Fraction of operations that are `GET`s, 0.0 to 1.0.
    pub read_ratio: f64,
    /// Distinct keys.
    pub keys: usize,
}

/// What one load measured.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    /// Latencies of the successful operations, ascending.
    pub latencies: Vec<Duration>,
    /// Operations answered with an error reply.
    pub errors: u64,
    /// How long the load ran.
    pub seconds: u64,
}

impl LoadResult {
    /// Successful operations per second.
    pub fn ops_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds.max(1) as f64
    }

    /// The latency at quantile `q` (0.5 for the median), in milliseconds; 0 if nothing
    /// succeeded.
    ///
    /// ```
    /// use ballot_node::bench::LoadResult;
    /// use std::time::Duration;
    /// let result = LoadResult {
    ///     latencies: (1..=100).map(Duration::from_millis).collect(),
    ///     errors: 0,
    ///     seconds: 1,
    /// };
    /// assert_eq!(result.latency_ms(0.99), 99.0);
    /// assert_eq!(result.latency_ms(0.5), 50.0);
    /// ```
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let n = self.latencies.len();
        let index = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        self.latencies[index].as_secs_f64() * 1e3
    }
}

/// Runs `load` against `addrs` (clients spread over them round-robin) and collects the
/// latencies. A connection that fails ends the load with its error.
pub async fn run_load(addrs: &[String], load: &Load) -> Result<LoadResult, String> {
    if load.clients == 0 || addrs.is_empty() {
        return Err("need at least one client and one address".into());
    }
    let deadline = Instant::now() + Duration::from_secs(load.seconds);
    let value = vec![b'x'; load.value_size];
    let mut tasks = Vec::new();
    for c in 0..load.clients {
        let addr = addrs[c % addrs.len()].clone();
        let value = value.clone();
        let (keys, read_ratio) = (load.keys.max(1), load.read_ratio);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(&addr)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            // A per-client linear congruential sequence: different keys per client,
            // the same run to run.
            let mut n = c as u64;
            while Instant::now() < deadline {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = format!("key:{}", (n >> 33) as usize % keys);
                let read = ((n >> 11) as f64 / (1u64 << 53) as f64) < read_ratio;
                let start = Instant::now();
                let reply = if read {
                    client.call(&[b"GET".as_slice(), key.as_bytes()]).await
                } else {
                    client
                        .call(&[b"SET".as_slice(), key.as_bytes(), &value])
                        .await
                };
                match reply {
                    Ok(Value::Error(_)) => errors += 1,
                    Ok(_) => latencies.push(start.elapsed()),
                    Err(e) => return Err(format!("{addr}: {e}")),
                }
            }
            Ok::<_, String>((latencies, errors))
        }));
    }
    let mut result = LoadResult {
        seconds: load.seconds,
        ..LoadResult::default()
    };
    for task in tasks {
        let (latencies, errors) = task.await.map_err(|e| e.to_string())??;
        result.latencies.extend(latencies);
        result.errors += errors;
    }
    result.latencies.sort();
    Ok(result)
}

/// The elections the nodes at `addrs` have started since they started (`INFO`'s
/// `elections`, summed); `None` if one does not answer. Taken before and after a load,
/// it says whether the load made followers give up on a busy leader.
pub async fn elections(addrs: &[String]) -> Option<u64> {
    let mut total = 0;
    for addr in addrs {
        let mut client = Client::connect(addr).await.ok()?;
        let info = client.info().await.ok()?;
        total += info.get("elections")?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Asks each of `addrs` for its role (`INFO`) and returns the leader's address and a
/// follower's, in that order.
pub async fn leader_and_follower(addrs: &[String]) -> Result<(String, String), String> {
    let (mut leader, mut follower) = (None, None);
    for addr in addrs {
        let mut client = Client::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let info = client.info().await.map_err(|e| format!("{addr}: {e}"))?;
        match info.get("role").map(String::as_str) {
            Some("leader") => leader = leader.or(Some(addr.clone())),
            Some("follower") => follower = follower.or(Some(addr.clone())),
            _ => {}
        }
    }
    match (leader, follower) {
        (Some(leader), Some(follower)) => Ok((leader, follower)),
        _ => Err(format!(
            "need the leader and a follower among {addrs:?} (pass every node's address)"
        )),
    }
}
