//! `--follow[=SECS]`, shared by the commands that read a trace: how much of
//! a trace that may still be growing they read.
//!
//! Without it a command reads the trace as long as it was when the command
//! started, so a file that someone keeps writing cannot keep it reading
//! (a trace still being recorded reads as "no trailer"). With it the
//! command waits for the trailer while the file grows, and takes the end
//! of the file as the end once it has not grown for SECS seconds.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use memtrace_format::{Extent, Named};

use crate::progress;

/// The `--follow` option.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct FollowArg {
    /// Read a trace that is still being written until its trailer, waiting
    /// while the file grows; stop when it has not grown for SECS seconds
    /// (default 10). Without it, the trace is read as long as it was when
    /// the command started.
    #[arg(
        long,
        value_name = "SECS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "10"
    )]
    pub follow: Option<u64>,
}

impl FollowArg {
    /// The extent of a command that reads `trace` once.
    pub fn extent(self) -> Extent {
        match self.follow {
            Some(secs) => Extent::Follow {
                idle: Duration::from_secs(secs),
            },
            None => Extent::AsOpened,
        }
    }

    /// The extent of a command that reads `trace` several times: every
    /// pass reads the same bytes. Without `--follow`, the length the file
    /// has now; with it, the bytes a follower read up to the trailer (or
    /// until the file stopped growing).
    pub fn pinned(self, trace: &Path) -> Result<Extent> {
        let context = || format!("{}", trace.display());
        if self.follow.is_none() {
            let meta = std::fs::metadata(trace).with_context(context)?;
            // A pipe has no length: it can be read once, to its end.
            return Ok(if meta.is_file() {
                Extent::Bytes(meta.len())
            } else {
                Extent::AsOpened
            });
        }
        let mut reader =
            progress::open(trace, self.extent(), Named::ByUser).with_context(context)?;
        reader.skip_to_end().with_context(context)?;
        Ok(Extent::Bytes(progress::file_position(&reader)))
    }
}
