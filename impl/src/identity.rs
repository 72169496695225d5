//! Which cluster and which member a data directory belongs to, and the rules that keep a
//! node from voting with a lost disk.
//!
//! An acceptor's votes and promises are what make Paxos safe: once a value is chosen by
//! a majority, every later majority holds at least one acceptor that remembers voting for
//! it. A node whose disk was lost and that starts again empty has forgotten its votes,
//! and counting it in a majority can let a second value be chosen for a slot (SPEC §3.4).
//! So a node only acts on a data directory that says, in its [`FILE_NAME`] file, that it
//! belongs to this member of this cluster:
//!
//! - a directory with an identity for another cluster or another member is refused
//!   ([`IdentityError::Foreign`]), as is one whose log went missing after it was marked
//!   ([`IdentityError::LogMissing`]);
//! - an empty directory is a new member only when the operator says so with
//!   `bootstrap` (`ballot node --bootstrap`; `ballot cluster up` passes it when it
//!   creates a cluster); otherwise it is refused ([`IdentityError::NotBootstrapped`]),
//!   with a message that says what to do, since it is what a lost disk looks like;
//! - a directory that holds a log or a snapshot but no identity (written before
//!   directories carried one) is adopted: its votes are on disk.
//!
//! The identity file is written once, durably (temporary file, fsync, rename, fsync of
//! the directory), after the log file exists, so a crash while bootstrapping leaves a
//! directory that bootstrapping again completes.
//!
//! A second line of defence covers the operator who bootstraps a member that lost its
//! disk anyway: every bootstrap draws a fresh [`Incarnation`], which the peer handshake
//! carries. Each member records, durably and before it accepts a single frame, the
//! incarnation each peer had when they first met ([`KnownPeers`], the [`PEERS_FILE`]),
//! and refuses a peer that comes back as another one ([`IdentityError::Reincarnated`]):
//! a member that forgot its votes then cannot reach any peer that knew it.

use crate::snapshot_store::SnapshotDir;
use crate::wal;
use ballot_model::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Name of the identity file inside a node's data directory.
pub const FILE_NAME: &str = "IDENTITY";

/// Name of the file, inside a node's data directory, that records each peer's
/// incarnation ([`KnownPeers`]).
pub const PEERS_FILE: &str = "PEERS";

/// The identity file's format version.
const FORMAT: u32 = 1;

/// Longest identity file read; a real one is under 300 bytes.
const FILE_BYTES_MAX: u64 = 4096;

/// A cluster's identity: 128 random bits chosen when the cluster is created, written in
/// every member's configuration and data directory, and checked at every peer
/// handshake, so that nodes of two clusters never mix.
///
/// ```
/// use ballot_node::identity::ClusterId;
/// let id: ClusterId = "0123456789abcdef0123456789abcdef".parse().unwrap();
/// assert_eq!(id.to_string(), "0123456789abcdef0123456789abcdef");
/// assert!("not hex".parse::<ClusterId>().is_err());
/// assert_ne!(ClusterId::random(), ClusterId::random());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u128);

impl ClusterId {
    /// A fresh identity, for a new cluster.
    pub fn random() -> Self {
        ClusterId(rand::random())
    }

    /// The identity as it travels in the handshake.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// The identity from its handshake bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        ClusterId(u128::from_le_bytes(bytes))
    }
}

/// One life of a member's data directory: 64 random bits drawn when it is bootstrapped
/// (or adopted). A member that lost its disk and is bootstrapped again has another.
///
/// ```
/// use ballot_node::identity::Incarnation;
/// let i = Incarnation::random();
/// assert_eq!(i.to_string().parse::<Incarnation>(), Ok(i));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Incarnation(pub u64);

impl Incarnation {
    /// A fresh incarnation.
    pub fn random() -> Self {
        Incarnation(rand::random())
    }
}

/// A newtype over an unsigned integer, written as exactly `$digits` lowercase
/// hexadecimal digits: in text, in files people read, and in serde.
macro_rules! fixed_hex {
    ($type:ident, $int:ty, $digits:literal, $what:literal) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:0width$x}", self.0, width = $digits)
            }
        }

        impl FromStr for $type {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                if text.len() != $digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "{} is {} hexadecimal digits, not `{text}`",
                        $what, $digits
                    ));
                }
                <$int>::from_str_radix(text, 16)
                    .map($type)
                    .map_err(|e| e.to_string())
            }
        }

        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

fixed_hex!(ClusterId, u128, 32, "a cluster id");
fixed_hex!(Incarnation, u64, 16, "an incarnation");

/// Which member of which cluster a data directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The cluster.
    pub cluster: ClusterId,
    /// The member's id.
    pub member: NodeId,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member {} of cluster {}", self.member, self.cluster)
    }
}

/// What a data directory's identity file records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Whose directory it is.
    pub identity: Identity,
    /// Which life of it.
    pub incarnation: Incarnation,
}

/// The identity file's contents.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    format: u32,
    cluster: ClusterId,
    member: NodeId,
    incarnation: Incarnation,
}

/// How a start found its data directory (what [`admit`] decided).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It already belonged to this member.
    Known,
    /// It held this member's data from before directories carried an identity; the
    /// identity is now written.
    Adopted,
    /// It was empty and the operator asked to bootstrap: a new member.
    Bootstrapped,
}

/// Why a node may not use a data directory.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file-system call failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The identity file is not one this build wrote.
    #[error("the identity file {path} is damaged or from another version ({reason}); refusing to guess which member this directory belongs to")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory belongs to another cluster or member.
    #[error("the data directory {dir} belongs to {found}, but this node is configured as {expected}: refusing to run on another member's data (check `data_dir`, `id` and `cluster_id`)")]
    Foreign {
        /// The directory.
        dir: PathBuf,
        /// What its identity file says.
        found: Identity,
        /// What the configuration says.
        expected: Identity,
    },
    /// The directory was marked, but its log is gone.
    #[error("the data directory {dir} belongs to {identity}, but its write-ahead log is missing: the directory lost data, and this member may have voted for values it no longer remembers; refusing to start (README: \"A node lost its disk\")")]
    LogMissing {
        /// The directory.
        dir: PathBuf,
        /// What its identity file says.
        identity: Identity,
    },
    /// A peer came back with another incarnation than the one this member met: it
    /// lost its data directory and was bootstrapped again.
    #[error("peer {member} presents a new data directory (incarnation {presented}; this member first met it as {known}): it lost its disk or was bootstrapped again, and may have forgotten votes it cast; refusing it (README: \"A node lost its disk\")")]
    Reincarnated {
        /// The peer.
        member: NodeId,
        /// The incarnation recorded when this member first met it.
        known: Incarnation,
        /// The one it presents now.
        presented: Incarnation,
    },
    /// The directory is empty and nobody asked to bootstrap.
    #[error("the data directory {dir} holds no ballot data: this member was never bootstrapped here, or it lost its disk. A member that lost its disk must not vote again: it may have voted for values it no longer remembers, and counting it in a majority could let the cluster choose a second value for a slot and lose acknowledged writes. To create a new cluster, start each of its nodes the first time with `--bootstrap` (`ballot cluster up` does this). If this node lost its disk, leave it stopped and replace it: the cluster serves while a majority of its voters run; add a new machine (`ballot member add --peer ADDR --client ADDR`, or a spare: `ballot member add SPARE`), then put it in this node's place (`ballot member replace ID --by NEW`; README: \"Replace a dead machine\")")]
    NotBootstrapped {
        /// The directory.
        dir: PathBuf,
    },
}

/// The identity recorded in `dir`, if any.
///
/// # Errors
///
/// [`IdentityError::Io`] if the file exists but cannot be read;
/// [`IdentityError::Malformed`] if it is not an identity file of this format.
pub fn read(dir: &Path) -> Result<Option<Recorded>, IdentityError> {
    let path = dir.join(FILE_NAME);
    let io = |action, source| IdentityError::Io {
        action,
        path: path.clone(),
        source,
    };
    let file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open", e)),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, FILE_BYTES_MAX), &mut text)
        .map_err(|e| io("read", e))?;
    let malformed = |reason: String| IdentityError::Malformed {
        path: path.clone(),
        reason,
    };
    let parsed: IdentityFile = toml::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    if parsed.format != FORMAT {
        return Err(malformed(format!(
            "format {}, this build reads format {FORMAT}",
            parsed.format
        )));
    }
    Ok(Some(Recorded {
        identity: Identity {
            cluster: parsed.cluster,
            member: parsed.member,
        },
        incarnation: parsed.incarnation,
    }))
}

/// Records `recorded` in `dir` durably, so a crash leaves either no identity or this
/// one.
///
/// # Errors
///
/// [`IdentityError::Io`] if a file-system call fails.
pub fn write(dir: &Path, recorded: Recorded) -> Result<(), IdentityError> {
    let body = toml::to_string(&IdentityFile {
        format: FORMAT,
        cluster: recorded.identity.cluster,
        member: recorded.identity.member,
        incarnation: recorded.incarnation,
    })
    .expect("an identity always serializes");
    write_durably(
        dir,
        FILE_NAME,
        &format!(
            "# Which ballot cluster and member this data directory belongs to. Written once,\n\
             # when the member was bootstrapped; a node refuses any other directory.\n{body}"
        ),
    )
}

/// Writes `text` to `dir/name` durably: a temporary file, fsync'd and renamed into
/// place, then the directory fsync'd.
fn write_durably(dir: &Path, name: &str, text: &str) -> Result<(), IdentityError> {
    let tmp = dir.join(format!("{name}.tmp"));
    wal::replace_durably(&dir.join(name), &tmp, &[text.as_bytes()]).map_err(|(path, source)| {
        IdentityError::Io {
            action: "write",
            path,
            source,
        }
    })
}

/// Whether `dir` holds anything a member wrote: a log with records, or a snapshot.
fn holds_data(dir: &Path, log_records: u64) -> bool {
    log_records > 0 || SnapshotDir::new(dir).has_any()
}

/// Checks, before anything in `dir` is opened or created, that a node configured as
/// `expected` may use it; returns the identity found, for [`admit`].
///
/// # Errors
///
/// [`IdentityError::Foreign`], [`IdentityError::LogMissing`] and, for a directory with
/// no log, no snapshot and no identity when `bootstrap` is false,
/// [`IdentityError::NotBootstrapped`]; or the errors of [`read`].
pub fn check_before_open(
    dir: &Path,
    expected: Identity,
    bootstrap: bool,
) -> Result<Option<Recorded>, IdentityError> {
    let found = read(dir)?;
    let has_log = dir.join(wal::FILE_NAME).exists();
    match found {
        Some(found) if found.identity != expected => Err(IdentityError::Foreign {
            dir: dir.to_path_buf(),
            found: found.identity,
            expected,
        }),
        Some(found) if !has_log => Err(IdentityError::LogMissing {
            dir: dir.to_path_buf(),
            identity: found.identity,
        }),
        None if !bootstrap && !has_log && !holds_data(dir, 0) => {
            Err(IdentityError::NotBootstrapped {
                dir: dir.to_path_buf(),
            })
        }
        found => Ok(found),
    }
}

/// Decides, once the log in `dir` is open (it held `log_records` records), whether a
/// node configured as `expected` may act on it, writing the identity (with a fresh
/// incarnation) for a new or adopted directory. `found` is what [`check_before_open`]
/// returned. Returns how the directory was admitted and its incarnation.
///
/// # Errors
///
/// [`IdentityError::NotBootstrapped`] for a directory that holds no data when
/// `bootstrap` is false; [`IdentityError::Io`] if the identity cannot be written.
pub fn admit(
    dir: &Path,
    found: Option<Recorded>,
    expected: Identity,
    bootstrap: bool,
    log_records: u64,
) -> Result<(Admission, Incarnation), IdentityError> {
    let admission = match found {
        Some(found) => {
            debug_assert_eq!(
                found.identity, expected,
                "check_before_open refuses another identity"
            );
            return Ok((Admission::Known, found.incarnation));
        }
        None if holds_data(dir, log_records) => Admission::Adopted,
        None if bootstrap => Admission::Bootstrapped,
        None => {
            return Err(IdentityError::NotBootstrapped {
                dir: dir.to_path_buf(),
            })
        }
    };
    let incarnation = Incarnation::random();
    write(
        dir,
        Recorded {
            identity: expected,
            incarnation,
        },
    )?;
    Ok((admission, incarnation))
}

/// The incarnation each peer had when this member first met it, kept in the data
/// directory's [`PEERS_FILE`]. At most one entry per member of the cluster.
#[derive(Debug)]
pub struct KnownPeers {
    dir: PathBuf,
    known: std::collections::BTreeMap<NodeId, Incarnation>,
}

/// The peers file's contents.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    format: u32,
    #[serde(default)]
    peer: Vec<PeerEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerEntry {
    member: NodeId,
    incarnation: Incarnation,
}

impl KnownPeers {
    /// The peers recorded in `dir` (none if it has no peers file yet).
    ///
    /// # Errors
    ///
    /// [`IdentityError::Io`] if the file cannot be read; [`IdentityError::Malformed`]
    /// if it is damaged.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let path = dir.join(PEERS_FILE);
        let mut known = std::collections::BTreeMap::new();
        match fs::read(&path) {
            Ok(bytes) => {
                let malformed = |reason: String| IdentityError::Malformed {
                    path: path.clone(),
                    reason,
                };
                let text = String::from_utf8(bytes).map_err(|e| malformed(e.to_string()))?;
                let parsed: PeersFile =
                    toml::from_str(&text).map_err(|e| malformed(e.to_string()))?;
                if parsed.format != FORMAT {
                    return Err(malformed(format!("format {}", parsed.format)));
                }
                for entry in parsed.peer {
                    known.insert(entry.member, entry.incarnation);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(IdentityError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        }
        Ok(KnownPeers {
            dir: dir.to_path_buf(),
            known,
        })
    }

    /// An authenticated peer `member` presents `incarnation`: the first time, it is
    /// recorded durably before this returns; afterwards it must be the same.
    ///
    /// # Errors
    ///
    /// [`IdentityError::Reincarnated`] if the peer was met before as another
    /// incarnation; [`IdentityError::Io`] if the record cannot be written (the peer is
    /// then refused too: meeting it unrecorded would lose the defence).
    pub fn meet(&mut self, member: NodeId, incarnation: Incarnation) -> Result<(), IdentityError> {
        match self.known.get(&member) {
            Some(known) if *known == incarnation => Ok(()),
            Some(known) => Err(IdentityError::Reincarnated {
                member,
                known: *known,
                presented: incarnation,
            }),
            None => {
                let mut known = self.known.clone();
                known.insert(member, incarnation);
                let body = toml::to_string(&PeersFile {
                    format: FORMAT,
                    peer: known
                        .iter()
                        .map(|(member, incarnation)| PeerEntry {
                            member: *member,
                            incarnation: *incarnation,
                        })
                        .collect(),
                })
                .expect("peers always serialize");
                write_durably(
                    &self.dir,
                    PEERS_FILE,
                    &format!(
                        "# The incarnation of each peer's data directory when this member first met\n\
                         # it; a peer that comes back as another one is refused.\n{body}"
                    ),
                )?;
                self.known = known;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("ballot-identity-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TestDir(path)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn me() -> Identity {
        Identity {
            cluster: ClusterId(0xfeed),
            member: 1,
        }
    }

    /// What a start does: check, open the log, admit.
    fn start(dir: &Path, expected: Identity, bootstrap: bool) -> Result<Admission, IdentityError> {
        let found = check_before_open(dir, expected, bootstrap)?;
        let (_wal, recovered) = wal::Wal::open::<u64>(dir).unwrap();
        admit(dir, found, expected, bootstrap, recovered.records).map(|(admission, _)| admission)
    }

    fn write_a_record(dir: &Path) {
        let (mut wal, _) = wal::Wal::open::<u64>(dir).unwrap();
        wal.append(&ballot_model::DurableUpdate::<u64>::Promise(
            ballot_model::Ballot::new(1, 0),
        ))
        .unwrap();
        wal.sync().unwrap();
    }

    #[test]
    fn an_empty_directory_needs_bootstrap_and_is_left_untouched_without_it() {
        let dir = TestDir::new("empty");
        let refused = start(&dir.0, me(), false).unwrap_err();
        assert!(
            matches!(refused, IdentityError::NotBootstrapped { .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("--bootstrap"), "{refused}");
        assert!(!dir.0.join(wal::FILE_NAME).exists());
        assert_eq!(start(&dir.0, me(), true).unwrap(), Admission::Bootstrapped);
        assert_eq!(read(&dir.0).unwrap().map(|r| r.identity), Some(me()));
        // Later starts need no flag, and a flag changes nothing.
        assert_eq!(start(&dir.0, me(), false).unwrap(), Admission::Known);
        assert_eq!(start(&dir.0, me(), true).unwrap(), Admission::Known);
    }

    #[test]
    fn a_directory_of_another_member_or_cluster_is_refused() {
        let dir = TestDir::new("foreign");
        start(&dir.0, me(), true).unwrap();
        for other in [
            Identity { member: 2, ..me() },
            Identity {
                cluster: ClusterId(0xbeef),
                ..me()
            },
        ] {
            let refused = start(&dir.0, other, true).unwrap_err();
            assert!(matches!(refused, IdentityError::Foreign { found, .. } if found == me()));
        }
    }

    #[test]
    fn a_peer_is_known_by_its_first_incarnation_across_restarts() {
        let dir = TestDir::new("peers");
        let (first, second) = (Incarnation(1), Incarnation(2));
        let mut peers = KnownPeers::load(&dir.0).unwrap();
        peers.meet(2, first).unwrap();
        peers.meet(2, first).unwrap();
        peers.meet(0, second).unwrap();
        let mut reloaded = KnownPeers::load(&dir.0).unwrap();
        reloaded.meet(2, first).unwrap();
        let refused = reloaded.meet(2, second).unwrap_err();
        assert!(
            matches!(refused, IdentityError::Reincarnated { member: 2, known, presented }
                if known == first && presented == second),
            "{refused}"
        );
        assert!(refused.to_string().contains("lost its disk"), "{refused}");
        fs::write(dir.0.join(PEERS_FILE), "garbage").unwrap();
        assert!(matches!(
            KnownPeers::load(&dir.0),
            Err(IdentityError::Malformed { .. })
        ));
    }

    #[test]
    fn each_bootstrap_is_a_new_incarnation_and_a_restart_keeps_it() {
        let (a, b) = (TestDir::new("inc-a"), TestDir::new("inc-b"));
        start(&a.0, me(), true).unwrap();
        start(&b.0, me(), true).unwrap();
        let incarnation = |dir: &Path| read(dir).unwrap().unwrap().incarnation;
        assert_ne!(incarnation(&a.0), incarnation(&b.0));
        let before = incarnation(&a.0);
        start(&a.0, me(), false).unwrap();
        assert_eq!(incarnation(&a.0), before);
    }

    #[test]
    fn a_marked_directory_whose_log_vanished_is_refused_even_with_bootstrap() {
        let dir = TestDir::new("vanished");
        start(&dir.0, me(), true).unwrap();
        fs::remove_file(dir.0.join(wal::FILE_NAME)).unwrap();
        let refused = start(&dir.0, me(), true).unwrap_err();
        assert!(
            matches!(refused, IdentityError::LogMissing { .. }),
            "{refused}"
        );
    }

    #[test]
    fn a_log_written_before_identities_is_adopted() {
        let dir = TestDir::new("adopt");
        write_a_record(&dir.0);
        assert_eq!(start(&dir.0, me(), false).unwrap(), Admission::Adopted);
        assert_eq!(read(&dir.0).unwrap().map(|r| r.identity), Some(me()));
        // An empty log (a start that never persisted anything) is not data.
        let empty = TestDir::new("adopt-empty");
        wal::Wal::open::<u64>(&empty.0).unwrap();
        assert!(matches!(
            start(&empty.0, me(), false),
            Err(IdentityError::NotBootstrapped { .. })
        ));
    }

    #[test]
    fn a_damaged_identity_file_is_an_error_not_a_guess() {
        let dir = TestDir::new("damaged");
        for text in [
            "garbage",
            "format = 9\ncluster = \"000000000000000000000000000000aa\"\nmember = 1\nincarnation = \"0000000000000001\"\n",
            "format = 1\ncluster = \"short\"\nmember = 1\nincarnation = \"0000000000000001\"\n",
            "format = 1\ncluster = \"000000000000000000000000000000aa\"\nmember = 1\n",
        ] {
            fs::write(dir.0.join(FILE_NAME), text).unwrap();
            let refused = start(&dir.0, me(), true).unwrap_err();
            assert!(
                matches!(refused, IdentityError::Malformed { .. }),
                "{text}: {refused}"
            );
        }
    }
}
