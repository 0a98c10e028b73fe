//! `--follow[=SECS]`, shared by the commands that read a trace: how much of
//! a trace that may still be growing they read.
//!
//! Without it a command reads the trace as long as it was when the command
//! started, so a file that someone keeps writing cannot keep it reading
//! (a trace still being recorded reads as "no trailer"). With it the
//! command waits for the trailer while the file grows, and takes the end
//! of the file as the end once it has not grown for SECS seconds.

use std::time::Duration;

use clap::Args;
use memtrace_format::Extent;

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
}
