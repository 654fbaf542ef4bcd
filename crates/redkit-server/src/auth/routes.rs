//! The `/auth/*` handlers.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::session::{self, CurrentUser};
use crate::api_error::ApiError;
use crate::db::{NewUserOutcome, User};
use crate::json::ApiJson;
use crate::server::AppState;

/// Body of register and login.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=32;
const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

impl Credentials {
    fn validate(&self) -> Result<(), ApiError> {
        let name_len = self.username.chars().count();
        if !USERNAME_LEN.contains(&name_len) {
            return Err(ApiError::invalid_field(
                "username",
                format!("must be 3 to 32 characters long, got {name_len}"),
            ));
        }
        if !self
            .username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(ApiError::invalid_field(
                "username",
                "may contain only letters, digits, '_', '-' and '.'",
            ));
        }
        let password_len = self.password.chars().count();
        if !PASSWORD_LEN.contains(&password_len) {
            return Err(ApiError::invalid_field(
                "password",
                format!("must be 8 to 128 characters long, got {password_len}"),
            ));
        }
        Ok(())
    }
}

/// POST /auth/register: creates the user and logs them in (201).
pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    credentials.validate()?;
    let max_accounts = state.config.max_accounts;
    let refused = state
        .db
        .registration_refused(&credentials.username, max_accounts)
        .await?;
    let outcome = match refused {
        Some(refused) => refused,
        None => {
            let hash = state.passwords.hash(credentials.password).await?;
            state
                .db
                .create_user(&credentials.username, &hash, max_accounts)
                .await?
        }
    };
    let user = match outcome {
        NewUserOutcome::Created(user) => user,
        NewUserOutcome::Taken => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "username_taken",
                format!("the username {:?} is already taken", credentials.username),
            ));
        }
        NewUserOutcome::Full => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "account_limit",
                format!(
                    "this service holds {max_accounts} accounts, the most it keeps; no more can be registered"
                ),
            ));
        }
    };
    // Registering is all or nothing: a user whose session cannot be started
    // (Redis away, the request's deadline) is removed again, so the client's
    // retry registers instead of finding the name taken.
    let mut undo = UndoRegistration::new(&state, user.id);
    match start_session(&state, &headers, &user).await {
        Ok(cookie) => {
            undo.disarm();
            Ok((StatusCode::CREATED, cookie, Json(user)))
        }
        Err(error) => {
            // Undone before answering, so an immediate retry finds the name free.
            undo.now().await;
            Err(error)
        }
    }
}

/// Deletes a just-registered user unless disarmed — also when the handler is
/// dropped mid-way (its deadline passed), which no `?` path would catch.
struct UndoRegistration {
    db: Option<crate::db::Database>,
    user_id: i64,
}

impl UndoRegistration {
    fn new(state: &AppState, user_id: i64) -> Self {
        UndoRegistration {
            db: Some(state.db.clone()),
            user_id,
        }
    }

    fn disarm(&mut self) {
        self.db = None;
    }

    async fn now(mut self) {
        if let Some(db) = self.db.take() {
            undo_registration(&db, self.user_id).await;
        }
    }
}

async fn undo_registration(db: &crate::db::Database, user_id: i64) {
    match db.delete_user(user_id).await {
        Ok(_) => tracing::info!(user_id, "registration undone: no session could be started"),
        Err(error) => tracing::error!(user_id, %error, "cannot undo a registration"),
    }
}

impl Drop for UndoRegistration {
    fn drop(&mut self) {
        let (Some(db), user_id) = (self.db.take(), self.user_id) else {
            return;
        };
        tokio::spawn(async move { undo_registration(&db, user_id).await });
    }
}

/// POST /auth/login: checks the password and starts a fresh session.
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    let user = state.db.find_user_by_name(&credentials.username).await?;
    let hash = user.as_ref().map(|user| user.password_hash.clone());
    let matches = state.passwords.verify(credentials.password, hash).await?;
    let user = match user {
        Some(user) if matches => user,
        _ => return Err(ApiError::unauthorized("invalid username or password")),
    };
    let cookie = start_session(&state, &headers, &user).await?;
    Ok((cookie, Json(user)))
}

/// A new authenticated session for `user`; the request's previous session,
/// if any, is ended (session fixation: the id is always new at login).
async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
) -> Result<HeaderMap, ApiError> {
    let user_id = user.id.to_string();
    let mut other_users_session = None;
    if let Some(previous) = state.cookie_sessions.cookie().session_id(headers) {
        match state.sessions.get(&previous).await? {
            // Same user logging in again: keep the data, change the id.
            Some(existing) if existing.user_id == user_id => {
                if let Some(cycled) = state.sessions.cycle_id(&previous).await? {
                    return Ok(state.session_cookie(&cycled.id));
                }
            }
            Some(_) => other_users_session = Some(previous),
            None => {}
        }
    }
    let created = state
        .sessions
        .create(&user_id, session::session_data(&user.username))
        .await?;
    // Only once the new session exists: a request that fails or is cut by
    // its deadline before this point leaves the client's previous session
    // as it was, rather than logging it out.
    if let Some(previous) = other_users_session
        && let Err(error) = state.sessions.destroy(&previous).await
    {
        tracing::warn!(error = %crate::error_chain(&error), "could not end the previous user's session; it expires by itself");
    }
    Ok(state.session_cookie(&created.id))
}

/// POST /auth/logout: ends this session (204).
pub(crate) async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<impl IntoResponse, ApiError> {
    state.sessions.destroy(&user.session_id).await?;
    Ok((
        StatusCode::NO_CONTENT,
        state.cookie_sessions.cookie().clear_headers(),
    ))
}

/// POST /auth/logout-all: ends every session of the user, on every instance.
pub(crate) async fn logout_all(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<impl IntoResponse, ApiError> {
    let ended = state.sessions.destroy_all(&user.id.to_string()).await?;
    Ok((
        state.cookie_sessions.cookie().clear_headers(),
        Json(json!({ "ended": ended })),
    ))
}

/// GET /auth/me: the user and how many sessions they have (`null` while
/// the session store cannot be asked).
pub(crate) async fn me(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<impl IntoResponse, ApiError> {
    let sessions = match state.sessions.list(&user.id.to_string()).await {
        Ok(sessions) => Some(sessions.len()),
        Err(error) if error.is_unavailable() => None,
        Err(error) => return Err(error.into()),
    };
    Ok(Json(json!({
        "id": user.id,
        "username": user.username,
        "sessions": sessions,
    })))
}
