//! The `redkit` binary: parses flags and environment at the edge, then runs
//! the reference service until SIGINT or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use redkit::Redkit;
use redkit::config::RedisConfig;
use redkit_server::cli::{Cli, Command, DoctorArgs, QueueArgs};
use redkit_server::doctor::{self, DoctorOptions};
use redkit_server::{AppState, ServerError, ServiceConfig, install_metrics_recorder};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc's allocator: the service allocates per
/// request (hyper, SQLite, JSON); on glibc the realistic HTTP mix served about
/// a third fewer requests with a longer tail, and mimalloc held more memory
/// per embedded-store entry (docs/BENCHMARKS.md, 2026-11-29 afternoon).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before logging starts: the doctor's output is its report alone.
    if let Some(Command::Doctor(args)) = &cli.command {
        return doctor(args);
    }
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
        Err(error) => return configuration_error(error),
    };
    let runtime = match runtime(ExitCode::FAILURE) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(run(args.listen, redis, service)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", redkit_server::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// `redkit doctor`: exit 0 all pass, 1 warnings, 2 failures (and 2 for a
/// configuration that cannot be parsed).
fn doctor(args: &DoctorArgs) -> ExitCode {
    let redis = match RedisConfig::from_env() {
        Ok(redis) => redis,
        Err(error) => return configuration_error(error),
    };
    let runtime = match runtime(ExitCode::from(2)) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let options = DoctorOptions { pings: args.pings };
    let report = runtime.block_on(doctor::audit(redis, &options));
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    ExitCode::from(report.exit_code())
}

/// `redkit queue …`: against the Redis of the `REDIS_*` variables.
fn queue_command(args: &QueueArgs) -> ExitCode {
    let redis = match RedisConfig::from_env() {
        Ok(redis) if redis.enabled => redis,
        Ok(_) => {
            return configuration_error(
                "redkit queue needs Redis (set REDIS_URL or REDIS_HOST); without it, queues live inside the service process",
            );
        }
        Err(error) => return configuration_error(error),
    };
    let wait = redis.connect_timeout.max(std::time::Duration::from_secs(2));
    let runtime = match runtime(ExitCode::FAILURE) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
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
        Some(connection) => {
            tracing::info!(
                backend = %kit.backend(),
                redis = %connection.config().address(),
                "using redis"
            );
            wait_for_redis(connection, service.redis_startup_wait).await;
        }
        None => {
            tracing::info!(backend = %kit.backend(), "using the embedded store (no REDIS_URL / REDIS_HOST)")
        }
    }
    let database = service.database.display().to_string();
    let (admin_listen, admin_token) = (service.admin_listen, service.admin_token.is_some());
    let state = AppState::new(kit, metrics, service).await?;
    tracing::info!(%database, "database ready");
    let shutdown = shutdown_signal();
    let listener = redkit_server::bind(listen).await?;
    let address = redkit_server::local_address(&listener, listen)?;
    tracing::info!("listening on http://{address}");
    let admin = match admin_listen {
        Some(admin_listen) => {
            let admin = redkit_server::bind(admin_listen).await?;
            let address = redkit_server::local_address(&admin, admin_listen)?;
            tracing::info!(
                token = if admin_token { "required" } else { "none" },
                "operator routes (/metrics, /health/redis, /dashboard) on http://{address}"
            );
            Some(admin)
        }
        None => None,
    };
    redkit_server::serve_with_admin(listener, admin, state, shutdown).await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Waits at most `wait` for the connection to be ready, so the first
/// requests are served from Redis, not from the embedded fallback a
/// connecting store uses meanwhile (where two instances count rate limits
/// apart). Past the wait, or when Redis refuses this client, the service
/// starts anyway, degraded, and says so.
async fn wait_for_redis(
    connection: &redkit::connection::RedisConnection,
    wait: std::time::Duration,
) {
    if wait.is_zero() {
        return;
    }
    match connection.wait_ready(wait).await {
        Ok(()) => tracing::info!("redis ready"),
        Err(error) => tracing::warn!(
            %error,
            waited = ?wait,
            "redis is not ready; starting degraded (rate limits per instance, no logins) until it is"
        ),
    }
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM from the moment it is called and
/// resolves on the first. Called before the listener is bound: a handler
/// registered only when the server first polls this future would leave a
/// window after `listening on` in which a SIGTERM still takes its default
/// action and kills the process without a clean shutdown (a test that
/// signalled right after its first answer saw it under load).
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for {name}");
                None
            }
        };
        let received = |signal: Option<Signal>| async move {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let interrupt = received(listen(SignalKind::interrupt(), "SIGINT"));
        let terminate = received(listen(SignalKind::terminate(), "SIGTERM"));
        async move {
            tokio::select! {
                () = interrupt => tracing::info!("SIGINT received; shutting down"),
                () = terminate => tracing::info!("SIGTERM received; shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received; shutting down");
        }
    }
}

/// A configuration the program cannot run with: said on stderr, exit code 2,
/// before anything is started.
fn configuration_error(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(2)
}

/// The async runtime, or `failure` after saying why it cannot start.
fn runtime(failure: ExitCode) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|error| {
        eprintln!("error: cannot start the async runtime: {error}");
        failure
    })
}
