//! Users: username and argon2 password hash.

use rusqlite::{OptionalExtension, Row};
use serde::Serialize;

use super::Database;
use crate::error::ServerError;

/// A registered user.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Unique (case-insensitively) username.
    pub username: String,
    /// The PHC-format argon2 hash; never serialised.
    #[serde(skip)]
    pub password_hash: String,
}

impl User {
    /// A row of `id, username, password_hash`.
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(User {
            id: row.get(0)?,
            username: row.get(1)?,
            password_hash: row.get(2)?,
        })
    }
}

/// What inserting a user did.
#[derive(Debug)]
pub enum NewUserOutcome {
    /// The user was created.
    Created(User),
    /// The username is taken.
    Taken,
    /// The service already holds its most accounts.
    Full,
}

impl Database {
    /// Inserts a user unless `max_accounts` exist already; a taken username
    /// and a full service are outcomes, not errors. The check and the
    /// insert are one statement, so concurrent registrations (from any
    /// process on the file) cannot pass the limit; the count is the row
    /// the schema's triggers keep (migration 3), not a scan of the table.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        max_accounts: u32,
    ) -> Result<NewUserOutcome, ServerError> {
        let inserted = self
            .write_returning(
                "INSERT INTO users (username, password_hash)
                 SELECT ?1, ?2 WHERE (SELECT value FROM counts WHERE name = 'users') < ?3
                 RETURNING id, username, password_hash",
                (username, password_hash, max_accounts),
                User::from_row,
            )
            .await;
        match inserted {
            Ok(Some(user)) => Ok(NewUserOutcome::Created(user)),
            Ok(None) => Ok(NewUserOutcome::Full),
            Err(ServerError::Query(rusqlite::Error::SqliteFailure(error, _)))
                if error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                Ok(NewUserOutcome::Taken)
            }
            Err(error) => Err(error),
        }
    }

    /// `Taken` or `Full` when a registration of `username` cannot succeed
    /// now, `None` when it may (never `Created`). Read before the password
    /// is hashed, so that a taken name or a full service is refused without
    /// spending a hash on it (tens of milliseconds of CPU and 19 MiB on one
    /// of the few hashing threads): a client repeating such registrations
    /// does not hold up the ones that can succeed. [`Database::create_user`]
    /// still decides, for the registrations racing past this read.
    pub async fn registration_refused(
        &self,
        username: &str,
        max_accounts: u32,
    ) -> Result<Option<NewUserOutcome>, ServerError> {
        let (taken, full) = self
            .connections
            .read(|connection| {
                connection
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM users WHERE username = ?1),
                                (SELECT value FROM counts WHERE name = 'users') >= ?2",
                    )?
                    .query_row((username, max_accounts), |row| {
                        Ok((row.get::<_, bool>(0)?, row.get::<_, bool>(1)?))
                    })
            })
            .await?;
        Ok(if taken {
            Some(NewUserOutcome::Taken)
        } else if full {
            Some(NewUserOutcome::Full)
        } else {
            None
        })
    }

    /// Deletes the user `id` (and, by cascade, their tasks); true when it existed.
    pub async fn delete_user(&self, id: i64) -> Result<bool, ServerError> {
        let deleted = self
            .connections
            .write(|connection| {
                connection
                    .prepare_cached("DELETE FROM users WHERE id = ?")?
                    .execute([id])
            })
            .await?;
        Ok(deleted > 0)
    }

    /// The user named `username` (case-insensitively).
    pub async fn find_user_by_name(&self, username: &str) -> Result<Option<User>, ServerError> {
        self.connections
            .read(|connection| {
                connection
                    .prepare_cached(
                        "SELECT id, username, password_hash FROM users WHERE username = ?",
                    )?
                    .query_row([username], User::from_row)
                    .optional()
            })
            .await
    }
}
