//! Loading a module: its file, its separate debug file (by build id or
//! `.gnu_debuglink`), a dwz supplementary file, the DWARF context and the
//! symbol tables. Every file is read through [`ElfFile`], within its budget.

use std::path::{Path, PathBuf};

use goblin::elf::section_header::{
    SHN_ABS, SHN_COMMON, SHN_LORESERVE, SHN_UNDEF, SHN_XINDEX, SHT_DYNSYM, SHT_SYMTAB,
};
use goblin::elf::sym::{
    STB_LOCAL, STT_COMMON, STT_FILE, STT_FUNC, STT_GNU_IFUNC, STT_OBJECT, STT_SECTION, STT_TLS,
};

use crate::elf::{ElfFile, OpenError};
use crate::frames::{Dwarf, ModuleData, ModuleState, Sym};
use crate::{ModuleSpec, Options, Reader};

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens and parses a module, finds its debug information and builds its
/// symbol table. Problems become warnings.
pub(crate) fn load_module(
    spec: &ModuleSpec,
    options: &Options,
    warnings: &mut Vec<String>,
) -> ModuleState {
    let path = Path::new(&spec.path);
    let opened = if spec.path.is_empty() {
        Err(OpenError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "empty module path",
        )))
    } else {
        ElfFile::open(path)
    };
    let obj = match opened {
        Ok(obj) => obj,
        Err(OpenError::Io(e)) => {
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
        Err(OpenError::Parse(e)) => {
            warnings.push(format!(
                "cannot parse {} as an ELF file: {e}; its frames are not symbolized",
                spec.path
            ));
            return ModuleState::Unavailable;
        }
    };
    let file_build_id = obj.build_id().ok().flatten();
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
    collect_symbols(&obj, path, 0, &mut symbols, warnings);

    let build_id = file_build_id.as_deref().or(spec.build_id.as_deref());
    let dwarf = if obj.has_debug_info() {
        make_dwarf(&obj, path, options, warnings)
    } else if let Some(debug) = find_debug_file(&obj, build_id, path, options) {
        collect_symbols(&debug.elf, &debug.path, 2, &mut symbols, warnings);
        make_dwarf(&debug.elf, &debug.path, options, warnings)
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
    let mut symbols = Vec::new();
    let mut ignored = Vec::new();
    collect_symbols(&debug.elf, &debug.path, 0, &mut symbols, &mut ignored);
    let dwarf = if debug.elf.has_debug_info() {
        make_dwarf(&debug.elf, &debug.path, options, &mut ignored)
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
    elf: ElfFile,
}

/// The ELF file at `path` if it opens and its build id is `build_id`.
fn open_with_build_id(path: PathBuf, build_id: &[u8]) -> Option<DebugFile> {
    let elf = ElfFile::open(&path).ok()?;
    let matches = elf.build_id().ok().flatten().is_some_and(|b| b == build_id);
    matches.then_some(DebugFile { path, elf })
}

fn find_by_build_id(build_id: &[u8], options: &Options) -> Option<DebugFile> {
    if build_id.len() < 2 {
        return None;
    }
    let id = hex(build_id);
    options.debug_dirs.iter().find_map(|dir| {
        let path = dir
            .join(".build-id")
            .join(&id[..2])
            .join(format!("{}.debug", &id[2..]));
        open_with_build_id(path, build_id)
    })
}

/// Finds the separate debug file of a module without debug information of
/// its own: by build id, then by `.gnu_debuglink`.
fn find_debug_file(
    obj: &ElfFile,
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
    let name = Path::new(std::str::from_utf8(&name).ok()?);
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
        // The headers first: a file that is not ELF is never checksummed.
        let Ok(elf) = ElfFile::open(&candidate) else {
            continue;
        };
        if elf.crc32().ok() != Some(crc) {
            continue;
        }
        return Some(DebugFile {
            path: candidate,
            elf,
        });
    }
    None
}

/// Loads the DWARF sections of `obj` (plus a `.gnu_debugaltlink`
/// supplementary file, if any) into an addr2line context.
fn make_dwarf(
    obj: &ElfFile,
    path: &Path,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Option<Dwarf> {
    let endian = obj.endian();
    let result = (|| -> Result<addr2line::Context<Reader>, String> {
        let mut dwarf = gimli::Dwarf::load(|id| load_section(obj, id, endian))?;
        if let Some(sup) = find_sup_file(obj, path, options) {
            dwarf.load_sup(|id| load_section(&sup.elf, id, endian))?;
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
    obj: &ElfFile,
    id: gimli::SectionId,
    endian: gimli::RunTimeEndian,
) -> Result<Reader, String> {
    let data = obj
        .dwarf_section(id.name())
        .map_err(|e| format!("section {}: {e}", id.name()))?;
    Ok(gimli::EndianArcSlice::new(data, endian))
}

/// Finds the dwz supplementary file named by `.gnu_debugaltlink`.
fn find_sup_file(obj: &ElfFile, path: &Path, options: &Options) -> Option<DebugFile> {
    let (name, build_id) = obj.gnu_debugaltlink()?;
    let name = Path::new(std::str::from_utf8(&name).ok()?);
    let candidate = if name.is_absolute() {
        Some(name.to_path_buf())
    } else {
        path.parent().map(|dir| dir.join(name))
    };
    candidate
        .and_then(|c| open_with_build_id(c, &build_id))
        .or_else(|| find_by_build_id(&build_id, options))
}

/// Collects the defined function and data symbols of `.symtab` and
/// `.dynsym` of `obj`, the file at `path`. `source` ranks where they come
/// from (lower is preferred). A table that cannot be read is a warning.
fn collect_symbols(
    obj: &ElfFile,
    path: &Path,
    source: u8,
    out: &mut Vec<Sym>,
    warnings: &mut Vec<String>,
) {
    let tables = [(SHT_SYMTAB, source), (SHT_DYNSYM, source + 1)];
    for (table_type, source) in tables {
        let read = obj.for_each_symbol(table_type, |symbol| {
            let kind = symbol.sym.st_type();
            let is_function = matches!(kind, STT_FUNC | STT_GNU_IFUNC);
            let wanted = match kind {
                STT_FUNC | STT_GNU_IFUNC | STT_OBJECT | STT_COMMON => true,
                STT_SECTION | STT_FILE | STT_TLS => false,
                _ => symbol.sym.st_size > 0,
            };
            if !wanted || !in_section(symbol.sym.st_shndx) || symbol.name.is_empty() {
                return;
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
        });
        if let Err(e) = read {
            warnings.push(format!(
                "cannot read the symbols of {}: {e}; they are left out",
                path.display()
            ));
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
pub(crate) fn finish_symbols(mut symbols: Vec<Sym>) -> Vec<Sym> {
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
