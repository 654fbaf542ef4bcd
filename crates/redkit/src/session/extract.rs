//! axum extractors: a redkit session in a handler with one argument
//! (feature `axum`).
//!
//! The cookie holds only the session id; the session lives in the store,
//! shared by every instance. Put a [`CookieSessions`] in the router's state
//! (or make it reachable with [`FromRef`]) and take
//!
//! - [`RequiredSession`] where a session is needed: no cookie, a malformed
//!   or unknown id answers 401 `{"error":{"code":"unauthorized",…}}`;
//! - [`OptionalSession`] where it is not: `None` instead of 401.
//!
//! Both answer 503 (`"unavailable"`, with `Retry-After`) when the store
//! cannot be reached — fail closed, never "logged out" — and 500 without
//! details (logged) on other store errors; see [`SessionRejection`].

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Session, SessionId, Sessions};
use crate::error::{Error, Result};
use crate::store::Store;

/// The most session cookies of one name a request may present that are
/// looked up (a browser sends one per path or domain that set it).
pub const MAX_SESSION_COOKIES: usize = 3;

/// The default cookie name.
const DEFAULT_COOKIE: &str = "redkit_session";

/// The session cookie: its name and attributes. It always is `HttpOnly`,
/// `SameSite=Lax` and `Path=/`; `Secure` when set (serve behind TLS).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use redkit::session::{SessionCookie, SessionId};
///
/// let cookie = SessionCookie::new("app_session")?.secure(true);
/// let id = SessionId::generate()?;
/// let header = cookie.set(&id, Duration::from_secs(3600));
/// assert!(header.to_str().unwrap_or("").starts_with("app_session="));
/// assert!(header.is_sensitive()); // never logged by tower-http's tracing
/// # Ok::<(), redkit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookie {
    name: Cow<'static, str>,
    secure: bool,
}

impl Default for SessionCookie {
    /// `redkit_session`, not `Secure`.
    fn default() -> Self {
        SessionCookie {
            name: Cow::Borrowed(DEFAULT_COOKIE),
            secure: false,
        }
    }
}

impl SessionCookie {
    /// A cookie named `name`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when `name` is empty or holds a character a
    /// cookie name cannot (RFC 6265 token: no spaces, separators or
    /// control characters).
    pub fn new(name: impl Into<Cow<'static, str>>) -> Result<Self> {
        let name = name.into();
        let token = |b: u8| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(Error::invalid_input(
                "session cookie name",
                "expected a non-empty token of visible ASCII without separators such as `=` or `;`",
            ));
        }
        Ok(SessionCookie {
            name,
            secure: false,
        })
    }

    /// Marks the cookie `Secure` (only sent over HTTPS). Default: false.
    #[must_use]
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first session id the request's `Cookie` headers carry with the
    /// shape of an id (anything else is ignored, never sent to the store).
    pub fn session_id(&self, headers: &HeaderMap) -> Option<SessionId> {
        self.candidates(headers).next()
    }

    /// Every well-formed session id under this cookie's name, in order, at
    /// most [`MAX_SESSION_COOKIES`]. A browser sends several cookies of one
    /// name when another path or (sub)domain planted one: a malformed or
    /// unknown one must not hide the user's real session (log them out).
    pub fn session_ids(&self, headers: &HeaderMap) -> Vec<SessionId> {
        self.candidates(headers).collect()
    }

    /// [`SessionCookie::session_ids`] without collecting them (the
    /// extractors' hot path): usually one, read lazily.
    fn candidates<'h>(&'h self, headers: &'h HeaderMap) -> impl Iterator<Item = SessionId> + 'h {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == self.name)
            .filter_map(|(_, value)| SessionId::parse(value.trim()))
            .take(MAX_SESSION_COOKIES)
    }

    /// A `Set-Cookie` value that stores `id` for `max_age` (use the
    /// sessions' TTL). Marked sensitive, so it stays out of logs.
    pub fn set(&self, id: &SessionId, max_age: Duration) -> HeaderValue {
        self.header(id.expose(), max_age.as_secs())
    }

    /// A `Set-Cookie` value that removes the cookie (at logout).
    pub fn clear(&self) -> HeaderValue {
        self.header("", 0)
    }

    /// [`SessionCookie::set`] as a header map, ready to return from a handler.
    pub fn set_headers(&self, id: &SessionId, max_age: Duration) -> HeaderMap {
        HeaderMap::from_iter([(SET_COOKIE, self.set(id, max_age))])
    }

    /// [`SessionCookie::clear`] as a header map.
    pub fn clear_headers(&self) -> HeaderMap {
        HeaderMap::from_iter([(SET_COOKIE, self.clear())])
    }

    fn header(&self, value: &str, max_age_secs: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}",
            self.name
        );
        // The name is a checked token and ids are URL-safe base64, so the
        // value is always a valid header; the fallback is unreachable.
        let mut header = HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static(""));
        header.set_sensitive(true);
        header
    }
}

type Lookup<'a> = Pin<Box<dyn Future<Output = Result<Option<Session>>> + Send + 'a>>;

/// Reads sessions from a store, whatever its type (so the extractors need
/// no type parameter).
trait ReadSessions: Send + Sync {
    fn get<'a>(&'a self, id: &'a SessionId) -> Lookup<'a>;
}

impl<S: Store> ReadSessions for Sessions<S> {
    fn get<'a>(&'a self, id: &'a SessionId) -> Lookup<'a> {
        Box::pin(Sessions::get(self, id))
    }
}

/// What the session extractors read: the sessions and their cookie. Cheap
/// to clone; put it in the router's state, or implement
/// `FromRef<YourState> for CookieSessions`.
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::get};
/// use redkit::session::{CookieSessions, RequiredSession, SessionConfig, SessionCookie, Sessions};
///
/// async fn me(RequiredSession(session): RequiredSession) -> String {
///     format!("hello, user {}", session.user_id)
/// }
///
/// # fn main() -> redkit::Result<()> {
/// let kit = redkit::Redkit::builder().build()?; // embedded store
/// let sessions = Sessions::new(kit.store().clone(), SessionConfig::default())?;
/// let app: Router = Router::new()
///     .route("/me", get(me))
///     .with_state(CookieSessions::new(sessions, SessionCookie::default()));
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone)]
pub struct CookieSessions {
    sessions: Arc<dyn ReadSessions>,
    cookie: SessionCookie,
}

impl fmt::Debug for CookieSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieSessions")
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

impl CookieSessions {
    /// Sessions read from `sessions`, their id from `cookie`.
    pub fn new<S: Store>(sessions: Sessions<S>, cookie: SessionCookie) -> Self {
        CookieSessions {
            sessions: Arc::new(sessions),
            cookie,
        }
    }

    /// The cookie (to set it at login and clear it at logout).
    pub fn cookie(&self) -> &SessionCookie {
        &self.cookie
    }

    /// The session of a request with these headers: `Ok(None)` when there
    /// is no well-formed cookie or no such session (expired, ended).
    ///
    /// # Errors
    ///
    /// The store's error, for example [`Error::Unavailable`] while Redis is
    /// down and the sessions fail closed.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Option<Session>> {
        // The first candidate that names a live session wins; each costs a
        // store read, so at most MAX_SESSION_COOKIES are tried.
        for id in self.cookie.candidates(headers) {
            if let Some(session) = self.sessions.get(&id).await? {
                return Ok(Some(session));
            }
        }
        Ok(None)
    }
}

/// Why a session extractor rejected a request. As a response: the JSON
/// error shape `{"error":{"code","message"}}`, never internals.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No cookie, a malformed id, or no such session: 401 `unauthorized`
    /// (only from [`RequiredSession`]).
    NoSession,
    /// The store failed: 503 `unavailable` with `Retry-After: 1` when it is
    /// unreachable ([`Error::is_unavailable`]), else 500 `internal` (the
    /// cause is logged with `tracing`).
    Store(Error),
}

impl SessionRejection {
    /// The status the rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionRejection::NoSession => StatusCode::UNAUTHORIZED,
            SessionRejection::Store(error) if error.is_unavailable() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SessionRejection::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionRejection::NoSession => f.write_str("no valid session"),
            SessionRejection::Store(error) => write!(f, "session store failed: {error}"),
        }
    }
}

impl std::error::Error for SessionRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionRejection::NoSession => None,
            SessionRejection::Store(error) => Some(error),
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let (code, message) = match status {
            StatusCode::UNAUTHORIZED => ("unauthorized", "no valid session; log in first"),
            StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(error = %self, "session store unavailable");
                (
                    "unavailable",
                    "the session store is unavailable; retry shortly",
                )
            }
            _ => {
                tracing::error!(error = %self, "session lookup failed");
                ("internal", "internal error; it has been logged")
            }
        };
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The request's session; rejects with 401 when there is none (see
/// [`SessionRejection`]). Needs [`CookieSessions`] from the state.
///
/// # Examples
///
/// ```
/// use redkit::session::RequiredSession;
///
/// async fn handler(RequiredSession(session): RequiredSession) -> String {
///     session.user_id
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RequiredSession(pub Session);

/// The request's session if it has one; `None` instead of 401. Still 503
/// when the store cannot tell (see [`SessionRejection`]).
///
/// # Examples
///
/// ```
/// use redkit::session::OptionalSession;
///
/// async fn handler(OptionalSession(session): OptionalSession) -> &'static str {
///     if session.is_some() { "welcome back" } else { "hello, stranger" }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct OptionalSession(pub Option<Session>);

impl<St> FromRequestParts<St> for OptionalSession
where
    CookieSessions: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let sessions = CookieSessions::from_ref(state);
        let session = sessions
            .session(&parts.headers)
            .await
            .map_err(SessionRejection::Store)?;
        Ok(OptionalSession(session))
    }
}

impl<St> FromRequestParts<St> for RequiredSession
where
    CookieSessions: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let OptionalSession(session) = OptionalSession::from_request_parts(parts, state).await?;
        session
            .map(RequiredSession)
            .ok_or(SessionRejection::NoSession)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cookie_names_are_tokens() {
        assert!(SessionCookie::new("app_session").is_ok());
        for bad in ["", "a b", "a=b", "a;b", "sé", "a\nb"] {
            let error = SessionCookie::new(bad).unwrap_err().to_string();
            assert!(error.contains("session cookie name"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_id_is_read_from_the_named_cookie_only() {
        let cookie = SessionCookie::default();
        let id = SessionId::generate().unwrap();
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("other=1; theme=dark"));
        assert_eq!(cookie.session_id(&headers), None);
        let pair = format!("a=b; redkit_session={}", id.expose());
        headers.append(COOKIE, HeaderValue::from_str(&pair).unwrap());
        assert_eq!(cookie.session_id(&headers), Some(id.clone()));
        let mut hostile = HeaderMap::new();
        hostile.insert(COOKIE, HeaderValue::from_static("redkit_session=*; x=y"));
        assert_eq!(cookie.session_id(&hostile), None);
        // A planted malformed cookie before the real one does not hide it.
        let planted = format!("redkit_session=garbage; redkit_session={}", id.expose());
        let mut planted_headers = HeaderMap::new();
        planted_headers.insert(COOKIE, HeaderValue::from_str(&planted).unwrap());
        assert_eq!(cookie.session_id(&planted_headers), Some(id.clone()));
        // Candidates are bounded.
        let many: Vec<String> = (0..10)
            .map(|_| format!("redkit_session={}", SessionId::generate().unwrap().expose()))
            .collect();
        let mut flood = HeaderMap::new();
        flood.insert(COOKIE, HeaderValue::from_str(&many.join("; ")).unwrap());
        assert_eq!(cookie.session_ids(&flood).len(), MAX_SESSION_COOKIES);
    }

    #[test]
    fn set_and_clear_carry_the_attributes() {
        let cookie = SessionCookie::default().secure(true);
        let id = SessionId::generate().unwrap();
        let set = cookie.set(&id, Duration::from_secs(60));
        let text = set.to_str().unwrap();
        assert!(text.contains("HttpOnly; SameSite=Lax; Max-Age=60; Secure"));
        assert!(set.is_sensitive());
        assert!(
            cookie
                .clear()
                .to_str()
                .unwrap()
                .starts_with("redkit_session=;")
        );
    }
}
