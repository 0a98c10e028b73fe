//! GitHub Actions workflow commands: an annotation per finding at its
//! allocation site.

use std::fmt::Write as _;

use super::{headline, relative, CiOptions, Finding, SourceFrame};

/// Escapes a workflow-command property or message (GitHub's rules).
fn escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

/// GitHub Actions annotations: `::error` for `options.fail_on` classes,
/// `::notice` for the others, at the allocation site, the stack in the
/// message; first an `::error` without a file when the scan is incomplete
/// (`incomplete` says why).
pub fn github<F: SourceFrame>(
    findings: &[Finding<'_, F>],
    incomplete: Option<&str>,
    options: &CiOptions<'_>,
) -> String {
    let CiOptions { fail_on, root, .. } = *options;
    let mut out = String::new();
    if let Some(why) = incomplete {
        let _ = writeln!(
            out,
            "::error title={}::{}",
            escape("memtrace: leak scan incomplete", true),
            escape(&format!("leak scan incomplete: {why}"), false)
        );
    }
    for r in findings {
        let level = if fail_on.contains(&r.class) {
            "error"
        } else {
            "notice"
        };
        let mut props = Vec::new();
        if let Some(file) = r.site.file() {
            props.push(format!("file={}", escape(&relative(file, root), true)));
            if let Some(line) = r.site.line().filter(|&l| l > 0) {
                props.push(format!("line={line}"));
            }
        }
        props.push(format!(
            "title={}",
            escape(&format!("memtrace: {}", r.class.phrase()), true)
        ));
        let mut message = headline(r);
        for f in r.stack.iter().take(8) {
            let _ = write!(message, "\n  at {}", f.describe());
        }
        let _ = writeln!(
            out,
            "::{level} {}::{}",
            props.join(","),
            escape(&message, false)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_escapes_follow_github() {
        assert_eq!(escape("50% a:b,c\nd", false), "50%25 a:b,c%0Ad");
        assert_eq!(escape("50% a:b,c\nd", true), "50%25 a%3Ab%2Cc%0Ad");
    }
}
