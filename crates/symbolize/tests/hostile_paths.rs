//! Module paths come from a trace file, which may be damaged or made up:
//! a path naming a device, a FIFO or a directory is a warning, never an
//! endless read (`/dev/zero` would fill memory) or a wait for a writer.

use std::path::Path;

use memtrace_symbolize::{read_build_id, ModuleSpec, Options, Segment, Symbolizer};

fn spec(path: &str) -> ModuleSpec {
    ModuleSpec {
        path: path.to_string(),
        build_id: None,
        load_bias: 0x1000_0000,
        segments: vec![Segment {
            vaddr: 0,
            memsz: 0x1000,
            executable: true,
        }],
    }
}

/// Symbolizes one address inside a module at `path`; returns the warnings.
fn warnings_for(path: &str) -> Vec<String> {
    let mut symbolizer = Symbolizer::new(Options {
        debug_dirs: Vec::new(),
    });
    symbolizer.add_module(spec(path));
    let location = symbolizer.symbolize(0x1000_0010);
    assert!(location.frames.iter().all(|f| f.function.is_none()));
    symbolizer.warnings().to_vec()
}

#[test]
fn a_device_is_not_read() {
    assert_eq!(
        warnings_for("/dev/zero"),
        ["cannot read /dev/zero: not a regular file; its frames are not symbolized"]
    );
    assert!(read_build_id(std::path::Path::new("/dev/zero")).is_err());
}

#[test]
fn a_fifo_is_not_opened() {
    let dir = std::env::temp_dir().join(format!("memtrace-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let path = fifo.to_str().unwrap();
    assert_eq!(
        warnings_for(path),
        [format!(
            "cannot read {path}: not a regular file; its frames are not symbolized"
        )]
    );
    assert!(read_build_id(&fifo).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_directory_is_not_read() {
    assert_eq!(
        warnings_for("/"),
        ["cannot read /: not a regular file; its frames are not symbolized"]
    );
}

/// Says that `test` skips and why; with `MEMTRACE_TEST_STRICT=1` it fails.
fn skip(test: &str, why: &str) {
    let strict = std::env::var_os("MEMTRACE_TEST_STRICT").is_some_and(|v| v == "1");
    assert!(
        !strict,
        "{test}: would skip ({why}), and MEMTRACE_TEST_STRICT=1 makes that a failure"
    );
    eprintln!("{test}: SKIPPED: {why}");
}

/// A fresh directory for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("memtrace-sym-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A section of a hand-made ELF file: its name, type, flags, and where
/// its bytes are (anywhere, holes included).
struct Section {
    name: &'static str,
    sh_type: u32,
    flags: u64,
    offset: u64,
    size: u64,
    link: u32,
}

/// Writes a little-endian ELF64 shared object at `path`: the ELF header,
/// the section name table and the section headers in its first bytes,
/// `extra` bytes where given, and nothing else: the file is `len` bytes
/// long, holes after what was written. Returns false (and removes the
/// file) when the file system does not make the rest a hole.
fn write_elf(path: &Path, len: u64, sections: &[Section], extra: &[(u64, Vec<u8>)]) -> bool {
    use std::io::{Seek, SeekFrom, Write};
    let mut names = vec![0u8];
    let mut name_at = Vec::new();
    for s in sections {
        name_at.push(names.len() as u32);
        names.extend_from_slice(s.name.as_bytes());
        names.push(0);
    }
    let shstrtab_name = names.len() as u32;
    names.extend_from_slice(b".shstrtab\0");
    let shoff = (64 + names.len() as u64).next_multiple_of(8);
    let shnum = sections.len() as u16 + 2;
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    out.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&0u64.to_le_bytes()); // e_phoff
    out.extend_from_slice(&shoff.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [64u16, 56, 0, 64, shnum, shnum - 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&names);
    out.resize(shoff as usize, 0);
    let header =
        |out: &mut Vec<u8>, name: u32, ty: u32, flags: u64, off: u64, size: u64, link: u32| {
            out.extend_from_slice(&name.to_le_bytes());
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes()); // sh_addr
            out.extend_from_slice(&off.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&link.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes()); // sh_info
            out.extend_from_slice(&8u64.to_le_bytes()); // sh_addralign
            let entsize: u64 = if ty == 2 { 24 } else { 0 };
            out.extend_from_slice(&entsize.to_le_bytes());
        };
    header(&mut out, 0, 0, 0, 0, 0, 0);
    for (s, &name) in sections.iter().zip(&name_at) {
        header(&mut out, name, s.sh_type, s.flags, s.offset, s.size, s.link);
    }
    header(&mut out, shstrtab_name, 3, 0, 64, names.len() as u64, 0);
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&out).unwrap();
    for (at, bytes) in extra {
        file.seek(SeekFrom::Start(*at)).unwrap();
        file.write_all(bytes).unwrap();
    }
    file.set_len(len).unwrap();
    use std::os::unix::fs::MetadataExt;
    let on_disk = file.metadata().unwrap().blocks() * 512;
    if on_disk > 1 << 20 {
        drop(file);
        std::fs::remove_file(path).unwrap();
        return false;
    }
    true
}

const GIB: u64 = 1 << 30;
const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHF_COMPRESSED: u64 = 0x800;

fn symbolizer_warnings(path: &Path) -> Vec<String> {
    warnings_for(path.to_str().unwrap())
}

#[test]
fn a_sparse_file_of_zeros_is_not_read() {
    let dir = scratch("sparse-zeros");
    let path = dir.join("huge.so");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(20 * GIB).unwrap();
    let shown = path.display();
    assert_eq!(
        symbolizer_warnings(&path),
        [format!(
            "cannot parse {shown} as an ELF file: Invalid magic number: 0x0; \
             its frames are not symbolized"
        )]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sections_in_the_holes_of_a_sparse_elf_file_are_not_read() {
    let test = "sections_in_the_holes_of_a_sparse_elf_file_are_not_read";
    let dir = scratch("sparse-elf");
    let path = dir.join("huge.so");
    let sections = [
        Section {
            name: ".symtab",
            sh_type: SHT_SYMTAB,
            flags: 0,
            offset: GIB,
            size: GIB / 2,
            link: 2,
        },
        Section {
            name: ".strtab",
            sh_type: SHT_STRTAB,
            flags: 0,
            offset: 2 * GIB,
            size: 4096,
            link: 0,
        },
        Section {
            name: ".debug_info",
            sh_type: SHT_PROGBITS,
            flags: 0,
            offset: 3 * GIB,
            size: GIB,
            link: 0,
        },
    ];
    if !write_elf(&path, 20 * GIB, &sections, &[]) {
        skip(
            test,
            "the file system of the temporary directory has no sparse files",
        );
        return;
    }
    let shown = path.display();
    let budget = "would pass the file's read budget of 33554432 bytes \
                  (32 times its bytes on disk: a sparse file is not read)";
    assert_eq!(
        symbolizer_warnings(&path),
        [
            format!(
                "cannot read the symbols of {shown}: .symtab of 536870912 bytes {budget}; \
                 they are left out"
            ),
            format!(
                "cannot load DWARF from {shown}: section .debug_info: \
                 .debug_info of 1073741824 bytes {budget}; only symbol tables are used"
            ),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_compressed_section_may_not_claim_more_than_the_limits() {
    let test = "a_compressed_section_may_not_claim_more_than_the_limits";
    let dir = scratch("zbomb");
    // An Elf64_Chdr (zlib, size, alignment) and a few bytes of stream.
    let chdr = |size: u64| {
        let mut c = 1u32.to_le_bytes().to_vec();
        c.extend_from_slice(&0u32.to_le_bytes());
        c.extend_from_slice(&size.to_le_bytes());
        c.extend_from_slice(&1u64.to_le_bytes());
        c.extend_from_slice(&[0x78, 0x9c, 0x03, 0x00]);
        c
    };
    for (size, why) in [
        (
            2 * GIB,
            "of 2147483648 bytes is over the 1073741824-byte limit".to_string(),
        ),
        (
            GIB / 2,
            "of 536870912 bytes would pass the file's read budget of 33554432 bytes \
             (32 times its bytes on disk: a sparse file is not read)"
                .to_string(),
        ),
    ] {
        let path = dir.join(format!("z{size}.so"));
        let stream = chdr(size);
        let sections = [Section {
            name: ".debug_info",
            sh_type: SHT_PROGBITS,
            flags: SHF_COMPRESSED,
            offset: 4096,
            size: stream.len() as u64,
            link: 0,
        }];
        if !write_elf(&path, 8192, &sections, &[(4096, stream)]) {
            skip(
                test,
                "the file system of the temporary directory has no sparse files",
            );
            return;
        }
        assert_eq!(
            symbolizer_warnings(&path),
            [format!(
                "cannot load DWARF from {}: section .debug_info: .debug_info {why}; \
                 only symbol tables are used",
                path.display()
            )]
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A `.symtab` with one function, `name` at 0x10, 0x100 bytes, and its
/// `.strtab`.
fn one_symbol(name: &str) -> (Vec<u8>, Vec<u8>) {
    let mut symtab = vec![0u8; 24];
    symtab.extend_from_slice(&1u32.to_le_bytes()); // st_name
    symtab.push(0x12); // STB_GLOBAL, STT_FUNC
    symtab.push(0);
    symtab.extend_from_slice(&1u16.to_le_bytes()); // st_shndx
    symtab.extend_from_slice(&0x10u64.to_le_bytes());
    symtab.extend_from_slice(&0x100u64.to_le_bytes());
    let strtab = [&[0u8][..], name.as_bytes(), &[0]].concat();
    (symtab, strtab)
}

#[test]
fn a_sparse_debuglink_target_is_not_checksummed() {
    let test = "a_sparse_debuglink_target_is_not_checksummed";
    let dir = scratch("debuglink");
    // The debug file: 64 MiB, nearly all holes, with a symbol that would
    // name the address if the file were used.
    let debug = dir.join("big.debug");
    let (symtab, strtab) = one_symbol("from_the_debug_file");
    let sections = [
        Section {
            name: ".symtab",
            sh_type: SHT_SYMTAB,
            flags: 0,
            offset: 4096,
            size: symtab.len() as u64,
            link: 2,
        },
        Section {
            name: ".strtab",
            sh_type: SHT_STRTAB,
            flags: 0,
            offset: 8192,
            size: strtab.len() as u64,
            link: 0,
        },
    ];
    let extra = [(4096, symtab), (8192, strtab)];
    if !write_elf(&debug, 64 << 20, &sections, &extra) {
        skip(
            test,
            "the file system of the temporary directory has no sparse files",
        );
        return;
    }
    let crc = crc32fast::hash(&std::fs::read(&debug).unwrap());
    // The module names it, with its true checksum.
    let module = dir.join("module.so");
    let mut link = b"big.debug\0\0\0".to_vec();
    link.extend_from_slice(&crc.to_le_bytes());
    let sections = [Section {
        name: ".gnu_debuglink",
        sh_type: SHT_PROGBITS,
        flags: 0,
        offset: 4096,
        size: link.len() as u64,
        link: 0,
    }];
    assert!(write_elf(&module, 8192, &sections, &[(4096, link)]));

    let mut symbolizer = Symbolizer::new(Options {
        debug_dirs: Vec::new(),
    });
    symbolizer.add_module(spec(module.to_str().unwrap()));
    let location = symbolizer.symbolize(0x1000_0010);
    assert_eq!(location.frames.len(), 1);
    assert_eq!(location.frames[0].function, None);
    assert!(
        symbolizer.warnings().is_empty(),
        "{:?}",
        symbolizer.warnings()
    );

    // The same debug file, written out in full, is found and used.
    let bytes = std::fs::read(&debug).unwrap();
    let full = dir.join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("big.debug"), &bytes).unwrap();
    std::fs::copy(&module, full.join("module.so")).unwrap();
    let mut symbolizer = Symbolizer::new(Options {
        debug_dirs: Vec::new(),
    });
    symbolizer.add_module(spec(full.join("module.so").to_str().unwrap()));
    let location = symbolizer.symbolize(0x1000_0010);
    assert_eq!(
        location.frames[0].function.as_deref(),
        Some("from_the_debug_file")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
