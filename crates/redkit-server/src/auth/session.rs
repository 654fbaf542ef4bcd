//! The [`CurrentUser`] extractor, on redkit's session extractor.
//!
//! The cookie holds only the session id (`HttpOnly`, `SameSite=Lax`,
//! `Secure` when configured); the session itself — user id and username —
//! lives in redkit's session store, shared by every instance, so a session
//! created on one instance is valid on all of them and ending it anywhere
//! ends it everywhere.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use redkit::session::{RequiredSession, Session, SessionId, SessionRejection};

use crate::api_error::ApiError;
use crate::server::AppState;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "redkit_session";

/// Session data key holding the username.
const USERNAME: &str = "username";

/// The user of the request's session; rejects with 401 when there is none.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The user's row id.
    pub id: i64,
    /// The username.
    pub username: String,
    /// The session (id hidden in `Debug`).
    pub session_id: SessionId,
}

impl CurrentUser {
    fn from_session(session: &Session) -> Option<Self> {
        Some(CurrentUser {
            id: session.user_id.parse().ok()?,
            username: session.data.get(USERNAME)?.as_str()?.to_owned(),
            session_id: session.id.clone(),
        })
    }
}

/// redkit's [`RequiredSession`] (cookie → session, 503 while the store is
/// unavailable), then the user it names.
impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let no_session = || ApiError::unauthorized("no valid session; log in at POST /auth/login");
        let RequiredSession(session) = RequiredSession::from_request_parts(parts, state)
            .await
            .map_err(|rejection| match rejection {
                SessionRejection::Store(error) => ApiError::from(error),
                _ => no_session(),
            })?;
        CurrentUser::from_session(&session).ok_or_else(no_session)
    }
}

/// Session data for a new session of `username`.
pub(crate) fn session_data(username: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    data.insert(USERNAME.to_owned(), username.into());
    data
}
