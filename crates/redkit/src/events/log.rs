//! [`EventLog`]: append, replay after an id, follow.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;

use super::scripts;
use crate::error::{Error, Result};
use crate::store::{ScriptArg, ScriptValue, Store, StreamId};

/// Most events one read returns.
const READ_BATCH: usize = 500;

/// Retention and polling of an [`EventLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventLogConfig {
    /// Events kept per topic (the newest). Default: 1000.
    pub max_len: usize,
    /// A topic without appends for this long is deleted (and dedupe keys
    /// expire after it). Default: 24 h.
    pub max_age: Duration,
    /// How often [`EventLog::follow`] looks for new events. Default: 200 ms.
    pub poll_interval: Duration,
}

impl Default for EventLogConfig {
    fn default() -> Self {
        EventLogConfig {
            max_len: 1000,
            max_age: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_millis(200),
        }
    }
}

impl EventLogConfig {
    /// Sets `max_len`.
    #[must_use]
    pub fn max_len(mut self, events: usize) -> Self {
        self.max_len = events;
        self
    }

    /// Sets `max_age`.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Sets `poll_interval`.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// One event of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its id: increasing within the topic.
    pub id: StreamId,
    /// What was appended.
    pub payload: Bytes,
}

/// The answer to [`EventLog::read_after`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every event after the id (up to the read limit), oldest first.
    Events(Vec<Event>),
    /// The id is not in the log (unknown, or trimmed away): events may have
    /// been missed, so the reader must start over from current state.
    Gap,
}

/// What [`EventLog::follow`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// The next event.
    Event(Event),
    /// The follower fell behind further than the log keeps; it should start
    /// over. The stream ends after this.
    Gap,
}

/// Capped, per-topic event logs on a [`Store`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventLog<S> {
    store: S,
    config: EventLogConfig,
}

impl<S: Store> EventLog<S> {
    /// Event logs on `store`.
    pub fn new(store: S, config: EventLogConfig) -> Result<Self> {
        if config.max_len == 0 {
            return Err(Error::invalid_config(
                "event log max_len",
                "0",
                "at least 1",
            ));
        }
        if config.max_age < Duration::from_millis(1) || config.poll_interval.is_zero() {
            return Err(Error::invalid_config(
                "event log max_age / poll_interval",
                "zero",
                "positive durations",
            ));
        }
        Ok(EventLog { store, config })
    }

    /// Appends `payload` to `topic`; returns its id.
    pub async fn append(&self, topic: &str, payload: &[u8]) -> Result<StreamId> {
        let key = log_key(topic)?;
        let reply = self
            .store
            .run_script(&scripts::APPEND, &[&key], &self.append_args(payload))
            .await?;
        parse_id(&reply)
    }

    /// Appends `payload` to `topic` unless an append with `dedupe_key` was
    /// made in the last `max_age`; returns the id, or `None` for a repeat.
    pub async fn append_once(
        &self,
        topic: &str,
        dedupe_key: &str,
        payload: &[u8],
    ) -> Result<Option<StreamId>> {
        let key = log_key(topic)?;
        check_text("event dedupe key", dedupe_key)?;
        let marker = format!("{key}:once:{dedupe_key}");
        let reply = self
            .store
            .run_script(
                &scripts::APPEND_ONCE,
                &[&key, &marker],
                &self.append_args(payload),
            )
            .await?;
        match reply {
            ScriptValue::Nil => Ok(None),
            reply => parse_id(&reply).map(Some),
        }
    }

    /// The events of `topic` after `after` (at most 500; read again from the
    /// last for more), or [`Replay::Gap`] when `after` is not in the log.
    pub async fn read_after(&self, topic: &str, after: StreamId) -> Result<Replay> {
        let mut events = self.range(topic, after, READ_BATCH + 1).await?;
        if events.first().map(|event| event.id) != Some(after) {
            return Ok(Replay::Gap);
        }
        events.remove(0);
        Ok(Replay::Events(events))
    }

    /// The events of `topic` from `start` (included), at most `count`.
    pub async fn range(&self, topic: &str, start: StreamId, count: usize) -> Result<Vec<Event>> {
        let key = log_key(topic)?;
        let args = [
            ScriptArg::from(start.to_string().as_str()),
            ScriptArg::Int(i64::try_from(count).unwrap_or(i64::MAX)),
        ];
        let reply = self
            .store
            .run_script(&scripts::RANGE, &[&key], &args)
            .await?;
        reply
            .as_array()
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|pair| {
                Ok(Event {
                    id: parse_id(&pair[0])?,
                    payload: match &pair[1] {
                        ScriptValue::Bytes(bytes) => bytes.clone(),
                        _ => Bytes::new(),
                    },
                })
            })
            .collect()
    }

    /// Every event of `topic` after `after` (or, with `None`, from now on),
    /// then new ones as they are appended (polled every `poll_interval`).
    /// Yields [`Followed::Gap`] and ends when `after` — or the last event
    /// seen — is no longer in the log. Errors (store unavailable) are
    /// yielded and following continues.
    pub fn follow(
        &self,
        topic: &str,
        after: Option<StreamId>,
    ) -> impl Stream<Item = Result<Followed>> + Send + 'static {
        let log = self.clone();
        let topic = topic.to_owned();
        let start = StreamId {
            ms: u64::try_from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
            seq: 0,
        };
        let state = FollowState {
            anchor: after,
            start,
            pending: std::collections::VecDeque::new(),
            first_poll: true,
            ended: false,
        };
        futures_util::stream::unfold(state, move |mut state| {
            let log = log.clone();
            let topic = topic.clone();
            async move {
                loop {
                    if state.ended {
                        return None;
                    }
                    if let Some(event) = state.pending.pop_front() {
                        state.anchor = Some(event.id);
                        return Some((Ok(Followed::Event(event)), state));
                    }
                    if !state.first_poll {
                        tokio::time::sleep(log.config.poll_interval).await;
                    }
                    state.first_poll = false;
                    let read = match state.anchor {
                        Some(anchor) => log.read_after(&topic, anchor).await,
                        None => log
                            .range(&topic, state.start, READ_BATCH)
                            .await
                            .map(Replay::Events),
                    };
                    match read {
                        Ok(Replay::Events(events)) => state.pending.extend(events),
                        Ok(Replay::Gap) => {
                            state.ended = true;
                            return Some((Ok(Followed::Gap), state));
                        }
                        Err(error) => return Some((Err(error), state)),
                    }
                }
            }
        })
    }

    fn append_args(&self, payload: &[u8]) -> [ScriptArg; 3] {
        [
            ScriptArg::from(payload),
            ScriptArg::Int(i64::try_from(self.config.max_len).unwrap_or(i64::MAX)),
            ScriptArg::Int(i64::try_from(self.config.max_age.as_millis()).unwrap_or(i64::MAX)),
        ]
    }
}

struct FollowState {
    anchor: Option<StreamId>,
    start: StreamId,
    pending: std::collections::VecDeque<Event>,
    first_poll: bool,
    ended: bool,
}

/// `ev:{topic}`: the hash tag keeps a topic and its dedupe keys in one slot.
fn log_key(topic: &str) -> Result<String> {
    check_text("event topic", topic)?;
    if topic.contains(['{', '}']) {
        return Err(Error::invalid_input(
            "event topic",
            format!("{topic:?} contains a brace; expected a name without {{ or }}"),
        ));
    }
    Ok(format!("ev:{{{topic}}}"))
}

fn check_text(what: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
        return Err(Error::invalid_input(
            what,
            format!("{value:?}: expected 1 to 200 bytes without control characters"),
        ));
    }
    Ok(())
}

fn parse_id(value: &ScriptValue) -> Result<StreamId> {
    match value {
        ScriptValue::Bytes(bytes) => std::str::from_utf8(bytes)
            .map_err(|_| Error::invalid_input("stream id", "not UTF-8"))?
            .parse(),
        other => Err(Error::Script {
            script: "redkit_events",
            message: format!("expected a stream id, got {other:?}"),
        }),
    }
}
