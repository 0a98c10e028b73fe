//! Finding a module's separate debug information: a debug file by build id
//! (`.build-id/xx/yyyy.debug` under the debug directories) or by
//! `.gnu_debuglink` (beside the module, in `.debug/`, or under the debug
//! directories, checked by CRC), and the dwz supplementary file named by
//! `.gnu_debugaltlink`.

use std::path::{Path, PathBuf};

use crate::elf::ElfFile;
use crate::Options;

/// A build id as lowercase hex, as in `.build-id` paths and warnings.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A debug file found, with the path it was found at.
pub(crate) struct DebugFile {
    pub(crate) path: PathBuf,
    pub(crate) elf: ElfFile,
}

/// The ELF file at `path` if it opens and its build id is `build_id`.
fn open_with_build_id(path: PathBuf, build_id: &[u8]) -> Option<DebugFile> {
    let elf = ElfFile::open(&path).ok()?;
    let matches = elf.build_id().ok().flatten().is_some_and(|b| b == build_id);
    matches.then_some(DebugFile { path, elf })
}

/// The debug file `.build-id/xx/yyyy.debug` under a debug directory.
pub(crate) fn find_by_build_id(build_id: &[u8], options: &Options) -> Option<DebugFile> {
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
pub(crate) fn find_debug_file(
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

/// Finds the dwz supplementary file named by `.gnu_debugaltlink`.
pub(crate) fn find_sup_file(obj: &ElfFile, path: &Path, options: &Options) -> Option<DebugFile> {
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
