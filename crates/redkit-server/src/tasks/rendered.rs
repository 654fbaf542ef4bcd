//! [`Rendered`]: a response body encoded once and cached as is.
//!
//! Task reads are cached as the JSON they are answered with, not as
//! `Vec<Task>`: an L1 hit is then a reference-count bump handed to the
//! response — no copy of the list, no encoding per request (the benchmark
//! measured both at a fifth of the service's CPU). In L2 the body is stored
//! as a JSON string, readable by any client.

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTF-8 JSON body; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered(Bytes);

impl Rendered {
    /// `value` encoded as JSON.
    pub(crate) fn of<T: Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(value).map(|json| Rendered(Bytes::from(json)))
    }

    /// A body already encoded as JSON (by SQLite, for a page of tasks).
    pub(crate) fn from_json(json: String) -> Self {
        Rendered(Bytes::from(json))
    }
}

impl IntoResponse for Rendered {
    fn into_response(self) -> Response {
        ([(CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

impl Serialize for Rendered {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => Err(serde::ser::Error::custom("a rendered body is not UTF-8")),
        }
    }
}

impl<'de> Deserialize<'de> for Rendered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Rendered(Bytes::from(text)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_a_json_string() {
        let body = Rendered::of(&serde_json::json!([{"title": "a \"quoted\" ü"}])).unwrap();
        let stored = serde_json::to_string(&body).unwrap();
        assert!(stored.starts_with('"'), "{stored}");
        let back: Rendered = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, body);
    }
}
