//! Loading a module: its file checked against the trace's build id, its
//! symbol tables (`symtab.rs`) and its DWARF context, from the file itself
//! or the separate debug file `debug_file.rs` finds. Every file is read
//! through [`ElfFile`], within its budget.

use std::path::Path;

use crate::debug_file::{find_by_build_id, find_debug_file, find_sup_file, hex};
use crate::elf::{ElfFile, OpenError};
use crate::frames::{Dwarf, ModuleData, ModuleState};
use crate::symtab::{collect_symbols, finish_symbols};
use crate::{ModuleSpec, Options, Reader};

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
