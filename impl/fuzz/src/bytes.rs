//! Fuzzer bytes as a stream of small fields, and the writer that produces them.
//!
//! A hand-rolled format rather than `arbitrary`: the seeds for `core_step` are written
//! by [`Writer`], which must mirror [`Reader`] exactly, and one byte per field is what
//! libFuzzer's mutations and comparison tracing handle best. Past the end of the input
//! every read yields zero, so every byte string is a valid input.

/// Reads fields from fuzzer bytes; see the module docs.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    /// What is left to read.
    rest: &'a [u8],
}

/// First byte value of [`Reader::number`]'s extreme range: `0xF0..=0xFE` name the 15
/// largest values, `0xFF` is followed by the value itself (8 bytes, little-endian).
const EXTREME: u8 = 0xF0;
/// The byte that announces a full 8-byte value.
const RAW: u8 = 0xFF;

impl<'a> Reader<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// True once every byte was read (further reads yield zeros).
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// One byte, 0 past the end.
    pub fn u8(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&byte, rest)) => {
                self.rest = rest;
                byte
            }
            None => 0,
        }
    }

    /// A little-endian `u64`, missing bytes read as 0.
    pub fn u64(&mut self) -> u64 {
        let mut le = [0u8; 8];
        for byte in &mut le {
            *byte = self.u8();
        }
        u64::from_le_bytes(le)
    }

    /// A value below `count` (one byte, modulo `count`).
    pub fn below(&mut self, count: u8) -> u8 {
        debug_assert!(count > 0);
        self.u8() % count
    }

    /// A number in `0..=max`, small most of the time: a byte `b < 0xF0` gives
    /// `b % small`, `0xF0..=0xFE` give `max - (b - 0xF0)` (the edge of the range), and
    /// `0xFF` is followed by 8 bytes taken modulo `max + 1`.
    pub fn number(&mut self, small: u8, max: u64) -> u64 {
        debug_assert!(small > 0 && u64::from(small) <= max - u64::from(RAW - EXTREME));
        match self.u8() {
            RAW => match max.checked_add(1) {
                Some(modulus) => self.u64() % modulus,
                None => self.u64(),
            },
            byte if byte >= EXTREME => max - u64::from(byte - EXTREME),
            byte => u64::from(byte % small),
        }
    }

    /// Up to `max` bytes: a length byte (modulo `max + 1`), then that many bytes.
    pub fn bytes(&mut self, max: u8) -> Vec<u8> {
        let len = self.u8() % max.saturating_add(1);
        (0..len).map(|_| self.u8()).collect()
    }

    /// Everything not read yet.
    pub fn remaining(self) -> &'a [u8] {
        self.rest
    }
}

/// Writes fields so that [`Reader`] reads them back: how hand-made seeds are built.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    /// The bytes so far.
    pub out: Vec<u8>,
}

impl Writer {
    /// One byte.
    pub fn u8(&mut self, byte: u8) {
        self.out.push(byte);
    }

    /// A value below `count`, as [`Reader::below`] reads it.
    pub fn below(&mut self, value: u8, count: u8) {
        assert!(value < count, "{value} is not below {count}");
        self.u8(value);
    }

    /// A number as [`Reader::number`] reads it with the same `small` and `max`.
    pub fn number(&mut self, value: u64, small: u8, max: u64) {
        assert!(value <= max, "{value} exceeds {max}");
        if value < u64::from(small) {
            self.u8(value as u8);
        } else if max - value <= u64::from(RAW - 1 - EXTREME) {
            self.u8(EXTREME + (max - value) as u8);
        } else {
            self.u8(RAW);
            self.out.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// Bytes as [`Reader::bytes`] reads them with the same `max`.
    pub fn bytes(&mut self, bytes: &[u8], max: u8) {
        let len = u8::try_from(bytes.len()).expect("at most 255 bytes");
        assert!(len <= max, "{len} bytes exceed {max}");
        self.u8(len);
        self.out.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_through_writer_and_reader() {
        let max = u64::from(u32::MAX);
        let values = [0, 1, 7, 8, 1000, max - 15, max - 14, max - 1, max];
        let mut writer = Writer::default();
        for value in values {
            writer.number(value, 8, max);
        }
        let mut reader = Reader::new(&writer.out);
        for value in values {
            assert_eq!(reader.number(8, max), value);
        }
        assert!(reader.is_empty());
        assert_eq!(reader.number(8, max), 0, "zeros past the end");
    }
}
