//! Offline symbolization of addresses recorded in a trace of another process.
//!
//! A trace records, for every module the traced process had loaded, what
//! `dl_iterate_phdr` reported: the file path, the GNU build id, the load bias
//! (`dlpi_addr`) and the `PT_LOAD` segments. From that, a [`Symbolizer`] maps
//! absolute addresses back to modules, functions, source files and lines,
//! long after the traced process has exited.
//!
//! Debug information is taken from the module file itself, from a separate
//! debug file found by build id (`<debug dir>/.build-id/xx/rest.debug`) or
//! from the file named by `.gnu_debuglink`. Compressed debug sections are
//! supported. Function names come from DWARF (including inlined frames) and
//! fall back to the ELF `.symtab` and `.dynsym` symbol tables.
//!
//! # Hostile files
//!
//! Module paths come from the trace, which anyone may have written. Only
//! regular files are opened, and never read whole: the headers first, then
//! only the sections needed, each at most 1 GiB stored or decompressed,
//! and all of a file's reads and decompressions together at most 32 times
//! the bytes the file has on disk (at least 32 MiB), so that the holes of
//! a sparse file are never read. A file over these limits becomes a
//! warning, and its frames are symbolized from what could be read (the
//! symbol tables when the DWARF is over the limits). See `src/elf.rs`.
//!
//! # Example
//!
//! ```no_run
//! use memtrace_symbolize::{ModuleSpec, Options, Segment, Symbolizer};
//!
//! let mut symbolizer = Symbolizer::new(Options::default());
//! symbolizer.add_module(ModuleSpec {
//!     path: "/usr/lib/x86_64-linux-gnu/libc.so.6".to_string(),
//!     build_id: None,
//!     load_bias: 0x7f00_0000_0000,
//!     segments: vec![Segment { vaddr: 0x28000, memsz: 0x155000, executable: true }],
//! });
//! let location = symbolizer.symbolize_return_address(0x7f00_0002_9d90);
//! for frame in &location.frames {
//!     println!(
//!         "{} at {}:{}",
//!         frame.function.as_deref().unwrap_or("??"),
//!         frame.file.as_deref().unwrap_or("??"),
//!         frame.line.unwrap_or(0),
//!     );
//! }
//! for warning in symbolizer.warnings() {
//!     eprintln!("warning: {warning}");
//! }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod debug_file;
mod decompress;
mod elf;
mod frames;
mod load;
mod ranges;
mod symtab;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::elf::{ElfFile, OpenError};
use crate::frames::ModuleState;
use crate::load::load_module;
use crate::ranges::{insert_interval, module_at, Interval};

/// The reader type used for DWARF data: sections are copied (and
/// decompressed) into reference-counted buffers, so the module file itself
/// does not need to stay in memory.
type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// One `PT_LOAD` segment of a module, as reported by `dl_iterate_phdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    /// The segment's ELF virtual address (`p_vaddr`), before the load bias is applied.
    pub vaddr: u64,
    /// The segment's size in memory (`p_memsz`).
    pub memsz: u64,
    /// Whether the segment is executable (`PF_X` in `p_flags`).
    pub executable: bool,
}

/// A module (executable or shared object) loaded in the traced process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModuleSpec {
    /// The path of the module file, as reported by `dl_iterate_phdr`
    /// (for the main program, the resolved executable path).
    pub path: String,
    /// The GNU build id recorded in the trace, if the module had one.
    pub build_id: Option<Vec<u8>>,
    /// The load bias (`dlpi_addr`): absolute address = ELF virtual address + load bias.
    pub load_bias: u64,
    /// The module's `PT_LOAD` segments.
    pub segments: Vec<Segment>,
}

/// One (possibly inlined) function frame at an address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The demangled function name, without Rust hash suffix, if known.
    pub function: Option<String>,
    /// The source file, as a full path as recorded in DWARF (directory joined
    /// with file name), if known.
    pub file: Option<String>,
    /// The source line, if known. For an outer frame of an inlined call this
    /// is the line of the call site.
    pub line: Option<u32>,
    /// Whether this frame was inlined into the next (outer) frame.
    pub inlined: bool,
    /// When the function's name came from a symbol table (`.symtab` or
    /// `.dynsym`) rather than DWARF: the offset of the address looked up
    /// (for a return address, the address - 1) from the symbol's start,
    /// which tells two call sites in one function apart.
    pub symbol_offset: Option<u64>,
}

/// The result of symbolizing one address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The absolute address that was asked about.
    pub address: u64,
    /// The path of the module containing the address, if any.
    pub module: Option<String>,
    /// The ELF virtual address ("SVMA") of [`Location::address`] in its
    /// module: `address - load_bias`; 0 when the module is unknown.
    pub module_offset: u64,
    /// The frames at the address, innermost first. Contains at least one
    /// frame (possibly with all fields `None`) when the module is known, and
    /// is empty when it is not.
    pub frames: Vec<Frame>,
}

/// Options for a [`Symbolizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Directories holding separate debug files, searched by build id
    /// (`<dir>/.build-id/xx/rest.debug`) and by `.gnu_debuglink` name
    /// (`<dir>/<directory of the module>/<name>`). Default: `["/usr/lib/debug"]`.
    pub debug_dirs: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            debug_dirs: vec![PathBuf::from("/usr/lib/debug")],
        }
    }
}

/// Errors reading a module file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file's path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid object file.
    #[error("cannot parse {} as an object file: {message}", path.display())]
    Parse {
        /// The file's path.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

/// Reads the GNU build id (`NT_GNU_BUILD_ID` note) of an ELF file.
///
/// Only the parts of the file needed to find the note are read.
/// Returns `Ok(None)` when the file is valid but has no build id.
pub fn read_build_id(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    let parse_error = |message| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let elf = ElfFile::open(path).map_err(|e| match e {
        OpenError::Io(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        OpenError::Parse(message) => parse_error(message),
    })?;
    elf.build_id().map_err(parse_error)
}

/// Maps absolute addresses of a traced process to modules, functions and
/// source lines. See the [crate documentation](crate) for an example.
///
/// Module files are opened lazily, once, on the first address that falls
/// into them; results are cached per address.
pub struct Symbolizer {
    options: Options,
    modules: Vec<Module>,
    /// Sorted, non-overlapping address ranges; later modules win overlaps.
    ranges: Vec<Interval>,
    /// Results by lookup address (the address, or the return address - 1).
    cache: HashMap<u64, Cached>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("options", &self.options)
            .field(
                "modules",
                &self
                    .modules
                    .iter()
                    .map(|m| &m.spec.path)
                    .collect::<Vec<_>>(),
            )
            .field("cached_addresses", &self.cache.len())
            .field("warnings", &self.warnings)
            .finish()
    }
}

#[derive(Clone)]
struct Cached {
    module: Option<usize>,
    frames: Vec<Frame>,
}

struct Module {
    spec: ModuleSpec,
    state: ModuleState,
}

impl Symbolizer {
    /// Creates a symbolizer with no modules.
    pub fn new(options: Options) -> Self {
        Symbolizer {
            options,
            modules: Vec::new(),
            ranges: Vec::new(),
            cache: HashMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Adds a module. Modules may be added at any time (for example after a
    /// `dlopen` in the trace); where its segments overlap those of modules
    /// added earlier, the new module takes over the overlapping addresses.
    pub fn add_module(&mut self, module: ModuleSpec) {
        let index = self.modules.len();
        let mut new_ranges = Vec::new();
        for segment in &module.segments {
            if segment.memsz == 0 {
                continue;
            }
            let start = module.load_bias.wrapping_add(segment.vaddr);
            let end = start.saturating_add(segment.memsz);
            new_ranges.push((start, end));
            insert_interval(
                &mut self.ranges,
                Interval {
                    start,
                    end,
                    module: index,
                },
            );
        }
        self.cache
            .retain(|&a, _| !new_ranges.iter().any(|&(s, e)| s <= a && a < e));
        self.modules.push(Module {
            spec: module,
            state: ModuleState::NotLoaded,
        });
    }

    /// Symbolizes an exact address, such as a function's start or the
    /// current instruction of the innermost frame of a backtrace.
    pub fn symbolize(&mut self, address: u64) -> Location {
        self.lookup(address, address)
    }

    /// Symbolizes a return address from a backtrace: looks up `address - 1`
    /// so that the reported line is that of the call, not of the instruction
    /// after it. [`Location::address`] and [`Location::module_offset`] still
    /// describe the given address.
    pub fn symbolize_return_address(&mut self, address: u64) -> Location {
        match address.checked_sub(1) {
            Some(probe) => self.lookup(address, probe),
            None => Location {
                address,
                module: None,
                module_offset: 0,
                frames: Vec::new(),
            },
        }
    }

    /// Problems met so far, one line each: missing or unparsable module
    /// files, build id mismatches, malformed debug information.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn lookup(&mut self, address: u64, probe: u64) -> Location {
        let cached = match self.cache.get(&probe) {
            Some(cached) => cached.clone(),
            None => {
                let cached = self.resolve(probe);
                self.cache.insert(probe, cached.clone());
                cached
            }
        };
        match cached.module {
            Some(index) => {
                let spec = &self.modules[index].spec;
                Location {
                    address,
                    module: Some(spec.path.clone()),
                    module_offset: address.wrapping_sub(spec.load_bias),
                    frames: cached.frames,
                }
            }
            None => Location {
                address,
                module: None,
                module_offset: 0,
                frames: Vec::new(),
            },
        }
    }

    fn module_index(&self, address: u64) -> Option<usize> {
        module_at(&self.ranges, address)
    }

    fn resolve(&mut self, probe: u64) -> Cached {
        let Some(index) = self.module_index(probe) else {
            return Cached {
                module: None,
                frames: Vec::new(),
            };
        };
        let module = &mut self.modules[index];
        if let ModuleState::NotLoaded = module.state {
            module.state = load_module(&module.spec, &self.options, &mut self.warnings);
        }
        let svma = probe.wrapping_sub(module.spec.load_bias);
        let frames = match &mut module.state {
            ModuleState::Loaded(data) => data.frames(svma, &mut self.warnings),
            _ => vec![Frame::default()],
        };
        Cached {
            module: Some(index),
            frames,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_addresses_have_no_module() {
        let mut s = Symbolizer::new(Options::default());
        let loc = s.symbolize(0x1234);
        assert_eq!(
            loc,
            Location {
                address: 0x1234,
                module: None,
                module_offset: 0,
                frames: vec![]
            }
        );
        assert_eq!(s.symbolize_return_address(0).frames, vec![]);
        assert!(s.warnings().is_empty());
    }

    #[test]
    fn symbolizer_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Symbolizer>();
    }
}
