//! The async runtime a command runs on, and the termination signals that stop it.

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

/// The async runtime a long-running command runs on.
pub enum Runtime {
    /// Worker threads: the given number, default one per CPU.
    MultiThread(Option<usize>),
    /// Everything on the calling thread.
    CurrentThread,
}

/// Runs `job` on `runtime` until it ends; a termination signal (SIGINT, SIGTERM) cancels the
/// token `job` gets.
pub fn serve<F, Fut>(runtime: Runtime, job: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = build(runtime)?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal_shutdown = shutdown.clone();
        tokio::spawn(async move {
            termination_signal().await;
            signal_shutdown.cancel();
        });
        job(shutdown).await
    })
}

/// Runs `job` to its end on the calling thread (short commands: status, admin calls).
pub fn block_on<Fut: std::future::Future>(job: Fut) -> anyhow::Result<Fut::Output> {
    Ok(build(Runtime::CurrentThread)?.block_on(job))
}

fn build(runtime: Runtime) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match runtime {
        Runtime::MultiThread(worker_threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = worker_threads {
                builder.worker_threads(threads);
            }
            builder
        }
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves when the process gets SIGINT or SIGTERM.
async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate.recv() => {}
    }
}
