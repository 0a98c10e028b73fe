//! Errors of the decoder.

use std::fmt;

/// Why a trace could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// Reading the underlying file failed.
    Io(std::io::Error),
    /// The file does not start with the memtrace magic.
    NotATrace,
    /// The file was written by a newer, incompatible format version.
    UnsupportedVersion(u16),
    /// The file ends in the middle of a block: the writer died or the file was cut.
    Truncated {
        /// Byte offset where the incomplete block starts.
        offset: u64,
    },
    /// A block's checksum does not match its bytes.
    Corrupt {
        /// Byte offset of the damaged block.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// A record is structurally invalid.
    Malformed(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Io(e) => write!(f, "cannot read trace: {e}"),
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
            DecodeError::Malformed(why) => write!(f, "trace is corrupt: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> Self {
        DecodeError::Io(e)
    }
}
