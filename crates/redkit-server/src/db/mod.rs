//! The service's database: SQLite through sqlx, one file shared by every
//! instance.
//!
//! The file is opened in WAL mode with a busy timeout, so several service
//! processes can read and write it at once; migrations are embedded in the
//! binary and applied at start. Every task query is scoped by `user_id`, so
//! a user can never reach another user's rows whatever id they send.

mod tasks;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use tasks::{NewTask, Task, TaskPatch};
pub use users::{NewUserOutcome, User};

use crate::error::ServerError;

/// Connections in the pool: SQLite serialises writers anyway.
const POOL_SIZE: u32 = 8;

/// How long a writer waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: SqlitePool,
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
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options)
            .await
            .map_err(failed)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| ServerError::Migrate {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Database { pool })
    }

    /// Closes every connection (at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
