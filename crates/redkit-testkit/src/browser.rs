//! A real headless Chromium for tests of pages: [`Chromedriver`] starts the
//! distribution's `chromedriver` on a free port (it launches Chromium for
//! each WebDriver session), and [`headless_chrome_capabilities`] asks for a
//! headless browser that runs in containers and CI.
//!
//! Like `redis-server`, a missing `chromedriver` is a panic that names the
//! packages to install — browser tests never skip silently.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long a started chromedriver has to report ready before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts on another port when the chosen one was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// How to get the browser and its driver.
const INSTALL_HINT: &str = "Install them with `sudo apt-get install -y chromium chromium-driver` \
                            (or run ./scripts/test.sh, which installs them).";

/// A `chromedriver` process owned by a test; it and the browsers it started
/// are killed on drop.
#[derive(Debug)]
pub struct Chromedriver {
    port: u16,
    child: Child,
    /// Holds chromedriver's log.
    _dir: tempfile::TempDir,
}

impl Chromedriver {
    /// Starts chromedriver on a free loopback port and waits until it is
    /// ready for sessions.
    ///
    /// # Panics
    /// When chromedriver is not installed or does not become ready in time.
    pub fn start() -> Self {
        let binary = chromedriver_binary();
        let dir = tempfile::Builder::new()
            .prefix("redkit-chromedriver-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temp dir for chromedriver: {err}"));
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let log = dir.path().join(format!("chromedriver-{port}.log"));
            let mut child = Command::new(&binary)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                // Its own process group, so that drop also ends the browsers
                // it started, even when a test panics before closing them.
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
            if wait_ready(&mut child, port) {
                return Chromedriver {
                    port,
                    child,
                    _dir: dir,
                };
            }
            kill_group(&mut child);
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!(
            "chromedriver ({}) did not become ready in {START_ATTEMPTS} attempts; its last log:\n{last_log}",
            binary.display()
        );
    }

    /// The WebDriver URL to connect clients to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Whether chromedriver answers `GET /status` with `ready: true` within
/// [`READY_TIMEOUT`]; false if it exits first (say, its port was taken).
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if reports_ready(port) {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Kills chromedriver and the browsers it started: its process group, whose
/// id is its pid (`process_group(0)`).
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .arg(format!("-{}", child.id()))
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// WebDriver capabilities for a headless Chromium that runs as root, in
/// containers and without a GPU; `binary` is set when Chromium is found
/// (otherwise chromedriver looks for it itself). Pass them to a WebDriver
/// client, e.g. fantoccini's `ClientBuilder::capabilities`.
pub fn headless_chrome_capabilities() -> serde_json::Map<String, serde_json::Value> {
    let mut options = serde_json::Map::new();
    options.insert(
        "args".to_owned(),
        serde_json::json!([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--window-size=1280,900",
        ]),
    );
    if let Some(binary) = chromium_binary() {
        options.insert(
            "binary".to_owned(),
            serde_json::Value::String(binary.display().to_string()),
        );
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".to_owned(), "chrome".into());
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::Value::Object(options),
    );
    capabilities
}

/// The path of `chromedriver`, or a panic that says how to install it.
///
/// # Panics
/// When chromedriver is not on the PATH, in `/usr/bin` or in
/// `/usr/lib/chromium`.
pub fn chromedriver_binary() -> PathBuf {
    find(
        &["chromedriver"],
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
    )
    .unwrap_or_else(|| {
        panic!(
            "chromedriver is not installed, and redkit's browser tests need it and \
             Chromium. {INSTALL_HINT}"
        )
    })
}

/// The path of the Chromium binary, when installed.
pub fn chromium_binary() -> Option<PathBuf> {
    find(
        &["chromium", "chromium-browser"],
        &["/usr/bin/chromium", "/usr/lib/chromium/chromium"],
    )
}

/// The first of `names` on the PATH, else the first existing `fallbacks`.
fn find(names: &[&str], fallbacks: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    names
        .iter()
        .flat_map(|name| path.iter().map(move |dir| dir.join(name)))
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|candidate| candidate.is_file())
}

/// Whether chromedriver on `port` answers `GET /status` with `ready: true`.
fn reports_ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    // chromedriver may keep the connection open: read until the answer is
    // known rather than until the end of the stream.
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
        let text: String = String::from_utf8_lossy(&reply).split_whitespace().collect();
        let status = "HTTP/1.1200";
        if text.len() >= status.len() && !text.starts_with(status) {
            return false;
        }
        if text.contains("\"ready\":true") {
            return true;
        }
        if text.contains("\"ready\":false") {
            return false;
        }
    }
}
