//! A module's symbol tables: the defined functions and data objects of
//! `.symtab` and `.dynsym`, ranked by where they come from, sorted and
//! deduplicated for lookups by address.

use std::path::Path;

use goblin::elf::section_header::{
    SHN_ABS, SHN_COMMON, SHN_LORESERVE, SHN_UNDEF, SHN_XINDEX, SHT_DYNSYM, SHT_SYMTAB,
};
use goblin::elf::sym::{
    STB_LOCAL, STT_COMMON, STT_FILE, STT_FUNC, STT_GNU_IFUNC, STT_OBJECT, STT_SECTION, STT_TLS,
};

use crate::elf::ElfFile;
use crate::frames::Sym;

/// Collects the defined function and data symbols of `.symtab` and
/// `.dynsym` of `obj`, the file at `path`. `source` ranks where they come
/// from (lower is preferred). A table that cannot be read is a warning.
pub(crate) fn collect_symbols(
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
