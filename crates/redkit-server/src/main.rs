//! The `redkit` binary: parses flags and environment at the edge, then runs
//! the reference service until SIGINT or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use redkit::Redkit;
use redkit::config::RedisConfig;
use redkit_server::cli::{Cli, Command, QueueArgs};
use redkit_server::{AppState, ServerError, ServiceConfig, install_metrics_recorder};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Queue(args)) = &cli.command {
        // Logs to stderr, so stdout is only the command's output.
        tracing_subscriber::fmt()
            .with_env_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .init();
        return queue_command(args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = cli.serve_args();
    // Configuration errors stop the program before anything is served.
    let configs = RedisConfig::from_env().and_then(|redis| Ok((redis, args.service_config()?)));
    let (redis, service) = match configs {
        Ok(configs) => configs,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args.listen, redis, service)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", redkit_server::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// `redkit queue …`: against the Redis of the `REDIS_*` variables.
fn queue_command(args: &QueueArgs) -> ExitCode {
    let redis = match RedisConfig::from_env() {
        Ok(redis) if redis.enabled => redis,
        Ok(_) => {
            eprintln!(
                "error: redkit queue needs Redis (set REDIS_URL or REDIS_HOST); without it, queues live inside the service process"
            );
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let wait = redis.connect_timeout.max(std::time::Duration::from_secs(2));
    let result = tokio::runtime::Runtime::new()
        .map_err(|error| format!("cannot start the async runtime: {error}"))
        .and_then(|runtime| {
            runtime.block_on(async {
                let kit = Redkit::builder()
                    .redis(redis)
                    .build()
                    .map_err(|error| redkit_server::error_chain(&error))?;
                if let Some(connection) = kit.connection() {
                    connection
                        .wait_ready(wait)
                        .await
                        .map_err(|error| redkit_server::error_chain(&error))?;
                }
                let output = redkit_server::queue_admin::run(&kit, &args.command)
                    .await
                    .map_err(|error| redkit_server::error_chain(&error));
                kit.shutdown().await;
                output
            })
        });
    match result {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    listen: std::net::SocketAddr,
    redis: RedisConfig,
    service: ServiceConfig,
) -> Result<(), ServerError> {
    let metrics = install_metrics_recorder();
    let kit = Redkit::builder().redis(redis).build()?;
    match kit.connection() {
        Some(connection) => tracing::info!(
            backend = %kit.backend(),
            redis = %connection.config().address(),
            "using redis (connecting in the background)"
        ),
        None => {
            tracing::info!(backend = %kit.backend(), "using the embedded store (no REDIS_URL / REDIS_HOST)")
        }
    }
    let database = service.database.display().to_string();
    let state = AppState::new(kit, metrics, service).await?;
    tracing::info!(%database, "database ready");
    let listener = redkit_server::bind(listen).await?;
    let address = listener.local_addr().map_err(|source| ServerError::Bind {
        address: listen,
        source,
    })?;
    tracing::info!("listening on http://{address}");
    redkit_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received; shutting down"),
        _ = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
