//! The process tree: a root process and its descendants.
//!
//! The kernel lists a process's children only with `CONFIG_PROC_CHILDREN`,
//! so the tree is found from the parent pid in `/proc/PID/stat`. To keep a
//! tick cheap, only pids that were not in `/proc` at the previous tick are
//! read: a process outside the tree stays outside (parents never change to
//! a tree member), and a member stays a member while it lives, even when it
//! is orphaned and adopted by init. Members are held as `/proc/PID`
//! directory handles, so a reused pid is never mistaken for a member.

use std::collections::{BTreeMap, HashSet};

use procfs::process::Process;
use procfs::ProcResult;

/// The members of a tree, found incrementally.
pub(crate) struct ProcessTree {
    members: BTreeMap<i32, Process>,
    outsiders: HashSet<i32>,
}

impl ProcessTree {
    /// A tree rooted at `root`, whose other members are found by [`Self::refresh`].
    pub(crate) fn new(root: Process) -> ProcessTree {
        let mut members = BTreeMap::new();
        members.insert(root.pid, root);
        ProcessTree {
            members,
            outsiders: HashSet::new(),
        }
    }

    /// Adds the descendants that appeared since the last call and forgets
    /// the pids that are gone.
    pub(crate) fn refresh(&mut self) -> ProcResult<()> {
        let mut present = HashSet::with_capacity(self.outsiders.len() + self.members.len());
        let mut new: Vec<(i32, i32, Process)> = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let Some(pid) = entry?
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            present.insert(pid);
            if self.members.contains_key(&pid) || self.outsiders.contains(&pid) {
                continue;
            }
            // A process that is gone already, or that we may not read, is an outsider.
            let Ok(process) = Process::new(pid) else {
                continue;
            };
            match process.stat() {
                Ok(stat) => new.push((pid, stat.ppid, process)),
                Err(_) => {
                    self.outsiders.insert(pid);
                }
            }
        }
        self.outsiders.retain(|pid| present.contains(pid));
        // A new process may be the child of another new one: repeat until stable.
        loop {
            let before = new.len();
            let mut rest = Vec::with_capacity(new.len());
            for (pid, ppid, process) in new {
                if self.members.contains_key(&ppid) {
                    self.members.insert(pid, process);
                } else {
                    rest.push((pid, ppid, process));
                }
            }
            new = rest;
            if new.len() == before {
                break;
            }
        }
        self.outsiders
            .extend(new.into_iter().map(|(pid, _, _)| pid));
        Ok(())
    }

    /// The live members, in pid order.
    pub(crate) fn members(&self) -> impl Iterator<Item = &Process> {
        self.members.values()
    }

    /// Forgets a member that is gone.
    pub(crate) fn remove(&mut self, pid: i32) {
        self.members.remove(&pid);
    }
}
