//! A TCP fault proxy: the network between a client and a real server, with
//! faults a test can switch on and off while traffic flows.
//!
//! Killing or pausing `redis-server` covers a crashed or hung server; a bad
//! network is different — the server is fine, the path to it is slow, silent
//! or hostile. [`FaultProxy`] sits on its own loopback port in front of an
//! upstream port and forwards bytes both ways until told otherwise:
//!
//! | [`Fault`] | existing connections | new connections |
//! |---|---|---|
//! | `None` | bytes flow | accepted |
//! | `Latency(d)` | every chunk waits `d` in each direction (pipelining is kept: chunks are delayed, not serialized) | accepted |
//! | `Blackhole` | bytes are held, nothing is delivered (a partition: TCP keeps the data and delivers it when healed) | accepted, then silent |
//! | `Reset` | closed with a TCP reset | accepted, then reset |
//! | `Refuse` | closed with a TCP reset | refused (nothing listens on the port) |
//!
//! Plain threads, no async runtime: the proxy must keep working while the
//! test's runtime is busy or blocked.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often idle threads look at the current fault.
const POLL: Duration = Duration::from_millis(5);

/// What the proxy does to traffic; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward everything as it comes.
    #[default]
    None,
    /// Delay every chunk by this long in each direction.
    Latency(Duration),
    /// Hold every byte; deliver nothing until the fault changes.
    Blackhole,
    /// Reset every connection, existing and new.
    Reset,
    /// Reset existing connections and stop listening.
    Refuse,
}

#[derive(Debug, Default)]
struct Shared {
    fault: Mutex<Fault>,
    /// Bumped whenever connections must be reset; each connection remembers
    /// the value it was opened under.
    reset_epoch: AtomicU64,
    open_connections: AtomicUsize,
    accepted_connections: AtomicUsize,
    stopping: AtomicBool,
}

impl Shared {
    fn fault(&self) -> Fault {
        *lock(&self.fault)
    }
}

/// A TCP proxy in front of `127.0.0.1:<upstream>`; stopped on drop.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    upstream: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|err| panic!("fault proxy: cannot bind a loopback port: {err}"));
        let port = listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or_else(|err| panic!("fault proxy: no local address: {err}"));
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("fault-proxy-{port}"))
                .spawn(move || accept_loop(listener, port, upstream, shared))
                .unwrap_or_else(|err| panic!("fault proxy: cannot spawn a thread: {err}"))
        };
        FaultProxy {
            port,
            upstream,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's loopback port (what the client under test connects to).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The upstream port it forwards to.
    pub fn upstream(&self) -> u16 {
        self.upstream
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// Switches to `fault`; takes effect on traffic within a few milliseconds.
    pub fn set(&self, fault: Fault) {
        *lock(&self.shared.fault) = fault;
        if matches!(fault, Fault::Reset | Fault::Refuse) {
            self.shared.reset_epoch.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Back to [`Fault::None`]: held bytes are delivered, the port listens again.
    pub fn heal(&self) {
        self.set(Fault::None);
    }

    /// Connections open through the proxy right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::SeqCst)
    }

    /// Connections accepted since the proxy started.
    pub fn accepted_connections(&self) -> usize {
        self.shared.accepted_connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.reset_epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Accepts while the fault allows it; drops the listener under `Refuse` and
/// binds the same port again when the fault changes.
fn accept_loop(listener: TcpListener, port: u16, upstream: u16, shared: Arc<Shared>) {
    let mut listener = Some(listener);
    while !shared.stopping.load(Ordering::SeqCst) {
        let fault = shared.fault();
        if fault == Fault::Refuse {
            listener = None;
            std::thread::sleep(POLL);
            continue;
        }
        let Some(current) = listener.as_ref() else {
            listener = TcpListener::bind(("127.0.0.1", port)).ok();
            if listener.is_none() {
                std::thread::sleep(POLL);
            }
            continue;
        };
        if current.set_nonblocking(true).is_err() {
            std::thread::sleep(POLL);
            continue;
        }
        match current.accept() {
            Ok((client, _)) => {
                shared.accepted_connections.fetch_add(1, Ordering::SeqCst);
                if matches!(fault, Fault::Reset) {
                    reset(&client);
                    continue;
                }
                let shared = shared.clone();
                let _ = std::thread::Builder::new()
                    .name(format!("fault-proxy-{port}-conn"))
                    .spawn(move || serve_connection(client, upstream, shared));
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Closes a socket with a TCP reset (linger zero) rather than a FIN.
fn reset(stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let _ = socket.set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve_connection(client: TcpStream, upstream: u16, shared: Arc<Shared>) {
    let epoch = shared.reset_epoch.load(Ordering::SeqCst);
    let Ok(server) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], upstream))) else {
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    shared.open_connections.fetch_add(1, Ordering::SeqCst);
    let closed = Arc::new(AtomicBool::new(false));
    let pumps: Vec<JoinHandle<()>> = [(&client, &server), (&server, &client)]
        .into_iter()
        .filter_map(|(from, to)| {
            let from = from.try_clone().ok()?;
            let to = to.try_clone().ok()?;
            let shared = shared.clone();
            let closed = closed.clone();
            std::thread::Builder::new()
                .spawn(move || pump(from, to, epoch, &shared, &closed))
                .ok()
        })
        .collect();
    for pump in pumps {
        let _ = pump.join();
    }
    if shared.reset_epoch.load(Ordering::SeqCst) != epoch {
        reset(&client);
        reset(&server);
    } else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    }
    shared.open_connections.fetch_sub(1, Ordering::SeqCst);
}

/// Copies one direction: a reader feeds timestamped chunks to a writer that
/// delivers each when its latency has passed and no blackhole holds it.
fn pump(mut from: TcpStream, to: TcpStream, epoch: u64, shared: &Arc<Shared>, closed: &AtomicBool) {
    let (chunks, pending) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = {
        let shared = shared.clone();
        std::thread::Builder::new().spawn(move || deliver(to, pending, epoch, &shared))
    };
    let _ = from.set_read_timeout(Some(POLL));
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if closed.load(Ordering::SeqCst) || shared.reset_epoch.load(Ordering::SeqCst) != epoch {
            break;
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if send_chunk(&chunks, buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    closed.store(true, Ordering::SeqCst);
    drop(chunks);
    if let Ok(writer) = writer {
        let _ = writer.join();
    }
}

fn send_chunk(chunks: &Sender<(Instant, Vec<u8>)>, chunk: Vec<u8>) -> Result<(), ()> {
    chunks.send((Instant::now(), chunk)).map_err(|_| ())
}

fn deliver(mut to: TcpStream, pending: Receiver<(Instant, Vec<u8>)>, epoch: u64, shared: &Shared) {
    let reset_requested = || {
        shared.reset_epoch.load(Ordering::SeqCst) != epoch || shared.stopping.load(Ordering::SeqCst)
    };
    loop {
        let (arrived, chunk) = match pending.recv_timeout(POLL) {
            Ok(next) => next,
            Err(RecvTimeoutError::Timeout) if reset_requested() => return,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        loop {
            if reset_requested() {
                return;
            }
            let wait = match shared.fault() {
                Fault::Blackhole => POLL,
                Fault::Latency(delay) => {
                    (arrived + delay).saturating_duration_since(Instant::now())
                }
                Fault::None | Fault::Reset | Fault::Refuse => Duration::ZERO,
            };
            if wait.is_zero() {
                break;
            }
            std::thread::sleep(wait.min(POLL));
        }
        if to.write_all(&chunk).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisServer;

    fn ping(stream: &mut TcpStream) -> std::io::Result<String> {
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0u8; 16];
        let n = stream.read(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
    }

    fn connect(proxy: &FaultProxy) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect to the proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        stream
    }

    #[test]
    fn forwards_and_injects_each_fault_while_traffic_flows() {
        let redis = RedisServer::new();
        let proxy = FaultProxy::start(redis.port());
        let mut stream = connect(&proxy);
        assert_eq!(ping(&mut stream).expect("ping"), "+PONG\r\n");

        proxy.set(Fault::Latency(Duration::from_millis(150)));
        let started = Instant::now();
        assert_eq!(ping(&mut stream).expect("ping"), "+PONG\r\n");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "two delayed legs took only {took:?}"
        );

        proxy.set(Fault::Blackhole);
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("read timeout");
        let silent = ping(&mut stream).expect_err("a blackhole answers nothing");
        assert!(matches!(
            silent.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        proxy.heal();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut held = [0u8; 16];
        let n = stream
            .read(&mut held)
            .expect("held bytes arrive when healed");
        assert_eq!(&held[..n], b"+PONG\r\n");

        proxy.set(Fault::Reset);
        let deadline = Instant::now() + Duration::from_secs(5);
        let outcome = loop {
            match ping(&mut stream) {
                Ok(reply) if reply.is_empty() => break Ok(()),
                Ok(_) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(reply) => break Err(format!("still answered {reply:?}")),
                Err(_) => break Ok(()),
            }
        };
        outcome.expect("an existing connection is reset");
        let mut fresh = connect(&proxy);
        let reply = ping(&mut fresh);
        assert!(
            reply.as_ref().is_ok_and(String::is_empty) || reply.is_err(),
            "a new connection is reset: {reply:?}"
        );

        proxy.set(Fault::Refuse);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", proxy.port())).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the port still accepts under Refuse"
            );
            std::thread::sleep(POLL);
        }

        proxy.heal();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut healed = loop {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", proxy.port())) {
                break stream;
            }
            assert!(Instant::now() < deadline, "the port did not listen again");
            std::thread::sleep(POLL);
        };
        healed
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        assert_eq!(ping(&mut healed).expect("ping after heal"), "+PONG\r\n");
        assert!(proxy.accepted_connections() >= 3);
    }

    #[test]
    fn connections_are_closed_when_the_proxy_is_dropped() {
        let redis = RedisServer::new();
        let proxy = FaultProxy::start(redis.port());
        let mut stream = connect(&proxy);
        assert_eq!(ping(&mut stream).expect("ping"), "+PONG\r\n");
        assert_eq!(proxy.open_connections(), 1);
        drop(proxy);
        let reply = ping(&mut stream);
        assert!(
            reply.as_ref().is_ok_and(String::is_empty) || reply.is_err(),
            "{reply:?}"
        );
    }
}
