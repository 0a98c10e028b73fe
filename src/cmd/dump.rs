//! `memtrace dump TRACE`: every record as a line of text, for debugging.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use memtrace_format::{Event, Func, Named};

use crate::cmd::extent::FollowArg;
use crate::progress::{self, QuietArg};

/// Arguments of `memtrace dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// How much of a trace still being written to read.
    #[command(flatten)]
    pub follow: FollowArg,
    /// Whether reading shows progress.
    #[command(flatten)]
    pub quiet: QuietArg,
}

/// Prints the header and every event in timestamp order.
pub fn dump(args: DumpArgs) -> Result<ExitCode> {
    let path = &args.trace;
    let mut reader = progress::open(path, args.follow.extent(), Named::ByUser)
        .with_context(|| format!("{}", path.display()))?;
    println!("{:?}", reader.header());
    while let Some(event) = reader
        .next_event()
        .with_context(|| format!("{}", path.display()))?
    {
        match event {
            Event::Heap { tid, event: e } => {
                let name = e.func().map_or("?", Func::name);
                println!(
                    "{} tid={tid} {name} addr={:#x} old={:#x} size={} usable={} align={} stack={} latency={}",
                    e.ts, e.addr, e.old_addr, e.size, e.usable, e.align, e.stack, e.latency
                );
            }
            other => println!("{} {other:?}", other.ts()),
        }
    }
    for (i, m) in reader.modules().iter().enumerate() {
        println!("module {i}: {} bias={:#x}", m.path, m.load_bias);
    }
    println!("end: {:?}", reader.completeness());
    Ok(ExitCode::SUCCESS)
}
