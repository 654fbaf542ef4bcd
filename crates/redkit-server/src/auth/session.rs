//! The session cookie and the [`CurrentUser`] extractor.
//!
//! The cookie holds only the session id (`HttpOnly`, `SameSite=Lax`,
//! `Secure` when configured); the session itself — user id and username —
//! lives in redkit's session store, shared by every instance, so a session
//! created on one instance is valid on all of them and ending it anywhere
//! ends it everywhere.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use redkit::session::{Session, SessionId};

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

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let no_session = || ApiError::unauthorized("no valid session; log in at POST /auth/login");
        let id = session_id(&parts.headers).ok_or_else(no_session)?;
        let session = state.sessions.get(&id).await?.ok_or_else(no_session)?;
        CurrentUser::from_session(&session).ok_or_else(no_session)
    }
}

/// The session id the request's cookie carries, if well-formed.
pub(crate) fn session_id(headers: &HeaderMap) -> Option<SessionId> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .and_then(|(_, value)| SessionId::parse(value))
}

/// Session data for a new session of `username`.
pub(crate) fn session_data(username: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    data.insert(USERNAME.to_owned(), username.into());
    data
}

/// `Set-Cookie` headers that store `id` for `max_age_secs`.
pub(crate) fn set_cookie(id: &SessionId, max_age_secs: u64, secure: bool) -> HeaderMap {
    cookie_header(id.expose(), max_age_secs, secure)
}

/// `Set-Cookie` headers that remove the session cookie.
pub(crate) fn clear_cookie(secure: bool) -> HeaderMap {
    cookie_header("", 0, secure)
}

fn cookie_header(value: &str, max_age_secs: u64, secure: bool) -> HeaderMap {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    );
    let mut headers = HeaderMap::new();
    // Session ids are URL-safe base64, so the header is always valid.
    if let Ok(mut value) = HeaderValue::from_str(&cookie) {
        value.set_sensitive(true);
        headers.insert(SET_COOKIE, value);
    }
    headers
}
