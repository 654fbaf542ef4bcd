//! Real `redis-server` processes for redkit's tests.
//!
//! redkit's tests are about Redis behaviour, so they run against the real
//! server from the distribution's packages — never a mock. This crate starts a
//! `redis-server` on a free loopback port in its own temporary directory (no
//! persistence, its own log file), waits until it answers, and stops it when the
//! [`RedisServer`] is dropped. A test can also kill it with SIGKILL, pause it
//! with SIGSTOP (to simulate a hung server) and restart it on the same port.
//!
//! When `redis-server` is missing, starting one panics with a message that
//! says how to install it: tests that need Redis never skip silently.
//!
//! For tests of pages, [`Chromedriver`] starts the distribution's
//! `chromedriver` (which drives a real headless Chromium, see
//! [`headless_chrome_capabilities`]) the same way, with the same rule.
//!
//! For network faults between a client and a healthy server, [`FaultProxy`]
//! forwards a port and injects latency, blackholes, resets and refusals that a
//! test switches while traffic flows.
//!
//! [`RedisCluster`] (three masters, three replicas) and [`RedisSentinel`] (a
//! master, a replica and three sentinels) run the other topologies as real
//! local processes, ready for failover tests.

mod browser;
mod cluster;
mod proxy;
mod sentinel;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use browser::{
    Chromedriver, chromedriver_binary, chromium_binary, headless_chrome_capabilities,
};
pub use cluster::RedisCluster;
pub use proxy::{Fault, FaultProxy};
pub use sentinel::RedisSentinel;

/// How long a started server has to answer PING before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Builds a [`RedisServer`] with chosen options.
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct RedisServerBuilder {
    password: Option<String>,
    port: Option<u16>,
    args: Vec<(String, String)>,
    config_lines: Vec<String>,
    tls: Option<TlsFiles>,
}

/// PEM files for a TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signed it.
    pub ca: PathBuf,
}

impl RedisServerBuilder {
    /// Requires clients to authenticate with this password (`requirepass`).
    pub fn requirepass(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Listens on this port instead of a free one picked at random.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Passes `--name value` to redis-server (for example `maxmemory`, `10mb`).
    pub fn arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.args.push((name.into(), value.into()));
        self
    }

    /// Adds a line to a configuration file the server starts from, for
    /// settings whose value has spaces, such as an ACL user:
    /// `user app on >secret ~* &* +@all -@scripting`.
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.config_lines.push(line.into());
        self
    }

    /// Also listens with TLS on a second free port (see
    /// [`RedisServer::tls_url`]); clients are not asked for certificates.
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// Starts the server and waits until it answers.
    ///
    /// # Panics
    /// When redis-server is not installed or does not become ready in time.
    pub fn start(self) -> RedisServer {
        let mut server = self.prepare();
        server.start();
        server
    }

    /// Reserves a free port and a directory without starting the server, so a
    /// test can point a client at a Redis that is down and start it later with
    /// [`RedisServer::start`].
    pub fn prepare(self) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix(&process_marker("redis"))
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temp dir for redis-server: {err}"));
        let tls_port = self.tls.as_ref().map(|_| free_port());
        RedisServer {
            port: self.port.unwrap_or_else(free_port),
            tls_port,
            dir,
            child: None,
            options: self,
        }
    }
}

/// A `redis-server` process owned by a test; stopped on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    tls_port: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    options: RedisServerBuilder,
}

impl RedisServer {
    /// A builder for a server with chosen options.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// Starts a server with default options (no password).
    ///
    /// # Panics
    /// When redis-server is not installed or does not become ready in time.
    pub fn new() -> Self {
        Self::builder().start()
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://` URL of the server, with the password when one is required.
    pub fn url(&self) -> String {
        match &self.options.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// `rediss://localhost:<tls port>` when the server was built with TLS.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port
            .map(|port| format!("rediss://localhost:{port}"))
    }

    /// Starts the server on its port if it is not running, and waits until it
    /// answers PING.
    ///
    /// # Panics
    /// When redis-server is not installed or does not become ready in time.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        reap_when_this_process_ends();
        let binary = redis_server_binary();
        let mut command = Command::new(&binary);
        if !self.options.config_lines.is_empty() {
            // The file must come first; flags after it override it.
            let path = self.dir.path().join("redkit-test.conf");
            let mut text = self.options.config_lines.join("\n");
            text.push('\n');
            std::fs::write(&path, text)
                .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
            command.arg(path);
        }
        command
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--daemonize")
            .arg("no")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            // Keep the command line (and its directory) visible to the
            // reaper, which finds this test process' servers by it.
            .arg("--set-proc-title")
            .arg("no")
            .arg("--logfile")
            .arg(self.log_path());
        if let Some(password) = &self.options.password {
            command.arg("--requirepass").arg(password);
        }
        if let (Some(files), Some(port)) = (&self.options.tls, self.tls_port) {
            command
                .arg("--tls-port")
                .arg(port.to_string())
                .arg("--tls-cert-file")
                .arg(&files.cert)
                .arg("--tls-key-file")
                .arg(&files.key)
                .arg("--tls-ca-cert-file")
                .arg(&files.ca)
                .arg("--tls-auth-clients")
                .arg("no");
        }
        for (name, value) in &self.options.args {
            command.arg(format!("--{name}")).arg(value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (started and not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs one command through `redis-cli` against this server and returns
    /// its raw output (for fixtures and assertions; not for the code under test).
    ///
    /// # Panics
    /// When redis-cli is not installed.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, self.options.password.as_deref(), args)
    }

    /// Kills the server with SIGKILL (no shutdown, no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Freezes the server with SIGSTOP: connections stay open but nothing is
    /// answered, like a hung or partitioned server.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a server frozen by [`RedisServer::pause`] with SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status()
                .unwrap_or_else(|err| panic!("cannot run kill {signal}: {err}"));
            assert!(status.success(), "kill {signal} failed: {status}");
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if answers_ping(self.port) {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "redis-server on port {} exited with {status}; its log:\n{}",
                    self.port,
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server on port {} did not answer within {READY_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Default for RedisServer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server would ignore SIGKILL until resumed on some kernels'
        // process states; resume first so the kill always lands.
        self.resume();
        self.kill();
    }
}

/// The path of `redis-server`, or a panic that says how to install it.
///
/// # Panics
/// When redis-server is not on the PATH.
pub fn redis_server_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server is not installed, and redkit's tests need a real one. \
                 Install it with `sudo apt-get install -y redis-server` \
                 (or run ./scripts/test.sh, which installs it)."
            )
        })
}

/// Runs `redis-cli -p <port> [-a password] <args…>` and returns its output
/// (empty when the server does not answer within 10 s).
///
/// # Panics
/// When redis-cli is not installed (it comes with redis-server's packages).
pub fn redis_cli(port: u16, password: Option<&str>, args: &[&str]) -> String {
    // redis-cli 7.0 has no timeout option: coreutils' `timeout` bounds a
    // call to a paused or partitioned server.
    let mut command = Command::new("timeout");
    command
        .arg("10")
        .arg("redis-cli")
        .arg("-p")
        .arg(port.to_string());
    if let Some(password) = password {
        command.arg("--no-auth-warning").arg("-a").arg(password);
    }
    let output = command.args(args).stdin(Stdio::null()).output();
    match output {
        // `timeout` exits 127 when it cannot find the command.
        Ok(output) if output.status.code() != Some(127) => {
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        _ => panic!(
            "cannot run redis-cli; install it with `sudo apt-get install -y redis-tools` \
             (or run ./scripts/test.sh, which installs it)"
        ),
    }
}

/// The value of `field` in an `INFO`-style `field:value` listing.
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.trim_end()
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

/// True for a master, and for a replica whose link is up with no sync in
/// progress and whose replication offset equals its master's (found among
/// `servers` by port): every write the master acknowledged is on the
/// replica too, so killing the master now loses nothing.
pub fn replica_in_sync<'a>(
    node: &RedisServer,
    mut servers: impl Iterator<Item = &'a RedisServer>,
) -> bool {
    let info = node.cli(&["INFO", "replication"]);
    if info_field(&info, "role") != Some("slave") {
        return true;
    }
    let linked = info_field(&info, "master_link_status") == Some("up")
        && info_field(&info, "master_sync_in_progress") == Some("0");
    let master_port = info_field(&info, "master_port").and_then(|port| port.parse::<u16>().ok());
    let Some(master) = servers.find(|server| Some(server.port()) == master_port) else {
        return false;
    };
    let master_info = master.cli(&["INFO", "replication"]);
    let master_offset = info_field(&master_info, "master_repl_offset");
    linked && master_offset.is_some() && info_field(&info, "slave_repl_offset") == master_offset
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
///
/// # Panics
/// With `what` when the condition still fails at the deadline.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("cannot find a free port: {err}"))
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    match stream.read(&mut reply) {
        // +PONG, or -NOAUTH when a password is required: either way it serves.
        Ok(n) if n > 0 => reply[0] == b'+' || reply[..n].starts_with(b"-NOAUTH"),
        _ => false,
    }
}

/// The prefix of every temporary directory this test process gives a
/// server (`redkit-test-<pid>-<what>-`): the reaper finds the processes by it.
pub(crate) fn process_marker(what: &str) -> String {
    format!("redkit-test-{}-{what}-", std::process::id())
}

/// Once per test process: a detached `sh` that SIGKILLs every server this
/// process started (found by [`process_marker`] in their command lines)
/// once the process is gone, polled every second. Servers are stopped on
/// drop, but topologies shared through a `static` (one per test binary)
/// are never dropped; without this they would outlive every test run.
pub(crate) fn reap_when_this_process_ends() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let pid = std::process::id();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; pkill -9 -f 'redkit-test-{pid}-'"
        );
        let started = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(error) = started {
            panic!("cannot start the test servers' reaper (sh): {error}");
        }
    });
}
