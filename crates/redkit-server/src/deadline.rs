//! The request deadline: every answer within `ServiceConfig::request_timeout`.
//!
//! Each Redis command has its own timeout, but one request makes several
//! calls in a row (session, rate limit, cache, tag versions), so a slow —
//! not dead — Redis adds their latencies up. This middleware bounds the
//! whole request: when the handler has not answered in time it is dropped
//! (its pending calls with it) and the client gets 503 with `Retry-After` (see `ApiError`).
//! A streaming response (SSE) counts as answered once its head is ready.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;

/// Runs the rest of the stack within `deadline`, or answers 503.
pub(crate) async fn enforce(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("redkit_http_deadline_exceeded_total").increment(1);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "deadline_exceeded",
                format!(
                    "the request did not complete within its {} ms deadline; retry shortly",
                    deadline.as_millis()
                ),
            )
            .into_response()
        }
    }
}
