//! One module per subcommand.

pub mod dump;
pub mod flamegraph;
pub mod frag;
pub mod latency;
pub mod report;
pub mod run;
pub mod swap;
