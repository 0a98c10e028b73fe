//! ELF files read piece by piece, within a budget.
//!
//! Module paths come from a trace, and a trace may come from anyone: a path
//! can name a 20 GiB sparse file (free to make, all holes), a file whose
//! section headers claim gigabytes, or a compressed section that inflates a
//! thousandfold. So a file is never read whole. [`ElfFile::open`] reads the
//! ELF header, the section and program header tables and the section name
//! table; everything else is read when asked for, one section at a time,
//! with positioned reads (`pread`), and every byte read or decompressed is
//! charged to the file's budget:
//!
//! * one section, stored or decompressed, is at most [`MAX_SECTION`] (1 GiB:
//!   more than any DWARF section of the largest programs we know, e.g. a
//!   Chromium `.debug_info` of 600-900 MB);
//! * all reads and decompressions of one file together are at most
//!   [`MAX_PER_ALLOCATED_BYTE`] times the bytes the file has on disk
//!   (`st_blocks`), and at least [`MIN_BUDGET`]. A real module's sections
//!   lie in allocated blocks, so its budget covers them with room for
//!   filesystem compression and for compressed debug sections (which
//!   inflate 3-5 times in practice); a sparse file's holes cost nothing to
//!   make and would cost their size to read, so they are not read.
//!
//! Reading with `pread` rather than `mmap` keeps this crate free of
//! `unsafe` and of `SIGBUS` when a file shrinks while it is mapped; the
//! price is that the DWARF sections a module needs are read into memory
//! (each in one allocation, shared with gimli), where a mapping would page
//! them in lazily. Paths are opened with [`open_regular`].

use std::borrow::Cow;
use std::cell::Cell;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use goblin::container::Ctx;
use goblin::elf::compression_header::{CompressionHeader, ELFCOMPRESS_ZLIB, ELFCOMPRESS_ZSTD};
use goblin::elf::note::{NoteDataIterator, NT_GNU_BUILD_ID};
use goblin::elf::program_header::PT_NOTE;
use goblin::elf::section_header::{SHF_COMPRESSED, SHN_XINDEX, SHT_DYNSYM, SHT_NOBITS, SHT_NOTE};
use goblin::elf::{Elf, ProgramHeader, SectionHeader};

use crate::decompress::{decompress, zeroed, Compression};

/// Most bytes of one section, as stored or once decompressed.
pub(crate) const MAX_SECTION: u64 = 1 << 30;
/// The smallest budget of a file, whatever its size on disk.
pub(crate) const MIN_BUDGET: u64 = 32 << 20;
/// A file's budget per byte it has on disk.
pub(crate) const MAX_PER_ALLOCATED_BYTE: u64 = 32;
/// Most bytes of the section name table (real ones are a few KiB).
const MAX_SECTION_NAMES: u64 = 16 << 20;
/// Bytes per read when a whole file is checksummed.
const CHUNK: usize = 1 << 20;

/// Opens `path` only if it is a regular file. Paths come from the trace,
/// which may be damaged or made up: a device such as `/dev/zero` would be
/// read without end, a FIFO would block the open until a writer comes.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<File> {
    let not_regular =
        || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
    // Checked before opening (a FIFO's open would wait) and again on the
    // open file (the path may have been replaced in between).
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// The read budget of a file with `allocated` bytes on disk.
pub(crate) fn budget(allocated: u64) -> u64 {
    allocated
        .saturating_mul(MAX_PER_ALLOCATED_BYTE)
        .max(MIN_BUDGET)
}

/// An open regular file, read with positioned reads that are charged to
/// its budget.
struct Source {
    file: File,
    /// The file's length when it was opened (`fstat`).
    len: u64,
    /// The budget it started with, for messages.
    budget: u64,
    /// What is left of the budget.
    left: Cell<u64>,
}

impl Source {
    fn new(file: File) -> std::io::Result<Source> {
        let meta = file.metadata()?;
        // st_blocks counts 512-byte units whatever the block size.
        let budget = budget(meta.blocks().saturating_mul(512));
        Ok(Source {
            file,
            len: meta.len(),
            budget,
            left: Cell::new(budget),
        })
    }

    /// Takes `size` bytes from the budget, or says why not.
    fn charge(&self, size: u64, what: &str) -> Result<(), String> {
        if size > MAX_SECTION {
            return Err(format!(
                "{what} of {size} bytes is over the {MAX_SECTION}-byte limit"
            ));
        }
        let left = self.left.get();
        if size > left {
            return Err(format!(
                "{what} of {size} bytes would pass the file's read budget of {} bytes \
                 ({MAX_PER_ALLOCATED_BYTE} times its bytes on disk: a sparse file is not read)",
                self.budget
            ));
        }
        self.left.set(left - size);
        Ok(())
    }

    /// Reads `size` bytes at `offset`; an error if they are not all in the
    /// file, or over the budget.
    fn read(&self, offset: u64, size: u64, what: &str) -> Result<Vec<u8>, String> {
        self.check(offset, size, what)?;
        let mut buf = vec![0; size as usize];
        self.read_into(&mut buf, offset, what)?;
        Ok(buf)
    }

    /// [`Source::read`] into a shared buffer, allocated once (DWARF
    /// sections: an `Arc::from(Vec)` would hold two copies at its peak).
    fn read_shared(&self, offset: u64, size: u64, what: &str) -> Result<Arc<[u8]>, String> {
        self.check(offset, size, what)?;
        let mut shared = zeroed(size as usize);
        let buf = Arc::get_mut(&mut shared).expect("a new Arc is not shared");
        self.read_into(buf, offset, what)?;
        Ok(shared)
    }

    /// Checks that `size` bytes at `offset` are in the file, and charges them.
    fn check(&self, offset: u64, size: u64, what: &str) -> Result<(), String> {
        offset
            .checked_add(size)
            .filter(|&end| end <= self.len)
            .ok_or_else(|| {
                format!("{what} at {offset:#x}+{size:#x} is past the end of the file")
            })?;
        self.charge(size, what)
    }

    fn read_into(&self, buf: &mut [u8], offset: u64, what: &str) -> Result<(), String> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            format!(
                "cannot read {what} ({:#x} bytes at {offset:#x}): {e}",
                buf.len()
            )
        })
    }
}

/// The section and program headers of an ELF file, parsed with goblin.
struct Headers {
    ctx: Ctx,
    sections: Vec<SectionHeader>,
    segments: Vec<ProgramHeader>,
    /// Index of the section name string table (`e_shstrndx`, resolved).
    shstrndx: usize,
}

impl Headers {
    /// Reads the ELF header, the section headers and the program headers.
    fn read(source: &Source) -> Result<Headers, String> {
        let size = source
            .len
            .min(goblin::elf::header::header64::SIZEOF_EHDR as u64);
        let header = Elf::parse_header(&source.read(0, size, "the ELF header")?)
            .map_err(|e| e.to_string())?;
        let container = header.container().map_err(|e| e.to_string())?;
        let endian = header.endianness().map_err(|e| e.to_string())?;
        let ctx = Ctx::new(container, endian);

        let mut sections = Vec::new();
        if header.e_shoff != 0 {
            let entry = SectionHeader::size(ctx) as u64;
            let first = source.read(header.e_shoff, entry, "the section headers")?;
            let first = SectionHeader::parse_from(&first, 0, 1, ctx).map_err(|e| e.to_string())?;
            // With more than SHN_LORESERVE sections, the count is in the
            // first section header.
            let count = match header.e_shnum {
                0 => first.first().map_or(0, |s| s.sh_size),
                n => u64::from(n),
            };
            if count > source.len / entry {
                return Err(format!("invalid section header count {count}"));
            }
            if count > 0 {
                let table = source.read(header.e_shoff, count * entry, "the section headers")?;
                sections = SectionHeader::parse_from(&table, 0, count as usize, ctx)
                    .map_err(|e| e.to_string())?;
            }
        }

        let mut segments = Vec::new();
        if header.e_phoff != 0 && header.e_phnum != 0 {
            let entry = ProgramHeader::size(ctx) as u64;
            // PN_XNUM: the count is in the first section header's sh_info.
            let count = match header.e_phnum {
                0xffff => sections.first().map_or(0, |s| u64::from(s.sh_info)),
                n => u64::from(n),
            };
            if count > source.len / entry {
                return Err(format!("invalid program header count {count}"));
            }
            let table = source.read(header.e_phoff, count * entry, "the program headers")?;
            segments =
                ProgramHeader::parse(&table, 0, count as usize, ctx).map_err(|e| e.to_string())?;
        }

        let shstrndx = match u32::from(header.e_shstrndx) {
            SHN_XINDEX => sections.first().map_or(0, |s| s.sh_link as usize),
            n => n as usize,
        };
        Ok(Headers {
            ctx,
            sections,
            segments,
            shstrndx,
        })
    }
}

/// An ELF file on disk: its headers and section names in memory, the rest
/// read on demand within the file's budget.
pub(crate) struct ElfFile {
    source: Source,
    headers: Headers,
    section_names: Vec<u8>,
}

/// A symbol table entry with its name.
pub(crate) struct ElfSymbol<'a> {
    pub sym: goblin::elf::Sym,
    pub name: &'a [u8],
}

impl ElfFile {
    /// Opens a regular file and reads its headers.
    pub(crate) fn open(path: &Path) -> Result<ElfFile, OpenError> {
        let file = open_regular(path).map_err(OpenError::Io)?;
        ElfFile::from_file(file)
    }

    /// Reads the headers of an open file.
    pub(crate) fn from_file(file: File) -> Result<ElfFile, OpenError> {
        let source = Source::new(file).map_err(OpenError::Io)?;
        let headers = Headers::read(&source).map_err(OpenError::Parse)?;
        let mut elf = ElfFile {
            source,
            headers,
            section_names: Vec::new(),
        };
        if let Some(names) = elf.headers.sections.get(elf.headers.shstrndx) {
            if names.sh_type != SHT_NOBITS && names.sh_size > MAX_SECTION_NAMES {
                return Err(OpenError::Parse(format!(
                    "a section name table of {} bytes (over {MAX_SECTION_NAMES})",
                    names.sh_size
                )));
            }
            let names = names.clone();
            elf.section_names = elf
                .section_data(&names, "the section names")
                .map_err(OpenError::Parse)?
                .into_owned();
        }
        Ok(elf)
    }

    /// The byte order of the file, for gimli.
    pub(crate) fn endian(&self) -> gimli::RunTimeEndian {
        if self.headers.ctx.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        }
    }

    /// Finds the `NT_GNU_BUILD_ID` note: in `SHT_NOTE` sections, or, when
    /// there are no section headers, in `PT_NOTE` segments.
    pub(crate) fn build_id(&self) -> Result<Option<Vec<u8>>, String> {
        let notes: Vec<(u64, u64, u64)> = if self.headers.sections.is_empty() {
            self.headers
                .segments
                .iter()
                .filter(|p| p.p_type == PT_NOTE)
                .map(|p| (p.p_offset, p.p_filesz, p.p_align))
                .collect()
        } else {
            self.headers
                .sections
                .iter()
                .filter(|s| s.sh_type == SHT_NOTE)
                .map(|s| (s.sh_offset, s.sh_size, s.sh_addralign))
                .collect()
        };
        for (offset, size, align) in notes {
            let data = self.source.read(offset, size, "a note")?;
            let notes = NoteDataIterator {
                data: &data,
                size: data.len(),
                offset: 0,
                ctx: (usize::try_from(align).unwrap_or(0), self.headers.ctx),
            };
            // A malformed note ends the walk through its section.
            for note in notes.map_while(Result::ok) {
                if note.name == "GNU" && note.n_type == NT_GNU_BUILD_ID {
                    return Ok(Some(note.desc.to_vec()));
                }
            }
        }
        Ok(None)
    }

    /// The bytes of a section in the file: empty for `SHT_NOBITS`.
    fn section_data(&self, section: &SectionHeader, what: &str) -> Result<Cow<'_, [u8]>, String> {
        if section.sh_type == SHT_NOBITS {
            return Ok(Cow::Borrowed(&[]));
        }
        self.source
            .read(section.sh_offset, section.sh_size, what)
            .map(Cow::Owned)
    }

    fn section_name(&self, section: &SectionHeader) -> Option<&[u8]> {
        c_str(&self.section_names, section.sh_name)
    }

    /// The first section with the given name.
    fn section_by_name(&self, name: &[u8]) -> Option<&SectionHeader> {
        self.headers
            .sections
            .iter()
            .find(|s| self.section_name(s) == Some(name))
    }

    /// Whether the file has DWARF line and function information.
    pub(crate) fn has_debug_info(&self) -> bool {
        [&b".debug_info"[..], b".zdebug_info"].iter().any(|&name| {
            self.section_by_name(name)
                .is_some_and(|s| s.sh_size > 0 && s.sh_type != SHT_NOBITS)
        })
    }

    /// The contents of a small named section, if it is there and readable.
    fn small_section(&self, name: &[u8]) -> Option<Vec<u8>> {
        let section = self.section_by_name(name)?;
        // Both sections this is for hold a file name and a checksum or id.
        if section.sh_size > 64 << 10 {
            return None;
        }
        let what = String::from_utf8_lossy(name);
        Some(self.section_data(section, &what).ok()?.into_owned())
    }

    /// The file name and CRC-32 of the `.gnu_debuglink` section.
    pub(crate) fn gnu_debuglink(&self) -> Option<(Vec<u8>, u32)> {
        let data = self.small_section(b".gnu_debuglink")?;
        let name = c_str(&data, 0)?;
        let crc_offset = (name.len() + 1).next_multiple_of(4);
        let crc: [u8; 4] = data.get(crc_offset..crc_offset + 4)?.try_into().ok()?;
        let crc = if self.headers.ctx.is_little_endian() {
            u32::from_le_bytes(crc)
        } else {
            u32::from_be_bytes(crc)
        };
        Some((name.to_vec(), crc))
    }

    /// The file name and build id of the `.gnu_debugaltlink` section.
    pub(crate) fn gnu_debugaltlink(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let data = self.small_section(b".gnu_debugaltlink")?;
        let name = c_str(&data, 0)?.to_vec();
        let id = data[name.len() + 1..].to_vec();
        Some((name, id))
    }

    /// The uncompressed contents of a DWARF section (`.debug_*`, or the
    /// GNU-compressed `.zdebug_*`), empty if there is none.
    pub(crate) fn dwarf_section(&self, name: &str) -> Result<Arc<[u8]>, String> {
        let zname = name.strip_prefix(".debug_").map(|n| format!(".zdebug_{n}"));
        let found = self
            .section_by_name(name.as_bytes())
            .map(|s| (s, false))
            .or_else(|| Some((self.section_by_name(zname?.as_bytes())?, true)));
        let Some((section, gnu_compressed)) = found else {
            return Ok(zeroed(0));
        };
        if section.sh_type == SHT_NOBITS {
            return Ok(zeroed(0));
        }
        let compressed = section.sh_flags & u64::from(SHF_COMPRESSED) != 0;
        if !compressed && !gnu_compressed {
            return self
                .source
                .read_shared(section.sh_offset, section.sh_size, name);
        }
        let data = self.section_data(section, name)?;
        if compressed {
            let header = CompressionHeader::parse(&data, 0, self.headers.ctx)
                .map_err(|e| format!("invalid compression header: {e}"))?;
            let stream = data
                .get(CompressionHeader::size(self.headers.ctx)..)
                .unwrap_or(&[]);
            let format = match header.ch_type {
                ELFCOMPRESS_ZLIB => Compression::Zlib,
                ELFCOMPRESS_ZSTD => Compression::Zstd,
                other => return Err(format!("unsupported ELF compression type {other}")),
            };
            self.source.charge(header.ch_size, name)?;
            decompress(format, stream, header.ch_size)
        } else {
            // "ZLIB", the big-endian uncompressed size, a zlib stream.
            let size = data
                .strip_prefix(b"ZLIB")
                .and_then(|rest| rest.get(..8)?.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or("invalid GNU compressed section header")?;
            self.source.charge(size, name)?;
            decompress(Compression::Zlib, &data[12..], size)
        }
    }

    /// Calls `each` with every entry of the first symbol table of the
    /// given type (`SHT_SYMTAB` or `SHT_DYNSYM`), if there is one. A table
    /// or string table that cannot be read (past the end of the file, over
    /// the budget) is an error; a malformed entry ends the table.
    pub(crate) fn for_each_symbol(
        &self,
        table_type: u32,
        mut each: impl FnMut(ElfSymbol<'_>),
    ) -> Result<(), String> {
        let sections = &self.headers.sections;
        let Some(table) = sections.iter().find(|s| s.sh_type == table_type) else {
            return Ok(());
        };
        let what = if table_type == SHT_DYNSYM {
            ".dynsym"
        } else {
            ".symtab"
        };
        let data = self.section_data(table, what)?;
        let strings = match sections.get(table.sh_link as usize) {
            Some(s) => self.section_data(s, "its string table")?,
            None => Cow::Borrowed(&[][..]),
        };
        let ctx = self.headers.ctx;
        let entry = goblin::elf::Sym::size(ctx.container);
        // A few thousand entries at a time: goblin parses into a vector.
        for chunk in data.chunks(entry * 4096) {
            let Ok(syms) = goblin::elf::Sym::parse(chunk, 0, chunk.len() / entry, ctx) else {
                return Ok(());
            };
            for sym in syms {
                let name = u32::try_from(sym.st_name)
                    .ok()
                    .and_then(|offset| c_str(&strings, offset as usize))
                    .unwrap_or(&[]);
                each(ElfSymbol { sym, name });
            }
        }
        Ok(())
    }

    /// The CRC-32 of the whole file, as `.gnu_debuglink` records it, read
    /// in chunks and charged to the budget like any read.
    pub(crate) fn crc32(&self) -> Result<u32, String> {
        self.source.charge(self.source.len, "the file's checksum")?;
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0; CHUNK];
        let mut at = 0;
        while at < self.source.len {
            let n = (self.source.len - at).min(CHUNK as u64) as usize;
            self.source
                .file
                .read_exact_at(&mut buf[..n], at)
                .map_err(|e| format!("cannot read the file: {e}"))?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(hasher.finalize())
    }
}

/// Why a file could not be opened as ELF.
pub(crate) enum OpenError {
    /// It could not be opened or read.
    Io(std::io::Error),
    /// It is not a valid ELF file, or is over the limits.
    Parse(String),
}

/// The NUL-terminated string at `offset` in a string table.
fn c_str(table: &[u8], offset: usize) -> Option<&[u8]> {
    let rest = table.get(offset..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_32_times_the_bytes_on_disk_and_at_least_32_mib() {
        assert_eq!(budget(0), 32 << 20);
        assert_eq!(budget(4096), 32 << 20);
        assert_eq!(budget(1 << 20), 32 << 20);
        assert_eq!(budget(100 << 20), 3200 << 20);
        assert_eq!(budget(u64::MAX), u64::MAX);
    }
}
