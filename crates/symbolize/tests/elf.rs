//! End-to-end tests: C and C++ programs are compiled at test time, run, and
//! report their own addresses and `dl_iterate_phdr` data, which are then
//! symbolized offline and compared with exact expectations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use memtrace_symbolize::{
    read_build_id, Frame, Location, ModuleSpec, Options, Segment, Symbolizer,
};

/// Prints `module <path|MAIN> <bias> <build id|->` and `load <vaddr> <memsz> <x>`
/// lines for every loaded module, like the recorder does.
const REPORT_MODULES: &str = r#"
#include <link.h>
#include <string.h>
#include <stdio.h>

static int print_module(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size; (void)data;
    printf("module %s %lx ", info->dlpi_name[0] ? info->dlpi_name : "MAIN",
           (unsigned long)info->dlpi_addr);
    int found = 0;
    for (int i = 0; i < info->dlpi_phnum && !found; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        unsigned align = ph->p_align == 8 ? 8 : 4;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while (!found && p + 12 <= end) {
            unsigned namesz, descsz, type;
            memcpy(&namesz, p, 4); memcpy(&descsz, p + 4, 4); memcpy(&type, p + 8, 4);
            const unsigned char *name = p + 12;
            const unsigned char *desc = name + ((namesz + align - 1) & ~(align - 1));
            if (desc + descsz > end) break;
            if (type == 3 && namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                for (unsigned j = 0; j < descsz; j++) printf("%02x", desc[j]);
                found = 1;
            }
            p = desc + ((descsz + align - 1) & ~(align - 1));
        }
    }
    if (!found) printf("-");
    printf("\n");
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD)
            printf("load %lx %lx %d\n", (unsigned long)ph->p_vaddr,
                   (unsigned long)ph->p_memsz, (ph->p_flags & PF_X) ? 1 : 0);
    }
    return 0;
}
"#;

const C_PROGRAM: &str = r#"
#include <dlfcn.h>
#include <stdlib.h>

void *volatile g_ret;

__attribute__((noinline, noipa)) void capture(void) { g_ret = __builtin_return_address(0); }

static inline __attribute__((always_inline)) int inlined_helper(int x) {
    capture(); /* MARK:helper_call */
    return x + 1;
}

__attribute__((noinline)) int leaf_function(int x) { /* MARK:leaf_decl */
    int y = inlined_helper(x); /* MARK:leaf_call */
    return y * 2;
}

int main(int argc, char **argv) {
    (void)argv;
    int r = leaf_function(argc);
    printf("addr leaf_function %p\n", (void *)&leaf_function);
    printf("addr leaf_return %p\n", g_ret);
    printf("addr malloc %p\n", dlsym(RTLD_DEFAULT, "malloc"));
    dl_iterate_phdr(print_module, NULL);
    return r == 0;
}
"#;

const CPP_PROGRAM: &str = r#"
void *volatile g_ret;

extern "C" __attribute__((noinline, noipa)) void capture(void) { g_ret = __builtin_return_address(0); }

namespace ns {
struct Klass {
    int v;
    int method(int x);
};

__attribute__((noinline)) int Klass::method(int x) { /* MARK:method_decl */
    capture(); /* MARK:method_call */
    return x + v;
}
}

int main(int argc, char **) {
    ns::Klass k{argc};
    int r = k.method(argc);
    printf("addr method_return %p\n", g_ret);
    dl_iterate_phdr(print_module, NULL);
    return r == 0;
}
"#;

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("memtrace-symbolize-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir.canonicalize().unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Program {
    dir: TempDir,
    src: PathBuf,
    exe: PathBuf,
    source_text: String,
    addrs: HashMap<String, u64>,
    modules: Vec<ModuleSpec>,
}

impl Program {
    /// Compiles `body` (C or C++) with `flags`, runs it and parses its report.
    fn build(name: &str, cpp: bool, body: &str, flags: &[&str]) -> Program {
        let dir = TempDir::new(name);
        let src = dir.0.join(if cpp { "test.cpp" } else { "test.c" });
        let exe = dir.0.join("test");
        let source_text = format!("#define _GNU_SOURCE 1\n{REPORT_MODULES}{body}");
        std::fs::write(&src, &source_text).unwrap();
        let compiler = if cpp { "g++" } else { "cc" };
        let status = Command::new(compiler)
            .args(flags)
            .arg("-Wl,--build-id")
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .arg("-ldl")
            .status()
            .expect("run the C compiler");
        assert!(status.success(), "{compiler} failed");
        let output = Command::new(&exe).output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        let mut addrs = HashMap::new();
        let mut modules: Vec<ModuleSpec> = Vec::new();
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            let num = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
            match words[0] {
                "addr" => {
                    addrs.insert(words[1].to_string(), num(words[2]));
                }
                "module" => modules.push(ModuleSpec {
                    path: if words[1] == "MAIN" {
                        exe.to_str().unwrap().to_string()
                    } else {
                        words[1].to_string()
                    },
                    build_id: (words[3] != "-").then(|| {
                        (0..words[3].len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&words[3][i..i + 2], 16).unwrap())
                            .collect()
                    }),
                    load_bias: num(words[2]),
                    segments: Vec::new(),
                }),
                "load" => modules.last_mut().unwrap().segments.push(Segment {
                    vaddr: num(words[1]),
                    memsz: num(words[2]),
                    executable: words[3] == "1",
                }),
                _ => panic!("unexpected output line {line:?}"),
            }
        }
        // The vDSO has no file.
        modules.retain(|m| m.path.starts_with('/'));
        Program {
            dir,
            src,
            exe,
            source_text,
            addrs,
            modules,
        }
    }

    fn line_of(&self, marker: &str) -> u32 {
        let needle = format!("/* MARK:{marker} */");
        let index = self
            .source_text
            .lines()
            .position(|l| l.contains(&needle))
            .unwrap();
        index as u32 + 1
    }

    fn addr(&self, name: &str) -> u64 {
        self.addrs[name]
    }

    fn main_module(&self) -> ModuleSpec {
        self.modules[0].clone()
    }

    fn src_str(&self) -> String {
        self.src.to_str().unwrap().to_string()
    }

    fn frame(&self, function: &str, marker: &str, inlined: bool) -> Frame {
        Frame {
            function: Some(function.to_string()),
            file: Some(self.src_str()),
            line: Some(self.line_of(marker)),
            inlined,
            symbol_offset: None,
        }
    }

    fn symbolizer(&self, options: Options) -> Symbolizer {
        let mut symbolizer = Symbolizer::new(options);
        for module in &self.modules {
            symbolizer.add_module(module.clone());
        }
        symbolizer
    }
}

fn no_debug_dirs() -> Options {
    Options { debug_dirs: vec![] }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

/// The expectations shared by every variant that has DWARF for the C program.
fn check_c_dwarf(p: &Program, options: Options) {
    let mut s = p.symbolizer(options);
    let main = p.main_module();
    let leaf = p.addr("leaf_function");
    let loc = s.symbolize(leaf);
    assert_eq!(
        loc,
        Location {
            address: leaf,
            module: Some(p.exe.to_str().unwrap().to_string()),
            module_offset: leaf - main.load_bias,
            frames: vec![p.frame("leaf_function", "leaf_decl", false)],
        }
    );
    let ret = p.addr("leaf_return");
    let loc = s.symbolize_return_address(ret);
    assert_eq!(loc.address, ret);
    assert_eq!(loc.module_offset, ret - main.load_bias);
    assert_eq!(
        loc.frames,
        vec![
            p.frame("inlined_helper", "helper_call", true),
            p.frame("leaf_function", "leaf_call", false),
        ]
    );
    // Cached answers are the same.
    assert_eq!(s.symbolize_return_address(ret), loc);
    assert_eq!(s.warnings(), &[] as &[String]);
}

#[test]
fn c_program_at_o0() {
    let p = Program::build("c-o0", false, C_PROGRAM, &["-O0", "-g"]);
    check_c_dwarf(&p, no_debug_dirs());
}

#[test]
fn c_program_at_o2() {
    let p = Program::build("c-o2", false, C_PROGRAM, &["-O2", "-g"]);
    check_c_dwarf(&p, no_debug_dirs());
}

#[test]
fn compressed_debug_sections_in_the_file() {
    let p = Program::build("c-gz", false, C_PROGRAM, &["-O2", "-g", "-gz=zlib"]);
    let out = Command::new("readelf")
        .arg("-SW")
        .arg(&p.exe)
        .output()
        .unwrap();
    let sections = String::from_utf8_lossy(&out.stdout).to_string();
    let info = sections
        .lines()
        .find(|l| l.contains(" .debug_info "))
        .unwrap();
    assert!(info.contains(" C "), "not compressed: {info}");
    check_c_dwarf(&p, no_debug_dirs());
}

#[test]
fn separate_debug_file_by_debuglink() {
    let p = Program::build("c-debuglink", false, C_PROGRAM, &["-O2", "-g"]);
    let exe = p.exe.to_str().unwrap();
    let debug = p.dir.0.join("test.debug");
    run(
        "objcopy",
        &[
            "--only-keep-debug",
            "--compress-debug-sections=zlib",
            exe,
            debug.to_str().unwrap(),
        ],
    );
    run("objcopy", &["--strip-debug", exe]);
    run(
        "objcopy",
        &[&format!("--add-gnu-debuglink={}", debug.display()), exe],
    );
    // Searched in the `.debug` subdirectory too.
    std::fs::create_dir(p.dir.0.join(".debug")).unwrap();
    std::fs::rename(&debug, p.dir.0.join(".debug/test.debug")).unwrap();
    check_c_dwarf(&p, no_debug_dirs());

    // A debug file whose CRC does not match is not used: only the symbol
    // table remains.
    let mut bytes = std::fs::read(p.dir.0.join(".debug/test.debug")).unwrap();
    bytes.push(0);
    std::fs::write(p.dir.0.join(".debug/test.debug"), bytes).unwrap();
    let mut s = p.symbolizer(no_debug_dirs());
    assert_eq!(
        s.symbolize(p.addr("leaf_function")).frames,
        vec![Frame {
            function: Some("leaf_function".into()),
            symbol_offset: Some(0),
            ..Frame::default()
        }]
    );
}

#[test]
fn separate_debug_file_by_build_id() {
    let p = Program::build("c-buildid", false, C_PROGRAM, &["-O0", "-g"]);
    let exe = p.exe.to_str().unwrap();
    let id = p
        .main_module()
        .build_id
        .expect("the program has a build id");
    assert_eq!(read_build_id(&p.exe).unwrap(), Some(id.clone()));
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let debug_dir = p.dir.0.join("debug");
    let target = debug_dir.join(".build-id").join(&hex[..2]);
    std::fs::create_dir_all(&target).unwrap();
    let debug = target.join(format!("{}.debug", &hex[2..]));
    run(
        "objcopy",
        &["--only-keep-debug", exe, debug.to_str().unwrap()],
    );
    run("strip", &["--strip-all", exe]);
    let options = Options {
        debug_dirs: vec![p.dir.0.join("elsewhere"), debug_dir],
    };
    check_c_dwarf(&p, options.clone());

    // When the module file is gone, the debug file matching the trace's
    // build id still symbolizes it, with a warning.
    std::fs::remove_file(&p.exe).unwrap();
    let mut s = p.symbolizer(options);
    let loc = s.symbolize(p.addr("leaf_function"));
    assert_eq!(
        loc.frames,
        vec![p.frame("leaf_function", "leaf_decl", false)]
    );
    assert_eq!(s.warnings().len(), 1, "{:?}", s.warnings());
}

#[test]
fn symbol_table_fallback_without_debug_info() {
    let p = Program::build("c-nodebug", false, C_PROGRAM, &["-O0"]);
    let mut s = p.symbolizer(no_debug_dirs());
    let leaf_function = p.addr("leaf_function");
    let leaf = s.symbolize(leaf_function);
    let expected = |symbol_offset| {
        vec![Frame {
            function: Some("leaf_function".into()),
            file: None,
            line: None,
            inlined: false,
            symbol_offset: Some(symbol_offset),
        }]
    };
    assert_eq!(leaf.frames, expected(0));
    // A return address is looked up one byte back, in the call.
    let leaf_return = p.addr("leaf_return");
    assert_eq!(
        s.symbolize_return_address(leaf_return).frames,
        expected(leaf_return - 1 - leaf_function)
    );
    assert_eq!(s.warnings(), &[] as &[String]);
}

#[test]
fn cpp_names_are_demangled() {
    for (name, flags) in [("cpp-g", &["-O0", "-g"][..]), ("cpp-nodebug", &["-O1"][..])] {
        let p = Program::build(name, true, CPP_PROGRAM, flags);
        let mut s = p.symbolizer(no_debug_dirs());
        let loc = s.symbolize_return_address(p.addr("method_return"));
        let expected = if flags.contains(&"-g") {
            p.frame("ns::Klass::method(int)", "method_call", false)
        } else {
            Frame {
                function: Some("ns::Klass::method(int)".into()),
                ..Frame::default()
            }
        };
        let mut frames = loc.frames;
        // A name from the symbol table comes with the offset into it.
        if let [frame] = frames.as_mut_slice() {
            if !flags.contains(&"-g") {
                assert!(frame.symbol_offset.is_some_and(|o| o > 0), "{name}");
                frame.symbol_offset = None;
            }
        }
        assert_eq!(frames, vec![expected], "{name}");
        assert_eq!(s.warnings(), &[] as &[String]);
    }
}

#[test]
fn malloc_in_the_system_libc() {
    let p = Program::build("libc", false, C_PROGRAM, &["-O0"]);
    let malloc = p.addr("malloc");
    let mut s = p.symbolizer(Options::default());
    let loc = s.symbolize(malloc);
    let module = loc.module.clone().expect("malloc is in a module");
    assert!(module.contains("libc.so"), "{module}");
    let spec = p.modules.iter().find(|m| m.path == module).unwrap();
    assert_eq!(read_build_id(Path::new(&module)).unwrap(), spec.build_id);
    assert_eq!(loc.module_offset, malloc - spec.load_bias);
    eprintln!("{loc:?}");
    let outer = loc.frames.last().unwrap();
    let function = outer.function.as_deref().unwrap();
    assert!(
        function == "malloc" || function == "__libc_malloc",
        "{function}"
    );
    assert!(!outer.inlined);
    // With the distribution's debug file installed, there is a source line.
    let has_debug_file = spec.build_id.as_ref().is_some_and(|id| {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        Path::new(&format!(
            "/usr/lib/debug/.build-id/{}/{}.debug",
            &hex[..2],
            &hex[2..]
        ))
        .exists()
    });
    if has_debug_file {
        assert!(
            outer.file.as_deref().unwrap().ends_with("/malloc.c"),
            "{outer:?}"
        );
        assert!(outer.line.is_some());
    } else {
        assert_eq!(outer.file, None);
    }
    assert_eq!(s.warnings(), &[] as &[String]);

    // Without debug files, `.dynsym` still names it.
    let mut s = p.symbolizer(no_debug_dirs());
    let loc = s.symbolize(malloc);
    let frame = &loc.frames[0];
    assert_eq!(loc.frames.len(), 1);
    let function = frame.function.as_deref().unwrap();
    assert!(
        function == "malloc" || function == "__libc_malloc",
        "{function}"
    );
    if !has_debug_file {
        assert_eq!(frame.file, None);
    }
}

#[test]
fn build_id_mismatch_is_not_symbolized() {
    let p = Program::build("mismatch", false, C_PROGRAM, &["-O0", "-g"]);
    let mut spec = p.main_module();
    spec.build_id = Some(vec![0xde, 0xad, 0xbe, 0xef]);
    let mut s = Symbolizer::new(no_debug_dirs());
    s.add_module(spec.clone());
    let leaf = p.addr("leaf_function");
    for address in [leaf, leaf + 1] {
        let loc = s.symbolize(address);
        assert_eq!(
            loc,
            Location {
                address,
                module: Some(spec.path.clone()),
                module_offset: address - spec.load_bias,
                frames: vec![Frame::default()],
            }
        );
    }
    assert_eq!(s.warnings().len(), 1, "{:?}", s.warnings());
    assert!(s.warnings()[0].contains("build id"), "{}", s.warnings()[0]);
    assert!(s.warnings()[0].contains(&spec.path), "{}", s.warnings()[0]);
}

fn fake_module(path: &str) -> ModuleSpec {
    ModuleSpec {
        path: path.to_string(),
        build_id: None,
        load_bias: 0x7f00_0000_0000,
        segments: vec![
            Segment {
                vaddr: 0,
                memsz: 0x1000,
                executable: false,
            },
            Segment {
                vaddr: 0x1000,
                memsz: 0x2000,
                executable: true,
            },
        ],
    }
}

#[test]
fn garbage_and_missing_files_become_warnings() {
    let dir = TempDir::new("garbage");
    let garbage = dir.0.join("garbage.so");
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut bytes: Vec<u8> = (0..100_000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    std::fs::write(&garbage, &bytes).unwrap();
    // Also an ELF header followed by garbage.
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2; // 64-bit
    bytes[5] = 1; // little endian
    bytes[6] = 1;
    let bad_elf = dir.0.join("bad-elf.so");
    std::fs::write(&bad_elf, &bytes).unwrap();
    let missing = dir.0.join("deleted.so");
    assert!(matches!(
        read_build_id(&garbage),
        Err(memtrace_symbolize::Error::Parse { .. })
    ));
    assert!(matches!(
        read_build_id(&missing),
        Err(memtrace_symbolize::Error::Io { .. })
    ));

    let mut s = Symbolizer::new(no_debug_dirs());
    let paths = [&garbage, &bad_elf, &missing];
    for (i, path) in paths.iter().enumerate() {
        let mut spec = fake_module(path.to_str().unwrap());
        spec.load_bias += i as u64 * 0x10_0000;
        s.add_module(spec);
    }
    for (i, path) in paths.iter().enumerate() {
        for offset in [0x10u64, 0x1234, 0x2fff] {
            let address = 0x7f00_0000_0000 + i as u64 * 0x10_0000 + offset;
            let loc = s.symbolize_return_address(address);
            assert_eq!(loc.module.as_deref(), path.to_str());
            assert_eq!(loc.module_offset, offset);
            assert_eq!(loc.frames.len(), 1);
            assert_eq!(loc.frames[0].file, None);
        }
    }
    // Outside the segments.
    assert_eq!(s.symbolize(0x7f00_0000_3000).module, None);
    // One warning per module at most (the bad ELF may parse as an empty one).
    assert!(
        s.warnings().len() >= 2 && s.warnings().len() <= 3,
        "{:?}",
        s.warnings()
    );
    assert!(s.warnings().iter().any(|w| w.contains("garbage.so")));
    assert!(s.warnings().iter().any(|w| w.contains("deleted.so")));
    assert_eq!(s.symbolize(0x7f00_0020_1000).frames, vec![Frame::default()]);
}

#[test]
fn modules_added_later_are_found() {
    let p = Program::build("later", false, C_PROGRAM, &["-O0", "-g"]);
    let mut s = Symbolizer::new(no_debug_dirs());
    let leaf = p.addr("leaf_function");
    assert_eq!(s.symbolize(leaf).module, None);
    s.add_module(p.main_module());
    assert_eq!(
        s.symbolize(leaf).frames,
        vec![p.frame("leaf_function", "leaf_decl", false)]
    );
}

#[test]
fn many_addresses_across_libc_and_the_program_are_named() {
    let p = Program::build("perf", false, C_PROGRAM, &["-O2", "-g"]);
    let mut s = p.symbolizer(Options::default());
    let libc = s.symbolize(p.addr("malloc")).module.unwrap();
    let main = p.main_module();
    let mut addresses = Vec::new();
    for spec in [&main, p.modules.iter().find(|m| m.path == libc).unwrap()] {
        let text = spec.segments.iter().find(|s| s.executable).unwrap();
        let start = spec.load_bias + text.vaddr;
        let count = if spec.path == libc { 90_000 } else { 10_000 };
        let step = (text.memsz / count).max(1);
        addresses.extend((0..count).map(|i| start + 1 + (i * step) % (text.memsz - 1)));
    }
    s.symbolize(p.addr("leaf_function"));
    let start = Instant::now();
    let mut named = 0;
    for &address in &addresses {
        let loc = s.symbolize_return_address(address);
        assert!(!loc.frames.is_empty());
        named += loc.frames.last().unwrap().function.is_some() as usize;
    }
    let elapsed = start.elapsed();
    eprintln!(
        "{} addresses in {elapsed:?}, {named} with a function name",
        addresses.len()
    );
    // Speed is printed, not asserted: tests are not timed (the machine is
    // shared); `memtrace report`'s time in `cargo xtask bench` covers it.
    assert!(named > addresses.len() / 2);
}
