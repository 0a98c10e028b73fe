//! Reads every source at one tick: the process tree, the system, the cgroup.

use std::fmt;
use std::time::Instant;

use procfs::process::{Process, Stat};
use procfs::{Current, ProcError};

use crate::cgroup::{Cgroup, Mounts};
use crate::tree::ProcessTree;
use crate::Sample;

/// Why a process cannot be monitored.
#[derive(Debug)]
pub enum Error {
    /// No process has this pid.
    NoProcess(i32),
    /// The process exists but this user may not read its `/proc` files.
    NotPermitted(i32),
    /// Reading `/proc` failed otherwise.
    Proc(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoProcess(pid) => write!(f, "no process with pid {pid}"),
            Error::NotPermitted(pid) => write!(
                f,
                "may not read process {pid}: permission denied on /proc/{pid} (run as its user or as root)"
            ),
            Error::Proc(e) => write!(f, "cannot read /proc: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    fn of(pid: i32, e: ProcError) -> Error {
        match e {
            ProcError::NotFound(_) => Error::NoProcess(pid),
            ProcError::PermissionDenied(_) => Error::NotPermitted(pid),
            e => Error::Proc(e.to_string()),
        }
    }
}

/// The first sample of a program that memtrace starts, read before it
/// starts: the system's counters and those of the memory cgroup it will run
/// in, with its own counters at zero. Counting from here, nothing the
/// program does between its start and the first tick is missed.
pub struct Baseline {
    sample: Sample,
    mounts: Mounts,
    cgroup: Option<Cgroup>,
    start: Instant,
}

impl Baseline {
    /// Reads the system now, and the memory cgroup at `cgroup_dir` (where the
    /// program will move itself), or this process's own, which a child
    /// inherits, when `None`.
    pub fn take(cgroup_dir: Option<&std::path::Path>) -> Baseline {
        let start = Instant::now();
        let mounts = Mounts::current();
        let cgroup = match cgroup_dir {
            Some(dir) => mounts.cgroup_at(dir),
            None => mounts.cgroup_of(std::process::id() as i32),
        };
        let mut sample = Sample::default();
        sample_system(&mut sample);
        if let Some(cgroup) = &cgroup {
            cgroup.read_into(&mut sample);
        }
        Baseline {
            sample,
            mounts,
            cgroup,
            start,
        }
    }

    /// The sample taken: `t_ms` 0, the program's own counters 0.
    pub fn sample(&self) -> &Sample {
        &self.sample
    }
}

/// Samples one process tree, the system and the tree's memory cgroup.
pub struct Sampler {
    root: i32,
    tree: ProcessTree,
    mounts: Mounts,
    cgroup: Option<Cgroup>,
    start: Instant,
}

impl Sampler {
    /// Starts monitoring process `pid` and its descendants; fails if the
    /// process does not exist or its `/proc` files cannot be read.
    pub fn attach(pid: i32) -> Result<Sampler, Error> {
        if pid <= 0 {
            return Err(Error::NoProcess(pid));
        }
        let process = Process::new(pid).map_err(|e| Error::of(pid, e))?;
        process.stat().map_err(|e| Error::of(pid, e))?;
        process.status().map_err(|e| Error::of(pid, e))?;
        let mounts = Mounts::current();
        let cgroup = mounts.cgroup_of(pid);
        Ok(Sampler {
            root: pid,
            tree: ProcessTree::new(process),
            mounts,
            cgroup,
            start: Instant::now(),
        })
    }

    /// Starts monitoring process `pid`, started after `baseline` was taken:
    /// times count from the baseline, and the cgroup is the baseline's until
    /// the process is seen in one of its own.
    pub fn attach_after(baseline: Baseline, pid: i32) -> Result<Sampler, Error> {
        let mut sampler = Sampler::attach(pid)?;
        sampler.start = baseline.start;
        sampler.mounts = baseline.mounts;
        if baseline.cgroup.is_some() {
            sampler.cgroup = baseline.cgroup;
        }
        Ok(sampler)
    }

    /// The memory cgroup of the root process, as of the last sample.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Whether the root process still runs (neither gone nor a zombie).
    pub fn root_alive(&self) -> bool {
        self.tree
            .members()
            .find(|p| p.pid == self.root)
            .and_then(|p| p.stat().ok())
            .is_some_and(|s| s.state != 'Z' && s.state != 'X')
    }

    /// Reads everything now.
    pub fn sample(&mut self) -> Sample {
        let mut sample = Sample {
            t_ms: self.start.elapsed().as_millis() as u64,
            ..Sample::default()
        };
        let _ = self.tree.refresh();
        let root_alive = self.sample_tree(&mut sample);
        sample_system(&mut sample);
        // The process may move; but an exiting process is moved to the root
        // cgroup before it becomes a zombie: keep the cgroup it ran in.
        if root_alive {
            if let Some(cgroup) = self.mounts.cgroup_of(self.root) {
                if !cgroup.is_root || self.cgroup.as_ref().is_none_or(|c| c.is_root) {
                    self.cgroup = Some(cgroup);
                }
            }
        }
        if let Some(cgroup) = &self.cgroup {
            cgroup.read_into(&mut sample);
        }
        sample
    }

    /// Adds up the tree's processes; returns whether the root still runs.
    fn sample_tree(&mut self, sample: &mut Sample) -> bool {
        let mut root_alive = false;
        let mut gone = Vec::new();
        for process in self.tree.members() {
            let stat: Stat = match process.stat() {
                Ok(stat) => stat,
                Err(_) => {
                    gone.push(process.pid);
                    continue;
                }
            };
            if process.pid == self.root {
                root_alive = stat.state != 'Z' && stat.state != 'X';
            }
            sample.n_procs += 1;
            sample.minflt += stat.minflt + stat.cminflt;
            sample.majflt += stat.majflt + stat.cmajflt;
            // A zombie has no memory lines: those stay zero.
            if let Ok(status) = process.status() {
                sample.rss_anon_kib += status.rssanon.unwrap_or(0);
                sample.rss_file_kib += status.rssfile.unwrap_or(0);
                sample.rss_shmem_kib += status.rssshmem.unwrap_or(0);
                sample.swap_kib += status.vmswap.unwrap_or(0);
            }
        }
        for pid in gone {
            self.tree.remove(pid);
        }
        root_alive
    }
}

/// Fills the `sys_*`, `mem_*`, `swap_*` and `psi_*` fields.
fn sample_system(sample: &mut Sample) {
    crate::vmstat::read_into(sample);
    if let Ok(meminfo) = procfs::Meminfo::current() {
        sample.mem_free_kib = meminfo.mem_free / 1024;
        sample.mem_available_kib = meminfo.mem_available.unwrap_or(0) / 1024;
        sample.swap_total_kib = meminfo.swap_total / 1024;
        sample.swap_free_kib = meminfo.swap_free / 1024;
    }
    if let Ok(psi) = procfs::MemoryPressure::current() {
        // avg10 has two decimals in the file; f32 to f64 would add noise digits.
        let exact = |v: f32| (f64::from(v) * 100.0).round() / 100.0;
        sample.psi_some_avg10 = Some(exact(psi.some.avg10));
        sample.psi_full_avg10 = Some(exact(psi.full.avg10));
        sample.psi_some_us = Some(psi.some.total);
        sample.psi_full_us = Some(psi.full.total);
    }
}
