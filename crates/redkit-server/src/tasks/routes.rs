//! The `/tasks` handlers.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use redkit::cache::{EntryOptions, Loaded};
use serde::{Deserialize, Serialize};

use super::rendered::Rendered;
use super::validate::{CreateTask, PageQuery, UpdateTask, task_id};
use crate::api_error::ApiError;
use crate::auth::CurrentUser;
use crate::db::Task;
use crate::events::TaskEvent;
use crate::json::ApiJson;
use crate::server::AppState;

/// The tag on every cached entry of `user_id`.
fn user_tag(user_id: i64) -> String {
    ["user:", itoa::Buffer::new().format(user_id)].concat()
}

/// The cache key of a page of `user_id`'s list; without `format!`, since
/// nearly every request makes one.
fn page_key(user_id: i64, page: &PageQuery) -> String {
    let (mut user, mut after, mut limit) = (
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    );
    [
        "u:",
        user.format(user_id),
        ":list:",
        after.format(page.after),
        ":",
        limit.format(page.limit),
    ]
    .concat()
}

fn cache_options(state: &AppState, user_id: i64) -> EntryOptions {
    state
        .tasks
        .options()
        .ttl(state.config.tasks_ttl)
        .tag(user_tag(user_id))
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("no task {id}"))
}

/// Why a loader failed: the database, or (never in practice) encoding.
type LoadError = Box<dyn std::error::Error + Send + Sync>;

/// One page of a user's task list as cached: the rendered body and, while
/// more tasks remain, the id the next page starts after.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Page {
    body: Rendered,
    next_after: Option<i64>,
}

/// GET /tasks?limit=N&after=ID: a page of the user's tasks, oldest first
/// (keyset pagination by id; cached per page as rendered JSON, every page
/// invalidated by any write of the user), with `Link: <…>; rel="next"`
/// while more remain.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let page = PageQuery::parse(query.as_deref())?;
    let db = state.db.clone();
    let cached = state
        .tasks
        .get_or_set(
            &page_key(user.id, &page),
            &cache_options(&state, user.id),
            move || async move {
                let listed = db.task_page_json(user.id, page.after, page.limit).await?;
                Ok::<_, LoadError>(Page {
                    body: Rendered::from_json(listed.json),
                    next_after: listed.next_after,
                })
            },
        )
        .await?;
    let mut response = cached.body.into_response();
    if let Some(after) = cached.next_after {
        let link = format!("</tasks?limit={}&after={after}>; rel=\"next\"", page.limit);
        if let Ok(link) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, link);
        }
    }
    Ok(response)
}

/// GET /tasks/{id}: one task of the user (cached as rendered JSON), 404
/// otherwise.
pub(crate) async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Rendered, ApiError> {
    let id = task_id(&id)?;
    let db = state.db.clone();
    let body = state
        .tasks
        .get_or_set_with(
            &format!("u:{}:t:{id}", user.id),
            &cache_options(&state, user.id),
            move || async move {
                Ok::<_, LoadError>(match db.get_task(user.id, id).await? {
                    Some(task) => Loaded::new(Some(Rendered::of(&task)?)),
                    // "Not found" is not cached: the task may be created soon.
                    None => Loaded::new(None).do_not_cache(),
                })
            },
        )
        .await?;
    body.ok_or_else(|| not_found(id))
}

/// POST /tasks: creates a task (201).
pub(crate) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CreateTask>,
) -> Result<impl IntoResponse, ApiError> {
    let new = body.validate()?;
    let max_tasks = state.config.max_tasks_per_user;
    let task = state
        .db
        .create_task(user.id, &new, max_tasks)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "task_limit",
                format!(
                    "you have {max_tasks} tasks, the most one user may keep; delete some to create more"
                ),
            )
        })?;
    state
        .reminders
        .changed(user.id, task.id, None, Some(&task))
        .await;
    changed(&state, user.id, TaskEvent::Created { task: task.clone() }).await;
    Ok((StatusCode::CREATED, Json(task)))
}

/// PATCH /tasks/{id}: changes the given fields.
pub(crate) async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateTask>,
) -> Result<Json<Task>, ApiError> {
    let id = task_id(&id)?;
    let patch = body.validate()?;
    // The due time before the change, to cancel its reminder.
    let before = match patch.due_at {
        Some(_) => state
            .db
            .get_task(user.id, id)
            .await?
            .and_then(|task| task.due_at),
        None => None,
    };
    let task = state
        .db
        .update_task(user.id, id, &patch)
        .await?
        .ok_or_else(|| not_found(id))?;
    if patch.due_at.is_some() {
        state
            .reminders
            .changed(user.id, id, before.as_deref(), Some(&task))
            .await;
    }
    changed(&state, user.id, TaskEvent::Updated { task: task.clone() }).await;
    Ok(Json(task))
}

/// DELETE /tasks/{id}: removes the task (204).
pub(crate) async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = task_id(&id)?;
    let before = state
        .db
        .get_task(user.id, id)
        .await?
        .and_then(|task| task.due_at);
    if !state.db.delete_task(user.id, id).await? {
        return Err(not_found(id));
    }
    state
        .reminders
        .changed(user.id, id, before.as_deref(), None)
        .await;
    changed(&state, user.id, TaskEvent::Deleted { id }).await;
    Ok(StatusCode::NO_CONTENT)
}

/// After a committed write: invalidate the user's cached entries on every
/// instance, then tell their live clients (the event's log append runs
/// beside the invalidation; its broadcast waits for it). Neither failure
/// undoes the write; both are logged (cached entries then expire with
/// their TTL).
async fn changed(state: &AppState, user_id: i64, event: TaskEvent) {
    let invalidated = async {
        if let Err(error) = state.tasks.invalidate_tag(&user_tag(user_id)).await {
            tracing::warn!(%error, user_id, "cannot invalidate the user's cached tasks");
        }
    };
    state
        .events
        .publish_after(user_id, event, invalidated)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tags_read_as_their_parts_formatted() {
        for (user_id, after, limit) in [(1, 0, 20), (i64::MAX, i64::MAX, 1000), (42, -1, 1)] {
            let page = PageQuery { limit, after };
            assert_eq!(
                page_key(user_id, &page),
                format!("u:{user_id}:list:{after}:{limit}")
            );
            assert_eq!(user_tag(user_id), format!("user:{user_id}"));
        }
    }
}
