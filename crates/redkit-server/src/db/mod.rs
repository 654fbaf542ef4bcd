//! The service's database: SQLite through rusqlite, one file shared by
//! every instance.
//!
//! The file is opened in WAL mode, so several service processes can read
//! and write it at once; migrations are embedded in the binary and applied
//! at start (`migrate.rs`).
//!
//! A query runs on the thread of the task that asks for it, not handed to
//! another thread and back (except a page of more than 50 tasks, which
//! takes milliseconds and runs on a blocking thread); `connections.rs`
//! says why, and how that thread never sleeps in SQLite: another process' lock is waited for with
//! async pauses, and the WAL is checkpointed on a blocking thread every few
//! hundred writes. Reads use a stack of idle connections; writes queue in
//! the process behind one connection.
//!
//! A read that keeps its snapshot for long stops checkpoints meanwhile; the
//! WAL then grows, and is cut back to `WAL_SIZE_LIMIT` once SQLite starts
//! it over.
//!
//! Every task query is scoped by `user_id`, so a user can never reach
//! another user's rows whatever id they send.

mod connections;
mod migrate;
mod tasks;
mod users;

use std::path::Path;
use std::sync::Arc;

pub use tasks::{NewTask, Task, TaskPageJson, TaskPatch};
pub use users::{NewUserOutcome, User};

use self::connections::{BUSY_TIMEOUT, Connections};
#[cfg(test)]
use self::connections::{READERS, WAL_SIZE_LIMIT};
use self::migrate::Migrated;
use crate::error::ServerError;

/// A handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    connections: Arc<Connections>,
}

impl Database {
    /// Opens (creating it if needed) the SQLite file at `path` and applies
    /// the embedded migrations.
    ///
    /// Runs on the calling thread; at start, while another process applies
    /// the migrations, it waits for it (up to the busy timeout).
    pub async fn open(path: &Path) -> Result<Self, ServerError> {
        let mut writer =
            connections::open(path, BUSY_TIMEOUT).map_err(|source| ServerError::Database {
                path: path.to_path_buf(),
                source,
            })?;
        let migrated = migrate::apply(&mut writer).map_err(|source| ServerError::Migrate {
            path: path.to_path_buf(),
            source,
        })?;
        if let Migrated::TooNew { found, known } = migrated {
            return Err(ServerError::DatabaseTooNew {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        let connections =
            Connections::new(path, writer).map_err(|source| ServerError::Database {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Database {
            connections: Arc::new(connections),
        })
    }

    /// Runs `sql`, a write that returns rows (`… RETURNING`), with
    /// `params`, and gives its first row (`None` when it changed none).
    /// The statement is stepped to its end, so it has committed when this
    /// returns.
    async fn write_returning<T>(
        &self,
        sql: &'static str,
        params: impl rusqlite::Params + Copy,
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, ServerError> {
        self.connections
            .write(|connection| {
                let rows = connection
                    .prepare_cached(sql)?
                    .query_map(params, row)?
                    .collect::<rusqlite::Result<Vec<T>>>()?;
                Ok(rows.into_iter().next())
            })
            .await
    }

    /// Closes every connection (at shutdown), after the writes under way.
    pub async fn close(&self) {
        self.connections.close().await;
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
        match db.create_user(name, "hash", u32::MAX).await {
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

    /// The account limit is counted in the insert itself: 60 registrations
    /// at once from two processes against a limit of 23 leave exactly 23
    /// accounts, and a taken name is still told apart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_account_limit_holds_for_concurrent_registrations_of_two_processes() {
        let (_dir, path, first) = fresh().await;
        let second = Database::open(&path).await.expect("open again");
        let names: Vec<String> = (0..60).map(|i| format!("user{i}")).collect();
        let writes = names.iter().enumerate().map(|(i, name)| {
            let db = if i % 2 == 0 { &first } else { &second };
            db.create_user(name, "hash", 23)
        });
        let outcomes = futures_util::future::join_all(writes).await;
        let created = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Ok(NewUserOutcome::Created(_))))
            .count();
        let full = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Ok(NewUserOutcome::Full)))
            .count();
        assert_eq!((created, full), (23, 37), "{outcomes:?}");
        let existing = outcomes
            .iter()
            .find_map(|outcome| match outcome {
                Ok(NewUserOutcome::Created(user)) => Some(user.clone()),
                _ => None,
            })
            .expect("some were created");
        let taken = first
            .create_user(&existing.username, "hash", 100)
            .await
            .expect("insert");
        assert!(matches!(taken, NewUserOutcome::Taken), "{taken:?}");
        // The count follows deletes: one account gone makes room for one.
        assert!(second.delete_user(existing.id).await.expect("delete"));
        let room = first.create_user("late", "hash", 23).await.expect("insert");
        assert!(matches!(room, NewUserOutcome::Created(_)), "{room:?}");
        let full = second
            .create_user("later", "hash", 23)
            .await
            .expect("insert");
        assert!(matches!(full, NewUserOutcome::Full), "{full:?}");
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

    /// SQLite's rendering of a page holds what `Task`'s `Serialize` gives
    /// for the same page, whatever the text holds (quotes, backslashes,
    /// control characters, non-ASCII), and names the next page exactly
    /// while more tasks remain.
    #[tokio::test]
    async fn a_page_rendered_by_sqlite_equals_the_typed_page_encoded() {
        let (_dir, _, db) = fresh().await;
        let owner = user(&db, "renderer").await;
        let other = user(&db, "someone else").await;
        let texts = [
            "plain",
            "a \"quoted\" \\ back\\slash",
            "tab\tnew\nline\r\u{1}\u{1f}\u{7f}",
            "ünïcödé — 日本語 🦀",
            "</script><b>&amp;",
            "",
        ];
        for (i, text) in texts.iter().enumerate() {
            let mut new = task(text);
            new.description = text.repeat(3);
            new.done = i % 2 == 0;
            new.due_at = (i % 3 == 0).then(|| "2030-01-02T03:04:05.678Z".to_owned());
            create(&db, owner, &new).await;
            create(&db, other, &task("not yours")).await;
        }
        let empty = db
            .task_page_json(owner, i64::MAX - 1, 20)
            .await
            .expect("page");
        assert_eq!((empty.json.as_str(), empty.next_after), ("[]", None));
        // 100: past `INLINE_PAGE_MAX`, rendered on a blocking thread.
        for limit in [1, 2, 4, 6, 20, 100] {
            let mut after = 0;
            let mut seen = 0;
            loop {
                let page = db.task_page_json(owner, after, limit).await.expect("page");
                let typed = db.list_tasks(owner, after, limit).await.expect("list");
                let rendered: serde_json::Value =
                    serde_json::from_str(&page.json).expect("the page is JSON");
                assert_eq!(rendered, serde_json::to_value(&typed).expect("encode"));
                seen += typed.len();
                let more = seen < texts.len();
                assert_eq!(
                    page.next_after,
                    more.then(|| typed.last().expect("a full page").id),
                    "limit {limit}, after {after}"
                );
                match page.next_after {
                    Some(next) => after = next,
                    None => break,
                }
            }
            assert_eq!(seen, texts.len(), "limit {limit}");
        }
        db.close().await;
    }

    /// Checkpoints copy the WAL into the database file while readers of
    /// every kind are busy (a read that stops after its first row too), and
    /// the WAL file ends within its size limit (8 MiB) instead of growing by
    /// every write (38 MB after these writes when it was never checkpointed).
    /// On a quiet machine it stays under 4 MiB throughout; on a loaded
    /// two-core CI the readers held the WAL's restart back past 6 MiB once,
    /// so the bound is checked after the readers stop and the writes go on.
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
        let checkpointed = std::fs::metadata(&path).expect("the database file").len();
        assert!(
            checkpointed > 100 << 10,
            "only {checkpointed} bytes reached the database file while readers ran"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for reader in readers {
            reader.await.expect("reader");
        }
        for i in 0..300 {
            user(&db, &format!("user {i}")).await;
        }
        let wal = wal_bytes(&path);
        assert!(wal <= WAL_SIZE_LIMIT, "the WAL grew to {wal} bytes");
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
        let long_read = rusqlite::Connection::open(&path).expect("open");
        long_read
            .execute_batch("BEGIN; SELECT count(*) FROM tasks;")
            .expect("a read that keeps its snapshot");
        for _ in 0..1500 {
            create(&db, owner, &new).await;
        }
        let grown = wal_bytes(&path);
        assert!(
            grown > 2 * WAL_SIZE_LIMIT,
            "the WAL only grew to {grown} bytes"
        );
        long_read.execute_batch("ROLLBACK").expect("end the read");
        for _ in 0..1500 {
            create(&db, owner, &new).await;
        }
        let cut = wal_bytes(&path);
        assert!(cut <= WAL_SIZE_LIMIT, "the WAL is still {cut} bytes");
        db.close().await;
    }

    /// While another process holds the write lock, a write waits for it
    /// with async pauses, not in SQLite: on a runtime of one thread, a
    /// ticking task keeps running meanwhile; and the write lands once the
    /// lock is released. A read meanwhile is not held up at all.
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_waits_for_another_process_lock_without_blocking_its_thread() {
        let (_dir, path, db) = fresh().await;
        let owner = user(&db, "waiter").await;
        let other_process = rusqlite::Connection::open(&path).expect("open");
        other_process
            .execute_batch(
                "BEGIN IMMEDIATE; INSERT INTO users (username, password_hash) VALUES ('x', 'h');",
            )
            .expect("take the write lock");
        let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let write = tokio::spawn({
            let db = db.clone();
            async move { create(&db, owner, &task("after the lock")).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!write.is_finished(), "the write did not wait for the lock");
        let read = db.list_tasks(owner, 0, 20).await.expect("a read meanwhile");
        assert!(read.is_empty());
        let ticked = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            ticked >= 20,
            "the thread was blocked: {ticked} ticks in 300 ms"
        );
        other_process
            .execute_batch("COMMIT")
            .expect("release the lock");
        let written = tokio::time::timeout(std::time::Duration::from_secs(2), write)
            .await
            .expect("the write lands soon after the lock is released")
            .expect("write task");
        assert_eq!(written.title, "after the lock");
        ticker.abort();
        db.close().await;
    }

    /// The open file descriptors of this process on the file at `path`:
    /// one per SQLite connection to it.
    fn connections_to(path: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target == path)
            .count()
    }

    /// While the database is locked, reads wait for it with async pauses,
    /// each holding a connection: 40 of them open no more than `READERS`
    /// connections, and all are answered once the lock is gone. (The lock
    /// is simulated: in WAL mode another process can hardly keep readers
    /// out, so each read meets `SQLITE_BUSY` for its first 300 ms.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_waiting_for_a_lock_open_a_bounded_number_of_connections() {
        let (_dir, path, db) = fresh().await;
        let path = path.canonicalize().expect("path");
        let before = connections_to(&path);
        let locked_until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let reads: Vec<_> = (0..40)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.connections
                        .read(|connection| {
                            if std::time::Instant::now() < locked_until {
                                let busy = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY);
                                return Err(rusqlite::Error::SqliteFailure(busy, None));
                            }
                            connection.query_row("SELECT count(*) FROM users", [], |row| {
                                row.get::<_, i64>(0)
                            })
                        })
                        .await
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        assert!(
            reads.iter().all(|read| !read.is_finished()),
            "a read did not wait"
        );
        let opened = connections_to(&path) - before;
        assert!(opened <= READERS, "{opened} read connections for 40 reads");
        for read in reads {
            let counted = tokio::time::timeout(std::time::Duration::from_secs(3), read)
                .await
                .expect("answered once the lock is gone")
                .expect("read task")
                .expect("read");
            assert_eq!(counted, 0);
        }
        db.close().await;
    }

    /// After `close`, a write is an error, not a hang or a panic.
    #[tokio::test]
    async fn a_write_after_close_is_an_error() {
        let (_dir, _, db) = fresh().await;
        db.close().await;
        let written = db.create_user("late", "hash", u32::MAX).await;
        assert!(
            matches!(written, Err(ServerError::DatabaseClosed)),
            "{written:?}"
        );
    }
}
