//! Little building blocks of the encoding: LEB128 varints, zigzag, strings.
//!
//! Decoding works on a [`Cursor`] over a byte slice and never panics: every
//! read past the end becomes [`DecodeError::Malformed`].

use crate::error::DecodeError;

/// Appends `value` as an unsigned LEB128 varint.
pub fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a signed value as a zigzag-encoded varint.
#[cfg(test)]
pub fn put_i64(out: &mut Vec<u8>, value: i64) {
    put_u64(out, ((value << 1) ^ (value >> 63)) as u64);
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
}

impl<'a> Cursor<'a> {
    /// Reads `bytes`; `what` names the structure in error messages.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Cursor {
            bytes,
            pos: 0,
            what,
        }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn malformed(&self, why: &str) -> DecodeError {
        DecodeError::Malformed(format!("{} at byte {}: {why}", self.what, self.pos))
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
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.u8()?;
            if shift == 63 && byte > 1 {
                return Err(self.malformed("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than 10 bytes"))
    }

    /// Reads a varint that must fit in `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let value = self.u64()?;
        u32::try_from(value).map_err(|_| self.malformed("value does not fit 32 bits"))
    }

    /// Reads a zigzag-encoded signed varint.
    #[inline]
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        let raw = self.u64()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Reads a length that must not exceed what is left.
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let len = self.u64()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if len > left {
            return Err(self.malformed("length runs past the end"));
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

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        self.pos = self.bytes.len();
        rest
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
        let n = self.u64()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > left {
            return Err(self.malformed("item count larger than the data"));
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
    fn overlong_and_short_varints_are_errors() {
        assert!(Cursor::new(&[0xff; 11], "t").u64().is_err());
        assert!(Cursor::new(&[0x80], "t").u64().is_err());
        let mut big = vec![0xff; 9];
        big.push(0x02);
        assert!(Cursor::new(&big, "t").u64().is_err());
    }

    #[test]
    fn lengths_cannot_run_past_the_end() {
        let mut out = Vec::new();
        put_u64(&mut out, 10);
        out.extend_from_slice(b"abc");
        assert!(Cursor::new(&out, "t").bytes().is_err());
    }
}
