//! Shared by the fuzz targets: a trace reader over the fuzzer's bytes.
//!
//! Every target hands the bytes to the same library entry point
//! `memtrace` uses on a file; an error is a fine answer, a panic, a hang or
//! an allocation beyond libFuzzer's limit is a bug.

use memtrace_format::{DecodeError, Reader};

/// A reader of `data` as if it were a trace file.
pub fn reader(data: &[u8]) -> Result<Reader<&[u8]>, DecodeError> {
    Reader::new(data)
}
