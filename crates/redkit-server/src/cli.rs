//! Command-line interface: flags with environment fallbacks.
//!
//! Redis itself is configured by the `REDIS_*` variables read by
//! [`redkit::config::RedisConfig::from_env`] in `main`, so one set of names
//! serves the library and the service.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

const REDIS_HELP: &str = "\
Redis is configured by environment variables (none set: embedded store, no Redis needed):
  REDIS_URL                 redis://[[user]:password@]host[:port][/db], rediss:// for TLS
  REDIS_HOST, REDIS_PORT    address, instead of REDIS_URL
  REDIS_USERNAME, REDIS_PASSWORD, REDIS_DB, REDIS_TLS, REDIS_TLS_CA_FILE
  REDIS_ENABLED             false: use the embedded store even if an address is set
  REDIS_FALLBACK            false: fail instead of serving from the embedded store while Redis is down
  REDIS_KEY_PREFIX          prefix for every key and channel
  REDIS_CONNECT_TIMEOUT_MS, REDIS_COMMAND_TIMEOUT_MS, REDIS_KEEPALIVE_SECS, REDIS_POOL_SIZE
  REDIS_HEALTH_CHECK_INTERVAL_MS, REDIS_RETRY_INITIAL_DELAY_MS, REDIS_RETRY_MAX_DELAY_MS,
  REDIS_RETRY_MAX_ATTEMPTS, REDIS_DEGRADED_PROBE_INTERVAL_MS
Logs: RUST_LOG (default info).";

/// redkit: the Redis layer for backend services, and its reference service.
#[derive(Debug, Parser)]
#[command(
    name = "redkit",
    version,
    about,
    after_help = REDIS_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to run (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the reference service (the default).
    #[command(after_help = REDIS_HELP)]
    Serve(ServeArgs),
}

/// Options of `redkit serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "REDKIT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

impl Cli {
    /// The options of `serve`, whether it was named or not.
    pub fn serve_args(self) -> ServeArgs {
        match self.command {
            Some(Command::Serve(args)) => args,
            None => self.serve,
        }
    }
}
