//! Looks at a program before running it: can `LD_PRELOAD` reach it?

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use goblin::elf::{program_header::PT_INTERP, Elf};
use nix::unistd::{getegid, geteuid};

/// Finds `program` the way `execvp` would.
pub fn resolve(program: &str) -> Result<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        if !p.exists() {
            bail!("cannot run {program}: no such file");
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate
            .metadata()
            .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        {
            return Ok(candidate);
        }
    }
    bail!("cannot run {program}: not found in PATH")
}

/// Checks that the program (or a script's interpreter) is a dynamically
/// linked ELF file that the loader will preload into.
pub fn check(path: &Path) -> Result<()> {
    check_depth(path, 0)
}

fn check_depth(path: &Path, depth: usize) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let meta = std::fs::metadata(path)?;
    if bytes.starts_with(b"#!") && depth < 4 {
        let line = bytes[2..].split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let Some(interpreter) = line.split_whitespace().next() else {
            bail!("{}: empty #! line", path.display());
        };
        return check_depth(&resolve(interpreter)?, depth + 1);
    }
    let elf = match Elf::parse(&bytes) {
        Ok(elf) => elf,
        Err(_) => bail!("{} is not an ELF executable or a #! script", path.display()),
    };
    let (euid, egid) = (geteuid().as_raw(), getegid().as_raw());
    if (meta.mode() & 0o4000 != 0 && meta.uid() != euid)
        || (meta.mode() & 0o2000 != 0 && meta.gid() != egid)
    {
        bail!(
            "{} is setuid/setgid: the loader ignores LD_PRELOAD for it; run a copy without the bit, \
             or link the memtrace-recorder tracking allocator into it",
            path.display()
        );
    }
    let dynamic = elf.program_headers.iter().any(|ph| ph.p_type == PT_INTERP);
    if !dynamic {
        bail!(
            "{} is statically linked: LD_PRELOAD cannot trace it; link the memtrace-recorder \
             tracking allocator (Rust) into it instead",
            path.display()
        );
    }
    Ok(())
}
