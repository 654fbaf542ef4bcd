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
//! A write that returns its row (`… RETURNING`) is read to its end
//! (`Database::write_returning`), never stopped after the first row:
//! SQLite commits an autocommit statement and runs its WAL checkpoint hook
//! only when the statement is stepped to its end. A statement reset after
//! its first row commits without the hook, so the WAL was never checkpointed
//! and grew by every write, without bound (about 12 KB per task created).
//!
//! A read that keeps its snapshot for long stops checkpoints meanwhile; the
//! WAL then grows, and is cut back to `WAL_SIZE_LIMIT` once SQLite starts
//! it over.
//!
//! Every task query is scoped by `user_id`, so a user can never reach
//! another user's rows whatever id they send.

mod tasks;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::query::QueryAs;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, FromRow, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

pub use tasks::{NewTask, Task, TaskPatch};
pub use users::{NewUserOutcome, User};

use crate::error::ServerError;

/// Connections that read at once (WAL readers do not block each other).
const READERS: u32 = 8;

/// What the WAL file is cut back to when SQLite starts it over: twice what
/// the automatic checkpoint lets it reach (1,000 pages of 4 KiB). A read
/// that holds its snapshot for long (a backup, say) stops checkpoints, and
/// the WAL grows meanwhile; without a limit the file would keep that size.
const WAL_SIZE_LIMIT: u64 = 8 << 20;

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
            .foreign_keys(true)
            .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
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

    /// Runs `query`, a write that returns rows (`… RETURNING`), on the
    /// writer and gives its first row (`None` when it changed none).
    ///
    /// Every row is read: the statement commits, and SQLite checkpoints the
    /// WAL when it has grown past its 1,000 pages, only once the statement
    /// has run to its end (module docs).
    async fn write_returning<T>(
        &self,
        query: QueryAs<'_, Sqlite, T, SqliteArguments>,
    ) -> Result<Option<T>, sqlx::Error>
    where
        T: Send + Unpin + for<'row> FromRow<'row, SqliteRow>,
    {
        let rows = query.fetch_all(&mut *self.writer().await?).await?;
        Ok(rows.into_iter().next())
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

    /// A task with a description of 100 bytes.
    fn described_task() -> NewTask {
        let mut new = task("a task");
        new.description = "d".repeat(100);
        new
    }

    /// The size of the WAL file of the database at `path`.
    fn wal_bytes(path: &Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).expect("the WAL file").len()
    }

    /// A new database file in a temporary directory (kept while the
    /// returned directory lives), its path, and a handle on it.
    async fn fresh() -> (tempfile::TempDir, std::path::PathBuf, Database) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tasks.db");
        let db = Database::open(&path).await.expect("open");
        (dir, path, db)
    }

    /// Whether `new` was created for `owner` under a limit of `max_tasks`.
    async fn created(db: &Database, owner: i64, new: &NewTask, max_tasks: u32) -> bool {
        db.create_task(owner, new, max_tasks)
            .await
            .expect("create")
            .is_some()
    }

    /// Creates `new` for `owner`, with no task limit.
    async fn create(db: &Database, owner: i64, new: &NewTask) -> Task {
        db.create_task(owner, new, u32::MAX)
            .await
            .expect("create")
            .expect("no limit")
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
        let (_dir, path, first) = fresh().await;
        let second = Database::open(&path).await.expect("open again");
        let owner = user(&first, "writer").await;
        let tasks: Vec<NewTask> = (0..100).map(|i| task(&format!("task {i}"))).collect();
        let writes = tasks.iter().enumerate().map(|(i, new)| {
            let db = if i % 2 == 0 { &first } else { &second };
            db.create_task(owner, new, u32::MAX)
        });
        for written in futures_util::future::join_all(writes).await {
            written.expect("every write lands").expect("no limit");
        }
        let listed = second.list_tasks(owner, 0, 200).await.expect("list");
        assert_eq!(listed.len(), 100);
        first.close().await;
        second.close().await;
    }

    /// The task limit is counted in the insert itself: 100 creates at once
    /// from two processes against a limit of 37 leave exactly 37 tasks,
    /// and another user is not affected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_task_limit_holds_for_concurrent_creates_of_two_processes() {
        let (_dir, path, first) = fresh().await;
        let second = Database::open(&path).await.expect("open again");
        let owner = user(&first, "writer").await;
        let new = task("one of many");
        let writes = (0..100).map(|i| {
            let db = if i % 2 == 0 { &first } else { &second };
            db.create_task(owner, &new, 37)
        });
        let landed = futures_util::future::join_all(writes)
            .await
            .into_iter()
            .map(|written| written.expect("no error"))
            .filter(Option::is_some)
            .count();
        assert_eq!(landed, 37);
        assert_eq!(
            first.list_tasks(owner, 0, 200).await.expect("list").len(),
            37
        );
        let other = user(&second, "other").await;
        assert!(created(&second, other, &new, 37).await);
        let oldest = first.list_tasks(owner, 0, 1).await.expect("list")[0].id;
        assert!(first.delete_task(owner, oldest).await.expect("delete"));
        assert!(created(&first, owner, &new, 37).await);
        assert!(!created(&first, owner, &new, 37).await);
        first.close().await;
        second.close().await;
    }

    /// The page size is bound on every call (`LIMIT +?`): each call gets
    /// its own limit, never the one the statement was prepared with.
    #[tokio::test]
    async fn each_page_has_the_limit_it_asks_for() {
        let (_dir, _, db) = fresh().await;
        let owner = user(&db, "pager").await;
        for i in 0..10 {
            create(&db, owner, &task(&format!("task {i}"))).await;
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

    /// Every write that returns its row (users, new tasks, changed tasks)
    /// lets SQLite checkpoint the WAL, with readers of every kind busy
    /// meanwhile (a read that stops after its first row too): the WAL
    /// stays near its 1,000-page threshold (4 MiB) instead of growing by
    /// every write (38 MB after these writes when it was never checkpointed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_ahead_log_stays_bounded_under_writes() {
        let (_dir, path, db) = fresh().await;
        let owner = user(&db, "writer").await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (db, stop) = (db.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        db.list_tasks(owner, 0, 20).await.expect("list");
                        db.get_task(owner, 1).await.expect("get");
                        db.find_user_by_name("writer").await.expect("find");
                    }
                })
            })
            .collect();
        let new = described_task();
        let mut ids = Vec::new();
        for _ in 0..2000 {
            ids.push(create(&db, owner, &new).await.id);
        }
        let done = TaskPatch {
            done: Some(true),
            ..TaskPatch::default()
        };
        for id in ids {
            db.update_task(owner, id, &done).await.expect("update");
        }
        for i in 0..300 {
            user(&db, &format!("user {i}")).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for reader in readers {
            reader.await.expect("reader");
        }
        let wal = wal_bytes(&path);
        assert!(wal < 6 << 20, "the WAL grew to {wal} bytes");
        let checkpointed = std::fs::metadata(&path).expect("the database file").len();
        assert!(
            checkpointed > 100 << 10,
            "only {checkpointed} bytes reached the database file"
        );
        db.close().await;
    }

    /// A read that keeps its snapshot stops checkpoints, so the WAL grows
    /// past its usual size; once the read is over, the next checkpoint
    /// starts the WAL over and the file is cut back to the limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wal_grown_behind_a_long_read_is_cut_back() {
        let (_dir, path, db) = fresh().await;
        let owner = user(&db, "writer").await;
        let new = described_task();
        let mut long_read = db.pool.begin().await.expect("begin");
        sqlx::query("SELECT count(*) FROM tasks")
            .fetch_one(&mut *long_read)
            .await
            .expect("read");
        for _ in 0..1500 {
            create(&db, owner, &new).await;
        }
        let grown = wal_bytes(&path);
        assert!(
            grown > 2 * WAL_SIZE_LIMIT,
            "the WAL only grew to {grown} bytes"
        );
        long_read.rollback().await.expect("end the read");
        for _ in 0..1500 {
            create(&db, owner, &new).await;
        }
        let cut = wal_bytes(&path);
        assert!(cut <= WAL_SIZE_LIMIT, "the WAL is still {cut} bytes");
        db.close().await;
    }

    /// After `close`, a write is an error, not a hang or a panic.
    #[tokio::test]
    async fn a_write_after_close_is_an_error() {
        let (_dir, _, db) = fresh().await;
        db.close().await;
        let written = db.create_user("late", "hash").await;
        assert!(
            matches!(written, Err(sqlx::Error::PoolClosed)),
            "{written:?}"
        );
    }
}
