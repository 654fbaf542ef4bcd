//! Command-line interface: flags with environment fallbacks.
//!
//! Redis itself is configured by the `REDIS_*` variables read by
//! [`redkit::config::RedisConfig::from_env`] in `main`, so one set of names
//! serves the library and the service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use redkit::config::Secret;
use redkit::ratelimit::{Policy, TrustedProxies};

use crate::config::ServiceConfig;

const REDIS_HELP: &str = "\
Redis is configured by environment variables (none set: embedded store, no Redis needed):
  REDIS_URL                 redis://[[user]:password@]host[:port][/db], rediss:// for TLS;
                            redis+sentinel://[user:password@]host:port[,host:port...]/master_name[/db]
                            redis+cluster://[user:password@]host:port[,host:port...]
                            (rediss+sentinel:// and rediss+cluster:// for TLS)
  REDIS_HOST, REDIS_PORT    address, instead of REDIS_URL
  REDIS_SENTINELS           Sentinel: host:port,host:port of the sentinels, instead of REDIS_URL
  REDIS_SENTINEL_MASTER     Sentinel: the name the sentinels monitor (required with REDIS_SENTINELS)
  REDIS_SENTINEL_USERNAME, REDIS_SENTINEL_PASSWORD   the sentinels' own credentials, if any
  REDIS_CLUSTER_NODES       Cluster: host:port,host:port seed nodes, instead of REDIS_URL (REDIS_DB must be 0)
  REDIS_USERNAME, REDIS_PASSWORD, REDIS_DB, REDIS_TLS, REDIS_TLS_CA_FILE   (the data nodes')
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
// Parsed once at start; boxing `serve`'s options would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the reference service (the default).
    #[command(after_help = REDIS_HELP)]
    Serve(ServeArgs),
    /// Audit the configured Redis (the same REDIS_* variables as serve).
    ///
    /// Checks the version and commands, ACL permissions, a round trip of every store
    /// operation on a scratch prefix (removed afterwards), security, memory
    /// and eviction, persistence, replication, latency and the slow log.
    /// Exit code 0 when all pass, 1 with warnings, 2 with failures.
    #[command(after_help = REDIS_HELP)]
    Doctor(DoctorArgs),
    /// Inspect and repair job queues in Redis (the same REDIS_* variables).
    #[command(after_help = REDIS_HELP)]
    Queue(QueueArgs),
}

/// Options of `redkit doctor`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// PINGs in the latency sample.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub pings: u32,
}

/// `redkit queue`: operator commands on redkit job queues.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: QueueCommand,
}

/// Subcommands of `redkit queue`.
#[derive(Debug, Clone, Subcommand)]
pub enum QueueCommand {
    /// List the queues with their waiting, running, delayed and dead counts.
    List,
    /// List a queue's dead jobs (oldest death first) with their last error.
    Dead {
        /// The queue's name.
        queue: String,
        /// Most jobs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Jobs to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Put dead jobs back to waiting, with a fresh attempt count.
    Retry(DeadSelection),
    /// Delete dead jobs.
    Purge(DeadSelection),
}

/// Which dead jobs `retry` or `purge` act on.
#[derive(Debug, Clone, Args)]
pub struct DeadSelection {
    /// The queue's name.
    pub queue: String,
    /// One dead job, by id.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,
    /// Every dead job of the queue.
    #[arg(long)]
    pub all: bool,
}

/// Options of `redkit serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "REDKIT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// SQLite database file (created if missing; migrations applied at start).
    #[arg(long, env = "REDKIT_DB", default_value = "./redkit.db")]
    pub db: PathBuf,
    /// Mark the session cookie `Secure` (when clients reach the service over TLS).
    #[arg(long, env = "REDKIT_COOKIE_SECURE", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub cookie_secure: bool,
    /// Largest accepted request body, in bytes (larger ones get 413).
    #[arg(long, env = "REDKIT_MAX_BODY_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_body_bytes: u32,
    /// Most tasks one user may keep (creating one more gets 409).
    #[arg(long, env = "REDKIT_MAX_TASKS_PER_USER", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tasks_per_user: u32,
    /// Most accounts the service keeps (registering one more gets 409).
    #[arg(long, env = "REDKIT_MAX_ACCOUNTS", default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_accounts: u32,
    /// Limit of /auth/register and /auth/login per client IP: COUNT/WINDOW
    /// (WINDOW in s, m or h, e.g. 5/5m), or `off`.
    #[arg(long, env = "REDKIT_AUTH_RATE_LIMIT", default_value = "5/5m", value_parser = parse_limit)]
    pub auth_rate_limit: Limit,
    /// Limit of /tasks and /events per client IP: COUNT/WINDOW, or `off`.
    #[arg(long, env = "REDKIT_API_RATE_LIMIT", default_value = "100/1m", value_parser = parse_limit)]
    pub api_rate_limit: Limit,
    /// Proxies whose X-Forwarded-For / Forwarded headers are trusted:
    /// comma-separated IPs or CIDR ranges (default: none).
    #[arg(long, env = "REDKIT_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Session lifetime without activity (rolling): a number with s, m or h.
    #[arg(long, env = "REDKIT_SESSION_TTL", default_value = "24h", value_parser = parse_duration)]
    pub session_ttl: Duration,
    /// Keep sessions read in process this long (s, m or h; changes reach
    /// every instance through pub/sub), or `off` to read every session from
    /// Redis (which also turns the session fail-safe off).
    #[arg(long, env = "REDKIT_SESSION_CACHE", default_value = "2s", value_parser = parse_optional_duration)]
    pub session_cache: Toggle<Duration>,
    /// While Redis cannot be reached, a session this instance read from it
    /// within this long (ms, s, m or h) keeps working, read-only; or `off`.
    /// Security trade-off: a session ended elsewhere meanwhile (logout,
    /// logout-all) is still accepted here for at most this long after this
    /// instance's last successful read of it. Needs --session-cache.
    #[arg(long, env = "REDKIT_SESSION_FAIL_SAFE", default_value = "10s", value_parser = parse_optional_duration)]
    pub session_fail_safe: Toggle<Duration>,
    /// Admit requests far from their limit from units leased from Redis
    /// (10 % of the remaining quota, for 100 ms; never past the limit).
    /// `false` counts every request in Redis.
    #[arg(long, env = "REDKIT_RATE_LIMIT_LEASES", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub rate_limit_leases: bool,
    /// Every request is answered within this (ms, s or m): from Redis, from
    /// a fallback, or as 503 with Retry-After — whatever Redis' latency.
    #[arg(long, env = "REDKIT_REQUEST_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// With Redis configured, wait this long (ms, s or m) for it before
    /// listening, or `off`; past it the service starts degraded (limits per
    /// instance, no new sessions) and moves to Redis once it connects.
    #[arg(long, env = "REDKIT_REDIS_WAIT", default_value = "5s", value_parser = parse_optional_duration)]
    pub redis_wait: Toggle<Duration>,
    /// Client connections served at once; more are closed as they arrive.
    #[arg(long, env = "REDKIT_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// A client must send a whole request head within this (ms, s or m) of
    /// the connection being ready for one; idle and slow connections close.
    #[arg(long, env = "REDKIT_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Password hashes computed at once (argon2id, ~19 MiB each) [default: CPUs, at most 4].
    #[arg(long, env = "REDKIT_HASH_THREADS", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub hash_threads: Option<u32>,
    /// Password hashes waiting for a thread; more get 503 with Retry-After.
    #[arg(long, env = "REDKIT_HASH_QUEUE", default_value_t = 32, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub hash_queue: u32,
    /// Serve the operator routes (/metrics, /health/redis, /dashboard,
    /// /dashboard/data) on this address only, not on --listen. /health,
    /// /health/live and /health/ready stay on --listen.
    #[arg(long, env = "REDKIT_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` on the operator routes (at
    /// least 16 characters; prefer the variable, which stays out of `ps`).
    #[arg(long, env = "REDKIT_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_admin_token)]
    pub admin_token: Option<Secret>,
}

/// A value that may be `off` on the command line (a newtype, because clap
/// gives `Option` fields a meaning of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toggle<T>(pub Option<T>);

/// A rate limit given on the command line: `COUNT/WINDOW` or `off`.
pub type Limit = Toggle<(u64, Duration)>;

impl ServeArgs {
    /// The service configuration these options describe.
    pub fn service_config(&self) -> Result<ServiceConfig, redkit::Error> {
        let mut config = ServiceConfig::with_database(&self.db);
        config.cookie_secure = self.cookie_secure;
        config.max_body_bytes = usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX);
        config.max_tasks_per_user = self.max_tasks_per_user;
        config.max_accounts = self.max_accounts;
        config.auth_policy = self
            .auth_rate_limit
            .0
            .map(|(count, window)| Policy::new("auth", count, window))
            .transpose()?;
        config.api_policy = self
            .api_rate_limit
            .0
            .map(|(count, window)| Policy::new("api", count, window))
            .transpose()?;
        config.trusted_proxies = TrustedProxies::parse(&self.trusted_proxies)?;
        config.sessions = config.sessions.ttl(self.session_ttl);
        if let Toggle(Some(duration)) = self.session_cache {
            config.sessions = config
                .sessions
                .local_cache(duration)
                .local_fail_safe(self.session_fail_safe.0.unwrap_or(Duration::ZERO));
        } else {
            config.sessions = config
                .sessions
                .local_cache(Duration::ZERO)
                .local_fail_safe(Duration::ZERO);
        }
        if !self.rate_limit_leases {
            config.rate_limit_leases = None;
        }
        config.request_timeout = self.request_timeout;
        config.redis_startup_wait = self.redis_wait.0.unwrap_or(Duration::ZERO);
        config.connections.max_connections =
            usize::try_from(self.max_connections).unwrap_or(usize::MAX);
        config.connections.header_read_timeout = self.header_read_timeout;
        if let Some(threads) = self.hash_threads {
            config.password_hashing.threads = usize::try_from(threads).unwrap_or(1);
        }
        config.password_hashing.queue = usize::try_from(self.hash_queue).unwrap_or(usize::MAX);
        config.admin_listen = self.admin_listen;
        config.admin_token = self.admin_token.clone();
        Ok(config)
    }
}

fn parse_admin_token(text: &str) -> Result<Secret, String> {
    if text.chars().count() < 16 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        // The value itself is never echoed.
        return Err(
            "expected at least 16 characters without spaces or control characters".to_owned(),
        );
    }
    Ok(Secret::new(text))
}

fn parse_limit(text: &str) -> Result<Limit, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Toggle(None));
    }
    let expected = "expected COUNT/WINDOW such as 100/1m or 5/5m (WINDOW in s, m or h), or `off`";
    let (count, window) = text.split_once('/').ok_or_else(|| expected.to_owned())?;
    let count: u64 = count
        .trim()
        .parse()
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| format!("the count must be a positive integer; {expected}"))?;
    let window = parse_duration(window)?;
    Ok(Toggle(Some((count, window))))
}

fn parse_optional_duration(text: &str) -> Result<Toggle<Duration>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Toggle(None));
    }
    parse_duration(text)
        .map(|duration| Toggle(Some(duration)))
        .map_err(|error| format!("{error}, or `off`"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected =
        "expected a positive number followed by ms, s, m or h, such as 500ms, 30s, 5m or 24h";
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let millis: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(expected.to_owned()),
    };
    let number: u64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| expected.to_owned())?;
    number
        .checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("too long; {expected}"))
}

impl Cli {
    /// The options of `serve`, whether it was named or not (the defaults
    /// for another subcommand).
    pub fn serve_args(self) -> ServeArgs {
        match self.command {
            Some(Command::Serve(args)) => args,
            Some(Command::Queue(_) | Command::Doctor(_)) | None => self.serve,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_durations_parse_or_say_what_is_expected() {
        assert_eq!(
            parse_limit("100/1m"),
            Ok(Toggle(Some((100, Duration::from_secs(60)))))
        );
        assert_eq!(parse_limit("OFF"), Ok(Toggle(None)));
        for bad in ["", "100", "0/1m", "x/1m", "10/1d", "10/-1m", "10/m"] {
            let error = parse_limit(bad).unwrap_err();
            assert!(error.contains("expected"), "{bad}: {error}");
        }
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_optional_duration("off"), Ok(Toggle(None)));
        assert_eq!(
            parse_optional_duration("2s"),
            Ok(Toggle(Some(Duration::from_secs(2))))
        );
        assert!(parse_optional_duration("2").unwrap_err().contains("`off`"));
        assert!(parse_duration("99999999999999999999h").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "ms", "0s", "1.5s", "-1s", "1 s", "1d", "1é"] {
            assert!(
                parse_duration(bad).unwrap_err().contains("expected"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_local_layers_follow_their_flags() {
        let defaults = Cli::try_parse_from(["redkit", "serve"])
            .unwrap()
            .serve_args()
            .service_config()
            .unwrap();
        assert_eq!(defaults.sessions.local_cache, Duration::from_secs(2));
        assert_eq!(defaults.sessions.local_fail_safe, Duration::from_secs(10));
        assert!(defaults.rate_limit_leases.is_some());
        let exact = Cli::try_parse_from([
            "redkit",
            "serve",
            "--session-cache",
            "off",
            "--rate-limit-leases",
            "false",
        ])
        .unwrap()
        .serve_args()
        .service_config()
        .unwrap();
        assert_eq!(exact.sessions.local_cache, Duration::ZERO);
        assert_eq!(exact.sessions.local_fail_safe, Duration::ZERO);
        assert!(exact.rate_limit_leases.is_none());
        let no_fail_safe = Cli::try_parse_from(["redkit", "serve", "--session-fail-safe", "off"])
            .unwrap()
            .serve_args()
            .service_config()
            .unwrap();
        assert_eq!(no_fail_safe.sessions.local_cache, Duration::from_secs(2));
        assert_eq!(no_fail_safe.sessions.local_fail_safe, Duration::ZERO);
        let longer = Cli::try_parse_from(["redkit", "serve", "--session-fail-safe", "1m"])
            .unwrap()
            .serve_args()
            .service_config()
            .unwrap();
        assert_eq!(longer.sessions.local_fail_safe, Duration::from_secs(60));
    }

    #[test]
    fn the_task_limit_follows_its_flag_and_refuses_zero() {
        let config = |args: &[&str]| {
            Cli::try_parse_from(["redkit", "serve"].iter().chain(args))
                .map(|cli| cli.serve_args().service_config().unwrap())
        };
        assert_eq!(config(&[]).unwrap().max_tasks_per_user, 10_000);
        assert_eq!(config(&[]).unwrap().max_accounts, 1_000_000);
        assert_eq!(
            config(&["--max-accounts", "500"]).unwrap().max_accounts,
            500
        );
        let error = config(&["--max-accounts", "0"]).unwrap_err();
        assert!(error.to_string().contains("--max-accounts"), "{error}");
        let raised = config(&["--max-tasks-per-user", "50000"]).unwrap();
        assert_eq!(raised.max_tasks_per_user, 50_000);
        for bad in ["0", "-1", "many"] {
            let error = config(&[&format!("--max-tasks-per-user={bad}")]).unwrap_err();
            assert!(
                error.to_string().contains("--max-tasks-per-user"),
                "{error}"
            );
        }
    }
}
