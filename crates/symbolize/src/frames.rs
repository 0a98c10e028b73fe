//! A module's frames for an address: DWARF's, inlined frames included,
//! with the ELF symbol tables as the fallback, names demangled.

use std::path::PathBuf;

use crate::{Frame, Reader};

/// A module's debug data: not read yet, unreadable, or read.
pub(crate) enum ModuleState {
    NotLoaded,
    Unavailable,
    Loaded(Box<ModuleData>),
}

/// What a module's files gave: its symbol tables and its DWARF.
pub(crate) struct ModuleData {
    /// Sorted by address, one entry per address.
    pub(crate) symbols: Vec<Sym>,
    pub(crate) dwarf: Option<Dwarf>,
}

/// A module's DWARF, from the file at `path`.
pub(crate) struct Dwarf {
    pub(crate) context: addr2line::Context<Reader>,
    pub(crate) path: PathBuf,
    pub(crate) error_reported: bool,
}

#[derive(Debug, Clone)]
/// An ELF symbol.
pub(crate) struct Sym {
    pub(crate) address: u64,
    pub(crate) size: u64,
    pub(crate) name: Box<str>,
    pub(crate) rank: (bool, u8, u8, usize),
}

impl ModuleData {
    /// The frames at `svma`, innermost (inlined) first: DWARF's, with the
    /// symbol tables' name where DWARF has none.
    pub(crate) fn frames(&mut self, svma: u64, warnings: &mut Vec<String>) -> Vec<Frame> {
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
            let symbol = self.symbol(svma);
            let function = symbol.map(|s| demangle(&s.name));
            let symbol_offset = symbol.map(|s| svma - s.address);
            match frames.last_mut() {
                Some(last) => {
                    last.function = function;
                    last.symbol_offset = symbol_offset;
                }
                None => frames.push(Frame {
                    function,
                    symbol_offset,
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
            symbol_offset: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symtab::finish_symbols;

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
}
