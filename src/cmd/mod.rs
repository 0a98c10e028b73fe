//! One module per subcommand.

pub mod dump;
pub mod frag;
pub mod report;
pub mod run;
