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
        source: sqlx::Error,
    },
    /// The embedded migrations could not be applied.
    #[error("cannot migrate the database {}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The password-hashing threads could not be started.
    #[error("cannot start the password-hashing threads")]
    HashingThreads(#[source] std::io::Error),
    /// The HTTP server failed while serving.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}
