//! `roster`: the Roster daemon and its commands. The commands live in `cli/`, the daemon in the
//! `roster` library.

use std::process::ExitCode;

use clap::Parser as _;

mod cli;

/// mimalloc instead of glibc's malloc: under load, allocation and free were about a sixth of
/// a pool node's CPU with glibc (perf), most of it in `_int_malloc`, `free` and
/// `malloc_consolidate`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::args::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("roster: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
