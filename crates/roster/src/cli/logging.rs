//! The log a command writes to standard error: text (colours only on a terminal, so a node's
//! log file holds no escape codes) or JSON lines (`--log-format json`, `[node] log_format`).

use std::io::IsTerminal as _;

use roster::config::LogFormat;

/// Installs the process's log subscriber. `RUST_LOG` filters as usual; by default openraft
/// says only its warnings (it narrates every election and heartbeat at info).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: a second subscriber (never in the binary) would only be refused.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // Every line one object: the event's fields, and the spans it is in (a request's node,
        // AOR, group, pool and epoch) with theirs.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}
