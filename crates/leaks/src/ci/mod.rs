//! Leak reports for CI: SARIF 2.1.0 ([`sarif`]) and GitHub Actions
//! annotations ([`github`]).
//!
//! The writers take the unsuppressed loss records as [`Finding`]s, whose
//! frames are anything that implements [`SourceFrame`] (this crate does
//! not symbolize: `memtrace_analyze` implements it for its frames). Source
//! paths are made relative to a source root; a path that reaches the root
//! through a symbolic link is resolved on the file system to find out.
//!
//! ```
//! use std::path::Path;
//! use memtrace_leaks::ci::{github, CiOptions, Finding, SourceFrame};
//! use memtrace_leaks::LeakClass;
//!
//! struct Line(&'static str, u32);
//! impl SourceFrame for Line {
//!     fn function(&self) -> Option<&str> { Some("make") }
//!     fn file(&self) -> Option<&str> { Some(self.0) }
//!     fn line(&self) -> Option<u32> { Some(self.1) }
//!     fn module(&self) -> Option<&str> { None }
//!     fn describe(&self) -> String { format!("make ({}:{})", self.0, self.1) }
//! }
//! let site = Line("/src/a.c", 7);
//! let finding = Finding {
//!     class: LeakClass::Definite,
//!     blocks: 1,
//!     bytes: 16,
//!     indirect_bytes: 0,
//!     site: &site,
//!     stack: std::slice::from_ref(&site),
//! };
//! let options = CiOptions { fail_on: &[LeakClass::Definite], root: Path::new("/src"), tool_version: "1.0" };
//! let text = github(&[finding], None, &options);
//! assert!(text.starts_with("::error file=a.c,line=7,title=memtrace%3A definitely lost::16 bytes"));
//! ```

use std::path::Path;

use crate::LeakClass;

mod github;
mod sarif;

pub use github::github;
pub use sarif::sarif;

/// One frame of a stack, as the CI formats show it.
pub trait SourceFrame {
    /// The demangled function name, if known.
    fn function(&self) -> Option<&str>;
    /// The source file, if known.
    fn file(&self) -> Option<&str>;
    /// The source line, if known (0 is taken as unknown).
    fn line(&self) -> Option<u32>;
    /// The path of the module (executable or library), if known.
    fn module(&self) -> Option<&str>;
    /// The frame in words for a message: `function (file:line)`, ...
    fn describe(&self) -> String;
}

/// One unsuppressed loss record.
#[derive(Debug)]
pub struct Finding<'a, F> {
    /// Its class.
    pub class: LeakClass,
    /// Number of blocks.
    pub blocks: u64,
    /// Their requested bytes.
    pub bytes: u64,
    /// Bytes of indirectly lost blocks reached only from these.
    pub indirect_bytes: u64,
    /// The allocation site.
    pub site: &'a F,
    /// The allocation stack, innermost first.
    pub stack: &'a [F],
}

// Derived Clone/Copy would ask `F: Clone`; only references are copied.
impl<F> Clone for Finding<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for Finding<'_, F> {}

/// How the CI formats judge and place the findings.
#[derive(Debug, Clone, Copy)]
pub struct CiOptions<'a> {
    /// Classes that are errors; the others are notes (notices).
    pub fail_on: &'a [LeakClass],
    /// Source paths under this directory are written relative to it.
    pub root: &'a Path,
    /// The version of the tool, for SARIF's `tool.driver.version`.
    pub tool_version: &'a str,
}

/// "248 bytes in 5 blocks are definitely lost" (with the indirect part).
pub fn headline<F>(r: &Finding<'_, F>) -> String {
    let s = if r.blocks == 1 { "" } else { "s" };
    if r.indirect_bytes > 0 {
        format!(
            "{} ({} direct, {} indirect) bytes in {} block{s} are {}",
            r.bytes + r.indirect_bytes,
            r.bytes,
            r.indirect_bytes,
            r.blocks,
            r.class.phrase()
        )
    } else {
        format!(
            "{} bytes in {} block{s} are {}",
            r.bytes,
            r.blocks,
            r.class.phrase()
        )
    }
}

/// `path` relative to `root` when it lies under it (also when one of them
/// reaches the other through a symbolic link), else `path` unchanged.
fn relative(path: &str, root: &Path) -> String {
    under_root(path, root).unwrap_or_else(|| path.to_string())
}

/// `path` relative to `root`, if it lies under it.
fn under_root(path: &str, root: &Path) -> Option<String> {
    let path = Path::new(path);
    if let Ok(p) = path.strip_prefix(root) {
        return Some(p.display().to_string());
    }
    let (path, root) = (path.canonicalize().ok()?, root.canonicalize().ok()?);
    path.strip_prefix(root)
        .ok()
        .map(|p| p.display().to_string())
}
