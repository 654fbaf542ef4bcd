//! How a query reaches SQLite: on the thread of the task that asks, with
//! no hand-off to another thread and back.
//!
//! A query on this database takes tens of microseconds; handing it to a
//! connection's own thread and waking the task again afterwards (what sqlx
//! does) cost more than the query itself (docs/BENCHMARKS.md, session 13).
//! So a query runs where it is asked, like the JSON rendering next to it,
//! and the rules below keep such a thread from ever waiting long:
//!
//! - **No sleeping in SQLite.** The connections' busy timeout is zero: when
//!   another process holds the lock, SQLite answers `SQLITE_BUSY` at once
//!   and the query is tried again after an async pause (1, 2, 4 … 50 ms,
//!   for up to [`BUSY_TIMEOUT`]), so the thread serves other requests
//!   meanwhile.
//! - **No checkpoint on a request's thread.** The writer's automatic
//!   checkpoint is off; every [`CHECKPOINT_EVERY`] writes, one `RESTART`
//!   checkpoint runs on a blocking thread, on a connection of its own,
//!   while this process' writes wait (a few milliseconds), so the next
//!   write starts the WAL over. Readers are never blocked. A checkpoint
//!   that could not finish (a read still needed the WAL's frames, another
//!   process was writing) is tried again a few writes later.
//! - **Yielding.** A query never waits, so each one counts against the
//!   task's cooperative budget (`tokio::task::consume_budget`): a task
//!   that runs queries in a loop yields its thread now and then.
//! - **Long reads go to a blocking thread.** A page of up to 1,000 of the
//!   largest tasks (8.8 MB of JSON) takes about 50 ms to render; pages
//!   past a few dozen tasks are read on a blocking thread instead
//!   ([`Connections::read_on_blocking_thread`]).
//! - **Reads never wait for writes** (WAL mode). Idle read connections wait
//!   in a stack; a read takes one, or opens one when none is idle, and
//!   gives it back; at most [`READERS`] exist, lent or idle.
//! - **Writes queue in the process**, behind one connection in an async
//!   mutex: SQLite lets one writer in at a time, and a second connection of
//!   this process would only meet `SQLITE_BUSY`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::ServerError;

/// How long a query keeps trying while another process holds the lock.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest pause between two tries of a query that met a lock.
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// Read connections at most, lent or idle. A read holds one only while it
/// runs (tens of microseconds) or waits for another process' lock, so a
/// few serve every thread; the bound matters when reads wait: each waiting
/// read would otherwise open one more connection, with its own page cache.
pub(super) const READERS: usize = 8;

/// Writes between two checkpoints. A write of this service adds about
/// three pages to the WAL, so it stays near 3 MiB. Fewer checkpoints cost
/// less: a page written often is copied once per checkpoint.
const CHECKPOINT_EVERY: u32 = 256;

/// How long a checkpoint waits for reads that began before it, or for
/// another process' writer, before it gives up.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(20);

/// Writes before a checkpoint that could not finish is tried again.
const RETRY_AFTER: u32 = 32;

/// What the WAL file is cut back to when SQLite starts it over. A read that
/// holds its snapshot for long (a backup, say) stops checkpoints, and the
/// WAL grows meanwhile; without a limit the file would keep that size.
pub(super) const WAL_SIZE_LIMIT: u64 = 8 << 20;

/// The connections to one database file.
pub(super) struct Connections {
    path: PathBuf,
    /// Read connections not in use.
    idle_readers: parking_lot::Mutex<Vec<Connection>>,
    /// One per read under way: at most [`READERS`] connections exist.
    reader_slots: tokio::sync::Semaphore,
    /// The one write connection; `None` once closed.
    writer: tokio::sync::Mutex<Option<Connection>>,
    closed: AtomicBool,
    writes_since_checkpoint: AtomicU32,
    /// Whether a checkpoint is running now.
    checkpointing: AtomicBool,
    /// The connection checkpoints run on, once one has run.
    checkpointer: parking_lot::Mutex<Option<Connection>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Connections")
            .field("path", &self.path)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// Opens a connection to `path` with the settings every connection shares,
/// and the given busy timeout.
pub(super) fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(busy_timeout)?;
    let mode = write_ahead_log(&connection, busy_timeout)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode stayed {mode}, WAL is required"
        )));
    }
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT.to_string())?;
    Ok(connection)
}

/// Puts the file in WAL mode (a no-op once it is) and gives the mode it is
/// in. Switching a new file takes a lock SQLite does not wait for: while
/// another process is switching or migrating the same new file it answers
/// `SQLITE_BUSY` at once, so the switch is retried for up to `wait`.
fn write_ahead_log(connection: &Connection, wait: Duration) -> rusqlite::Result<String> {
    let mode: String = connection.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(mode);
    }
    let deadline = std::time::Instant::now() + wait;
    loop {
        match connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            switched => return switched,
        }
    }
}

impl Connections {
    /// Takes `writer`, already migrated, as the write connection.
    pub(super) fn new(path: &Path, writer: Connection) -> rusqlite::Result<Self> {
        writer.busy_timeout(Duration::ZERO)?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(Connections {
            path: path.to_path_buf(),
            idle_readers: parking_lot::Mutex::new(Vec::new()),
            reader_slots: tokio::sync::Semaphore::new(READERS),
            writer: tokio::sync::Mutex::new(Some(writer)),
            closed: AtomicBool::new(false),
            writes_since_checkpoint: AtomicU32::new(0),
            checkpointing: AtomicBool::new(false),
            checkpointer: parking_lot::Mutex::new(None),
        })
    }

    /// Runs `query` on a read connection.
    pub(super) async fn read<T>(
        &self,
        mut query: impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ServerError> {
        // A query never waits, so a task that runs queries in a loop would
        // keep its thread for ever: each one counts against the task's
        // budget, and the task yields when the budget is spent.
        tokio::task::consume_budget().await;
        let _slot = self
            .reader_slots
            .acquire()
            .await
            .map_err(|_closed| ServerError::DatabaseClosed)?;
        // A read cancelled during a pause drops its connection, which
        // closes it; the next read opens another.
        let reader = self.lend_reader()?;
        let mut busy = Busy::new();
        let result = loop {
            match busy.pause_after(query(&reader)) {
                Tried::Done(result) => break result,
                Tried::Again(pause) => tokio::time::sleep(pause).await,
            }
        };
        self.give_back(reader);
        result.map_err(ServerError::Query)
    }

    /// Runs `query` on a read connection on a blocking thread: for a read
    /// that may take milliseconds (a large page), which would hold up
    /// every task of a runtime thread meanwhile.
    pub(super) async fn read_on_blocking_thread<T: Send + 'static>(
        &self,
        query: impl Fn(&Connection) -> rusqlite::Result<T> + Send + Sync + 'static,
    ) -> Result<T, ServerError> {
        let _slot = self
            .reader_slots
            .acquire()
            .await
            .map_err(|_closed| ServerError::DatabaseClosed)?;
        let query = Arc::new(query);
        let mut reader = self.lend_reader()?;
        let mut busy = Busy::new();
        let result = loop {
            let query = query.clone();
            let ran = tokio::task::spawn_blocking(move || {
                let result = query(&reader);
                (reader, result)
            })
            .await;
            let result = match ran {
                Ok((back, result)) => {
                    reader = back;
                    result
                }
                Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
                // The runtime is shutting down.
                Err(_cancelled) => return Err(ServerError::DatabaseClosed),
            };
            match busy.pause_after(result) {
                Tried::Done(result) => break result,
                Tried::Again(pause) => tokio::time::sleep(pause).await,
            }
        };
        self.give_back(reader);
        result.map_err(ServerError::Query)
    }

    /// Runs `statement` on the write connection, after the writes queued
    /// before it; one checkpoint every [`CHECKPOINT_EVERY`] writes.
    pub(super) async fn write<T>(
        self: &Arc<Self>,
        mut statement: impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ServerError> {
        tokio::task::consume_budget().await;
        let writer = self.writer.lock().await;
        let mut busy = Busy::new();
        let written = loop {
            let result = match writer.as_ref() {
                Some(connection) => statement(connection),
                None => return Err(ServerError::DatabaseClosed),
            };
            match busy.pause_after(result) {
                Tried::Done(result) => break result.map_err(ServerError::Query)?,
                Tried::Again(pause) => tokio::time::sleep(pause).await,
            }
        };
        drop(writer);
        self.count_write();
        Ok(written)
    }

    /// Closes the write connection and every idle reader; reads and writes
    /// after this are [`ServerError::DatabaseClosed`].
    pub(super) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.reader_slots.close();
        self.idle_readers.lock().clear();
        self.checkpointer.lock().take();
        if let Some(writer) = self.writer.lock().await.take()
            && let Err((_, error)) = writer.close()
        {
            tracing::warn!(%error, "closing the database's writer connection");
        }
    }

    /// An idle read connection, or a new one when none is idle.
    fn lend_reader(&self) -> Result<Connection, ServerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ServerError::DatabaseClosed);
        }
        let idle = self.idle_readers.lock().pop();
        let connection = match idle {
            Some(connection) => connection,
            None => {
                let connection = open(&self.path, Duration::ZERO)?;
                connection.pragma_update(None, "query_only", "ON")?;
                connection
            }
        };
        Ok(connection)
    }

    /// `reader` back among the idle ones, unless the database is closed
    /// (it is closed then).
    fn give_back(&self, reader: Connection) {
        if !self.closed.load(Ordering::Acquire) {
            self.idle_readers.lock().push(reader);
        }
    }

    /// Counts a write; every [`CHECKPOINT_EVERY`] writes, starts a
    /// checkpoint in the background.
    fn count_write(self: &Arc<Self>) {
        let writes = self.writes_since_checkpoint.fetch_add(1, Ordering::Relaxed) + 1;
        if writes < CHECKPOINT_EVERY || self.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.writes_since_checkpoint.store(0, Ordering::Relaxed);
        let connections = self.clone();
        tokio::spawn(async move {
            connections.checkpoint().await;
            connections.checkpointing.store(false, Ordering::Release);
        });
    }

    /// One checkpoint ([`checkpoint_and_restart`]), on a blocking thread,
    /// with this process' writes held back meanwhile.
    async fn checkpoint(self: &Arc<Self>) {
        let writer = self.writer.lock().await;
        if writer.is_none() {
            return;
        }
        let connections = self.clone();
        let checkpointed = tokio::task::spawn_blocking(move || {
            let mut checkpointer = connections.checkpointer.lock();
            let connection = match checkpointer.take() {
                Some(connection) => connection,
                None => open(&connections.path, CHECKPOINT_WAIT)?,
            };
            let finished = checkpoint_and_restart(&connection);
            *checkpointer = Some(connection);
            finished
        })
        .await;
        drop(writer);
        match checkpointed {
            Ok(Ok(true)) => {}
            // A read still needed frames of the WAL, or another process
            // was writing: tried again a few writes later.
            Ok(Ok(false)) => self
                .writes_since_checkpoint
                .store(CHECKPOINT_EVERY - RETRY_AFTER, Ordering::Relaxed),
            Ok(Err(error)) => tracing::warn!(%error, "cannot checkpoint the database's WAL"),
            Err(error) => tracing::warn!(%error, "the database's checkpoint stopped"),
        }
    }
}

/// Copies the WAL into the database file, then (`RESTART`) waits up to
/// [`CHECKPOINT_WAIT`] for the reads that began before the copy to end, so
/// that the next write starts the WAL over and cuts it back to
/// [`WAL_SIZE_LIMIT`]. Left to chance, that start-over rarely came while
/// reads kept coming, and the WAL grew past 8 MiB under steady reads.
/// Readers are never blocked. True when both steps finished.
///
/// The copy runs first on its own (`PASSIVE`, no waiting): when a long
/// read still needs the WAL's frames, waiting for it is pointless.
fn checkpoint_and_restart(connection: &Connection) -> rusqlite::Result<bool> {
    // The row: whether it gave up waiting, the WAL's frames, and how many
    // of them are in the database file now.
    let checkpoint = |mode: &str| {
        connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
    };
    let (_, frames, copied) = checkpoint("PASSIVE")?;
    if copied < frames {
        return Ok(false);
    }
    let (gave_up, frames, copied) = checkpoint("RESTART")?;
    Ok(gave_up == 0 && copied >= frames)
}

impl From<rusqlite::Error> for ServerError {
    fn from(error: rusqlite::Error) -> Self {
        ServerError::Query(error)
    }
}

/// What to do after one try of a query.
enum Tried<T> {
    /// Its result, final.
    Done(rusqlite::Result<T>),
    /// It met another process' lock: try again after this pause.
    Again(Duration),
}

/// The pauses between tries of a query that meets a lock: doubling from
/// 1 ms up to [`LONGEST_PAUSE`], until [`BUSY_TIMEOUT`] has passed.
struct Busy {
    started: Instant,
    pause: Duration,
}

impl Busy {
    fn new() -> Self {
        Busy {
            started: Instant::now(),
            pause: Duration::from_millis(1),
        }
    }

    fn pause_after<T>(&mut self, result: rusqlite::Result<T>) -> Tried<T> {
        let locked = matches!(
            result
                .as_ref()
                .err()
                .and_then(rusqlite::Error::sqlite_error_code),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        );
        if !locked || self.started.elapsed() + self.pause > BUSY_TIMEOUT {
            return Tried::Done(result);
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        Tried::Again(pause)
    }
}
