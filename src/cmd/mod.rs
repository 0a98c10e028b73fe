//! One module per subcommand.

pub mod dump;
pub mod report;
pub mod run;
