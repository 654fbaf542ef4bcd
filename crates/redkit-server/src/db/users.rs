//! Users: username and argon2 password hash.

use serde::Serialize;

use super::Database;

/// A registered user.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Unique (case-insensitively) username.
    pub username: String,
    /// The PHC-format argon2 hash; never serialised.
    #[serde(skip)]
    pub password_hash: String,
}

/// What inserting a user did.
#[derive(Debug)]
pub enum NewUserOutcome {
    /// The user was created.
    Created(User),
    /// The username is taken.
    Taken,
}

impl Database {
    /// Inserts a user; a taken username is an outcome, not an error.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<NewUserOutcome, sqlx::Error> {
        let insert = sqlx::query_as::<_, User>(
            "INSERT INTO users (username, password_hash) VALUES (?, ?)
             RETURNING id, username, password_hash",
        )
        .bind(username)
        .bind(password_hash);
        match self.write_returning(insert).await {
            Ok(Some(user)) => Ok(NewUserOutcome::Created(user)),
            Ok(None) => Err(sqlx::Error::RowNotFound),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Ok(NewUserOutcome::Taken)
            }
            Err(error) => Err(error),
        }
    }

    /// Deletes the user `id` (and, by cascade, their tasks); true when it existed.
    pub async fn delete_user(&self, id: i64) -> Result<bool, sqlx::Error> {
        let deleted = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The user named `username` (case-insensitively).
    pub async fn find_user_by_name(&self, username: &str) -> Result<Option<User>, sqlx::Error> {
        sqlx::query_as::<_, User>(
            "SELECT id, username, password_hash FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await
    }
}
