//! Suppressions in LeakSanitizer's format: one `leak:PATTERN` per line, `#`
//! starts a comment. A pattern matches a loss record when it matches the
//! function, the source file or the module of any frame of its stack: as a
//! substring, with `*` matching any run of characters, `^` anchoring the
//! start and `$` the end.

use std::fmt;

/// One frame of a stack, as text, for matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameText {
    /// Demangled function name, if known.
    pub function: Option<String>,
    /// Source file path, if known.
    pub file: Option<String>,
    /// Path of the module (executable or shared library).
    pub module: String,
}

/// One suppression rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// The pattern as written.
    pub pattern: String,
    /// Where it came from: `FILE:LINE`, or `built-in`.
    pub origin: String,
    /// Why (built-in rules say what they cover).
    pub reason: String,
}

/// A suppressions file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionError {
    /// `FILE:LINE`.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SuppressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

impl std::error::Error for SuppressionError {}

/// The built-in suppressions: one-time allocations of the C library and the
/// dynamic loader that a program cannot free. Each names what it covers;
/// the README lists them too. `--no-builtin-suppressions` turns them off.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "_dl_allocate_tls",
        "glibc: a thread's TLS vector, freed by the C library after the last exit handler",
    ),
    (
        "_dl_map_object",
        "the dynamic loader: names and link maps of loaded libraries, kept for the process's life",
    ),
    (
        "_dl_new_object",
        "the dynamic loader: link maps of loaded libraries, kept for the process's life",
    ),
    (
        "_dl_check_map_versions",
        "the dynamic loader: version tables of loaded libraries",
    ),
    (
        "_dl_find_object_update",
        "the dynamic loader: the table _dl_find_object searches, grown when more libraries are \
         loaded than its first segment holds, kept for the process's life; glibc aligns each \
         segment to 128 bytes and keeps the block's own address only inside it, so memcheck's \
         rule too calls it possibly lost",
    ),
    (
        "^_IO_file_doallocate",
        "glibc stdio: the buffer of a standard stream, freed only by __libc_freeres",
    ),
    (
        "^__gconv",
        "glibc iconv: converter tables loaded once and kept",
    ),
    (
        "^__nss_",
        "glibc NSS: name-service modules and their databases, loaded once and kept",
    ),
];

/// A set of suppressions.
#[derive(Debug, Clone, Default)]
pub struct Suppressions {
    rules: Vec<Suppression>,
}

impl Suppressions {
    /// The built-in rules only.
    pub fn builtin() -> Suppressions {
        Suppressions {
            rules: BUILTIN
                .iter()
                .map(|(pattern, reason)| Suppression {
                    pattern: (*pattern).to_string(),
                    origin: "built-in".into(),
                    reason: (*reason).to_string(),
                })
                .collect(),
        }
    }

    /// Adds the rules of a suppressions file; `name` is used in messages.
    pub fn add_file(&mut self, name: &str, text: &str) -> Result<(), SuppressionError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{name}:{}", i + 1);
            let Some((kind, pattern)) = line.split_once(':') else {
                return Err(SuppressionError {
                    at,
                    message: format!("expected `leak:PATTERN`, found `{line}`"),
                });
            };
            if kind.trim() != "leak" {
                return Err(SuppressionError {
                    at,
                    message: format!(
                        "unknown suppression type `{}` (only `leak` exists)",
                        kind.trim()
                    ),
                });
            }
            let pattern = pattern.trim();
            if pattern.is_empty() || pattern == "^" || pattern == "$" {
                return Err(SuppressionError {
                    at,
                    message: "empty pattern".into(),
                });
            }
            self.rules.push(Suppression {
                pattern: pattern.to_string(),
                origin: at,
                reason: String::new(),
            });
        }
        Ok(())
    }

    /// Every rule.
    pub fn rules(&self) -> &[Suppression] {
        &self.rules
    }

    /// The first rule that matches a frame of `stack`.
    pub fn matching(&self, stack: &[FrameText]) -> Option<&Suppression> {
        self.rules.iter().find(|rule| {
            stack.iter().any(|f| {
                f.function
                    .as_deref()
                    .is_some_and(|s| glob_match(&rule.pattern, s))
                    || f.file
                        .as_deref()
                        .is_some_and(|s| glob_match(&rule.pattern, s))
                    || glob_match(&rule.pattern, &f.module)
            })
        })
    }
}

/// LeakSanitizer's matching: `*` is any run, `^`/`$` anchor, else substring.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let anchored_start = pattern.starts_with('^');
    let anchored_end = pattern.ends_with('$') && pattern.len() > 1;
    let core = pattern.trim_start_matches('^');
    let core = if anchored_end {
        &core[..core.len() - 1]
    } else {
        core
    };
    let parts: Vec<&str> = core.split('*').collect();
    let mut pos = 0usize;
    for (k, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        let last = k == parts.len() - 1;
        let found = if k == 0 && anchored_start {
            text.starts_with(part).then_some(0)
        } else if last && anchored_end {
            let at = text.len().checked_sub(part.len());
            at.filter(|&at| at >= pos && text[at..] == **part)
        } else {
            text[pos..].find(part).map(|i| i + pos)
        };
        let Some(at) = found else { return false };
        pos = at + part.len();
    }
    if anchored_end && parts.last().is_some_and(|p| p.is_empty()) {
        return true;
    }
    !anchored_end || pos == text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_leaksanitizer() {
        assert!(glob_match("drop_blocks", "drop_blocks"));
        assert!(glob_match("blocks", "drop_blocks"));
        assert!(glob_match("^drop", "drop_blocks"));
        assert!(!glob_match("^blocks", "drop_blocks"));
        assert!(glob_match("blocks$", "drop_blocks"));
        assert!(!glob_match("drop$", "drop_blocks"));
        assert!(glob_match("d*p_b*s", "drop_blocks"));
        assert!(glob_match("^d*s$", "drop_blocks"));
        assert!(!glob_match("^x*s$", "drop_blocks"));
        assert!(glob_match("libfoo.so", "/usr/lib/libfoo.so.1"));
    }

    #[test]
    fn a_file_is_parsed_and_bad_lines_are_named() {
        let mut s = Suppressions::default();
        s.add_file("s.txt", "# comment\n\nleak:drop_tree\nleak: ^main$ \n")
            .unwrap();
        let patterns: Vec<&str> = s.rules().iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(patterns, vec!["drop_tree", "^main$"]);
        assert_eq!(s.rules()[1].origin, "s.txt:4");
        let err = s.add_file("t.txt", "leak:a\nrace:b\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.txt:2: unknown suppression type `race` (only `leak` exists)"
        );
        let err = s.add_file("u.txt", "nonsense\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "u.txt:1: expected `leak:PATTERN`, found `nonsense`"
        );
    }

    #[test]
    fn a_rule_matches_function_file_or_module_of_any_frame() {
        let mut s = Suppressions::default();
        s.add_file("s", "leak:helpers.c\n").unwrap();
        let frame = |f: &str, file: &str| FrameText {
            function: Some(f.into()),
            file: Some(file.into()),
            module: "/bin/prog".into(),
        };
        assert!(s
            .matching(&[frame("a", "x.c"), frame("b", "/src/helpers.c")])
            .is_some());
        assert!(s.matching(&[frame("a", "x.c")]).is_none());
    }
}
