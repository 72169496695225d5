//! Serde adapters that encode byte strings as bytes — one length, then the bytes —
//! rather than as a sequence of numbers, which is serde's default for `Vec<u8>`.
//!
//! In postcard both forms are the same bytes on the wire (a varint length, then one
//! byte per element), so logs, snapshots and frames written either way read back
//! alike; but the sequence form encodes and decodes one element at a time, which made
//! a 600 KiB value cost milliseconds on the node's event loop. Single strings use
//! `serde_bytes`; these cover the collections of them the key-value store carries.

use serde::de::Deserializer;
use serde::ser::{SerializeSeq, Serializer};
use serde::Deserialize;
use serde_bytes::{ByteBuf, Bytes};

/// Key-value pairs of byte strings, as `MSET` carries them.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// `Vec<Vec<u8>>` as a sequence of byte strings.
pub mod list {
    use super::*;

    /// Serializes each element as bytes.
    pub fn serialize<S: Serializer>(items: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(Bytes::new(item))?;
        }
        seq.end()
    }

    /// Deserializes what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let items = Vec::<ByteBuf>::deserialize(deserializer)?;
        Ok(items.into_iter().map(ByteBuf::into_vec).collect())
    }
}

/// `Vec<(Vec<u8>, Vec<u8>)>` as a sequence of pairs of byte strings.
pub mod pairs {
    use super::*;

    /// Serializes each pair's halves as bytes.
    pub fn serialize<S: Serializer>(
        pairs: &[(Vec<u8>, Vec<u8>)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(pairs.len()))?;
        for (key, value) in pairs {
            seq.serialize_element(&(Bytes::new(key), Bytes::new(value)))?;
        }
        seq.end()
    }

    /// Deserializes what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Pairs, D::Error> {
        let pairs = Vec::<(ByteBuf, ByteBuf)>::deserialize(deserializer)?;
        Ok(pairs
            .into_iter()
            .map(|(key, value)| (key.into_vec(), value.into_vec()))
            .collect())
    }
}

/// `Vec<Option<Vec<u8>>>` as a sequence of optional byte strings.
pub mod optional_list {
    use super::*;

    /// Serializes each present element as bytes.
    pub fn serialize<S: Serializer>(
        items: &[Option<Vec<u8>>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&item.as_deref().map(Bytes::new))?;
        }
        seq.end()
    }

    /// Deserializes what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Option<Vec<u8>>>, D::Error> {
        let items = Vec::<Option<ByteBuf>>::deserialize(deserializer)?;
        Ok(items
            .into_iter()
            .map(|item| item.map(ByteBuf::into_vec))
            .collect())
    }
}
