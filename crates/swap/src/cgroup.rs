//! The memory cgroup that holds a process, v1 or v2, and what it says.

use std::path::{Path, PathBuf};

use procfs::process::{MountInfos, Process};
use procfs::FromRead;

use crate::Sample;

/// A limit of v1 at or above this is "no limit" (the kernel writes
/// `PAGE_COUNTER_MAX` pages rounded down, near 2^63).
const V1_UNLIMITED: u64 = 1 << 62;

/// The cgroup interface version of a memory cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The v1 `memory` controller hierarchy.
    V1,
    /// The unified v2 hierarchy.
    V2,
}

/// Where the memory controller's hierarchies are mounted.
#[derive(Clone, Debug, Default)]
pub struct Mounts {
    v1: Option<(PathBuf, PathBuf)>,
    v2: Option<(PathBuf, PathBuf)>,
}

impl Mounts {
    /// Reads this process's mount table.
    pub fn current() -> Mounts {
        match Process::myself().and_then(|p| p.mountinfo()) {
            Ok(infos) => Mounts::from_mountinfo(&infos),
            Err(_) => Mounts::default(),
        }
    }

    /// The `memory` v1 mount and the v2 mount of a mount table, each as
    /// (mount point, hierarchy root).
    pub fn from_mountinfo(infos: &MountInfos) -> Mounts {
        let mut mounts = Mounts::default();
        for m in infos {
            let entry = (m.mount_point.clone(), PathBuf::from(&m.root));
            if m.fs_type == "cgroup" && m.super_options.contains_key("memory") {
                mounts.v1.get_or_insert(entry);
            } else if m.fs_type == "cgroup2" {
                mounts.v2.get_or_insert(entry);
            }
        }
        mounts
    }

    /// The memory cgroup of process `pid`, if it has one this process can see:
    /// v1 where a v1 memory controller is mounted, else v2 where the
    /// cgroup has memory files.
    pub fn cgroup_of(&self, pid: i32) -> Option<Cgroup> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        for line in text.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let (mount, version, probe) = if controllers.split(',').any(|c| c == "memory") {
                (self.v1.as_ref(), Version::V1, "memory.usage_in_bytes")
            } else if controllers.is_empty() && self.v1.is_none() {
                (self.v2.as_ref(), Version::V2, "memory.current")
            } else {
                continue;
            };
            let Some((mount_point, root)) = mount else {
                continue;
            };
            let path = Path::new(path);
            let relative = path
                .strip_prefix(root)
                .or_else(|_| path.strip_prefix("/"))
                .unwrap_or(path);
            let dir = mount_point.join(relative);
            if dir.join(probe).exists() {
                let is_root = relative.as_os_str().is_empty();
                return Some(Cgroup {
                    version,
                    dir,
                    is_root,
                });
            }
        }
        None
    }
}

impl Mounts {
    /// The memory cgroup whose directory is `dir`, if it is one: v1 where a
    /// v1 memory controller is mounted, else v2.
    pub fn cgroup_at(&self, dir: &Path) -> Option<Cgroup> {
        let (mount, version, probe) = match &self.v1 {
            Some(v1) => (v1, Version::V1, "memory.usage_in_bytes"),
            None => (self.v2.as_ref()?, Version::V2, "memory.current"),
        };
        let dir = dir.canonicalize().ok()?;
        let is_root = dir.strip_prefix(&mount.0).ok()?.as_os_str().is_empty();
        dir.join(probe).exists().then_some(Cgroup {
            version,
            is_root,
            dir,
        })
    }
}

/// One memory cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// v1 or v2.
    pub version: Version,
    /// Its directory, e.g. `/sys/fs/cgroup/memory/job`.
    pub dir: PathBuf,
    /// Whether it is the root of its hierarchy (where an exiting process goes).
    pub is_root: bool,
}

impl Cgroup {
    /// Fills the `cg_*` fields of `sample`; a file that cannot be read leaves
    /// its field `None`.
    pub fn read_into(&self, sample: &mut Sample) {
        let stat = self.read("memory.stat").unwrap_or_default();
        let stat_value = |key: &str| keyed(&stat, key);
        match self.version {
            Version::V1 => {
                sample.cg_usage_bytes = self.read_u64("memory.usage_in_bytes");
                sample.cg_limit_bytes = self
                    .read_u64("memory.limit_in_bytes")
                    .filter(|&l| l < V1_UNLIMITED);
                sample.cg_swap_bytes = stat_value("total_swap").or_else(|| stat_value("swap"));
                // A charge that fails on the memory+swap limit does not try
                // the memory limit: the two counts add up.
                sample.cg_limit_hits = self
                    .read_u64("memory.failcnt")
                    .map(|hits| hits + self.read_u64("memory.memsw.failcnt").unwrap_or(0));
                sample.cg_oom_kills = self
                    .read("memory.oom_control")
                    .and_then(|t| keyed(&t, "oom_kill"));
                sample.cg_refault = sum2(
                    stat_value("total_workingset_refault_anon"),
                    stat_value("total_workingset_refault_file"),
                )
                .or_else(|| {
                    sum2(
                        stat_value("workingset_refault_anon"),
                        stat_value("workingset_refault_file"),
                    )
                });
                sample.cg_majflt =
                    stat_value("total_pgmajfault").or_else(|| stat_value("pgmajfault"));
                sample.cg_psi_some_us = None;
                sample.cg_psi_full_us = None;
            }
            Version::V2 => {
                sample.cg_usage_bytes = self.read_u64("memory.current");
                sample.cg_limit_bytes = self.read_u64("memory.max");
                sample.cg_swap_bytes = self.read_u64("memory.swap.current");
                let events = self.read("memory.events").unwrap_or_default();
                sample.cg_limit_hits = keyed(&events, "max");
                sample.cg_oom_kills = keyed(&events, "oom_kill");
                sample.cg_refault = sum2(
                    stat_value("workingset_refault_anon"),
                    stat_value("workingset_refault_file"),
                );
                sample.cg_majflt = stat_value("pgmajfault");
                let pressure =
                    procfs::MemoryPressure::from_file(self.dir.join("memory.pressure")).ok();
                sample.cg_psi_some_us = pressure.as_ref().map(|p| p.some.total);
                sample.cg_psi_full_us = pressure.as_ref().map(|p| p.full.total);
            }
        }
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(file)).ok()
    }

    /// A file holding one number; `max` (v2's "no limit") is `None`.
    fn read_u64(&self, file: &str) -> Option<u64> {
        self.read(file)?.trim().parse().ok()
    }
}

/// The value of `key` in "key value" lines.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn sum2(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a? + b?)
}

#[cfg(test)]
mod tests {
    use super::{keyed, Mounts, Version};
    use std::path::PathBuf;

    #[test]
    fn a_cgroup_is_found_by_its_directory_under_the_mount() {
        let root = std::env::temp_dir().join(format!("memtrace-cgroup-at-{}", std::process::id()));
        let job = root.join("job");
        let plain = root.join("plain");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(root.join("memory.current"), "0").unwrap();
        std::fs::write(job.join("memory.current"), "0").unwrap();
        let v2 = Mounts {
            v1: None,
            v2: Some((root.canonicalize().unwrap(), PathBuf::from("/"))),
        };
        let found = v2.cgroup_at(&job).unwrap();
        assert_eq!(
            (found.version, found.is_root, found.dir),
            (Version::V2, false, job.canonicalize().unwrap())
        );
        assert!(v2.cgroup_at(&root).unwrap().is_root);
        assert_eq!(v2.cgroup_at(&plain), None, "no memory files");
        assert_eq!(v2.cgroup_at(&root.join("missing")), None);
        assert_eq!(
            v2.cgroup_at(&std::env::temp_dir()),
            None,
            "outside the mount"
        );
        assert_eq!(Mounts::default().cgroup_at(&job), None, "nothing mounted");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn keyed_finds_exact_keys_only() {
        let text = "swap 10\ntotal_swap 30\nworkingset_refault_anon 7\n";
        assert_eq!(keyed(text, "swap"), Some(10));
        assert_eq!(keyed(text, "total_swap"), Some(30));
        assert_eq!(keyed(text, "workingset_refault_file"), None);
    }
}
