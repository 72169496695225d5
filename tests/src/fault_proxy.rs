//! A fault-injecting TCP proxy for every directed peer link, so the nemesis can
//! partition and slow a cluster whose nodes do not know they are tested.
//!
//! Node `j` is configured to reach peer `i` at this proxy's address for the link
//! `j → i`, which forwards to `i`'s real peer address. (Each node dials its own outbound
//! connection per peer and sends only on it, so one directed link carries only `j`'s
//! frames to `i`, plus the handshake's answer.) A link can be *cut* — its connections
//! are closed and new ones closed on accept, as a partition looks to TCP after the
//! kernel gives up — or *delayed*, every chunk held back before it is forwarded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The controllable state of one directed link.
#[derive(Debug, Default)]
pub struct Link {
    cut: AtomicBool,
    /// Bumped on every cut: forwarding tasks of an older generation stop.
    generation: AtomicU64,
    delay_ms: AtomicU64,
}

impl Link {
    /// Cuts the link (closing its connections) or heals it.
    pub fn set_cut(&self, cut: bool) {
        if cut {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// Holds every chunk back this long before forwarding it (0: no delay).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

/// Proxies for every directed link of an `n`-node cluster.
pub struct Proxies {
    nodes: usize,
    /// `links[from * nodes + to]`.
    links: Vec<Arc<Link>>,
    /// `addrs[from * nodes + to]`: where `from` dials `to`.
    addrs: Vec<SocketAddr>,
    tasks: JoinSet<()>,
}

impl Proxies {
    /// Binds a proxy on loopback for every directed link `from → to` (`from != to`),
    /// forwarding to `targets[to]`.
    pub async fn start(targets: &[SocketAddr]) -> std::io::Result<Self> {
        let nodes = targets.len();
        let mut links = Vec::new();
        let mut addrs = Vec::new();
        let mut tasks = JoinSet::new();
        for from in 0..nodes {
            for (to, &target) in targets.iter().enumerate() {
                let link = Arc::new(Link::default());
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addrs.push(listener.local_addr()?);
                links.push(link.clone());
                if from != to {
                    tasks.spawn(accept_loop(listener, target, link));
                }
            }
        }
        Ok(Proxies {
            nodes,
            links,
            addrs,
            tasks,
        })
    }

    /// The peer list node `from` is configured with: its own real address, and the
    /// proxy of each of its outbound links.
    pub fn peers_for(&self, from: usize, targets: &[SocketAddr]) -> Vec<SocketAddr> {
        (0..self.nodes)
            .map(|to| {
                if to == from {
                    targets[to]
                } else {
                    self.addrs[from * self.nodes + to]
                }
            })
            .collect()
    }

    /// The link `from → to`.
    pub fn link(&self, from: usize, to: usize) -> &Link {
        &self.links[from * self.nodes + to]
    }

    /// Cuts (or heals) both directions between `a` and `b`.
    pub fn set_cut_between(&self, a: usize, b: usize, cut: bool) {
        self.link(a, b).set_cut(cut);
        self.link(b, a).set_cut(cut);
    }

    /// Heals every link and removes every delay.
    pub fn heal_all(&self) {
        for link in &self.links {
            link.set_cut(false);
            link.set_delay(Duration::ZERO);
        }
    }

    /// Stops every proxy.
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, link: Arc<Link>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Reap finished connections so the set does not grow for ever.
        while connections.try_join_next().is_some() {}
        if link.is_cut() {
            drop(inbound);
            continue;
        }
        connections.spawn(forward_connection(inbound, target, link.clone()));
    }
}

async fn forward_connection(inbound: TcpStream, target: SocketAddr, link: Arc<Link>) {
    let generation = link.generation.load(Ordering::SeqCst);
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    // Whichever direction ends (EOF, error, or the link cut) ends both: dropping the
    // halves closes the sockets.
    tokio::select! {
        _ = pump(in_read, out_write, &link, generation) => {}
        _ = pump(out_read, in_write, &link, generation) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: &Link,
    generation: u64,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    let alive = || link.generation.load(Ordering::SeqCst) == generation && !link.is_cut();
    loop {
        // Wake up now and then to notice a cut on an idle connection.
        let read = tokio::time::timeout(Duration::from_millis(50), from.read(&mut buffer)).await;
        if !alive() {
            return;
        }
        let n = match read {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        let delay = link.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if !alive() {
                return;
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server standing in for a node's peer port.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 || stream.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends `ping` through `addr` and waits (at most 2 s) for the echo.
    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        stream.write_all(b"ping").await?;
        let mut reply = vec![0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut reply))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        Ok(reply)
    }

    #[tokio::test]
    async fn a_cut_link_closes_its_connections_and_refuses_new_ones_until_healed() {
        let targets = vec![echo_server().await, echo_server().await];
        let proxies = Proxies::start(&targets).await.unwrap();
        let via = proxies.peers_for(0, &targets)[1];
        assert_ne!(via, targets[1], "node 0 reaches node 1 through the proxy");
        assert_eq!(proxies.peers_for(0, &targets)[0], targets[0]);

        let mut stream = TcpStream::connect(via).await.unwrap();
        assert_eq!(round_trip(&mut stream).await.unwrap(), b"ping");

        proxies.set_cut_between(0, 1, true);
        assert!(
            round_trip(&mut stream).await.is_err(),
            "an open connection is closed by the cut"
        );
        let mut fresh = TcpStream::connect(via).await.unwrap();
        assert!(
            round_trip(&mut fresh).await.is_err(),
            "a new connection is closed while the link is cut"
        );

        proxies.heal_all();
        let mut healed = TcpStream::connect(via).await.unwrap();
        assert_eq!(round_trip(&mut healed).await.unwrap(), b"ping");
        proxies.shutdown().await;
    }

    #[tokio::test]
    async fn a_delayed_link_holds_messages_back() {
        let targets = vec![echo_server().await, echo_server().await];
        let proxies = Proxies::start(&targets).await.unwrap();
        let mut stream = TcpStream::connect(proxies.peers_for(0, &targets)[1])
            .await
            .unwrap();
        proxies.link(0, 1).set_delay(Duration::from_millis(200));
        let started = std::time::Instant::now();
        assert_eq!(round_trip(&mut stream).await.unwrap(), b"ping");
        // Both directions of the connection go through the delayed link's pumps.
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "answered after {:?}",
            started.elapsed()
        );
        proxies.shutdown().await;
    }
}
