//! GET /events: the user's task changes as Server-Sent Events.
//!
//! The stream starts with a `ready` event (the subscription is live from
//! then on), then sends one `task` event per change as JSON
//! (`{"type": "created", "task": {...}}`, `updated`, `deleted` with `id`, or
//! `resync`) and a `reminder` event (`{"task": {...}, "due_at": "..."}`)
//! when a task comes due. Task and reminder events carry an `id:` from the
//! user's event log; a request with `Last-Event-ID` first gets every event
//! after that id (then the live ones, without repeats), or a `resync` when
//! the id is malformed, unknown or older than the log keeps. It ends cleanly when the service shuts down, and when the
//! session it was opened with has ended (logout, logout-all on any
//! instance, expiry): the session is checked before each event is sent and
//! every [`SESSION_CHECK`] while the stream is quiet.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use redkit::store::StreamId;
use tokio::sync::broadcast;

use super::{Delivery, TaskEvent};
use crate::auth::CurrentUser;
use crate::server::AppState;
use crate::shutdown::Shutdown;

/// How often a quiet stream checks that its session still exists.
pub(crate) const SESSION_CHECK: Duration = Duration::from_secs(15);

/// One client's stream: its receiver and whose it is.
struct Client {
    receiver: broadcast::Receiver<Arc<Delivery>>,
    state: AppState,
    user: CurrentUser,
    /// The last replayed id: live events up to it were sent already.
    replayed_through: Option<StreamId>,
}

/// GET /events.
pub(crate) async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before reading the log, so nothing falls between the two.
    let receiver = state.events.receiver();
    let mut replay: Vec<(Option<StreamId>, TaskEvent)> = Vec::new();
    if let Some(raw) = headers.get("last-event-id") {
        let after = raw
            .to_str()
            .ok()
            .and_then(|raw| raw.trim().parse::<StreamId>().ok());
        let events = match after {
            Some(after) => state.events.replay(user.id, after).await,
            None => None,
        };
        match events {
            Some(events) => replay.extend(events.into_iter().map(|(id, event)| (Some(id), event))),
            None => replay.push((None, TaskEvent::Resync)),
        }
    }
    let replayed_through = replay.iter().filter_map(|(id, _)| *id).next_back();
    let client = Client {
        receiver,
        state,
        user,
        replayed_through,
    };
    let ready =
        futures_util::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let replayed = futures_util::stream::iter(
        replay
            .into_iter()
            .map(|(id, event)| Ok(sse_event(id, &event))),
    );
    let changes = futures_util::stream::unfold(client, |mut client| async move {
        let (id, event) = client.next().await?;
        Some((Ok(sse_event(id, &event)), client))
    });
    use futures_util::StreamExt;
    Sse::new(ready.chain(replayed).chain(changes)).keep_alive(KeepAlive::default())
}

impl Client {
    /// The next event to send; `None` ends the stream (shutdown, or the
    /// session is gone).
    async fn next(&mut self) -> Option<(Option<StreamId>, TaskEvent)> {
        loop {
            let (id, event) = tokio::select! {
                event = next_for(&mut self.receiver, &self.state.shutdown, self.user.id) => event?,
                () = tokio::time::sleep(SESSION_CHECK) => {
                    if !self.session_alive().await {
                        return None;
                    }
                    continue;
                }
            };
            if let (Some(id), Some(through)) = (id, self.replayed_through)
                && id <= through
            {
                continue; // already sent from the log
            }
            return self.session_alive().await.then_some((id, event));
        }
    }

    /// Whether the stream's session still exists. While the session store
    /// is unavailable the stream stays open (it cannot tell).
    async fn session_alive(&self) -> bool {
        match self.state.sessions.get(&self.user.session_id).await {
            Ok(session) => session.is_some(),
            Err(error) => {
                tracing::debug!(%error, "cannot check an event stream's session");
                true
            }
        }
    }
}

/// The next event for `user_id`; `None` at shutdown.
async fn next_for(
    receiver: &mut broadcast::Receiver<Arc<Delivery>>,
    shutdown: &Shutdown,
    user_id: i64,
) -> Option<(Option<StreamId>, TaskEvent)> {
    loop {
        let received = tokio::select! {
            () = shutdown.wait() => return None,
            received = receiver.recv() => received,
        };
        match received {
            Ok(delivery) if delivery.user_id.is_none_or(|id| id == user_id) => {
                return Some((delivery.id, delivery.event.clone()));
            }
            Ok(_) => {}
            // This client fell behind and missed events.
            Err(broadcast::error::RecvError::Lagged(_)) => return Some((None, TaskEvent::Resync)),
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// The SSE form of `event`: `reminder` for reminders, `task` otherwise,
/// with the log id when there is one.
fn sse_event(id: Option<StreamId>, event: &TaskEvent) -> Event {
    let rendered = match event {
        TaskEvent::Reminder { task, due_at } => Event::default()
            .event("reminder")
            .json_data(serde_json::json!({ "task": task, "due_at": due_at })),
        other => Event::default().event("task").json_data(other),
    };
    let rendered =
        rendered.unwrap_or_else(|_| Event::default().event("task").data(r#"{"type":"resync"}"#));
    match id {
        Some(id) => rendered.id(id.to_string()),
        None => rendered,
    }
}
