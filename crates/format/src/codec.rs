//! Little building blocks of the encoding: LEB128 varints, zigzag, strings.
//!
//! Decoding works on a [`Cursor`] over a byte slice and never panics: every
//! read past the end becomes [`DecodeError::Malformed`], at the position in
//! the block's records where the read started.

use crate::error::DecodeError;

/// Most bytes of a LEB128 varint of a `u64`.
pub(crate) const MAX_VARINT: usize = 10;

/// Writes `value` as an unsigned LEB128 varint at `out[at..]`; returns the
/// position after it. The one LEB128 writer of the format: every other
/// varint writer (a `Vec`, a batch column, a record head) goes through it.
#[inline(always)]
pub(crate) fn put_u64_at(out: &mut [u8], mut at: usize, mut value: u64) -> usize {
    while value >= 0x80 {
        out[at] = (value as u8) | 0x80;
        value >>= 7;
        at += 1;
    }
    out[at] = value as u8;
    at + 1
}

/// Writes `value` at `out[at..]` as a LEB128 varint of exactly five bytes
/// (non-minimal for small values, which every reader accepts), so that a
/// length can be written before it is known how long it is; returns the
/// position after it.
pub(crate) fn put_u32_padded(out: &mut [u8], at: usize, value: u32) -> usize {
    for i in 0..5 {
        let bits = ((value >> (7 * i)) & 0x7f) as u8;
        out[at + i] = if i < 4 { bits | 0x80 } else { bits };
    }
    at + 5
}

/// Appends `value` as an unsigned LEB128 varint.
pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    let mut bytes = [0u8; MAX_VARINT];
    let n = put_u64_at(&mut bytes, 0, value);
    out.extend_from_slice(&bytes[..n]);
}

/// A signed value as an unsigned one whose small magnitudes are small
/// (zigzag: 0, -1, 1, -2, ... become 0, 1, 2, 3, ...), for a varint.
#[inline(always)]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline(always)]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends a signed value as a zigzag-encoded varint.
#[cfg(test)]
pub fn put_i64(out: &mut Vec<u8>, value: i64) {
    put_u64(out, zigzag(value));
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a length-prefixed UTF-8 string.
pub fn put_str(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

/// A read position in a byte slice, with checked reads.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
    /// Where `bytes` starts in the block's records, for error positions.
    base: usize,
}

impl<'a> Cursor<'a> {
    /// Reads `bytes`, which start a block's records; `what` names the
    /// structure in error messages.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Cursor {
            bytes,
            pos: 0,
            what,
            base: 0,
        }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// The read position in the block's records (not in this cursor's slice).
    pub fn at(&self) -> usize {
        self.base + self.pos
    }

    /// An error at position `at` of the block's records.
    pub fn malformed_at(&self, at: usize, why: &str) -> DecodeError {
        DecodeError::malformed_at(at, format!("{}: {why}", self.what))
    }

    fn malformed(&self, why: &str) -> DecodeError {
        self.malformed_at(self.at(), why)
    }

    /// A cursor over the next `n` bytes, which it consumes; its errors
    /// keep positions in the block's records.
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Cursor<'a>, DecodeError> {
        let base = self.at();
        Ok(Cursor {
            bytes: self.take(n)?,
            pos: 0,
            what,
            base,
        })
    }

    /// A cursor over a length-prefixed byte string (a record's payload).
    pub fn sub_bytes(&mut self, what: &'static str) -> Result<Cursor<'a>, DecodeError> {
        let n = self.len()?;
        self.sub(n, what)
    }

    /// Reads one byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.malformed("unexpected end"))?;
        self.pos += 1;
        Ok(byte)
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes.
    #[inline]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        // Fast paths: one- and two-byte values, the most common ones.
        if let Some(&b) = self.bytes.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
            if let Some(&c) = self.bytes.get(self.pos + 1) {
                if c < 0x80 {
                    self.pos += 2;
                    return Ok(u64::from(b & 0x7f) | u64::from(c) << 7);
                }
            }
        }
        self.u64_slow()
    }

    fn u64_slow(&mut self) -> Result<u64, DecodeError> {
        let start = self.at();
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.u8()?;
            if shift == 63 && byte > 1 {
                return Err(self.malformed_at(start, "varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed_at(start, "varint longer than 10 bytes"))
    }

    /// Reads a varint that must fit in `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let start = self.at();
        let value = self.u64()?;
        u32::try_from(value).map_err(|_| self.malformed_at(start, "value does not fit 32 bits"))
    }

    /// Reads a zigzag-encoded signed varint.
    #[inline]
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(unzigzag(self.u64()?))
    }

    /// Reads a length that must not exceed what is left.
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let start = self.at();
        let len = self.u64()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if len > left {
            return Err(self.malformed_at(start, "length runs past the end"));
        }
        Ok(len as usize)
    }

    /// Reads `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() - self.pos {
            return Err(self.malformed("unexpected end"));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    /// Reads a length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }

    /// Reads a length-prefixed string; invalid UTF-8 is replaced, not rejected.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    /// Reads a count of items that each take at least `min_item_bytes`, so
    /// that a corrupt count cannot make the caller reserve huge vectors.
    pub fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let start = self.at();
        let n = self.u64()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > left {
            return Err(self.malformed_at(start, "item count larger than the data"));
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        let values = [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        let mut out = Vec::new();
        for v in values {
            put_u64(&mut out, v);
        }
        let signed = [0i64, -1, 1, i64::MIN, i64::MAX];
        for v in signed {
            put_i64(&mut out, v);
        }
        let mut cur = Cursor::new(&out, "test");
        for v in values {
            assert_eq!(cur.u64().unwrap(), v);
        }
        for v in signed {
            assert_eq!(cur.i64().unwrap(), v);
        }
        assert!(cur.is_empty());
    }

    #[test]
    fn padded_varints_take_five_bytes_and_read_as_any_other() {
        let mut out = [0u8; 15];
        let mut at = 0;
        for v in [0u32, 300, u32::MAX] {
            at = put_u32_padded(&mut out, at, v);
        }
        assert_eq!(at, 15);
        assert_eq!(out[..5], [0x80, 0x80, 0x80, 0x80, 0]);
        let mut cur = Cursor::new(&out, "test");
        for v in [0u64, 300, u32::MAX.into()] {
            assert_eq!(cur.u64().unwrap(), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(unzigzag(zigzag(i64::MIN)), i64::MIN);
    }

    #[test]
    fn overlong_and_short_varints_are_errors() {
        assert!(Cursor::new(&[0xff; 11], "t").u64().is_err());
        assert!(Cursor::new(&[0x80], "t").u64().is_err());
        let mut big = vec![0xff; 9];
        big.push(0x02);
        assert!(Cursor::new(&big, "t").u64().is_err());
    }

    #[test]
    fn errors_give_positions_in_the_block_records() {
        // A record: tag, length 4, then a payload whose varint is cut.
        // The length varint `80 04` is 4 << 7 = 512: past the end.
        let block = [7u8, 0x80, 4, 1, 2, 0x80, 0x80];
        let mut cur = Cursor::new(&block, "block");
        assert_eq!(cur.u8().unwrap(), 7);
        let err = cur.sub_bytes("record").unwrap_err();
        let DecodeError::Malformed(fault) = err else {
            panic!("{err}")
        };
        assert_eq!(fault.offset_in_block(), Some(1));
        assert_eq!(fault.why(), "block: length runs past the end");

        let mut outer = Cursor::new(&block[..], "block");
        outer.take(3).unwrap();
        let mut payload = outer.sub(4, "record").unwrap();
        assert_eq!(payload.u8().unwrap(), 1);
        assert_eq!(payload.at(), 4);
        let err = payload.u64().and_then(|_| payload.u64()).unwrap_err();
        let DecodeError::Malformed(fault) = err else {
            panic!("{err}")
        };
        // The second varint starts at byte 5; its bytes run out at byte 7.
        assert_eq!(fault.offset_in_block(), Some(7));
        assert_eq!(fault.why(), "record: unexpected end");
    }

    #[test]
    fn lengths_cannot_run_past_the_end() {
        let mut out = Vec::new();
        put_u64(&mut out, 10);
        out.extend_from_slice(b"abc");
        assert!(Cursor::new(&out, "t").bytes().is_err());
    }
}
