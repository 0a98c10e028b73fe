//! The memory-constrained run of the swap chart: a memory cgroup with a
//! 64 MiB limit and a temporary swap file, made for one run of
//! `memtrace swap` and removed after it, as the README's example does by
//! hand. Only root can make them; without root, a memory controller or a
//! swap file, [`Constrained::new`] says why in one line.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The memory limit of the cgroup.
pub const LIMIT_MIB: u64 = 64;
/// The size of the swap file.
const SWAP_MIB: u64 = 512;

/// A memory cgroup and a swap file, both removed on drop.
pub struct Constrained {
    /// The cgroup's directory, for `memtrace swap --cgroup`.
    pub cgroup: PathBuf,
    swapfile: PathBuf,
    swap_on: bool,
}

impl Constrained {
    /// Makes the cgroup (under v1's `memory` hierarchy, or cgroup v2) and
    /// enables a swap file in `dir`; the error is the reason it cannot.
    pub fn new(dir: &Path) -> Result<Constrained, String> {
        if !is_root() {
            return Err("not root: a memory cgroup and a swap file need root".into());
        }
        let (parent, limit_file) =
            if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
                (
                    PathBuf::from("/sys/fs/cgroup/memory"),
                    "memory.limit_in_bytes",
                )
            } else if std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"))
            {
                (PathBuf::from("/sys/fs/cgroup"), "memory.max")
            } else {
                return Err("no memory cgroup controller on this machine".into());
            };
        let cgroup = parent.join(format!("memtrace-report-{}", std::process::id()));
        std::fs::create_dir(&cgroup)
            .map_err(|e| format!("cannot make the cgroup {}: {e}", cgroup.display()))?;
        let mut made = Constrained {
            cgroup,
            swapfile: dir.join("report.swapfile"),
            swap_on: false,
        };
        let limit = made.cgroup.join(limit_file);
        std::fs::write(&limit, format!("{}\n", LIMIT_MIB << 20))
            .map_err(|e| format!("cannot set {}: {e}", limit.display()))?;
        let file = made.swapfile.display().to_string();
        run(&["fallocate", "-l", &format!("{SWAP_MIB}M"), &file])?;
        run(&["chmod", "600", &file])?;
        run(&["mkswap", &file])?;
        run(&["swapon", &file])?;
        made.swap_on = true;
        Ok(made)
    }
}

impl Drop for Constrained {
    fn drop(&mut self) {
        if self.swap_on {
            let _ = Command::new("swapoff").arg(&self.swapfile).status();
        }
        let _ = std::fs::remove_file(&self.swapfile);
        // The program has been reaped; the kernel may hold the cgroup a
        // moment longer while its charges move to the parent.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.cgroup).is_ok() || !self.cgroup.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!(
            "xtask: could not remove the cgroup {}",
            self.cgroup.display()
        );
    }
}

/// Whether this process runs as root: `/proc/self` belongs to the
/// process's effective user.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs a command, its failure as one line.
fn run(argv: &[&str]) -> Result<(), String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
