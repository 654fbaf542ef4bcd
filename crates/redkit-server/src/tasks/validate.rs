//! Request bodies of the task routes and their validation (422 on a bad
//! field, naming it and what is expected).

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api_error::ApiError;
use crate::db::{NewTask, TaskPatch};

const TITLE_MAX: usize = 200;
/// Tasks per page of `GET /tasks` when `limit` is not given.
pub(crate) const PAGE_DEFAULT: u32 = 100;
/// The largest `limit` of `GET /tasks`: bounds one answer to ~1 MB.
pub(crate) const PAGE_MAX: u32 = 1000;

/// The query of `GET /tasks`: `limit` (1 to 1000, default 100) and `after`
/// (the last id of the previous page, default 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageQuery {
    pub(crate) limit: u32,
    pub(crate) after: i64,
}

impl PageQuery {
    /// Parses the raw query string; anything else than one `limit` and one
    /// `after` of digits is a 422 naming the parameter.
    pub(crate) fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut page = PageQuery {
            limit: PAGE_DEFAULT,
            after: 0,
        };
        let (mut seen_limit, mut seen_after) = (false, false);
        for pair in query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let seen = match name {
                "limit" => &mut seen_limit,
                "after" => &mut seen_after,
                _ => {
                    return Err(ApiError::invalid_field(
                        "query",
                        "expected only `limit` and `after` parameters",
                    ));
                }
            };
            if std::mem::replace(seen, true) {
                return Err(ApiError::invalid_field(name, "expected the parameter once"));
            }
            let number = (!value.is_empty()
                && value.len() <= 19
                && value.bytes().all(|b| b.is_ascii_digit()))
            .then(|| value.parse::<i64>().ok())
            .flatten();
            match (name, number) {
                ("limit", Some(limit)) if (1..=i64::from(PAGE_MAX)).contains(&limit) => {
                    page.limit = u32::try_from(limit).unwrap_or(PAGE_DEFAULT);
                }
                ("limit", _) => {
                    return Err(ApiError::invalid_field(
                        "limit",
                        format!("expected a whole number from 1 to {PAGE_MAX}"),
                    ));
                }
                (_, Some(after)) => page.after = after,
                _ => {
                    return Err(ApiError::invalid_field(
                        "after",
                        "expected the id of the last task of the previous page (a whole number of 0 or more)",
                    ));
                }
            }
        }
        Ok(page)
    }
}
const DESCRIPTION_MAX: usize = 5000;

/// Body of POST /tasks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTask {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    due_at: Option<String>,
}

/// Body of PATCH /tasks/{id}.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateTask {
    title: Option<String>,
    description: Option<String>,
    done: Option<bool>,
    /// Absent: unchanged; `null`: cleared; a string: set.
    #[serde(default, deserialize_with = "present")]
    due_at: Option<Option<String>>,
}

/// A field that is present (possibly `null`), as `Some`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

impl CreateTask {
    pub(crate) fn validate(self) -> Result<NewTask, ApiError> {
        Ok(NewTask {
            title: title(self.title)?,
            description: description(self.description)?,
            done: self.done,
            due_at: self.due_at.map(|due| due_at(&due)).transpose()?,
        })
    }
}

impl UpdateTask {
    pub(crate) fn validate(self) -> Result<TaskPatch, ApiError> {
        if self.title.is_none()
            && self.description.is_none()
            && self.done.is_none()
            && self.due_at.is_none()
        {
            return Err(ApiError::invalid_field(
                "body",
                "expected at least one of `title`, `description`, `done`, `due_at`",
            ));
        }
        Ok(TaskPatch {
            title: self.title.map(title).transpose()?,
            description: self.description.map(description).transpose()?,
            done: self.done,
            due_at: self
                .due_at
                .map(|due| due.map(|due| due_at(&due)).transpose())
                .transpose()?,
        })
    }
}

/// A due time: RFC 3339 (any offset), in the future; normalized to UTC
/// with millisecond precision, the form stored and compared.
pub(crate) fn due_at(raw: &str) -> Result<String, ApiError> {
    let parsed = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
        ApiError::invalid_field(
            "due_at",
            format!(
                "must be an RFC 3339 date-time such as 2030-01-31T09:00:00Z, got {:?}",
                truncate(raw, 40)
            ),
        )
    })?;
    let utc = parsed.to_offset(time::UtcOffset::UTC);
    let utc = utc
        .replace_nanosecond(utc.millisecond() as u32 * 1_000_000)
        .unwrap_or(utc);
    if utc <= OffsetDateTime::now_utc() {
        return Err(ApiError::invalid_field(
            "due_at",
            "must be in the future (or null to clear it)",
        ));
    }
    utc.format(&Rfc3339)
        .map_err(|_| ApiError::invalid_field("due_at", "cannot be represented in RFC 3339"))
}

/// Milliseconds since the UNIX epoch of a stored (normalized) due time.
pub(crate) fn due_at_millis(stored: &str) -> Option<i64> {
    let parsed = OffsetDateTime::parse(stored, &Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

fn title(title: String) -> Result<String, ApiError> {
    let trimmed = title.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid_field("title", "must not be empty"));
    }
    let len = trimmed.chars().count();
    if len > TITLE_MAX {
        return Err(ApiError::invalid_field(
            "title",
            format!("must be at most {TITLE_MAX} characters, got {len}"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "title",
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

fn description(description: String) -> Result<String, ApiError> {
    let len = description.chars().count();
    if len > DESCRIPTION_MAX {
        return Err(ApiError::invalid_field(
            "description",
            format!("must be at most {DESCRIPTION_MAX} characters, got {len}"),
        ));
    }
    if description
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::invalid_field(
            "description",
            "must not contain control characters other than newlines and tabs",
        ));
    }
    Ok(description)
}

/// A task id from the path: a positive integer.
pub(crate) fn task_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request(format!(
            "task id must be a positive integer, got {:?}",
            truncate(raw, 40)
        ))
    })
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}
