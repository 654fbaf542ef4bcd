//! Errors as HTTP clients see them: a status and a small JSON body that
//! names what was wrong and what is expected, never internals.
//!
//! `{"error": {"code": "invalid_field", "message": "title: must not be empty"}}`
//!
//! Internal failures (database, Redis) are logged with their causes and
//! answered with a generic message, as axum's error-handling guide advises.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ServerError;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// A human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request cannot be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no valid session.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404: nothing here (also for other users' resources).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 422: a field has an invalid value.
    pub fn invalid_field(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: {problem}"),
        )
    }

    /// 500 for a failure the client cannot fix; the cause is logged.
    pub fn internal(context: &str, cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %error_chain(cause), "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }

    /// 503 while the service is at a bound it sets itself (a full queue).
    pub fn busy(what: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{what} is at capacity; retry shortly"),
        )
    }

    /// 503 while a dependency is unavailable.
    pub fn unavailable(what: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} is unavailable; retry shortly"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 here is a passing condition (a dependency away, a
            // full queue, a missed deadline): tell clients when to come back.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<redkit::Error> for ApiError {
    fn from(error: redkit::Error) -> Self {
        if error.is_unavailable() {
            tracing::warn!(error = %error_chain(&error), "redis unavailable");
            return ApiError::unavailable("the session and cache store");
        }
        ApiError::internal("redkit call failed", &error)
    }
}

impl From<ServerError> for ApiError {
    fn from(error: ServerError) -> Self {
        match error {
            ServerError::Redkit(error) => error.into(),
            error if error.is_database_unavailable() => ApiError::unavailable("the database"),
            error => ApiError::internal("database call failed", &error),
        }
    }
}

/// The error and its causes on one line, for logs and the console.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::ffi::c_int) -> ServerError {
        ServerError::Query(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    /// A database locked past the busy timeout, or closed at shutdown, is
    /// a 503 to retry; any other database failure is a 500 that says
    /// nothing of its cause.
    #[test]
    fn database_errors_answer_503_when_passing_and_500_otherwise() {
        for passing in [
            sqlite(rusqlite::ffi::SQLITE_BUSY),
            sqlite(rusqlite::ffi::SQLITE_LOCKED),
            ServerError::DatabaseClosed,
        ] {
            let response = ApiError::from(passing).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().contains_key("retry-after"));
        }
        let failed = ApiError::from(sqlite(rusqlite::ffi::SQLITE_CORRUPT));
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failed.message, "internal error; it has been logged");
    }
}
