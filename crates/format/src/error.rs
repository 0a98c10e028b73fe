//! Errors of the decoder.

use std::fmt;

use crate::block::BLOCK_HEADER_LEN;

/// Why a trace could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// Reading the underlying file failed.
    Io(std::io::Error),
    /// The path names something other than a regular file (`"a FIFO"`,
    /// `"a directory"`, `"a symbolic link"` where none is followed): a
    /// FIFO would block the reader, a device never end.
    NotRegularFile(&'static str),
    /// The file does not start with the memtrace magic.
    NotATrace,
    /// The file was written by a newer, incompatible format version.
    UnsupportedVersion(u16),
    /// The file ends in the middle of a block: the writer died or the file was cut.
    Truncated {
        /// Byte offset where the incomplete block starts.
        offset: u64,
    },
    /// A block's framing is damaged: bad magic, sizes over the limits, a
    /// checksum mismatch, a zstd frame that does not decode to its size.
    Corrupt {
        /// Byte offset of the damaged block.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// A record inside a block breaks the format; [`Fault`] says where.
    Malformed(Fault),
}

/// Where a record that breaks the format is, and what is wrong with it.
///
/// Decoders find the fault at a position in a block's decoded records; the
/// [`crate::Reader`] adds the block and the record's number, so that the
/// message names a file offset: `byte 3856 (record 5 of the block at byte
/// 3825)`. In a zstd block, decoded bytes have no offset in the file, and
/// the message says `byte 11 of the decompressed block at byte 3825`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    why: String,
    /// Position in the block's decoded records, when the decoder knew it
    /// (else the reader puts the record's first byte).
    at: Option<usize>,
    place: Option<Place>,
}

/// The block and record of a fault, added by the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    block: u64,
    compressed: bool,
    record: u64,
}

impl Fault {
    /// What is wrong.
    pub fn why(&self) -> &str {
        &self.why
    }

    /// File offset of the block holding the record, once a reader placed it.
    pub fn block_offset(&self) -> Option<u64> {
        self.place.map(|p| p.block)
    }

    /// The record's number in its block, counting from 1, once placed.
    pub fn record(&self) -> Option<u64> {
        self.place.map(|p| p.record)
    }

    /// File offset of the faulty byte: known for a raw block, not for a
    /// compressed one (see [`Fault::offset_in_block`]).
    pub fn file_offset(&self) -> Option<u64> {
        let place = self.place.filter(|p| !p.compressed)?;
        Some(place.block + BLOCK_HEADER_LEN as u64 + self.at? as u64)
    }

    /// Offset of the faulty byte in the block's decoded records.
    pub fn offset_in_block(&self) -> Option<usize> {
        self.at
    }
}

impl DecodeError {
    /// A record fault whose position the reader fills in.
    pub(crate) fn malformed(why: impl Into<String>) -> Self {
        DecodeError::Malformed(Fault {
            why: why.into(),
            at: None,
            place: None,
        })
    }

    /// A record fault at position `at` of the block's decoded records.
    pub(crate) fn malformed_at(at: usize, why: impl Into<String>) -> Self {
        DecodeError::Malformed(Fault {
            why: why.into(),
            at: Some(at),
            place: None,
        })
    }

    /// Places a record fault found in record `record` (from 1), which
    /// starts at `record_at` in the decoded records of the block at file
    /// offset `block`; other errors are returned as they are.
    pub(crate) fn placed(
        self,
        block: u64,
        compressed: bool,
        record: u64,
        record_at: usize,
    ) -> Self {
        match self {
            DecodeError::Malformed(mut fault) if fault.place.is_none() => {
                fault.at.get_or_insert(record_at);
                fault.place = Some(Place {
                    block,
                    compressed,
                    record,
                });
                DecodeError::Malformed(fault)
            }
            other => other,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.place, self.at) {
            (Some(p), Some(at)) if p.compressed => write!(
                f,
                "byte {at} of the decompressed block at byte {} (record {}): {}",
                p.block, p.record, self.why
            ),
            (Some(p), Some(_)) => write!(
                f,
                "byte {} (record {} of the block at byte {}): {}",
                self.file_offset().unwrap_or(p.block),
                p.record,
                p.block,
                self.why
            ),
            (None, Some(at)) => write!(f, "byte {at} of a block's records: {}", self.why),
            (_, None) => f.write_str(&self.why),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Io(e) => write!(f, "cannot read trace: {e}"),
            DecodeError::NotRegularFile(what) => write!(
                f,
                "{what}, not a regular file: memtrace reads traces only from regular files"
            ),
            DecodeError::NotATrace => write!(f, "not a memtrace trace (bad magic)"),
            DecodeError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "trace format version {v} is not one this memtrace reads ({}-{})",
                    crate::MIN_VERSION,
                    crate::VERSION
                )
            }
            DecodeError::Truncated { offset } => {
                write!(f, "trace is truncated: incomplete block at byte {offset}")
            }
            DecodeError::Corrupt { offset, why } => {
                write!(f, "trace is corrupt: block at byte {offset}: {why}")
            }
            DecodeError::Malformed(fault) => write!(f, "trace is corrupt: {fault}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> Self {
        DecodeError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_in_a_raw_block_names_its_file_byte() {
        let e = DecodeError::malformed_at(11, "stack id 9 out of range").placed(3825, false, 5, 4);
        assert_eq!(
            e.to_string(),
            "trace is corrupt: byte 3856 (record 5 of the block at byte 3825): stack id 9 out of range"
        );
    }

    #[test]
    fn a_fault_in_a_zstd_block_names_its_decompressed_byte() {
        let e = DecodeError::malformed_at(11, "unexpected end").placed(3825, true, 5, 4);
        assert_eq!(
            e.to_string(),
            "trace is corrupt: byte 11 of the decompressed block at byte 3825 (record 5): unexpected end"
        );
    }

    #[test]
    fn a_fault_without_a_position_gets_its_record_start() {
        let e = DecodeError::malformed("a second header record").placed(12, false, 2, 7);
        assert_eq!(
            e.to_string(),
            "trace is corrupt: byte 39 (record 2 of the block at byte 12): a second header record"
        );
        // Placing twice keeps the first place (the innermost decoder's).
        let again = e.placed(99, true, 1, 0);
        assert!(again.to_string().starts_with("trace is corrupt: byte 39 "));
    }
}
