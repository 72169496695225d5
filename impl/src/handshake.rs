//! The peer handshake: a versioned, mutual HMAC-SHA256 challenge–response over a
//! shared cluster secret. A process that does not know the secret learns nothing it
//! could replay and is never handed to the core: both sides prove knowledge of the
//! secret over fresh nonces before any protocol frame is accepted.
//!
//! ```text
//! dialer   -> acceptor : HELLO  magic "BLT" version, dialer id, cluster id,
//!                        membership, dialer incarnation, nonce_d
//! acceptor -> dialer   : CHALLENGE magic version, acceptor id, cluster id,
//!                        membership, acceptor incarnation, nonce_a,
//!                        HMAC(secret, "accept" | ids | cluster | membership | incarnations | nonce_d | nonce_a)
//! dialer   -> acceptor : PROOF  HMAC(secret, "dial" | ids | cluster | membership | incarnations | nonce_a | nonce_d | address),
//!                        address length (1 byte), the dialer's peer address
//! ```
//!
//! The dialer names the address it listens on for peers, authenticated by the PROOF: a
//! node that has not yet applied the change that added the dialer at an address (a
//! follower back from a long outage, whose new leader joined meanwhile) learns from it
//! where to answer ([`accept`]).
//!
//! Each side learns the other's authenticated [`Incarnation`], for the caller to check
//! against the one it met before ([`crate::identity::KnownPeers`]).
//!
//! Both sides name their cluster ([`ClusterId`]); a node of another cluster is refused
//! with [`HandshakeError::ForeignCluster`] on both ends (the acceptor still answers, so
//! that the dialer can say why), even if the two clusters share a secret. Both also
//! name their membership ([`membership_digest`] of the learners): two nodes that
//! disagree on who votes would count different majorities, which need not intersect,
//! so a peer with another list is refused ([`HandshakeError::OtherMembership`]).
//!
//! What it does not do: encrypt, or authenticate each later frame (no TLS). It keeps
//! strangers out of the cluster; it does not defend against an on-path attacker who
//! can hijack an established TCP connection.

use crate::identity::{ClusterId, Incarnation};
use ballot_model::{MEMBER_ADDRESS_BYTES_MAX, NODE_IDS_MAX};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Handshake format version; a peer speaking another one is refused with a clear error.
pub const VERSION: u16 = 6;
const MAGIC: &[u8; 3] = b"BLT";
const NONCE: usize = 16;
const MAC: usize = 32;
const CLUSTER: usize = 16;
const INCARNATION: usize = 8;
const MEMBERSHIP: usize = 8;
/// Where the membership digest starts in a HELLO or CHALLENGE.
const MEMBERSHIP_AT: usize = 3 + 2 + 2 + CLUSTER;
/// Where the incarnation starts in a HELLO or CHALLENGE.
const INCARNATION_AT: usize = MEMBERSHIP_AT + MEMBERSHIP;
/// Where the nonce starts in a HELLO or CHALLENGE.
const NONCE_AT: usize = INCARNATION_AT + INCARNATION;
const HELLO: usize = NONCE_AT + NONCE;
const CHALLENGE: usize = HELLO + MAC;
// Ids travel as two bytes, an address's length as one.
const _: () = assert!(NODE_IDS_MAX <= u16::MAX as usize);
const _: () = assert!(MEMBER_ADDRESS_BYTES_MAX <= u8::MAX as usize);

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The stream failed or closed.
    #[error("i/o error during handshake: {0}")]
    Io(#[from] std::io::Error),
    /// Not a ballot peer.
    #[error("not a ballot peer (bad magic)")]
    BadMagic,
    /// Another format version.
    #[error("peer speaks handshake version {theirs}, this node speaks {VERSION}")]
    Version {
        /// The peer's version.
        theirs: u16,
    },
    /// The peer does not know the cluster secret.
    #[error("peer failed authentication (wrong cluster secret)")]
    BadMac,
    /// The peer belongs to another cluster.
    #[error("peer belongs to cluster {theirs}, this node to cluster {ours}: check its `cluster_id` and `peers`")]
    ForeignCluster {
        /// The peer's cluster.
        theirs: ClusterId,
        /// This node's.
        ours: ClusterId,
    },
    /// The peer lists other learners than this node: the two would count different
    /// majorities.
    #[error("peer's membership (digest {theirs:016x}) differs from this node's ({ours:016x}): every node must list the same `peers`, `learners` and `spares`")]
    OtherMembership {
        /// The peer's digest.
        theirs: u64,
        /// This node's.
        ours: u64,
    },
    /// The dialer's peer address is not UTF-8, or longer than a member's may be.
    #[error("peer names an address that is not UTF-8 text")]
    BadAddress,
    /// The peer claims an id outside the cluster, ours, or not the one we dialled.
    #[error("peer claims node id {claimed}, expected {expected}")]
    WrongId {
        /// What it claimed.
        claimed: u16,
        /// What was acceptable.
        expected: String,
    },
}

/// Who is talking: what both sides authenticate besides the nonces.
#[derive(Clone, Copy)]
struct Parties {
    dialer: u16,
    acceptor: u16,
    cluster: ClusterId,
    membership: u64,
    dialer_incarnation: Incarnation,
    acceptor_incarnation: Incarnation,
}

fn mac(secret: &[u8], label: &[u8], parties: Parties, n1: &[u8], n2: &[u8]) -> Hmac<Sha256> {
    // `new_from_slice` accepts keys of any length for HMAC.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(label);
    m.update(&parties.dialer.to_le_bytes());
    m.update(&parties.acceptor.to_le_bytes());
    m.update(&parties.cluster.to_bytes());
    m.update(&parties.membership.to_le_bytes());
    m.update(&parties.dialer_incarnation.0.to_le_bytes());
    m.update(&parties.acceptor_incarnation.0.to_le_bytes());
    m.update(n1);
    m.update(n2);
    m
}

/// What a HELLO or CHALLENGE says about its sender.
struct Greeting {
    id: u16,
    cluster: ClusterId,
    membership: u64,
    incarnation: Incarnation,
}

/// The sender's id, cluster and incarnation from a HELLO or CHALLENGE.
fn check_header(bytes: &[u8]) -> Result<Greeting, HandshakeError> {
    if &bytes[..3] != MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[3], bytes[4]]);
    if version != VERSION {
        return Err(HandshakeError::Version { theirs: version });
    }
    let id = u16::from_le_bytes([bytes[5], bytes[6]]);
    let mut cluster = [0u8; CLUSTER];
    cluster.copy_from_slice(&bytes[7..MEMBERSHIP_AT]);
    let mut membership = [0u8; MEMBERSHIP];
    membership.copy_from_slice(&bytes[MEMBERSHIP_AT..INCARNATION_AT]);
    let mut incarnation = [0u8; INCARNATION];
    incarnation.copy_from_slice(&bytes[INCARNATION_AT..NONCE_AT]);
    Ok(Greeting {
        id,
        cluster: ClusterId::from_bytes(cluster),
        membership: u64::from_le_bytes(membership),
        incarnation: Incarnation(u64::from_le_bytes(incarnation)),
    })
}

/// A HELLO (or the start of a CHALLENGE): magic, version, sender, cluster,
/// membership, incarnation, nonce.
fn greeting(me: Me, nonce: &[u8; NONCE]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CHALLENGE);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&me.id.to_le_bytes());
    bytes.extend_from_slice(&me.cluster.to_bytes());
    bytes.extend_from_slice(&me.membership.to_le_bytes());
    bytes.extend_from_slice(&me.incarnation.0.to_le_bytes());
    bytes.extend_from_slice(nonce);
    debug_assert_eq!(bytes.len(), HELLO);
    bytes
}

/// The peer is of our cluster and membership, or why not.
fn same_cluster(theirs: &Greeting, me: Me) -> Result<(), HandshakeError> {
    if theirs.cluster != me.cluster {
        return Err(HandshakeError::ForeignCluster {
            theirs: theirs.cluster,
            ours: me.cluster,
        });
    }
    if theirs.membership != me.membership {
        return Err(HandshakeError::OtherMembership {
            theirs: theirs.membership,
            ours: me.membership,
        });
    }
    Ok(())
}

/// A digest of who voted at bootstrap, for the handshake: FNV-1a over the size of the
/// bootstrap address book, the sorted, distinct learner ids, then (if there are any) a
/// separator and the sorted, distinct spare ids. Equal lists give equal digests; the
/// MAC, not the digest, is what an attacker would have to forge. Nodes agree on every
/// later membership through the log, which begins from this one (and gives the ids
/// past the book out in order), so this is the one they must be configured with alike.
///
/// ```
/// use ballot_node::handshake::membership_digest;
/// assert_eq!(membership_digest(5, &[3, 4], &[]), membership_digest(5, &[4, 3, 3], &[]));
/// assert_ne!(membership_digest(5, &[], &[]), membership_digest(5, &[3], &[]));
/// assert_ne!(membership_digest(5, &[3], &[]), membership_digest(5, &[], &[3]));
/// assert_ne!(membership_digest(3, &[], &[]), membership_digest(4, &[], &[]));
/// ```
pub fn membership_digest(node_count: usize, learners: &[usize], spares: &[usize]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |word: u64| {
        for byte in word.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    let sorted = |ids: &[usize]| {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    mix(node_count as u64);
    for id in sorted(learners) {
        mix(id as u64);
    }
    if !spares.is_empty() {
        mix(u64::MAX);
        for id in sorted(spares) {
            mix(id as u64);
        }
    }
    hash
}

fn nonce() -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    rand::rng().fill_bytes(&mut n);
    n
}

/// Who this node is, as the handshake says it.
#[derive(Clone, Copy, Debug)]
pub struct Me {
    /// Its cluster.
    pub cluster: ClusterId,
    /// Its membership: [`membership_digest`] of the learners.
    pub membership: u64,
    /// Its member id.
    pub id: u16,
    /// Its data directory's incarnation.
    pub incarnation: Incarnation,
}

/// Runs the dialer's side, as `me`, listening for peers at `address`, against the
/// node we meant to reach, `expected`; returns that node's authenticated incarnation.
/// `address` is at most [`MEMBER_ADDRESS_BYTES_MAX`] bytes (a longer one is cut).
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &[u8],
    me: Me,
    address: &str,
    expected: u16,
) -> Result<Incarnation, HandshakeError> {
    let address = &address.as_bytes()[..address.len().min(MEMBER_ADDRESS_BYTES_MAX)];
    let nonce_d = nonce();
    stream.write_all(&greeting(me, &nonce_d)).await?;
    let mut challenge = [0u8; CHALLENGE];
    stream.read_exact(&mut challenge).await?;
    let acceptor = check_header(&challenge)?;
    same_cluster(&acceptor, me)?;
    if acceptor.id != expected {
        return Err(HandshakeError::WrongId {
            claimed: acceptor.id,
            expected: expected.to_string(),
        });
    }
    let parties = Parties {
        dialer: me.id,
        acceptor: acceptor.id,
        cluster: me.cluster,
        membership: me.membership,
        dialer_incarnation: me.incarnation,
        acceptor_incarnation: acceptor.incarnation,
    };
    let nonce_a = &challenge[NONCE_AT..HELLO];
    mac(secret, b"accept", parties, &nonce_d, nonce_a)
        .verify_slice(&challenge[HELLO..])
        .map_err(|_| HandshakeError::BadMac)?;
    let mut proof = mac(secret, b"dial", parties, nonce_a, &nonce_d);
    proof.update(address);
    let mut bytes = proof.finalize().into_bytes().to_vec();
    bytes.push(address.len() as u8);
    bytes.extend_from_slice(address);
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    Ok(acceptor.incarnation)
}

/// A peer the acceptor authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialer {
    /// Its member id.
    pub id: u16,
    /// Its data directory's incarnation.
    pub incarnation: Incarnation,
    /// The address it says it listens on for peers (authenticated, not checked).
    pub address: String,
}

/// Runs the acceptor's side, as `me`; returns the authenticated peer: a node of the
/// same cluster other than `me`, with an id below [`NODE_IDS_MAX`] (whether it is a
/// member is the core's to say, and it may be one this node has not heard of yet).
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &[u8],
    me: Me,
) -> Result<Dialer, HandshakeError> {
    let mut hello = [0u8; HELLO];
    stream.read_exact(&mut hello).await?;
    let dialer = check_header(&hello)?;
    if dialer.id == me.id || usize::from(dialer.id) >= NODE_IDS_MAX {
        return Err(HandshakeError::WrongId {
            claimed: dialer.id,
            expected: format!("a peer id below {NODE_IDS_MAX} other than {}", me.id),
        });
    }
    let parties = Parties {
        dialer: dialer.id,
        acceptor: me.id,
        cluster: me.cluster,
        membership: me.membership,
        dialer_incarnation: dialer.incarnation,
        acceptor_incarnation: me.incarnation,
    };
    let nonce_d = &hello[NONCE_AT..];
    let nonce_a = nonce();
    let mut challenge = greeting(me, &nonce_a);
    challenge.extend_from_slice(
        &mac(secret, b"accept", parties, nonce_d, &nonce_a)
            .finalize()
            .into_bytes(),
    );
    stream.write_all(&challenge).await?;
    stream.flush().await?;
    // Answered first, so that the dialer of another cluster can say why it is refused.
    same_cluster(&dialer, me)?;
    let mut proof = [0u8; MAC + 1];
    stream.read_exact(&mut proof).await?;
    let mut address = vec![0u8; usize::from(proof[MAC])];
    stream.read_exact(&mut address).await?;
    let mut expected = mac(secret, b"dial", parties, &nonce_a, nonce_d);
    expected.update(&address);
    expected
        .verify_slice(&proof[..MAC])
        .map_err(|_| HandshakeError::BadMac)?;
    Ok(Dialer {
        id: dialer.id,
        incarnation: dialer.incarnation,
        address: String::from_utf8(address).map_err(|_| HandshakeError::BadAddress)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER_A: ClusterId = ClusterId(0xa);

    /// What the dialer's and the acceptor's sides returned.
    type Outcomes = (
        Result<Incarnation, HandshakeError>,
        Result<Dialer, HandshakeError>,
    );

    async fn run(dial_secret: &[u8], accept_secret: &[u8], expected: u16) -> Outcomes {
        run_in(CLUSTER_A, dial_secret, accept_secret, expected).await
    }

    /// Node 0 of cluster A (3 nodes), incarnation 0xa0.
    const ACCEPTOR: Me = Me {
        cluster: CLUSTER_A,
        membership: 0,
        id: 0,
        incarnation: Incarnation(0xa0),
    };

    /// A dialer of `dial_cluster`, node 1, incarnation 0xd1, reaching [`ACCEPTOR`].
    async fn run_in(
        dial_cluster: ClusterId,
        dial_secret: &[u8],
        accept_secret: &[u8],
        expected: u16,
    ) -> Outcomes {
        run_as(dial_cluster, 0, dial_secret, accept_secret, expected).await
    }

    /// As [`run_in`], with the dialer's membership digest too.
    async fn run_as(
        dial_cluster: ClusterId,
        dial_membership: u64,
        dial_secret: &[u8],
        accept_secret: &[u8],
        expected: u16,
    ) -> Outcomes {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let dial_secret = dial_secret.to_vec();
        let accept_secret = accept_secret.to_vec();
        let me = Me {
            cluster: dial_cluster,
            membership: dial_membership,
            id: 1,
            incarnation: Incarnation(0xd1),
        };
        let dialer =
            tokio::spawn(
                async move { dial(&mut a, &dial_secret, me, "10.0.0.1:7101", expected).await },
            );
        let accepted = accept(&mut b, &accept_secret, ACCEPTOR).await;
        drop(b);
        (dialer.await.unwrap(), accepted)
    }

    #[tokio::test]
    async fn a_node_of_another_cluster_is_refused_by_both_sides_even_with_the_same_secret() {
        let other = ClusterId(0xb);
        let (dialed, accepted) = run_in(other, b"s3cret", b"s3cret", 0).await;
        assert!(
            matches!(dialed, Err(HandshakeError::ForeignCluster { theirs, ours })
                if theirs == CLUSTER_A && ours == other),
            "{dialed:?}"
        );
        assert!(
            matches!(accepted, Err(HandshakeError::ForeignCluster { theirs, ours })
                if theirs == other && ours == CLUSTER_A),
            "{accepted:?}"
        );
        let message = accepted.unwrap_err().to_string();
        assert!(message.contains(&other.to_string()), "{message}");
    }

    #[tokio::test]
    async fn a_node_with_other_learners_is_refused_by_both_sides() {
        let theirs = membership_digest(3, &[2], &[]);
        let (dialed, accepted) = run_as(CLUSTER_A, theirs, b"s3cret", b"s3cret", 0).await;
        assert!(
            matches!(dialed, Err(HandshakeError::OtherMembership { theirs: 0, ours })
                if ours == theirs),
            "{dialed:?}"
        );
        let message = accepted.unwrap_err().to_string();
        assert!(message.contains("`learners`"), "{message}");
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_sides() {
        let (dialed, accepted) = run(b"s3cret", b"s3cret", 0).await;
        assert_eq!(dialed.unwrap(), ACCEPTOR.incarnation);
        assert_eq!(
            accepted.unwrap(),
            Dialer {
                id: 1,
                incarnation: Incarnation(0xd1),
                address: "10.0.0.1:7101".into()
            }
        );
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_by_both_sides() {
        let (dialed, accepted) = run(b"wrong", b"s3cret", 0).await;
        assert!(matches!(dialed, Err(HandshakeError::BadMac)), "{dialed:?}");
        assert!(accepted.is_err(), "{accepted:?}");
    }

    #[tokio::test]
    async fn dialing_the_wrong_node_is_refused() {
        let (dialed, _) = run(b"s", b"s", 2).await;
        assert!(
            matches!(dialed, Err(HandshakeError::WrongId { claimed: 0, .. })),
            "{dialed:?}"
        );
    }

    #[tokio::test]
    async fn garbage_and_other_versions_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[0x2a; HELLO]).await.unwrap();
        assert!(matches!(
            accept(&mut b, b"s", ACCEPTOR).await,
            Err(HandshakeError::BadMagic)
        ));
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut hello = b"BLT".to_vec();
        hello.extend_from_slice(&9u16.to_le_bytes());
        hello.extend_from_slice(&[0; 2 + CLUSTER + MEMBERSHIP + INCARNATION + NONCE]);
        a.write_all(&hello).await.unwrap();
        assert!(matches!(
            accept(&mut b, b"s", ACCEPTOR).await,
            Err(HandshakeError::Version { theirs: 9 })
        ));
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut hello = b"BLT".to_vec();
        hello.extend_from_slice(&VERSION.to_le_bytes());
        hello.extend_from_slice(&(NODE_IDS_MAX as u16).to_le_bytes());
        hello.extend_from_slice(&[0; CLUSTER + MEMBERSHIP + INCARNATION + NONCE]);
        a.write_all(&hello).await.unwrap();
        assert!(matches!(
            accept(&mut b, b"s", ACCEPTOR).await,
            Err(HandshakeError::WrongId { claimed, .. }) if usize::from(claimed) == NODE_IDS_MAX
        ));
    }
}
