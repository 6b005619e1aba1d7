//! `roster`: the Roster daemon and its commands. The commands live in `cli/`, the daemon in the
//! `roster` library.

use std::io::IsTerminal as _;
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
    init_logging();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("roster: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // openraft narrates every election and heartbeat at info; its warnings are enough.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: a demo node's log is a file a user greps and reads.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
