//! Length-prefixed frames on a byte stream: `[u32 LE length][payload]`, with a size
//! limit checked before anything is allocated, so a peer cannot make us reserve memory
//! it never sends.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Buffer capacity kept between frames; a larger one (after a snapshot) is released.
const KEEP_BUFFER_BYTES: usize = 1 << 20;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame over the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("undecodable frame: {0}")]
    Decode(postcard::Error),
    /// A value could not be encoded.
    #[error("unencodable message: {0}")]
    Encode(postcard::Error),
}

/// Appends `value`'s postcard encoding to `out` and returns it, copying byte strings
/// whole.
///
/// `postcard::to_extend` pushes a byte string through `Extend` one byte at a time,
/// which an optimised build turns into a copy and a debug build does not: there, a
/// node's loop spent about 100 ms encoding each frame that carries an 8 MiB value
/// (and re-sends encode it again every heartbeat tick), so a single such write
/// stalled a debug-build cluster.
pub(crate) fn append_encoded<T: Serialize + ?Sized>(
    value: &T,
    out: Vec<u8>,
) -> postcard::Result<Vec<u8>> {
    postcard::serialize_with_flavor(value, AppendToVec(out))
}

/// A postcard flavor that appends to a `Vec`, a slice at a time.
struct AppendToVec(Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendToVec {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Appends `value` as one frame to `out`.
///
/// ```
/// use ballot_node::frame::{decode, encode};
/// use ballot_node::limits::FRAME_BYTES_MAX;
/// let mut out = Vec::new();
/// encode(&(7u32, "hi".to_string()), &mut out, FRAME_BYTES_MAX).unwrap();
/// let back: (u32, String) = decode(&out[4..]).unwrap();
/// assert_eq!(back, (7, "hi".to_string()));
/// ```
pub fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>, max: usize) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let encoded = append_encoded(value, std::mem::take(out)).map_err(FrameError::Encode)?;
    *out = encoded;
    let len = out.len() - start - 4;
    if len > max {
        out.truncate(start);
        return Err(FrameError::TooLarge { len, max });
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Decodes one payload; bytes left over after the value make it malformed.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (value, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    Ok(value)
}

/// Reads one frame's payload into `buf`. `Ok(false)` on a clean end of stream before
/// a frame starts; a stream that ends inside a frame (its length prefix included) is
/// an error.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<bool, FrameError> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]).await? {
            0 if filled == 0 => return Ok(false),
            0 => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            n => filled += n,
        }
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    buf.clear();
    if buf.capacity() > KEEP_BUFFER_BYTES.max(len) {
        buf.shrink_to(KEEP_BUFFER_BYTES.max(len));
    }
    // Grow with what actually arrives: a peer announcing a huge frame and sending
    // nothing costs us nothing.
    let read = (&mut *reader).take(len as u64).read_to_end(buf).await?;
    if read < len {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_appended_encoding_is_postcards_after_what_was_there() {
        let value = (
            7u32,
            serde_bytes::ByteBuf::from(vec![9u8; 100_000]),
            "text".to_string(),
        );
        let out = append_encoded(&value, b"head".to_vec()).unwrap();
        assert_eq!(&out[..4], b"head");
        assert_eq!(&out[4..], postcard::to_stdvec(&value).unwrap());
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused_before_allocation() {
        let mut wire = Vec::new();
        encode(&vec![1u64, 2, 3], &mut wire, 1024).unwrap();
        encode(&"second".to_string(), &mut wire, 1024).unwrap();
        let mut reader = &wire[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut reader, &mut buf, 1024).await.unwrap());
        assert_eq!(decode::<Vec<u64>>(&buf).unwrap(), vec![1, 2, 3]);
        assert!(read_frame(&mut reader, &mut buf, 1024).await.unwrap());
        assert_eq!(decode::<String>(&buf).unwrap(), "second");
        assert!(
            !read_frame(&mut reader, &mut buf, 1024).await.unwrap(),
            "clean end"
        );

        let huge = (u32::MAX).to_le_bytes();
        let mut reader = &huge[..];
        let err = read_frame(&mut reader, &mut buf, 1024).await.unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { max: 1024, .. }),
            "{err}"
        );
        assert!(
            buf.capacity() < 1 << 20,
            "nothing reserved for the claimed size"
        );

        let mut out = Vec::new();
        let err = encode(&vec![0u8; 2000], &mut out, 1024).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        assert!(out.is_empty(), "a refused frame leaves nothing behind");
    }

    #[tokio::test]
    async fn truncated_frames_and_garbage_are_errors_not_panics() {
        let mut wire = Vec::new();
        encode(&vec![9u64; 10], &mut wire, 1024).unwrap();
        wire.truncate(wire.len() - 3);
        let mut reader = &wire[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut reader, &mut buf, 1024).await.is_err());
        let garbage = [0xff_u8; 8];
        assert!(decode::<Vec<String>>(&garbage).is_err());

        // A stream cut inside the next frame's length prefix is not a clean end.
        let mut wire = Vec::new();
        encode(&1u8, &mut wire, 1024).unwrap();
        wire.extend_from_slice(&[3, 0]);
        let mut reader = &wire[..];
        assert!(read_frame(&mut reader, &mut buf, 1024).await.unwrap());
        assert!(read_frame(&mut reader, &mut buf, 1024).await.is_err());

        // Bytes after the value make a payload malformed.
        let mut payload = postcard::to_stdvec(&7u32).unwrap();
        assert_eq!(decode::<u32>(&payload).unwrap(), 7);
        payload.push(0);
        assert!(decode::<u32>(&payload).is_err());
    }
}
