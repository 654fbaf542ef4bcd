//! The response headers and the 429 / 503 / 400 bodies.
//!
//! Every body has the shape `{"error": {"code": …, "message": …}}` (plus
//! details beside `error` for 429), so clients parse one error format
//! whatever layer answered.
//!
//! IETF `draft-ietf-httpapi-ratelimit-headers`: `RateLimit-Policy:
//! "name";q=limit;w=window_seconds` and `RateLimit: "name";r=remaining;t=reset_seconds`.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::ratelimit::{Decision, Policy};

/// `RateLimit-Policy` of `policy` (`None` if its name cannot be a header
/// value); a layer builds it once, since it never changes.
pub(super) fn policy_header(policy: &Policy) -> Option<HeaderValue> {
    let value = format!(
        "\"{}\";q={};w={}",
        policy.name(),
        policy.limit(),
        policy.window().as_secs().max(1)
    );
    HeaderValue::from_str(&value).ok()
}

// Names made once: a `&str` name is parsed on every insert.
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

pub(super) fn apply(
    headers: &mut HeaderMap,
    policy: &Policy,
    policy_header: Option<&HeaderValue>,
    decision: &Decision,
    legacy: bool,
) {
    let reset = ceil_secs(decision.reset_after);
    if let Some(value) = policy_header {
        headers.insert(RATELIMIT_POLICY, value.clone());
    }
    // Without `format!` or a copy into the header: this runs on every
    // response.
    let (mut remaining, mut reset_text) = (itoa::Buffer::new(), itoa::Buffer::new());
    let state = [
        "\"",
        policy.name(),
        "\";r=",
        remaining.format(decision.remaining),
        ";t=",
        reset_text.format(reset),
    ]
    .concat();
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(state)) {
        headers.insert(RATELIMIT, value);
    }
    if legacy {
        headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(policy.limit()));
        headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
        headers.insert(X_RATELIMIT_RESET, HeaderValue::from(reset));
    }
    if !decision.allowed {
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(ceil_secs(decision.retry_after).max(1)),
        );
    }
}

pub(super) fn rejected<B: From<String>>(
    policy: &Policy,
    policy_header: Option<&HeaderValue>,
    decision: &Decision,
    legacy: bool,
) -> Response<B> {
    let retry = ceil_secs(decision.retry_after).max(1);
    let body = serde_json::json!({
        "error": {
            "code": "rate_limited",
            "message": format!("too many requests: the {} limit is {} per {} s; retry in {retry} s",
                policy.name(), policy.limit(), policy.window().as_secs().max(1)),
        },
        "policy": policy.name(),
        "retry_after_seconds": retry,
    });
    let mut response = json(StatusCode::TOO_MANY_REQUESTS, body.to_string());
    apply(
        response.headers_mut(),
        policy,
        policy_header,
        decision,
        legacy,
    );
    response
}

pub(super) fn unavailable<B: From<String>>() -> Response<B> {
    let body = serde_json::json!({
        "error": {
            "code": "rate_limiter_unavailable",
            "message": "the rate limiter cannot decide right now; retry shortly",
        },
    });
    let mut response = json(StatusCode::SERVICE_UNAVAILABLE, body.to_string());
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(1u32));
    response
}

pub(super) fn bad_key<B: From<String>>(message: String) -> Response<B> {
    let body = serde_json::json!({ "error": { "code": "bad_request", "message": message } });
    json(StatusCode::BAD_REQUEST, body.to_string())
}

fn json<B: From<String>>(status: StatusCode, body: String) -> Response<B> {
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn ceil_secs(duration: std::time::Duration) -> u64 {
    duration.as_micros().div_ceil(1_000_000) as u64
}
