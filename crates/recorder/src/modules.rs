//! The module map: every loaded ELF object with its build id and segments,
//! read from `dl_iterate_phdr`.

use std::ffi::{c_int, c_void, CStr};

use memtrace_format::{Module, Segment};

/// Every module loaded now. The executable's empty name is replaced by the
/// path of `/proc/self/exe`.
pub(crate) fn loaded_modules() -> Vec<Module> {
    let mut modules: Vec<Module> = Vec::new();
    // SAFETY: the callback only reads the dl_phdr_info it is given and writes
    // into the Vec passed through `data`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), (&mut modules as *mut Vec<Module>).cast());
    }
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    for m in &mut modules {
        if m.path.is_empty() {
            m.path.clone_from(&exe);
        }
    }
    modules
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for the duration of the
    // call, and `data` is the Vec given by `loaded_modules`.
    let (info, modules) = unsafe { (&*info, &mut *(data as *mut Vec<Module>)) };
    let path = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: the loader gives dlpi_phnum headers at dlpi_phdr.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
    };
    let mut module = Module {
        path,
        build_id: None,
        load_bias: info.dlpi_addr,
        segments: Vec::new(),
    };
    for ph in phdrs {
        match ph.p_type {
            libc::PT_LOAD => module.segments.push(Segment {
                vaddr: ph.p_vaddr,
                memsz: ph.p_memsz,
                flags: ph.p_flags,
            }),
            libc::PT_NOTE if module.build_id.is_none() => {
                let start = info.dlpi_addr.wrapping_add(ph.p_vaddr) as *const u8;
                // SAFETY: PT_NOTE segments lie inside a loaded PT_LOAD of this
                // object, so p_memsz bytes from its address are mapped.
                let notes = unsafe { std::slice::from_raw_parts(start, ph.p_memsz as usize) };
                module.build_id = gnu_build_id(notes);
            }
            _ => {}
        }
    }
    if !module.segments.is_empty() {
        modules.push(module);
    }
    0
}

/// Finds the NT_GNU_BUILD_ID note in a note segment.
fn gnu_build_id(mut notes: &[u8]) -> Option<Vec<u8>> {
    let word = |b: &[u8], i: usize| -> Option<usize> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name_end = 12 + align4(namesz);
        let desc_end = name_end + align4(descsz);
        if desc_end > notes.len() {
            return None;
        }
        if kind == 3 && namesz == 4 && &notes[12..16] == b"GNU\0" {
            return Some(notes[name_end..name_end + descsz].to_vec());
        }
        notes = &notes[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_and_libc_are_listed_with_build_ids() {
        let modules = loaded_modules();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let main = modules
            .iter()
            .find(|m| m.path == exe.to_string_lossy())
            .expect("executable listed");
        assert!(
            main.contains(the_test_binary_and_libc_are_listed_with_build_ids as *const () as u64)
        );
        let libc = modules
            .iter()
            .find(|m| m.path.contains("libc.so"))
            .expect("libc listed");
        assert_eq!(libc.build_id.as_ref().map(Vec::len), Some(20));
    }
}
