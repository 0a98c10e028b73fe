//! Block framing: the file is a magic, then self-checking blocks of records.
//!
//! ```text
//! file   = "MEMTRACE" version:u16le flags:u16le block*
//! block  = "MTBK" codec:u8 0 0 0 stored_len:u32le raw_len:u32le crc32:u32le stored
//! ```
//! `codec` 0 stores the records as they are, 1 compresses them with zstd.
//! `crc32` covers the stored bytes. A reader that meets an incomplete block
//! knows the file was cut there; everything before it is intact.

use std::io::{self, Read, Write};

use crate::error::DecodeError;

/// First bytes of every trace file.
pub const FILE_MAGIC: &[u8; 8] = b"MEMTRACE";
/// Format version written by this crate.
pub const VERSION: u16 = 3;
/// Oldest format version this crate reads (version 2 has item-by-item
/// `BATCH` records where version 3 writes `COLUMNS`).
pub const MIN_VERSION: u16 = 2;
const BLOCK_MAGIC: &[u8; 4] = b"MTBK";
/// Size of a block's header: its stored bytes start this far after it.
pub(crate) const BLOCK_HEADER_LEN: usize = 20;
/// Most bytes a block's records may take once decoded: the [`crate::Writer`]
/// seals a block before a record would take it past this, and a reader
/// refuses a larger block as corrupt before decompressing anything. This
/// is the decompression budget: a zstd frame of a few hundred bytes can
/// claim gigabytes, and a block may expand to this much and no more.
///
/// 16 MiB is 16 times the writer's default block target (1 MiB) and twice
/// the largest target it can be set to; the largest record it writes (a
/// `COLUMNS` record of 32 Ki items) is at most about 3.3 MB.
pub const MAX_BLOCK: usize = 16 << 20;
/// Most stored bytes of a block: zstd's worst case for incompressible
/// input is its size plus 1/256 (`ZSTD_compressBound`), well within 1/128.
pub(crate) const MAX_STORED: usize = MAX_BLOCK + MAX_BLOCK / 128;

/// Decoded bytes a file may have before [`MAX_INFLATION`] applies.
pub(crate) const INFLATION_SLACK: u64 = 64 << 20;
/// Most decoded bytes per stored byte, over the whole file so far (after
/// [`INFLATION_SLACK`]).
///
/// The per-block limit bounds each block, not the file: 765 blocks of 16
/// MiB of zeros fit in 421 KB (530 bytes each), and `report` took 84 s to
/// walk them. Real traces compress far less: the recorder's columns leave
/// zstd little to find. A program made to compress well (3 million
/// malloc/free of 32 bytes in a loop, then 2 million identical blocks
/// leaked for the exit scan) gave 6.1 for the file at the recorder's level
/// 1 (8.9 for its most compressed block), and 9.6 (10.9) at level 19. 256
/// leaves a margin of over 20 and bounds the decoding work of any file to
/// 64 MiB + 256 times its size.
pub(crate) const MAX_INFLATION: u64 = 256;

/// The bytes read and decoded so far, against the file's decompression
/// budget ([`INFLATION_SLACK`] + [`MAX_INFLATION`] times the stored bytes).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Inflation {
    stored: u64,
    raw: u64,
}

impl Inflation {
    /// Counts a block of `stored` bytes that decodes to `raw`, or says why
    /// it may not be decoded.
    fn admit(&mut self, stored: usize, raw: usize) -> Result<(), String> {
        let stored = self.stored + (BLOCK_HEADER_LEN + stored) as u64;
        let raw = self.raw + raw as u64;
        if raw > INFLATION_SLACK + MAX_INFLATION * stored {
            return Err(format!(
                "the blocks up to this one decode to {raw} bytes from {stored} in the file, \
                 over the decompression budget of {INFLATION_SLACK} bytes and \
                 {MAX_INFLATION} per byte in the file"
            ));
        }
        *self = Inflation { stored, raw };
        Ok(())
    }
}

/// What [`read_block`] found about a block it read whole.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockRead {
    /// File offset of the next block.
    pub next: u64,
    /// Whether the stored bytes were zstd-compressed (then positions in the
    /// records are not file offsets).
    pub compressed: bool,
}

/// Compression applied to a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is.
    Raw,
    /// zstd at the given level.
    Zstd(i32),
}

/// Writes the file preamble.
pub(crate) fn write_preamble(out: &mut impl Write) -> io::Result<()> {
    out.write_all(FILE_MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(&0u16.to_le_bytes())
}

/// Reads and checks the file preamble.
pub(crate) fn read_preamble(src: &mut impl Read) -> Result<(), DecodeError> {
    let mut pre = [0u8; 12];
    let n = read_full(src, &mut pre)?;
    if n < 8 || &pre[..8] != FILE_MAGIC {
        return Err(if n < 8 && FILE_MAGIC.starts_with(&pre[..n]) && n > 0 {
            DecodeError::Truncated { offset: 0 }
        } else {
            DecodeError::NotATrace
        });
    }
    if n < 12 {
        return Err(DecodeError::Truncated { offset: 0 });
    }
    let version = u16::from_le_bytes([pre[8], pre[9]]);
    if !(MIN_VERSION..=VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    Ok(())
}

/// The zstd state a writer keeps between blocks.
pub(crate) type Compressor = zstd::zstd_safe::CCtx<'static>;

/// Seals `raw` into one block and writes it; returns the bytes written.
/// `scratch` is reused between calls. A block that cannot be compressed
/// (zstd, or `scratch`, cannot get memory) is stored as it is: each block
/// names its codec.
pub(crate) fn write_block(
    out: &mut impl Write,
    raw: &[u8],
    codec: Codec,
    compressor: &mut Option<Compressor>,
    scratch: &mut Vec<u8>,
) -> io::Result<usize> {
    let compressed = match codec {
        Codec::Raw => false,
        Codec::Zstd(level) => compress(raw, level, compressor, scratch),
    };
    if compressed {
        write_parts(out, 1, raw.len(), &[scratch])
    } else {
        write_parts(out, 0, raw.len(), &[raw])
    }
}

/// Compresses `raw` into `scratch`; false when zstd or `scratch` cannot get
/// the memory it needs.
fn compress(
    raw: &[u8],
    level: i32,
    compressor: &mut Option<Compressor>,
    scratch: &mut Vec<u8>,
) -> bool {
    use zstd::zstd_safe::{compress_bound, CCtx, CParameter};
    if compressor.is_none() {
        let Some(mut context) = CCtx::try_create() else {
            return false;
        };
        if context
            .set_parameter(CParameter::CompressionLevel(level))
            .is_err()
        {
            return false;
        }
        *compressor = Some(context);
    }
    let Some(context) = compressor.as_mut() else {
        return false;
    };
    scratch.clear();
    if scratch.try_reserve(compress_bound(raw.len())).is_err() {
        return false;
    }
    context.compress2(scratch, raw).is_ok()
}

/// Writes one block whose stored bytes are `parts`, one after the other,
/// without gathering them first; `raw_len` is their size once decoded.
/// Returns the bytes written.
pub(crate) fn write_parts(
    out: &mut impl Write,
    code: u8,
    raw_len: usize,
    parts: &[&[u8]],
) -> io::Result<usize> {
    let stored_len: usize = parts.iter().map(|p| p.len()).sum();
    let mut crc = crc32fast::Hasher::new();
    for part in parts {
        crc.update(part);
    }
    let mut head = [0u8; BLOCK_HEADER_LEN];
    head[..4].copy_from_slice(BLOCK_MAGIC);
    head[4] = code;
    head[8..12].copy_from_slice(&(stored_len as u32).to_le_bytes());
    head[12..16].copy_from_slice(&(raw_len as u32).to_le_bytes());
    head[16..20].copy_from_slice(&crc.finalize().to_le_bytes());
    out.write_all(&head)?;
    for part in parts {
        out.write_all(part)?;
    }
    Ok(BLOCK_HEADER_LEN + stored_len)
}

/// Reads the next block, which starts at file offset `offset`, into `raw`,
/// within the file's decompression budget `inflation`. Returns `Ok(None)`
/// at a clean end of file.
pub(crate) fn read_block(
    src: &mut impl Read,
    offset: u64,
    stored: &mut Vec<u8>,
    raw: &mut Vec<u8>,
    inflation: &mut Inflation,
) -> Result<Option<BlockRead>, DecodeError> {
    let mut head = [0u8; BLOCK_HEADER_LEN];
    let n = read_full(src, &mut head)?;
    if n == 0 {
        return Ok(None);
    }
    if n < BLOCK_HEADER_LEN {
        return Err(DecodeError::Truncated { offset });
    }
    let corrupt = |why: String| DecodeError::Corrupt { offset, why };
    if &head[..4] != BLOCK_MAGIC {
        return Err(corrupt("bad block magic".into()));
    }
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let (stored_len, raw_len, crc) = (word(8) as usize, word(12) as usize, word(16));
    if head[5..8] != [0, 0, 0] {
        return Err(corrupt("reserved header bytes are not zero".into()));
    }
    if raw_len > MAX_BLOCK {
        return Err(corrupt(format!(
            "block claims {raw_len} bytes of records, over the {MAX_BLOCK}-byte limit"
        )));
    }
    if stored_len > MAX_STORED {
        return Err(corrupt(format!(
            "block stores {stored_len} bytes, over the {MAX_STORED}-byte limit"
        )));
    }
    stored.resize(stored_len, 0);
    if read_full(src, stored)? < stored_len {
        return Err(DecodeError::Truncated { offset });
    }
    // Fuzz builds skip the checksum, so that mutated bytes reach the
    // record decoders instead of stopping here.
    if crc32fast::hash(stored) != crc && !cfg!(fuzzing) {
        return Err(corrupt("checksum mismatch".into()));
    }
    inflation.admit(stored_len, raw_len).map_err(corrupt)?;
    raw.clear();
    match head[4] {
        0 if raw_len == stored_len => raw.extend_from_slice(stored),
        0 => return Err(corrupt("stored block sizes disagree".into())),
        1 => decompress(stored, raw_len, raw).map_err(corrupt)?,
        other => return Err(corrupt(format!("unknown codec {other}"))),
    }
    Ok(Some(BlockRead {
        next: offset + (BLOCK_HEADER_LEN + stored_len) as u64,
        compressed: head[4] == 1,
    }))
}

/// Decompresses one zstd frame that must decode to exactly `raw_len`
/// bytes (at most [`MAX_BLOCK`], checked by the caller) into `raw`.
///
/// The output is a slice of exactly `raw_len` bytes, so a frame that
/// expands further stops at the end of the slice: the work done on any
/// block is bounded by the limit, whatever the frame claims. A frame that
/// names its size (the writer's always do) is checked before decoding.
fn decompress(stored: &[u8], raw_len: usize, raw: &mut Vec<u8>) -> Result<(), String> {
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(stored) {
        if size != raw_len as u64 {
            return Err(format!(
                "zstd frame expands to {size} bytes, the block header says {raw_len}"
            ));
        }
    }
    raw.resize(raw_len, 0);
    let n = zstd::bulk::Decompressor::new()
        .and_then(|mut d| d.decompress_to_buffer(stored, &mut raw[..]))
        .map_err(|e| format!("zstd: {e}"))?;
    if n != raw_len {
        return Err(format!(
            "zstd frame expands to {n} bytes, the block header says {raw_len}"
        ));
    }
    Ok(())
}

/// A copy of a trace whose every complete block carries the checksum of
/// its stored bytes; anything else is copied as it is.
///
/// Fuzz builds do not check checksums, so what the fuzzers find has stale
/// ones: this turns such an input into one that a normal build decodes the
/// same way, for regression tests.
pub fn with_checksums(trace: &[u8]) -> Vec<u8> {
    let mut out = trace.to_vec();
    let mut at = 12;
    while at + BLOCK_HEADER_LEN <= out.len() && &out[at..at + 4] == BLOCK_MAGIC {
        let word = |i: usize| u32::from_le_bytes([out[i], out[i + 1], out[i + 2], out[i + 3]]);
        let stored_len = word(at + 8) as usize;
        let start = at + BLOCK_HEADER_LEN;
        let Some(end) = start.checked_add(stored_len).filter(|&e| e <= out.len()) else {
            break;
        };
        let crc = crc32fast::hash(&out[start..end]);
        out[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
    out
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
