//! The service's database: SQLite through sqlx, one file shared by every
//! instance.
//!
//! The file is opened in WAL mode with a busy timeout, so several service
//! processes can read and write it at once; migrations are embedded in the
//! binary and applied at start.
//!
//! Reads go through a pool of connections; writes through **one**
//! connection behind a queue (an async mutex). SQLite lets one writer in at
//! a time: a second connection of the same process that tries to write
//! meanwhile gets `SQLITE_BUSY` and sleeps in SQLite's busy handler (1, 2,
//! 5, 10 … ms) before it retries. Queued in the process, writers start in
//! order the moment the previous one is done; the busy timeout is left for
//! other processes sharing the file. The writer is a bare connection rather
//! than a pool of one: sqlx's pool pings a connection through its worker
//! thread each time it comes back, one more thread hand-off per write
//! (docs/BENCHMARKS.md, session 9, measures each step).
//!
//! The read pool does not ping a connection before lending it
//! (`test_before_acquire` is off): a connection to a local file does not go
//! stale, and that ping is one more round trip through the worker thread.
//!
//! Every task query is scoped by `user_id`, so a user can never reach
//! another user's rows whatever id they send.

mod tasks;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection, SqlitePool};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

pub use tasks::{NewTask, Task, TaskPatch};
pub use users::{NewUserOutcome, User};

use crate::error::ServerError;

/// Connections that read at once (WAL readers do not block each other).
const READERS: u32 = 8;

/// How long a writer waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    /// For reads.
    pool: SqlitePool,
    /// For writes: one connection, so this process' writers queue here
    /// rather than in SQLite's busy handler (module docs); `None` once
    /// closed.
    writer: Arc<Mutex<Option<SqliteConnection>>>,
}

impl Database {
    /// Opens (creating it if needed) the SQLite file at `path` and applies
    /// the embedded migrations.
    pub async fn open(path: &Path) -> Result<Self, ServerError> {
        let failed = |source| ServerError::Database {
            path: path.to_path_buf(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(failed)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let mut writer = options.connect().await.map_err(failed)?;
        sqlx::migrate!("./migrations")
            .run(&mut writer)
            .await
            .map_err(|source| ServerError::Migrate {
                path: path.to_path_buf(),
                source,
            })?;
        let pool = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(failed)?;
        Ok(Database {
            pool,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// The writer connection, once the writes queued before are done.
    async fn writer(&self) -> Result<MappedMutexGuard<'_, SqliteConnection>, sqlx::Error> {
        MutexGuard::try_map(self.writer.lock().await, Option::as_mut)
            .map_err(|_closed| sqlx::Error::PoolClosed)
    }

    /// Closes every connection (at shutdown), after the writes under way.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(writer) = self.writer.lock().await.take()
            && let Err(error) = writer.close().await
        {
            tracing::warn!(%error, "closing the database's writer connection");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(title: &str) -> NewTask {
        NewTask {
            title: title.to_owned(),
            description: String::new(),
            done: false,
            due_at: None,
        }
    }

    async fn user(db: &Database, name: &str) -> i64 {
        match db.create_user(name, "hash").await {
            Ok(NewUserOutcome::Created(user)) => user.id,
            other => panic!("create user {name}: {other:?}"),
        }
    }

    /// Two handles on one file stand for two service processes: each
    /// queues its own writers, and the busy timeout covers the other's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_of_two_processes_all_land() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tasks.db");
        let first = Database::open(&path).await.expect("open");
        let second = Database::open(&path).await.expect("open again");
        let owner = user(&first, "writer").await;
        let tasks: Vec<NewTask> = (0..100).map(|i| task(&format!("task {i}"))).collect();
        let writes = tasks.iter().enumerate().map(|(i, new)| {
            let db = if i % 2 == 0 { &first } else { &second };
            db.create_task(owner, new)
        });
        for written in futures_util::future::join_all(writes).await {
            written.expect("every write lands");
        }
        let listed = second.list_tasks(owner, 0, 200).await.expect("list");
        assert_eq!(listed.len(), 100);
        first.close().await;
        second.close().await;
    }

    /// The page size is bound on every call (`LIMIT +?`): each call gets
    /// its own limit, never the one the statement was prepared with.
    #[tokio::test]
    async fn each_page_has_the_limit_it_asks_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::open(&dir.path().join("tasks.db"))
            .await
            .expect("open");
        let owner = user(&db, "pager").await;
        for i in 0..10 {
            db.create_task(owner, &task(&format!("task {i}")))
                .await
                .expect("create");
        }
        for limit in [3, 1, 7, 3, 20] {
            let page = db.list_tasks(owner, 0, limit).await.expect("list");
            assert_eq!(page.len(), (limit as usize).min(10), "limit {limit}");
        }
        let after = db.list_tasks(owner, 0, 4).await.expect("list")[3].id;
        let next = db.list_tasks(owner, after, 4).await.expect("list");
        assert!(next.iter().all(|task| task.id > after));
        assert_eq!(next.len(), 4);
        db.close().await;
    }

    /// After `close`, a write is an error, not a hang or a panic.
    #[tokio::test]
    async fn a_write_after_close_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::open(&dir.path().join("tasks.db"))
            .await
            .expect("open");
        db.close().await;
        let written = db.create_user("late", "hash").await;
        assert!(
            matches!(written, Err(sqlx::Error::PoolClosed)),
            "{written:?}"
        );
    }
}
