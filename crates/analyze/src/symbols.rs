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
}

impl Frame {
    /// `function (file:line)`, or what is known of it.
    pub fn describe(&self) -> String {
        let function = self.function.as_deref().unwrap_or("??");
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{function} ({file}:{line})"),
            _ => match &self.module {
                Some(module) => format!("{function} ({module}+{:#x})", self.module_offset),
                None => format!("{function} ({:#x})", self.address),
            },
        }
    }

    /// `file:line` when both are known.
    pub fn file_line(&self) -> Option<String> {
        Some(format!("{}:{}", self.file.as_ref()?, self.line?))
    }

    /// True for frames of allocator wrappers, language runtimes and system
    /// libraries: the frames a reader skips to find who asked for memory.
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
        let module = self.module.as_deref().unwrap_or("");
        module.contains("memtrace_preload")
            || (self.file.is_none()
                && ["/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"]
                    .iter()
                    .any(|p| module.starts_with(p)))
    }
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
            })
    }

    /// Problems met while symbolizing (missing files, build id mismatches).
    pub fn warnings(&self) -> &[String] {
        self.symbolizer.warnings()
    }
}
