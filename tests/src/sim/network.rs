//! A simulated peer network: every frame a node sends is delayed, dropped or
//! duplicated as the seed says, and delivered on the paused clock unless its link was
//! cut or its receiver restarted meanwhile (a connection does not outlive either).

use ballot_model::NodeId;
use ballot_node::frame;
use ballot_node::kv::KvStore;
use ballot_node::node::{PeerFrame, PeerInbox};
use ballot_node::world::PeerNetwork;
use rand::rngs::StdRng;
use rand::Rng;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the seed made this run's network misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weather {
    /// Chance in a million that a frame is lost.
    pub drop_ppm: u32,
    /// Chance in a million that a frame arrives twice.
    pub duplicate_ppm: u32,
    /// Shortest delivery delay.
    pub delay_min: Duration,
    /// Longest delivery delay (frames overtake each other within the spread).
    pub delay_max: Duration,
}

impl Weather {
    /// A healthy network: nothing lost or duplicated, sub-millisecond delays.
    pub const CALM: Weather = Weather {
        drop_ppm: 0,
        duplicate_ppm: 0,
        delay_min: Duration::from_micros(100),
        delay_max: Duration::from_micros(500),
    };
}

/// The network's state, shared by every node's handle and the simulation.
pub struct Fabric {
    rng: StdRng,
    weather: Weather,
    /// `cut[from][to]`: frames from `from` to `to` are lost (one direction).
    cut: Vec<Vec<bool>>,
    /// Each node's inbox in its current life (`None` while it is down), and the life.
    inboxes: Vec<(Option<PeerInbox<KvStore>>, u64)>,
    /// Frames delivered, lost and duplicated so far.
    pub delivered: u64,
    /// See `delivered`.
    pub lost: u64,
    /// See `delivered`.
    pub duplicated: u64,
}

/// A shared [`Fabric`].
pub type SharedFabric = Arc<Mutex<Fabric>>;

fn lock(fabric: &SharedFabric) -> std::sync::MutexGuard<'_, Fabric> {
    fabric.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fabric {
    /// A fabric of `nodes` nodes, all down, every link up.
    pub fn new(nodes: usize, rng: StdRng) -> SharedFabric {
        Arc::new(Mutex::new(Fabric {
            rng,
            weather: Weather::CALM,
            cut: vec![vec![false; nodes]; nodes],
            inboxes: (0..nodes).map(|_| (None, 0)).collect(),
            delivered: 0,
            lost: 0,
            duplicated: 0,
        }))
    }
}

/// Changes the weather.
pub fn set_weather(fabric: &SharedFabric, weather: Weather) {
    lock(fabric).weather = weather;
}

/// Cuts (or restores) frames from `from` to `to`.
pub fn set_cut(fabric: &SharedFabric, from: NodeId, to: NodeId, cut: bool) {
    lock(fabric).cut[from][to] = cut;
}

/// Restores every link.
pub fn heal(fabric: &SharedFabric) {
    for row in &mut lock(fabric).cut {
        row.fill(false);
    }
}

/// Node `id` came up with `inbox` (a new life: frames sent to its last life are lost).
pub fn attach(fabric: &SharedFabric, id: NodeId, inbox: PeerInbox<KvStore>) {
    let entry = &mut lock(fabric).inboxes[id];
    entry.0 = Some(inbox);
    entry.1 += 1;
}

/// Node `id` went down.
pub fn detach(fabric: &SharedFabric, id: NodeId) {
    lock(fabric).inboxes[id].0 = None;
}

/// Frames delivered, lost, duplicated.
pub fn counts(fabric: &SharedFabric) -> (u64, u64, u64) {
    let fabric = lock(fabric);
    (fabric.delivered, fabric.lost, fabric.duplicated)
}

/// One node's sending half.
pub struct SimNetwork {
    me: NodeId,
    fabric: SharedFabric,
}

impl SimNetwork {
    /// Node `me`'s handle on `fabric`.
    pub fn new(me: NodeId, fabric: SharedFabric) -> Self {
        SimNetwork { me, fabric }
    }
}

impl PeerNetwork for SimNetwork {
    fn send(&self, to: NodeId, bytes: Vec<u8>) {
        let (from, fabric) = (self.me, self.fabric.clone());
        let mut state = lock(&fabric);
        let Some(life) = state.inboxes.get(to).map(|(_, life)| *life) else {
            state.lost += 1;
            return;
        };
        let weather = state.weather;
        let copies =
            if state.cut[from][to] || state.rng.random_range(0..1_000_000) < weather.drop_ppm {
                0
            } else if state.rng.random_range(0..1_000_000) < weather.duplicate_ppm {
                2
            } else {
                1
            };
        match copies {
            0 => state.lost += 1,
            2 => state.duplicated += 1,
            _ => {}
        }
        let bytes = Arc::new(bytes);
        for _ in 0..copies {
            let delay = state
                .rng
                .random_range(weather.delay_min..=weather.delay_max);
            let (fabric, bytes) = (fabric.clone(), bytes.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let inbox = {
                    let mut state = lock(&fabric);
                    let (inbox, now) = &state.inboxes[to];
                    // A cut link or a restarted receiver closed the connection.
                    let inbox = (!state.cut[from][to] && *now == life)
                        .then(|| inbox.clone())
                        .flatten();
                    match &inbox {
                        Some(_) => state.delivered += 1,
                        None => state.lost += 1,
                    }
                    inbox
                };
                if let Some(inbox) = inbox {
                    // The node encoded it: length prefix, then the frame.
                    if let Ok(frame) = frame::decode::<PeerFrame<KvStore>>(&bytes[4..]) {
                        inbox.deliver(from, frame, bytes.len());
                    }
                }
            });
        }
    }

    fn dropped_frames(&self) -> u64 {
        0
    }
}
