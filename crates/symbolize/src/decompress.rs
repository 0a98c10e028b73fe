//! Compressed ELF sections (`SHF_COMPRESSED` with zlib or zstd, and the old
//! `.zdebug` ones) inflated into a buffer of the size the section claims,
//! and no more.

use std::sync::Arc;

/// How a section is compressed.
#[derive(Clone, Copy)]
pub(crate) enum Compression {
    /// zlib (`ELFCOMPRESS_ZLIB`, and the old `.zdebug` sections).
    Zlib,
    /// zstd (`ELFCOMPRESS_ZSTD`).
    Zstd,
}

/// A shared buffer of `n` zero bytes, in one allocation (the iterator has
/// an exact length, so `collect` allocates once).
pub(crate) fn zeroed(n: usize) -> Arc<[u8]> {
    std::iter::repeat_n(0u8, n).collect()
}

/// Decompresses a section whose uncompressed size is `size` (already
/// charged to the budget) into a buffer of exactly that size: the output
/// stops there, whatever the stream would expand to.
pub(crate) fn decompress(
    format: Compression,
    compressed: &[u8],
    size: u64,
) -> Result<Arc<[u8]>, String> {
    let size = usize::try_from(size).map_err(|_| "compressed section too large".to_string())?;
    let mut shared = zeroed(size);
    let out = Arc::get_mut(&mut shared).expect("a new Arc is not shared");
    let n = match format {
        Compression::Zlib => miniz_oxide::inflate::decompress_slice_iter_to_slice(
            out,
            std::iter::once(compressed),
            true,
            false,
        )
        .map_err(|e| format!("invalid zlib compressed data: {e:?}"))?,
        Compression::Zstd => zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress_to_buffer(compressed, out))
            .map_err(|e| format!("invalid zstd compressed data: {e}"))?,
    };
    if n != size {
        return Err(format!(
            "compressed section holds {n:#x} bytes instead of {size:#x}"
        ));
    }
    Ok(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn zlib_and_zstd_sections_decompress_to_their_size() {
        let raw = data();
        let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6);
        let zstd = zstd::bulk::compress(&raw, 3).unwrap();
        for (format, stream) in [(Compression::Zlib, &zlib), (Compression::Zstd, &zstd)] {
            let out = decompress(format, stream, raw.len() as u64).unwrap();
            assert_eq!(&out[..], &raw[..]);
        }
    }

    #[test]
    fn a_stream_longer_than_its_size_stops_at_the_size() {
        let raw = data();
        let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6);
        let zstd = zstd::bulk::compress(&raw, 3).unwrap();
        assert_eq!(
            decompress(Compression::Zlib, &zlib, 1000).err().unwrap(),
            "invalid zlib compressed data: HasMoreOutput"
        );
        assert_eq!(
            decompress(Compression::Zstd, &zstd, 1000).err().unwrap(),
            "invalid zstd compressed data: Destination buffer is too small"
        );
        // Shorter than the size: the section is refused too.
        assert_eq!(
            decompress(Compression::Zlib, &zlib, raw.len() as u64 + 1)
                .err()
                .unwrap(),
            format!(
                "compressed section holds {:#x} bytes instead of {:#x}",
                raw.len(),
                raw.len() + 1
            )
        );
    }
}
