//! The schema's migrations: embedded in the binary, applied at start, in
//! order, each exactly once.
//!
//! The schema's version is SQLite's `user_version` (in the file's header).
//! All pending migrations and the new version are one `IMMEDIATE`
//! transaction: two processes starting at once apply them once, the second
//! waiting for the first. A file migrated by an earlier release of this
//! service (which used sqlx's `_sqlx_migrations` table) starts from the
//! versions that table lists. A file newer than this binary is refused
//! rather than used with a schema the binary does not know.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// The migrations, in order: the schema's version after each, and its SQL
/// (`migrations/NNNN_*.sql`).
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_users_and_tasks.sql")),
    (2, include_str!("../../migrations/0002_task_due_at.sql")),
    (3, include_str!("../../migrations/0003_user_count.sql")),
];

/// What applying the migrations found.
#[derive(Debug)]
pub(super) enum Migrated {
    /// The schema is at the latest version.
    Current,
    /// The file's schema is newer than this binary knows.
    TooNew {
        /// The file's version.
        found: i64,
        /// The latest this binary knows.
        known: i64,
    },
}

/// Applies the migrations `connection`'s file has not had yet.
pub(super) fn apply(connection: &mut Connection) -> rusqlite::Result<Migrated> {
    let known = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut version: i64 =
        transaction.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == 0 {
        version = applied_by_sqlx(&transaction)?;
    }
    if version > known {
        return Ok(Migrated::TooNew {
            found: version,
            known,
        });
    }
    let applied = version;
    for (after, sql) in MIGRATIONS.iter().filter(|(after, _)| *after > applied) {
        transaction.execute_batch(sql)?;
        version = *after;
    }
    transaction.pragma_update(None, "user_version", version)?;
    transaction.commit()?;
    Ok(Migrated::Current)
}

/// The last version an earlier release applied through sqlx, or 0.
fn applied_by_sqlx(connection: &Connection) -> rusqlite::Result<i64> {
    let has_table = connection
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !has_table {
        return Ok(0);
    }
    connection.query_row(
        "SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success",
        [],
        |row| row.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Database;
    use crate::error::ServerError;

    fn version(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .expect("open")
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version")
    }

    /// A file as an sqlx-era release left it: the schema of its first
    /// `applied` migrations, and `_sqlx_migrations` listing them.
    fn sqlx_era_file(path: &std::path::Path, applied: i64) {
        let connection = Connection::open(path).expect("open");
        connection
            .execute_batch(
                "CREATE TABLE _sqlx_migrations (
                    version BIGINT PRIMARY KEY, description TEXT NOT NULL,
                    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                    success BOOLEAN NOT NULL, checksum BLOB NOT NULL,
                    execution_time BIGINT NOT NULL)",
            )
            .expect("sqlx's table");
        for (after, sql) in MIGRATIONS.iter().filter(|(after, _)| *after <= applied) {
            connection.execute_batch(sql).expect("an old migration");
            connection
                .execute(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                     VALUES (?, 'old', 1, x'00', 1)",
                    [after],
                )
                .expect("its row");
        }
    }

    /// A new file gets every migration; opening it again changes nothing.
    #[tokio::test]
    async fn a_new_file_is_migrated_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("new.db");
        Database::open(&path).await.expect("open").close().await;
        let latest = MIGRATIONS.last().expect("migrations").0;
        assert_eq!(version(&path), latest);
        Database::open(&path)
            .await
            .expect("open again")
            .close()
            .await;
        assert_eq!(version(&path), latest);
    }

    /// Migration 3 starts the account count from the accounts a file has.
    #[tokio::test]
    async fn the_account_count_starts_from_the_accounts_a_file_has() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("v2.db");
        {
            let connection = Connection::open(&path).expect("open");
            for (_, sql) in MIGRATIONS.iter().filter(|(after, _)| *after <= 2) {
                connection.execute_batch(sql).expect("an old migration");
            }
            connection
                .pragma_update(None, "user_version", 2)
                .expect("version 2");
            for name in ["a", "b", "c"] {
                connection
                    .execute(
                        "INSERT INTO users (username, password_hash) VALUES (?, 'hash')",
                        [name],
                    )
                    .expect("a user");
            }
        }
        let db = Database::open(&path).await.expect("open");
        let fourth = db.create_user("d", "hash", 4).await.expect("insert");
        assert!(
            matches!(fourth, crate::db::NewUserOutcome::Created(_)),
            "{fourth:?}"
        );
        let fifth = db.create_user("e", "hash", 4).await.expect("insert");
        assert!(
            matches!(fifth, crate::db::NewUserOutcome::Full),
            "{fifth:?}"
        );
        db.close().await;
    }

    /// A file an sqlx-era release migrated fully is not migrated again (its
    /// `ALTER TABLE` would fail), and one it migrated in part gets the rest.
    #[tokio::test]
    async fn files_migrated_by_an_sqlx_era_release_carry_on_from_there() {
        let dir = tempfile::tempdir().expect("temp dir");
        let latest = MIGRATIONS.last().expect("migrations").0;
        for applied in [1, latest] {
            let path = dir.path().join(format!("sqlx-{applied}.db"));
            sqlx_era_file(&path, applied);
            let db = Database::open(&path).await.expect("an sqlx-era file opens");
            db.find_user_by_name("nobody").await.expect("a query");
            db.close().await;
            assert_eq!(version(&path), latest, "after {applied} applied by sqlx");
            let due_at_exists: i64 = Connection::open(&path)
                .expect("open")
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('tasks') WHERE name = 'due_at'",
                    [],
                    |row| row.get(0),
                )
                .expect("table info");
            assert_eq!(due_at_exists, 1);
        }
    }

    /// A file a later release migrated is refused with an error naming both
    /// versions, and left as it was.
    #[tokio::test]
    async fn a_file_newer_than_the_binary_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("newer.db");
        Database::open(&path).await.expect("open").close().await;
        Connection::open(&path)
            .expect("open")
            .pragma_update(None, "user_version", 99)
            .expect("a later release's version");
        let refused = Database::open(&path).await.expect_err("refused");
        assert!(
            matches!(refused, ServerError::DatabaseTooNew { found: 99, .. }),
            "{refused:?}"
        );
        let message = refused.to_string();
        let latest = MIGRATIONS.last().expect("migrations").0;
        assert!(
            message.contains("schema version 99, newer than this binary's")
                && message.ends_with(&format!("binary's {latest}; run a release that knows it")),
            "{message}"
        );
        assert_eq!(version(&path), 99);
    }

    /// Two processes opening one new file at once: both open it, and the
    /// migrations ran once (a second run of the `ALTER TABLE` would fail).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_starting_at_once_migrate_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("racing.db");
        let opens = (0..4).map(|_| {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                tokio::runtime::Handle::current().block_on(Database::open(&path))
            })
        });
        for opened in futures_util::future::join_all(opens).await {
            opened
                .expect("open task")
                .expect("every process opens it")
                .close()
                .await;
        }
        assert_eq!(version(&path), MIGRATIONS.last().expect("migrations").0);
    }
}
