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

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use goblin::container::Ctx;
use goblin::elf::compression_header::{CompressionHeader, ELFCOMPRESS_ZLIB, ELFCOMPRESS_ZSTD};
use goblin::elf::note::{NoteDataIterator, NT_GNU_BUILD_ID};
use goblin::elf::program_header::PT_NOTE;
use goblin::elf::section_header::{
    SHF_COMPRESSED, SHN_ABS, SHN_COMMON, SHN_LORESERVE, SHN_UNDEF, SHN_XINDEX, SHT_DYNSYM,
    SHT_NOBITS, SHT_NOTE, SHT_SYMTAB,
};
use goblin::elf::sym::{
    STB_LOCAL, STT_COMMON, STT_FILE, STT_FUNC, STT_GNU_IFUNC, STT_OBJECT, STT_SECTION, STT_TLS,
};
use goblin::elf::{Elf, ProgramHeader, SectionHeader};

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
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = open_regular(path).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    let mut source = Source::File { file, len };
    let parse_error = |message| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let headers = Headers::read(&mut source).map_err(parse_error)?;
    headers.build_id(&mut source).map_err(parse_error)
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

#[derive(Debug, Clone, Copy)]
struct Interval {
    start: u64,
    end: u64,
    module: usize,
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

enum ModuleState {
    NotLoaded,
    Unavailable,
    Loaded(Box<ModuleData>),
}

struct ModuleData {
    /// Sorted by address, one entry per address.
    symbols: Vec<Sym>,
    dwarf: Option<Dwarf>,
}

struct Dwarf {
    context: addr2line::Context<Reader>,
    path: PathBuf,
    error_reported: bool,
}

#[derive(Debug, Clone)]
struct Sym {
    address: u64,
    size: u64,
    name: Box<str>,
    rank: (bool, u8, u8, usize),
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
        let i = self.ranges.partition_point(|r| r.start <= address);
        let range = self.ranges.get(i.checked_sub(1)?)?;
        (address < range.end).then_some(range.module)
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

/// Inserts `new` into the sorted, non-overlapping `ranges`, trimming
/// existing ranges where they overlap it.
fn insert_interval(ranges: &mut Vec<Interval>, new: Interval) {
    let mut out = Vec::with_capacity(ranges.len() + 2);
    for r in ranges.drain(..) {
        if r.end <= new.start || r.start >= new.end {
            out.push(r);
            continue;
        }
        if r.start < new.start {
            out.push(Interval {
                end: new.start,
                ..r
            });
        }
        if r.end > new.end {
            out.push(Interval {
                start: new.end,
                ..r
            });
        }
    }
    out.push(new);
    out.sort_by_key(|r| r.start);
    *ranges = out;
}

impl ModuleData {
    fn frames(&mut self, svma: u64, warnings: &mut Vec<String>) -> Vec<Frame> {
        let mut frames = Vec::new();
        if let Some(dwarf) = &mut self.dwarf {
            if let Err(e) = dwarf_frames(&dwarf.context, svma, &mut frames) {
                if !dwarf.error_reported {
                    dwarf.error_reported = true;
                    warnings.push(format!(
                        "malformed DWARF in {}: {e}; some frames lack source information",
                        dwarf.path.display()
                    ));
                }
            }
        }
        if let Some(last) = frames.last_mut() {
            last.inlined = false;
        }
        let needs_symbol = frames.last().is_none_or(|f| f.function.is_none());
        if needs_symbol {
            let function = self.symbol(svma).map(|s| demangle(&s.name));
            match frames.last_mut() {
                Some(last) => last.function = function,
                None => frames.push(Frame {
                    function,
                    ..Frame::default()
                }),
            }
        }
        frames
    }

    fn symbol(&self, svma: u64) -> Option<&Sym> {
        let i = self.symbols.partition_point(|s| s.address <= svma);
        let sym = self.symbols.get(i.checked_sub(1)?)?;
        (sym.size == 0 || svma - sym.address < sym.size).then_some(sym)
    }
}

fn dwarf_frames(
    context: &addr2line::Context<Reader>,
    svma: u64,
    out: &mut Vec<Frame>,
) -> Result<(), gimli::Error> {
    let mut iter = context.find_frames(svma).skip_all_loads()?;
    let mut unit = None;
    while let Some(frame) = iter.next()? {
        let function = match frame.function {
            Some(name) if is_c(name.language) && frame.dw_die_offset.is_some() => {
                // addr2line prefers DW_AT_linkage_name, which in C is only
                // present for asm labels such as glibc's internal
                // `__GI___libc_malloc`: use the source name instead.
                let unit =
                    unit.get_or_insert_with(|| context.find_dwarf_and_unit(svma).skip_all_loads());
                let source_name = unit
                    .as_ref()
                    .zip(frame.dw_die_offset)
                    .and_then(|(unit, offset)| die_name(unit, offset, 0));
                match source_name {
                    Some(n) => Some(n),
                    None => Some(demangle(&name.raw_name()?)),
                }
            }
            Some(name) => Some(demangle(&name.raw_name()?)),
            None => None,
        };
        let (file, line) = match frame.location {
            Some(location) => (location.file.map(str::to_owned), location.line),
            None => (None, None),
        };
        out.push(Frame {
            function,
            file,
            line,
            inlined: true,
        });
    }
    Ok(())
}

fn is_c(language: Option<gimli::DwLang>) -> bool {
    matches!(
        language,
        Some(
            gimli::DW_LANG_C
                | gimli::DW_LANG_C89
                | gimli::DW_LANG_C99
                | gimli::DW_LANG_C11
                | gimli::DW_LANG_C17
        )
    )
}

/// The `DW_AT_name` of a DIE, following `DW_AT_abstract_origin` and
/// `DW_AT_specification` within the unit.
fn die_name(
    unit: &gimli::UnitRef<'_, Reader>,
    offset: gimli::UnitOffset<usize>,
    depth: u32,
) -> Option<String> {
    if depth > 8 {
        return None;
    }
    let entry = unit.entry(offset).ok()?;
    if let Some(name) = entry.attr_value(gimli::DW_AT_name) {
        let name = unit.attr_string(name).ok()?;
        return Some(gimli::Reader::to_string_lossy(&name).ok()?.into_owned());
    }
    for attr in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
        if let Some(gimli::AttributeValue::UnitRef(origin)) = entry.attr_value(attr) {
            return die_name(unit, origin, depth + 1);
        }
    }
    None
}

/// Demangles a Rust (legacy or v0) or C++ symbol name; other names are
/// returned unchanged.
fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z") {
        if let Ok(symbol) = cpp_demangle::Symbol::new(name) {
            if let Ok(s) = symbol.demangle() {
                return s;
            }
        }
    }
    name.to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_file(path: &Path) -> Option<Vec<u8>> {
    read_regular(path).ok()
}

/// Opens `path` only if it is a regular file. Paths come from the trace,
/// which may be damaged or made up: a device such as `/dev/zero` would be
/// read without end, a FIFO would block the open until a writer comes.
fn open_regular(path: &Path) -> std::io::Result<File> {
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

/// The whole of a regular file (see [`open_regular`]).
fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    open_regular(path)?.read_to_end(&mut data)?;
    Ok(data)
}

/// Opens and parses a module, finds its debug information and builds its
/// symbol table. Problems become warnings.
fn load_module(spec: &ModuleSpec, options: &Options, warnings: &mut Vec<String>) -> ModuleState {
    let path = Path::new(&spec.path);
    let data = if spec.path.is_empty() {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "empty module path",
        ))
    } else {
        read_regular(path)
    };
    let data = match data {
        Ok(data) => data,
        Err(e) => {
            let fallback = by_trace_build_id(spec, options);
            warnings.push(format!(
                "cannot read {}: {e}; {}",
                spec.path,
                if fallback.is_some() {
                    "its frames are symbolized from the debug file matching the trace's build id"
                } else {
                    "its frames are not symbolized"
                }
            ));
            return fallback.unwrap_or(ModuleState::Unavailable);
        }
    };
    let obj = match ElfFile::parse(&data) {
        Ok(obj) => obj,
        Err(e) => {
            warnings.push(format!(
                "cannot parse {} as an ELF file: {e}; its frames are not symbolized",
                spec.path
            ));
            return ModuleState::Unavailable;
        }
    };
    let file_build_id = obj.build_id();
    if let (Some(trace_id), Some(file_id)) = (&spec.build_id, &file_build_id) {
        if trace_id != file_id {
            let fallback = by_trace_build_id(spec, options);
            warnings.push(format!(
                "build id of {} ({}) differs from the trace's ({}); {}",
                spec.path,
                hex(file_id),
                hex(trace_id),
                if fallback.is_some() {
                    "its frames are symbolized from the debug file matching the trace's build id"
                } else {
                    "its frames are not symbolized"
                }
            ));
            return fallback.unwrap_or(ModuleState::Unavailable);
        }
    }

    let mut symbols = Vec::new();
    collect_symbols(&obj, 0, &mut symbols);

    let build_id = file_build_id.as_deref().or(spec.build_id.as_deref());
    let dwarf = if obj.has_debug_info() {
        make_dwarf(&obj, path, options, warnings)
    } else if let Some(debug) = find_debug_file(&obj, build_id, path, options) {
        match ElfFile::parse(&debug.data) {
            Ok(debug_obj) => {
                collect_symbols(&debug_obj, 2, &mut symbols);
                make_dwarf(&debug_obj, &debug.path, options, warnings)
            }
            Err(_) => None,
        }
    } else {
        None
    };
    ModuleState::Loaded(Box::new(ModuleData {
        symbols: finish_symbols(symbols),
        dwarf,
    }))
}

/// For a module whose file is missing or replaced: symbolizes from the
/// separate debug file that matches the build id recorded in the trace.
fn by_trace_build_id(spec: &ModuleSpec, options: &Options) -> Option<ModuleState> {
    let build_id = spec.build_id.as_deref()?;
    let debug = find_by_build_id(build_id, options)?;
    let obj = ElfFile::parse(&debug.data).ok()?;
    let mut symbols = Vec::new();
    collect_symbols(&obj, 0, &mut symbols);
    let mut ignored = Vec::new();
    let dwarf = if obj.has_debug_info() {
        make_dwarf(&obj, &debug.path, options, &mut ignored)
    } else {
        None
    };
    Some(ModuleState::Loaded(Box::new(ModuleData {
        symbols: finish_symbols(symbols),
        dwarf,
    })))
}

struct DebugFile {
    path: PathBuf,
    data: Vec<u8>,
}

fn find_by_build_id(build_id: &[u8], options: &Options) -> Option<DebugFile> {
    if build_id.len() < 2 {
        return None;
    }
    let id = hex(build_id);
    for dir in &options.debug_dirs {
        let path = dir
            .join(".build-id")
            .join(&id[..2])
            .join(format!("{}.debug", &id[2..]));
        let Some(data) = read_file(&path) else {
            continue;
        };
        let matches = ElfFile::parse(&data)
            .ok()
            .and_then(|o| o.build_id())
            .is_some_and(|b| b == build_id);
        if matches {
            return Some(DebugFile { path, data });
        }
    }
    None
}

/// Finds the separate debug file of a module without debug information of
/// its own: by build id, then by `.gnu_debuglink`.
fn find_debug_file(
    obj: &ElfFile<'_>,
    build_id: Option<&[u8]>,
    path: &Path,
    options: &Options,
) -> Option<DebugFile> {
    if let Some(id) = build_id {
        if let Some(found) = find_by_build_id(id, options) {
            return Some(found);
        }
    }
    let (name, crc) = obj.gnu_debuglink()?;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    if name.as_os_str().is_empty() || name.components().count() != 1 {
        return None;
    }
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut dirs = Vec::new();
    for p in [path, real.as_path()] {
        if let Some(dir) = p.parent() {
            if !dirs.iter().any(|d: &PathBuf| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    let mut candidates = Vec::new();
    for dir in &dirs {
        candidates.push(dir.join(name));
        candidates.push(dir.join(".debug").join(name));
    }
    for debug_dir in &options.debug_dirs {
        for dir in &dirs {
            let relative = dir.strip_prefix("/").unwrap_or(dir);
            candidates.push(debug_dir.join(relative).join(name));
        }
    }
    for candidate in candidates {
        if candidate == path || candidate == real {
            continue;
        }
        let Some(data) = read_file(&candidate) else {
            continue;
        };
        if crc32fast::hash(&data) != crc {
            continue;
        }
        return Some(DebugFile {
            path: candidate,
            data,
        });
    }
    None
}

/// Loads the DWARF sections of `obj` (plus a `.gnu_debugaltlink`
/// supplementary file, if any) into an addr2line context.
fn make_dwarf(
    obj: &ElfFile<'_>,
    path: &Path,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Option<Dwarf> {
    let endian = obj.endian();
    let result = (|| -> Result<addr2line::Context<Reader>, String> {
        let mut dwarf = gimli::Dwarf::load(|id| load_section(obj, id, endian))?;
        if let Some(sup) = find_sup_file(obj, path, options) {
            if let Ok(sup_obj) = ElfFile::parse(&sup.data) {
                dwarf.load_sup(|id| load_section(&sup_obj, id, endian))?;
            }
        }
        dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::Duplicates);
        addr2line::Context::from_dwarf(dwarf).map_err(|e| e.to_string())
    })();
    match result {
        Ok(context) => Some(Dwarf {
            context,
            path: path.to_path_buf(),
            error_reported: false,
        }),
        Err(e) => {
            warnings.push(format!(
                "cannot load DWARF from {}: {e}; only symbol tables are used",
                path.display()
            ));
            None
        }
    }
}

fn load_section(
    obj: &ElfFile<'_>,
    id: gimli::SectionId,
    endian: gimli::RunTimeEndian,
) -> Result<Reader, String> {
    let data: Arc<[u8]> = match obj.dwarf_section(id.name()) {
        Ok(Cow::Borrowed(b)) => Arc::from(b),
        Ok(Cow::Owned(v)) => Arc::from(v),
        Err(e) => return Err(format!("section {}: {e}", id.name())),
    };
    Ok(gimli::EndianArcSlice::new(data, endian))
}

/// Finds the dwz supplementary file named by `.gnu_debugaltlink`.
fn find_sup_file(obj: &ElfFile<'_>, path: &Path, options: &Options) -> Option<DebugFile> {
    let (name, build_id) = obj.gnu_debugaltlink()?;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let mut candidates = Vec::new();
    if name.is_absolute() {
        candidates.push(name.to_path_buf());
    } else if let Some(dir) = path.parent() {
        candidates.push(dir.join(name));
    }
    for candidate in candidates {
        let Some(data) = read_file(&candidate) else {
            continue;
        };
        let matches = ElfFile::parse(&data)
            .ok()
            .and_then(|o| o.build_id())
            .is_some_and(|b| b == build_id);
        if matches {
            return Some(DebugFile {
                path: candidate,
                data,
            });
        }
    }
    find_by_build_id(build_id, options)
}

/// Collects the defined function and data symbols of `.symtab` and
/// `.dynsym`. `source` ranks where they come from (lower is preferred).
fn collect_symbols(obj: &ElfFile<'_>, source: u8, out: &mut Vec<Sym>) {
    let tables = [(SHT_SYMTAB, source), (SHT_DYNSYM, source + 1)];
    for (table_type, source) in tables {
        for symbol in obj.symbols(table_type) {
            let kind = symbol.sym.st_type();
            let is_function = matches!(kind, STT_FUNC | STT_GNU_IFUNC);
            let wanted = match kind {
                STT_FUNC | STT_GNU_IFUNC | STT_OBJECT | STT_COMMON => true,
                STT_SECTION | STT_FILE | STT_TLS => false,
                _ => symbol.sym.st_size > 0,
            };
            if !wanted || !in_section(symbol.sym.st_shndx) || symbol.name.is_empty() {
                continue;
            }
            let name = String::from_utf8_lossy(symbol.name);
            // Weak symbols rank with global ones (any binding but local).
            let binding = if symbol.sym.st_bind() == STB_LOCAL {
                2
            } else {
                0
            };
            let underscores = name.bytes().take_while(|&b| b == b'_').count();
            out.push(Sym {
                address: symbol.sym.st_value,
                size: symbol.sym.st_size,
                rank: (
                    !is_function,
                    binding,
                    source,
                    underscores * 1024 + name.len(),
                ),
                name: name.into(),
            });
        }
    }
}

/// Whether a symbol's `st_shndx` names a section: not undefined, absolute
/// or common. Extended indices (`SHN_XINDEX`) are assumed to.
fn in_section(shndx: usize) -> bool {
    match u32::try_from(shndx) {
        Ok(SHN_UNDEF | SHN_ABS | SHN_COMMON) => false,
        Ok(SHN_XINDEX) => true,
        Ok(index) => index < SHN_LORESERVE,
        Err(_) => false,
    }
}

/// Sorts symbols by address and keeps the best one per address: sized over
/// zero-sized, functions over data, global over weak over local, fewer
/// leading underscores, shorter and then alphabetically first names.
fn finish_symbols(mut symbols: Vec<Sym>) -> Vec<Sym> {
    symbols.sort_by(|a, b| {
        a.address
            .cmp(&b.address)
            .then((a.size == 0).cmp(&(b.size == 0)))
            .then(a.rank.cmp(&b.rank))
            .then(a.name.cmp(&b.name))
    });
    symbols.dedup_by(|later, first| later.address == first.address);
    symbols.shrink_to_fit();
    symbols
}

/// Where the bytes of an ELF file come from: memory, or a file read piece
/// by piece.
enum Source<'a> {
    Bytes(&'a [u8]),
    File { file: File, len: u64 },
}

impl<'a> Source<'a> {
    fn len(&self) -> u64 {
        match self {
            Source::Bytes(data) => data.len() as u64,
            Source::File { len, .. } => *len,
        }
    }

    /// Reads `size` bytes at `offset`; an error if they are not all there.
    fn read(&mut self, offset: u64, size: u64) -> Result<Cow<'a, [u8]>, String> {
        let end = offset
            .checked_add(size)
            .filter(|&end| end <= self.len())
            .ok_or_else(|| format!("range {offset:#x}+{size:#x} is past the end of the file"))?;
        match self {
            Source::Bytes(data) => {
                let data: &'a [u8] = data;
                // Both fit in usize: they are at most the slice's length.
                Ok(Cow::Borrowed(&data[offset as usize..end as usize]))
            }
            Source::File { file, .. } => {
                let mut buf = vec![0; size as usize];
                file.seek(SeekFrom::Start(offset))
                    .and_then(|_| file.read_exact(&mut buf))
                    .map_err(|e| format!("cannot read {size:#x} bytes at {offset:#x}: {e}"))?;
                Ok(Cow::Owned(buf))
            }
        }
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
    fn read(source: &mut Source<'_>) -> Result<Headers, String> {
        let size = source
            .len()
            .min(goblin::elf::header::header64::SIZEOF_EHDR as u64);
        let header = Elf::parse_header(&source.read(0, size)?).map_err(|e| e.to_string())?;
        let container = header.container().map_err(|e| e.to_string())?;
        let endian = header.endianness().map_err(|e| e.to_string())?;
        let ctx = Ctx::new(container, endian);

        let mut sections = Vec::new();
        if header.e_shoff != 0 {
            let entry = SectionHeader::size(ctx) as u64;
            let first = source.read(header.e_shoff, entry)?;
            let first = SectionHeader::parse_from(&first, 0, 1, ctx).map_err(|e| e.to_string())?;
            // With more than SHN_LORESERVE sections, the count is in the
            // first section header.
            let count = match header.e_shnum {
                0 => first.first().map_or(0, |s| s.sh_size),
                n => u64::from(n),
            };
            if count > source.len() / entry {
                return Err(format!("invalid section header count {count}"));
            }
            if count > 0 {
                let table = source.read(header.e_shoff, count * entry)?;
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
            if count > source.len() / entry {
                return Err(format!("invalid program header count {count}"));
            }
            let table = source.read(header.e_phoff, count * entry)?;
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

    /// Finds the `NT_GNU_BUILD_ID` note: in `SHT_NOTE` sections, or, when
    /// there are no section headers, in `PT_NOTE` segments.
    fn build_id(&self, source: &mut Source<'_>) -> Result<Option<Vec<u8>>, String> {
        let notes: Vec<(u64, u64, u64)> = if self.sections.is_empty() {
            self.segments
                .iter()
                .filter(|p| p.p_type == PT_NOTE)
                .map(|p| (p.p_offset, p.p_filesz, p.p_align))
                .collect()
        } else {
            self.sections
                .iter()
                .filter(|s| s.sh_type == SHT_NOTE)
                .map(|s| (s.sh_offset, s.sh_size, s.sh_addralign))
                .collect()
        };
        for (offset, size, align) in notes {
            let data = source.read(offset, size)?;
            let notes = NoteDataIterator {
                data: &data,
                size: data.len(),
                offset: 0,
                ctx: (usize::try_from(align).unwrap_or(0), self.ctx),
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
}

/// An ELF file in memory, with its headers parsed by goblin.
struct ElfFile<'a> {
    data: &'a [u8],
    headers: Headers,
}

/// A symbol table entry with its name.
struct ElfSymbol<'a> {
    sym: goblin::elf::Sym,
    name: &'a [u8],
}

impl<'a> ElfFile<'a> {
    fn parse(data: &'a [u8]) -> Result<ElfFile<'a>, String> {
        let headers = Headers::read(&mut Source::Bytes(data))?;
        Ok(ElfFile { data, headers })
    }

    fn endian(&self) -> gimli::RunTimeEndian {
        if self.headers.ctx.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        }
    }

    fn build_id(&self) -> Option<Vec<u8>> {
        self.headers
            .build_id(&mut Source::Bytes(self.data))
            .ok()
            .flatten()
    }

    /// The bytes of a section in the file: empty for `SHT_NOBITS`.
    fn section_data(&self, section: &SectionHeader) -> Result<&'a [u8], String> {
        if section.sh_type == SHT_NOBITS {
            return Ok(&[]);
        }
        let start = usize::try_from(section.sh_offset).ok();
        let end = start.zip(usize::try_from(section.sh_size).ok());
        end.and_then(|(start, size)| self.data.get(start..start.checked_add(size)?))
            .ok_or_else(|| "invalid section offset or size".to_string())
    }

    fn section_name(&self, section: &SectionHeader) -> Option<&'a [u8]> {
        let strings = self.headers.sections.get(self.headers.shstrndx)?;
        c_str(self.section_data(strings).ok()?, section.sh_name)
    }

    /// The first section with the given name.
    fn section_by_name(&self, name: &[u8]) -> Option<&SectionHeader> {
        self.headers
            .sections
            .iter()
            .find(|s| self.section_name(s) == Some(name))
    }

    fn has_debug_info(&self) -> bool {
        [&b".debug_info"[..], b".zdebug_info"].iter().any(|&name| {
            self.section_by_name(name)
                .is_some_and(|s| s.sh_size > 0 && s.sh_type != SHT_NOBITS)
        })
    }

    /// The file name and CRC-32 of the `.gnu_debuglink` section.
    fn gnu_debuglink(&self) -> Option<(&'a [u8], u32)> {
        let data = self
            .section_data(self.section_by_name(b".gnu_debuglink")?)
            .ok()?;
        let name = c_str(data, 0)?;
        let crc_offset = (name.len() + 1).next_multiple_of(4);
        let crc: [u8; 4] = data.get(crc_offset..crc_offset + 4)?.try_into().ok()?;
        let crc = if self.headers.ctx.is_little_endian() {
            u32::from_le_bytes(crc)
        } else {
            u32::from_be_bytes(crc)
        };
        Some((name, crc))
    }

    /// The file name and build id of the `.gnu_debugaltlink` section.
    fn gnu_debugaltlink(&self) -> Option<(&'a [u8], &'a [u8])> {
        let data = self
            .section_data(self.section_by_name(b".gnu_debugaltlink")?)
            .ok()?;
        let name = c_str(data, 0)?;
        Some((name, &data[name.len() + 1..]))
    }

    /// The uncompressed contents of a DWARF section (`.debug_*`, or the
    /// GNU-compressed `.zdebug_*`), empty if there is none.
    fn dwarf_section(&self, name: &str) -> Result<Cow<'a, [u8]>, String> {
        let zname = name.strip_prefix(".debug_").map(|n| format!(".zdebug_{n}"));
        let found = self
            .section_by_name(name.as_bytes())
            .map(|s| (s, false))
            .or_else(|| Some((self.section_by_name(zname?.as_bytes())?, true)));
        let Some((section, gnu_compressed)) = found else {
            return Ok(Cow::Borrowed(&[]));
        };
        let data = self.section_data(section)?;
        if section.sh_flags & u64::from(SHF_COMPRESSED) != 0 {
            let header = CompressionHeader::parse(data, 0, self.headers.ctx)
                .map_err(|e| format!("invalid compression header: {e}"))?;
            let compressed = data
                .get(CompressionHeader::size(self.headers.ctx)..)
                .unwrap_or(&[]);
            let format = match header.ch_type {
                ELFCOMPRESS_ZLIB => Compression::Zlib,
                ELFCOMPRESS_ZSTD => Compression::Zstd,
                other => return Err(format!("unsupported ELF compression type {other}")),
            };
            decompress(format, compressed, header.ch_size).map(Cow::Owned)
        } else if gnu_compressed {
            // "ZLIB", the big-endian uncompressed size, a zlib stream.
            let size = data
                .strip_prefix(b"ZLIB")
                .and_then(|rest| rest.get(..8)?.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or("invalid GNU compressed section header")?;
            decompress(Compression::Zlib, &data[12..], size).map(Cow::Owned)
        } else {
            Ok(Cow::Borrowed(data))
        }
    }

    /// The entries of the first symbol table of the given type
    /// (`SHT_SYMTAB` or `SHT_DYNSYM`); none if it is missing or malformed.
    fn symbols(&self, table_type: u32) -> Vec<ElfSymbol<'a>> {
        let sections = &self.headers.sections;
        let Some(table) = sections.iter().find(|s| s.sh_type == table_type) else {
            return Vec::new();
        };
        let Ok(data) = self.section_data(table) else {
            return Vec::new();
        };
        let strings = sections
            .get(table.sh_link as usize)
            .and_then(|s| self.section_data(s).ok())
            .unwrap_or(&[]);
        let ctx = self.headers.ctx;
        let count = data.len() / goblin::elf::Sym::size(ctx.container);
        let Ok(syms) = goblin::elf::Sym::parse(data, 0, count, ctx) else {
            return Vec::new();
        };
        syms.into_iter()
            .map(|sym| ElfSymbol {
                sym,
                name: u32::try_from(sym.st_name)
                    .ok()
                    .and_then(|offset| c_str(strings, offset as usize))
                    .unwrap_or(&[]),
            })
            .collect()
    }
}

/// The NUL-terminated string at `offset` in a string table.
fn c_str(table: &[u8], offset: usize) -> Option<&[u8]> {
    let rest = table.get(offset..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..len])
}

#[derive(Clone, Copy)]
enum Compression {
    Zlib,
    Zstd,
}

/// Decompresses a section whose uncompressed size is `size`.
fn decompress(format: Compression, compressed: &[u8], size: u64) -> Result<Vec<u8>, String> {
    let size = usize::try_from(size).map_err(|_| "compressed section too large".to_string())?;
    let data = match format {
        Compression::Zlib => {
            miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(compressed, size)
                .map_err(|e| format!("invalid zlib compressed data: {e}"))?
        }
        Compression::Zstd => {
            let mut data = Vec::new();
            zstd::stream::read::Decoder::with_buffer(compressed)
                .and_then(|decoder| decoder.take(size as u64 + 1).read_to_end(&mut data))
                .map_err(|e| format!("invalid zstd compressed data: {e}"))?;
            data
        }
    };
    if data.len() != size {
        return Err(format!(
            "compressed section holds {:#x} bytes instead of {size:#x}",
            data.len()
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_rust_cpp_and_plain_names() {
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(demangle("_RNvCs1234_7mycrate3foo"), "mycrate::foo");
        assert_eq!(demangle("_ZN2ns5Klass6methodEi"), "ns::Klass::method(int)");
        assert_eq!(demangle("_ZN2ns3fooEv"), "ns::foo()");
        assert_eq!(demangle("leaf_function"), "leaf_function");
        assert_eq!(demangle("_Zgarbage"), "_Zgarbage");
    }

    #[test]
    fn later_modules_take_over_overlapping_ranges() {
        let mut ranges = Vec::new();
        insert_interval(
            &mut ranges,
            Interval {
                start: 0,
                end: 100,
                module: 0,
            },
        );
        insert_interval(
            &mut ranges,
            Interval {
                start: 200,
                end: 300,
                module: 1,
            },
        );
        insert_interval(
            &mut ranges,
            Interval {
                start: 50,
                end: 250,
                module: 2,
            },
        );
        let got: Vec<_> = ranges.iter().map(|r| (r.start, r.end, r.module)).collect();
        assert_eq!(got, vec![(0, 50, 0), (50, 250, 2), (250, 300, 1)]);
        insert_interval(
            &mut ranges,
            Interval {
                start: 60,
                end: 70,
                module: 3,
            },
        );
        let got: Vec<_> = ranges.iter().map(|r| (r.start, r.end, r.module)).collect();
        assert_eq!(
            got,
            vec![
                (0, 50, 0),
                (50, 60, 2),
                (60, 70, 3),
                (70, 250, 2),
                (250, 300, 1)
            ]
        );
    }

    #[test]
    fn symbol_lookup_respects_sizes() {
        let sym = |address, size, name: &str| Sym {
            address,
            size,
            name: name.into(),
            rank: (false, 0, 0, name.len()),
        };
        let data = ModuleData {
            symbols: finish_symbols(vec![
                sym(0x1000, 0x10, "sized"),
                sym(0x1000, 0, "alias0"),
                sym(0x2000, 0, "unsized"),
            ]),
            dwarf: None,
        };
        assert_eq!(data.symbol(0xfff).map(|s| &*s.name), None);
        assert_eq!(data.symbol(0x1000).map(|s| &*s.name), Some("sized"));
        assert_eq!(data.symbol(0x100f).map(|s| &*s.name), Some("sized"));
        assert_eq!(data.symbol(0x1010).map(|s| &*s.name), None);
        assert_eq!(data.symbol(0x2345).map(|s| &*s.name), Some("unsized"));
    }

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
