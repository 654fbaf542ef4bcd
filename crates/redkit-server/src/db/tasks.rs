//! Tasks, always scoped by their owner.

use serde::{Deserialize, Serialize};

use super::Database;

/// A task as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Task {
    /// Row id.
    pub id: i64,
    /// Short title.
    pub title: String,
    /// Free text.
    pub description: String,
    /// Whether it is done.
    pub done: bool,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
    /// When it is due (RFC 3339, UTC, milliseconds), if ever; a reminder is
    /// delivered then.
    pub due_at: Option<String>,
}

/// A validated new task.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Done.
    pub done: bool,
    /// Due time (normalized RFC 3339).
    pub due_at: Option<String>,
}

/// A validated partial update; `None` leaves the field unchanged.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New state.
    pub done: Option<bool>,
    /// New due time: `Some(None)` clears it.
    pub due_at: Option<Option<String>>,
}

/// The columns of [`Task`], as a literal for `concat!`.
macro_rules! columns {
    () => {
        "id, title, description, done, created_at, updated_at, due_at"
    };
}

impl Database {
    /// At most `limit` tasks of `user_id` with an id above `after`, oldest
    /// first (keyset pagination: a page is stable while tasks are added).
    pub async fn list_tasks(
        &self,
        user_id: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Task>, sqlx::Error> {
        // `LIMIT +?`, not `LIMIT ?`: SQLite plans a bare `LIMIT ?` with the
        // bound value and marks the statement to be compiled again whenever
        // that parameter is bound, which is every call — a third of the
        // database's CPU under a write-heavy load. The unary plus keeps the
        // limit an expression evaluated at run time, and the statement
        // cached as prepared.
        sqlx::query_as::<_, Task>(concat!(
            "SELECT ",
            columns!(),
            " FROM tasks WHERE user_id = ? AND id > ? ORDER BY id LIMIT +?"
        ))
        .bind(user_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Task `id` if it belongs to `user_id`.
    pub async fn get_task(&self, user_id: i64, id: i64) -> Result<Option<Task>, sqlx::Error> {
        sqlx::query_as::<_, Task>(concat!(
            "SELECT ",
            columns!(),
            " FROM tasks WHERE user_id = ? AND id = ?"
        ))
        .bind(user_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Inserts a task for `user_id` unless they have `max_tasks` already
    /// (`None` then). The count and the insert are one statement, so two
    /// creates at once, from any process, cannot both pass the count.
    pub async fn create_task(
        &self,
        user_id: i64,
        task: &NewTask,
        max_tasks: u32,
    ) -> Result<Option<Task>, sqlx::Error> {
        let insert = sqlx::query_as::<_, Task>(concat!(
            "INSERT INTO tasks (user_id, title, description, done, due_at)
             SELECT ?, ?, ?, ?, ?
             WHERE (SELECT count(*) FROM tasks WHERE user_id = ?) < ?
             RETURNING ",
            columns!(),
            ""
        ))
        .bind(user_id)
        .bind(&task.title)
        .bind(&task.description)
        .bind(task.done)
        .bind(&task.due_at)
        .bind(user_id)
        .bind(max_tasks);
        self.write_returning(insert).await
    }

    /// Applies `patch` to task `id` of `user_id`, in one statement; `None`
    /// when there is no such task for that user.
    pub async fn update_task(
        &self,
        user_id: i64,
        id: i64,
        patch: &TaskPatch,
    ) -> Result<Option<Task>, sqlx::Error> {
        let update = sqlx::query_as::<_, Task>(concat!(
            "UPDATE tasks SET
                title = COALESCE(?, title),
                description = COALESCE(?, description),
                done = COALESCE(?, done),
                due_at = CASE WHEN ? THEN ? ELSE due_at END,
                updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE user_id = ? AND id = ?
             RETURNING ",
            columns!(),
            ""
        ))
        .bind(&patch.title)
        .bind(&patch.description)
        .bind(patch.done)
        .bind(patch.due_at.is_some())
        .bind(patch.due_at.clone().flatten())
        .bind(user_id)
        .bind(id);
        self.write_returning(update).await
    }

    /// Deletes task `id` of `user_id`; false when there was none.
    pub async fn delete_task(&self, user_id: i64, id: i64) -> Result<bool, sqlx::Error> {
        let result = sqlx::query("DELETE FROM tasks WHERE user_id = ? AND id = ?")
            .bind(user_id)
            .bind(id)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}
