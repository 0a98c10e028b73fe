//! One module per subcommand.

pub mod cache;
pub mod dump;
pub mod extent;
pub mod family;
pub mod flamegraph;
pub mod frag;
pub mod latency;
pub mod leaks;
pub mod list;
pub mod plot;
pub mod report;
pub mod run;
pub mod swap;
