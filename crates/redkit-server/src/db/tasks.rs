//! Tasks, always scoped by their owner.

use rusqlite::{OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::Database;
use crate::error::ServerError;

/// A task as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl Task {
    /// A row of [`columns!`], in its order.
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Task {
            id: row.get(0)?,
            title: row.get(1)?,
            description: row.get(2)?,
            done: row.get(3)?,
            created_at: row.get(4)?,
            updated_at: row.get(5)?,
            due_at: row.get(6)?,
        })
    }
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

/// One page of a user's tasks as the API answers it: a JSON array of
/// [`Task`] objects, rendered by SQLite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPageJson {
    /// The page, a JSON array (`[]` when empty).
    pub json: String,
    /// The id the next page starts after, while more tasks remain.
    pub next_after: Option<i64>,
}

/// The largest page rendered on the asking task's thread: about 1 ms for
/// 50 of the largest tasks a user may write (8.8 KB of JSON each; measured
/// 2.0 ms for 100 of them, 50 ms for 1,000). Larger pages are rendered on a
/// blocking thread.
const INLINE_PAGE_MAX: u32 = 50;

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
    ) -> Result<Vec<Task>, ServerError> {
        // `LIMIT +?`, not `LIMIT ?`: SQLite plans a bare `LIMIT ?` with the
        // bound value and marks the statement to be compiled again whenever
        // that parameter is bound, which is every call — a third of the
        // database's CPU under a write-heavy load. The unary plus keeps the
        // limit an expression evaluated at run time, and the statement
        // cached as prepared.
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM tasks WHERE user_id = ? AND id > ? ORDER BY id LIMIT +?"
        );
        self.connections
            .read(|connection| {
                connection
                    .prepare_cached(sql)?
                    .query_map((user_id, after, limit), Task::from_row)?
                    .collect()
            })
            .await
    }

    /// The page [`Database::list_tasks`] would give, as the JSON the API
    /// answers with, and whether more tasks follow it.
    ///
    /// SQLite renders the page in the query: one row comes back, not one
    /// per task, and no task is decoded into a [`Task`] to be encoded
    /// again (docs/BENCHMARKS.md, session 13, measures the difference).
    /// The objects hold the same fields, in the same order, with the same
    /// values as [`Task`]'s `Serialize`; a test holds the two equal.
    pub async fn task_page_json(
        &self,
        user_id: i64,
        after: i64,
        limit: u32,
    ) -> Result<TaskPageJson, ServerError> {
        // `done` is stored as 0 or 1; `json('true')` makes it a JSON
        // boolean (a constant, computed once per statement, not per row).
        // The array takes the rows in the order the inner query gives
        // them: an `ORDER BY` inside the aggregate would sort them again
        // through a temporary b-tree (the page test holds the order).
        // `LIMIT +?3`: see `list_tasks`.
        let sql = "SELECT page.json,
                    CASE WHEN EXISTS (SELECT 1 FROM tasks WHERE user_id = ?1 AND id > page.last)
                         THEN page.last END
             FROM (SELECT json_group_array(json_object(
                              'id', id,
                              'title', title,
                              'description', description,
                              'done', CASE WHEN done THEN json('true') ELSE json('false') END,
                              'created_at', created_at,
                              'updated_at', updated_at,
                              'due_at', due_at)) AS json,
                          max(id) AS last
                   FROM (SELECT * FROM tasks
                         WHERE user_id = ?1 AND id > ?2 ORDER BY id LIMIT +?3)) AS page";
        let query = move |connection: &rusqlite::Connection| {
            connection
                .prepare_cached(sql)?
                .query_row((user_id, after, limit), |row| {
                    Ok(TaskPageJson {
                        json: row.get(0)?,
                        next_after: row.get(1)?,
                    })
                })
        };
        if limit > INLINE_PAGE_MAX {
            self.connections.read_on_blocking_thread(query).await
        } else {
            self.connections.read(query).await
        }
    }

    /// Task `id` if it belongs to `user_id`.
    pub async fn get_task(&self, user_id: i64, id: i64) -> Result<Option<Task>, ServerError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM tasks WHERE user_id = ? AND id = ?"
        );
        self.connections
            .read(|connection| {
                connection
                    .prepare_cached(sql)?
                    .query_row((user_id, id), Task::from_row)
                    .optional()
            })
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
    ) -> Result<Option<Task>, ServerError> {
        let sql = concat!(
            "INSERT INTO tasks (user_id, title, description, done, due_at)
             SELECT ?1, ?2, ?3, ?4, ?5
             WHERE (SELECT count(*) FROM tasks WHERE user_id = ?1) < ?6
             RETURNING ",
            columns!(),
            ""
        );
        let params = (
            user_id,
            &task.title,
            &task.description,
            task.done,
            &task.due_at,
            max_tasks,
        );
        self.write_returning(sql, params, Task::from_row).await
    }

    /// Applies `patch` to task `id` of `user_id`, in one statement; `None`
    /// when there is no such task for that user.
    pub async fn update_task(
        &self,
        user_id: i64,
        id: i64,
        patch: &TaskPatch,
    ) -> Result<Option<Task>, ServerError> {
        let sql = concat!(
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
        );
        let params = (
            &patch.title,
            &patch.description,
            patch.done,
            patch.due_at.is_some(),
            patch.due_at.as_ref().and_then(Option::as_ref),
            user_id,
            id,
        );
        self.write_returning(sql, params, Task::from_row).await
    }

    /// Deletes task `id` of `user_id`; false when there was none.
    pub async fn delete_task(&self, user_id: i64, id: i64) -> Result<bool, ServerError> {
        let deleted = self
            .connections
            .write(|connection| {
                connection
                    .prepare_cached("DELETE FROM tasks WHERE user_id = ? AND id = ?")?
                    .execute((user_id, id))
            })
            .await?;
        Ok(deleted > 0)
    }
}
