//! The `orgate` binary: parse the command line and hand it to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    orgate::cli::run(orgate::cli::Cli::parse())
}
