//! The service's one error type: what stops it from starting or serving.
//! Errors answered to HTTP clients are [`crate::api_error::ApiError`]s.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can stop the service from starting or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The Redis or embedded-store configuration is invalid, or a redkit
    /// component could not be built.
    #[error(transparent)]
    Redkit(#[from] redkit::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The SQLite database could not be opened.
    #[error("cannot open the database {}", path.display())]
    Database {
        /// The file asked for (`--db` / `REDKIT_DB`).
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The embedded migrations could not be applied.
    #[error("cannot migrate the database {}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The database's schema is newer than this binary: a later release
    /// migrated it.
    #[error(
        "the database {} has schema version {found}, newer than this binary's {known}; run a release that knows it",
        path.display()
    )]
    DatabaseTooNew {
        /// The database file.
        path: PathBuf,
        /// The file's schema version.
        found: i64,
        /// The latest version this binary knows.
        known: i64,
    },
    /// A database query failed.
    #[error("a database query failed")]
    Query(#[source] rusqlite::Error),
    /// The database was closed (the service is stopping).
    #[error("the database is closed")]
    DatabaseClosed,
    /// The password-hashing threads could not be started.
    #[error("cannot start the password-hashing threads")]
    HashingThreads(#[source] std::io::Error),
    /// The HTTP server failed while serving.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

impl ServerError {
    /// Whether this is the database being out of reach for now (another
    /// process held its lock past the busy timeout, or the service is
    /// stopping) rather than a fault: a client may retry.
    pub fn is_database_unavailable(&self) -> bool {
        match self {
            ServerError::DatabaseClosed => true,
            ServerError::Query(error) => matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }
}
