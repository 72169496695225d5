//! The peer handshake: a versioned, mutual HMAC-SHA256 challenge–response over a
//! shared cluster secret. A process that does not know the secret learns nothing it
//! could replay and is never handed to the core: both sides prove knowledge of the
//! secret over fresh nonces before any protocol frame is accepted.
//!
//! ```text
//! dialer   -> acceptor : HELLO  magic "BLT" version, dialer id, nonce_d
//! acceptor -> dialer   : CHALLENGE magic version, acceptor id, nonce_a,
//!                        HMAC(secret, "accept" | ids | nonce_d | nonce_a)
//! dialer   -> acceptor : PROOF  HMAC(secret, "dial" | ids | nonce_a | nonce_d)
//! ```
//!
//! What it does not do: encrypt, or authenticate each later frame (no TLS). It keeps
//! strangers out of the cluster; it does not defend against an on-path attacker who
//! can hijack an established TCP connection.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Handshake format version; a peer speaking another one is refused with a clear error.
pub const VERSION: u16 = 1;
const MAGIC: &[u8; 3] = b"BLT";
const NONCE: usize = 16;
const MAC: usize = 32;
const HELLO: usize = 3 + 2 + 2 + NONCE;
const CHALLENGE: usize = HELLO + MAC;

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
    /// The peer claims an id outside the cluster, ours, or not the one we dialled.
    #[error("peer claims node id {claimed}, expected {expected}")]
    WrongId {
        /// What it claimed.
        claimed: u16,
        /// What was acceptable.
        expected: String,
    },
}

fn mac(
    secret: &[u8],
    label: &[u8],
    dialer: u16,
    acceptor: u16,
    n1: &[u8],
    n2: &[u8],
) -> Hmac<Sha256> {
    // `new_from_slice` accepts keys of any length for HMAC.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(label);
    m.update(&dialer.to_le_bytes());
    m.update(&acceptor.to_le_bytes());
    m.update(n1);
    m.update(n2);
    m
}

fn check_header(bytes: &[u8]) -> Result<u16, HandshakeError> {
    if &bytes[..3] != MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[3], bytes[4]]);
    if version != VERSION {
        return Err(HandshakeError::Version { theirs: version });
    }
    Ok(u16::from_le_bytes([bytes[5], bytes[6]]))
}

fn nonce() -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    rand::rng().fill_bytes(&mut n);
    n
}

/// Runs the dialer's side against the node we meant to reach, `expected`.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &[u8],
    me: u16,
    expected: u16,
) -> Result<(), HandshakeError> {
    let nonce_d = nonce();
    let mut hello = Vec::with_capacity(HELLO);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&VERSION.to_le_bytes());
    hello.extend_from_slice(&me.to_le_bytes());
    hello.extend_from_slice(&nonce_d);
    stream.write_all(&hello).await?;
    let mut challenge = [0u8; CHALLENGE];
    stream.read_exact(&mut challenge).await?;
    let acceptor = check_header(&challenge)?;
    if acceptor != expected {
        return Err(HandshakeError::WrongId {
            claimed: acceptor,
            expected: expected.to_string(),
        });
    }
    let nonce_a = &challenge[7..7 + NONCE];
    mac(secret, b"accept", me, acceptor, &nonce_d, nonce_a)
        .verify_slice(&challenge[HELLO..])
        .map_err(|_| HandshakeError::BadMac)?;
    let proof = mac(secret, b"dial", me, acceptor, nonce_a, &nonce_d)
        .finalize()
        .into_bytes();
    stream.write_all(&proof).await?;
    stream.flush().await?;
    Ok(())
}

/// Runs the acceptor's side; returns the authenticated peer's id, which is a member
/// of a cluster of `node_count` other than `me`.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &[u8],
    me: u16,
    node_count: usize,
) -> Result<u16, HandshakeError> {
    let mut hello = [0u8; HELLO];
    stream.read_exact(&mut hello).await?;
    let dialer = check_header(&hello)?;
    if dialer == me || usize::from(dialer) >= node_count {
        return Err(HandshakeError::WrongId {
            claimed: dialer,
            expected: format!("a peer id below {node_count} other than {me}"),
        });
    }
    let nonce_d = &hello[7..];
    let nonce_a = nonce();
    let mut challenge = Vec::with_capacity(CHALLENGE);
    challenge.extend_from_slice(MAGIC);
    challenge.extend_from_slice(&VERSION.to_le_bytes());
    challenge.extend_from_slice(&me.to_le_bytes());
    challenge.extend_from_slice(&nonce_a);
    challenge.extend_from_slice(
        &mac(secret, b"accept", dialer, me, nonce_d, &nonce_a)
            .finalize()
            .into_bytes(),
    );
    stream.write_all(&challenge).await?;
    stream.flush().await?;
    let mut proof = [0u8; MAC];
    stream.read_exact(&mut proof).await?;
    mac(secret, b"dial", dialer, me, &nonce_a, nonce_d)
        .verify_slice(&proof)
        .map_err(|_| HandshakeError::BadMac)?;
    Ok(dialer)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        dial_secret: &[u8],
        accept_secret: &[u8],
        expected: u16,
    ) -> (Result<(), HandshakeError>, Result<u16, HandshakeError>) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let dial_secret = dial_secret.to_vec();
        let accept_secret = accept_secret.to_vec();
        let dialer = tokio::spawn(async move { dial(&mut a, &dial_secret, 1, expected).await });
        let accepted = accept(&mut b, &accept_secret, 0, 3).await;
        drop(b);
        (dialer.await.unwrap(), accepted)
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_sides() {
        let (dialed, accepted) = run(b"s3cret", b"s3cret", 0).await;
        dialed.unwrap();
        assert_eq!(accepted.unwrap(), 1);
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
            accept(&mut b, b"s", 0, 3).await,
            Err(HandshakeError::BadMagic)
        ));
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut hello = b"BLT".to_vec();
        hello.extend_from_slice(&9u16.to_le_bytes());
        hello.extend_from_slice(&[0; 2 + NONCE]);
        a.write_all(&hello).await.unwrap();
        assert!(matches!(
            accept(&mut b, b"s", 0, 3).await,
            Err(HandshakeError::Version { theirs: 9 })
        ));
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut hello = b"BLT".to_vec();
        hello.extend_from_slice(&VERSION.to_le_bytes());
        hello.extend_from_slice(&7u16.to_le_bytes());
        hello.extend_from_slice(&[0; NONCE]);
        a.write_all(&hello).await.unwrap();
        assert!(matches!(
            accept(&mut b, b"s", 0, 3).await,
            Err(HandshakeError::WrongId { claimed: 7, .. })
        ));
    }
}
