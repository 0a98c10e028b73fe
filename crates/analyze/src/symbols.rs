//! Turns stack ids into readable frames, and finds each stack's call site.

use memtrace_format::{Module, StackId, StackTable};
use memtrace_symbolize::{ModuleSpec, Options, Segment, Symbolizer};
use rustc_hash::FxHashMap;
use serde::Serialize;

/// One symbolized frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// The return address (shared by a frame and the frames inlined into it).
    pub address: u64,
    /// Demangled function name.
    pub function: Option<String>,
    /// Source file.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
    /// The module (executable or library) path.
    pub module: Option<String>,
    /// The address relative to the module's load bias.
    pub module_offset: u64,
    /// True when the frame was inlined into the next one.
    pub inlined: bool,
    /// When the function's name came from a symbol table, not DWARF: the
    /// offset of the call into that symbol (see
    /// [`memtrace_symbolize::Frame::symbol_offset`]).
    pub symbol_offset: Option<u64>,
}

impl Frame {
    /// The frame's name: its function, else `module+0xOFFSET` (the
    /// module's file name and the address relative to its load bias),
    /// else `??` (an address in no module, such as JIT code).
    pub fn name(&self) -> String {
        match (&self.function, &self.module) {
            (Some(function), _) => function.clone(),
            (None, Some(module)) => format!("{}+{:#x}", file_name(module), self.module_offset),
            (None, None) => "??".to_string(),
        }
    }

    /// `function (file:line)`, else `function+0xOFFSET (module)` for a name
    /// from a symbol table, else `module+0xOFFSET (module path)`.
    pub fn describe(&self) -> String {
        let name = self.name();
        match (&self.file, self.line, &self.module) {
            (Some(file), Some(line), _) => format!("{name} ({file}:{line})"),
            (_, _, Some(module)) => match self.symbol_offset {
                Some(offset) if self.function.is_some() => {
                    format!("{name}+{offset:#x} ({module})")
                }
                _ => format!("{name} ({module})"),
            },
            _ => format!("{name} ({:#x})", self.address),
        }
    }

    /// `file:line` when both are known.
    pub fn file_line(&self) -> Option<String> {
        Some(format!("{}:{}", self.file.as_ref()?, self.line?))
    }

    /// True for frames of allocator wrappers and of the C, C++ and Rust
    /// runtimes (libc, the dynamic loader, libstdc++, libgcc, memtrace
    /// itself): the frames a reader skips to find who asked for memory.
    /// Other libraries are the program's code, wherever they are
    /// installed and whether or not they have debug information.
    pub fn is_internal(&self) -> bool {
        const FUNCTION_PREFIXES: &[&str] = &[
            "__rust_",
            "__rustc::",
            "__rg_",
            "__rdl_",
            "__rdl",
            "alloc::",
            "core::",
            "std::",
            "<alloc::",
            "<core::",
            "<std::",
            "memtrace_recorder::",
            "<memtrace_recorder::",
            "operator new",
            "operator delete",
            "__gnu_cxx::",
            "__cxx",
            "_Unwind",
            "__libc_",
            "hashbrown::",
            "<hashbrown::",
        ];
        // The allocator's own entry points, also when inlined into a caller
        // (ld.so's calloc wrapper, say).
        const ALLOCATOR_FUNCTIONS: &[&str] = &[
            "malloc",
            "calloc",
            "realloc",
            "reallocarray",
            "free",
            "posix_memalign",
            "aligned_alloc",
            "memalign",
            "valloc",
            "pvalloc",
            "strdup",
            "strndup",
        ];
        let function = self.function.as_deref().unwrap_or("");
        if FUNCTION_PREFIXES.iter().any(|p| function.starts_with(p))
            || ALLOCATOR_FUNCTIONS.contains(&function)
        {
            return true;
        }
        let file = self.file.as_deref().unwrap_or("");
        if file.starts_with("/usr/include/")
            || file.starts_with("/rustc/")
            || file.contains("/.cargo/registry/")
        {
            return true;
        }
        self.module.as_deref().is_some_and(is_runtime_module)
    }
}

/// The last component of a path.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether a module is a C or C++ runtime or memtrace's own library, by
/// its file name: glibc's libc (and the libraries merged into it since
/// 2.34), the dynamic loader, libstdc++, libgcc, LLVM's libc++ and
/// libc++abi, the preload library.
fn is_runtime_module(path: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "libc.so",
        "libc-2.",
        "libpthread.so",
        "libpthread-",
        "libdl.so",
        "librt.so",
        "ld-linux",
        "ld64.so",
        "ld.so",
        "libstdc++.so",
        "libgcc_s.so",
        "libc++.so",
        "libc++abi.so",
    ];
    let name = file_name(path);
    name.contains("memtrace_preload") || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Symbolizes the stacks of one trace, caching every address.
pub struct Symbols {
    symbolizer: Symbolizer,
    by_address: FxHashMap<u64, Vec<Frame>>,
}

impl Symbols {
    /// A symbolizer over the trace's modules.
    pub fn new(modules: &[Module]) -> Self {
        let mut symbolizer = Symbolizer::new(Options::default());
        for m in modules {
            symbolizer.add_module(ModuleSpec {
                path: m.path.clone(),
                build_id: m.build_id.clone(),
                load_bias: m.load_bias,
                segments: m
                    .segments
                    .iter()
                    .map(|s| Segment {
                        vaddr: s.vaddr,
                        memsz: s.memsz,
                        executable: s.flags & 1 != 0,
                    })
                    .collect(),
            });
        }
        Symbols {
            symbolizer,
            by_address: FxHashMap::default(),
        }
    }

    /// The frames of one return address, innermost (inlined) first.
    pub fn frames_at(&mut self, address: u64) -> &[Frame] {
        let symbolizer = &mut self.symbolizer;
        self.by_address.entry(address).or_insert_with(|| {
            let loc = symbolizer.symbolize_return_address(address);
            if loc.frames.is_empty() {
                return vec![Frame {
                    address,
                    function: None,
                    file: None,
                    line: None,
                    module: loc.module,
                    module_offset: loc.module_offset,
                    inlined: false,
                    symbol_offset: None,
                }];
            }
            loc.frames
                .into_iter()
                .map(|f| Frame {
                    address,
                    function: f.function,
                    file: f.file,
                    line: f.line,
                    module: loc.module.clone(),
                    module_offset: loc.module_offset,
                    inlined: f.inlined,
                    symbol_offset: f.symbol_offset,
                })
                .collect()
        })
    }

    /// Every frame of a stack, innermost first, inlined frames included.
    pub fn stack(&mut self, stacks: &StackTable, id: StackId) -> Vec<Frame> {
        let mut out = Vec::new();
        for address in stacks.frames(id) {
            out.extend_from_slice(self.frames_at(address));
        }
        out
    }

    /// The call site of a stack: its first frame that is not internal
    /// (see [`Frame::is_internal`]), else its innermost frame.
    pub fn site(&mut self, stacks: &StackTable, id: StackId) -> Frame {
        let frames = self.stack(stacks, id);
        frames
            .iter()
            .find(|f| !f.is_internal())
            .or(frames.first())
            .cloned()
            .unwrap_or(Frame {
                address: 0,
                function: Some("<no stack>".into()),
                file: None,
                line: None,
                module: None,
                module_offset: 0,
                inlined: false,
                symbol_offset: None,
            })
    }

    /// Problems met while symbolizing (missing files, build id mismatches).
    pub fn warnings(&self) -> &[String] {
        self.symbolizer.warnings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: Option<&str>, module: &str) -> Frame {
        Frame {
            address: 0x7f00_0001_2a18,
            function: function.map(str::to_string),
            file: None,
            line: None,
            module: Some(module.to_string()),
            module_offset: 0x12a18,
            inlined: false,
            symbol_offset: None,
        }
    }

    #[test]
    fn runtimes_and_allocator_wrappers_are_internal_other_libraries_are_not() {
        let internal = [
            frame(Some("__GI___strdup"), "/lib/x86_64-linux-gnu/libc.so.6"),
            frame(None, "/lib64/ld-linux-x86-64.so.2"),
            frame(Some("operator new(unsigned long)"), "/tmp/a"),
            frame(None, "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"),
            frame(None, "/lib/x86_64-linux-gnu/libgcc_s.so.1"),
            frame(Some("malloc"), "/tmp/a"),
            frame(None, "/home/u/.cache/memtrace/libmemtrace_preload-0123.so"),
            frame(Some("alloc::raw_vec::finish_grow"), "/tmp/a"),
        ];
        for f in &internal {
            assert!(f.is_internal(), "{f:?}");
        }
        let own = [
            frame(Some("jv_mem_alloc"), "/lib/x86_64-linux-gnu/libjq.so.1"),
            frame(None, "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0"),
            frame(None, "/usr/lib/gcc/x86_64-linux-gnu/12/cc1"),
            frame(None, "/usr/bin/git"),
            frame(
                Some("__gmp_default_allocate"),
                "/lib/x86_64-linux-gnu/libgmp.so.10",
            ),
        ];
        for f in &own {
            assert!(!f.is_internal(), "{f:?}");
        }
    }

    #[test]
    fn unnamed_frames_are_module_plus_offset() {
        let lib = "/lib/x86_64-linux-gnu/libjq.so.1";
        assert_eq!(frame(None, lib).name(), "libjq.so.1+0x12a18");
        assert_eq!(
            frame(None, lib).describe(),
            "libjq.so.1+0x12a18 (/lib/x86_64-linux-gnu/libjq.so.1)"
        );
        let mut named = frame(Some("jv_mem_alloc"), lib);
        named.symbol_offset = Some(0x1a);
        assert_eq!(named.name(), "jv_mem_alloc");
        assert_eq!(
            named.describe(),
            "jv_mem_alloc+0x1a (/lib/x86_64-linux-gnu/libjq.so.1)"
        );
        let mut nowhere = frame(None, lib);
        nowhere.module = None;
        assert_eq!(nowhere.name(), "??");
        assert_eq!(nowhere.describe(), "?? (0x7f0000012a18)");
    }
}
