//! Loopback ports for clusters of `ballot` processes that tests start.
//!
//! A port found by binding `127.0.0.1:0` and releasing it is free only for a moment:
//! until the node process binds it, any outgoing connection on the machine may take it
//! as its ephemeral source port (the kernel draws both from the same range), and the
//! node then fails to start. Tests run in parallel and their nodes connect to each other
//! all the time, so this happens. Ports here are drawn from *below* the kernel's
//! ephemeral range, which no outgoing connection and no `bind(0)` ever uses, and each is
//! claimed by an exclusive lock on a file under the temporary directory, so that two
//! test processes never hand out the same port; a probe bind skips ports that something
//! else on the machine already listens on. The locks are released when the
//! [`Reservation`] is dropped or the process dies.
//!
//! This file is shared: `impl/tests` includes it by path.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};

/// Ports below this are left alone (well-known and commonly configured services).
const LOWEST: u16 = 10_000;

/// Ports claimed by this process; released on drop.
#[derive(Debug, Default)]
pub struct Reservation {
    locks: Vec<File>,
}

impl Reservation {
    /// An empty reservation, to claim ports into.
    pub fn new() -> Reservation {
        Reservation::default()
    }

    /// Claims `count` loopback addresses that no other test process holds and nothing
    /// listens on. Falls back to kernel-chosen ports (with the race described above)
    /// only if the range below the ephemeral ports is unusable on this machine.
    pub fn claim(&mut self, count: usize) -> std::io::Result<Vec<SocketAddr>> {
        if usable_span(0).is_none() {
            return (0..count).map(|_| kernel_chosen()).collect();
        }
        (0..count)
            .map(|_| {
                let base = self.claim_base(&[0])?;
                Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, base)))
            })
            .collect()
    }

    /// Claims a base port such that `base + offset` is free and held for every offset
    /// (for `ballot cluster up --base-port`, which derives all its ports from one).
    pub fn claim_base(&mut self, offsets: &[u16]) -> std::io::Result<u16> {
        let highest = offsets.iter().copied().max().unwrap_or(0);
        let span = usable_span(highest).ok_or_else(|| {
            std::io::Error::other("no room for test ports below the ephemeral range")
        })?;
        let dir = lock_dir()?;
        // Start somewhere different in every process, so that concurrent test processes
        // rarely contend for the same lock files.
        let start = std::process::id().wrapping_mul(2_654_435_761) % u32::from(span);
        for step in 0..u32::from(span) {
            let base = LOWEST + ((start + step) % u32::from(span)) as u16;
            let mut held = Vec::with_capacity(offsets.len());
            for &offset in offsets {
                match hold(&dir, base + offset)? {
                    Some(lock) => held.push(lock),
                    None => break,
                }
            }
            if held.len() == offsets.len() {
                self.locks.extend(held);
                return Ok(base);
            }
        }
        Err(std::io::Error::other(
            "no free loopback ports below the ephemeral range",
        ))
    }
}

/// How many bases, from [`LOWEST`], leave `base + highest_offset` below the ephemeral
/// range; `None` if too few to be worth searching.
fn usable_span(highest_offset: u16) -> Option<u16> {
    let (low, _) = ephemeral_range();
    let span = low.checked_sub(LOWEST)?.checked_sub(highest_offset)?;
    (span >= 1_000).then_some(span)
}

/// The lock on `port`, if no other test process holds it and nothing listens on it.
fn hold(dir: &Path, port: u16) -> std::io::Result<Option<File>> {
    let file = File::create(dir.join(format!("{port}.lock")))?;
    if file.try_lock().is_err() {
        return Ok(None);
    }
    let free = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
    Ok(free.then_some(file))
}

/// The kernel's ephemeral port range (`ip_local_port_range`), or Linux's default.
fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let parsed = text.ok().and_then(|t| {
        let mut fields = t.split_whitespace().map(str::parse::<u16>);
        Some((fields.next()?.ok()?, fields.next()?.ok()?))
    });
    parsed.unwrap_or((32_768, 60_999))
}

fn lock_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join("ballot-test-ports");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn kernel_chosen() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_ports_are_distinct_and_outside_the_ephemeral_range() {
        let mut first = Reservation::new();
        let mut second = Reservation::new();
        let a = first.claim(8).unwrap();
        let b = second.claim(8).unwrap();
        let mut all: Vec<u16> = a.iter().chain(&b).map(SocketAddr::port).collect();
        let (low, _) = ephemeral_range();
        assert!(all.iter().all(|&p| p < low), "{all:?} below {low}");
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 16, "two reservations never share a port");
        let base = second.claim_base(&[0, 100, 200]).unwrap();
        for offset in [0, 100, 200] {
            assert!(
                !all.contains(&(base + offset)),
                "{base}+{offset} already held"
            );
        }
    }
}
