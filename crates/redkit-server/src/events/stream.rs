//! GET /events: the user's task changes as Server-Sent Events.
//!
//! The stream starts with a `ready` event (the subscription is live from
//! then on), then sends one `task` event per change as JSON
//! (`{"type": "created", "task": {...}}`, `updated`, `deleted` with `id`, or
//! `resync`). It ends cleanly when the service shuts down, and when the
//! session it was opened with has ended (logout, logout-all on any
//! instance, expiry): the session is checked before each event is sent and
//! every [`SESSION_CHECK`] while the stream is quiet.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
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
}

/// GET /events.
pub(crate) async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let client = Client {
        receiver: state.events.receiver(),
        state,
        user,
    };
    let ready =
        futures_util::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let changes = futures_util::stream::unfold(client, |mut client| async move {
        let event = client.next().await?;
        Some((Ok(task_event(&event)), client))
    });
    Sse::new(futures_util::StreamExt::chain(ready, changes)).keep_alive(KeepAlive::default())
}

impl Client {
    /// The next event to send; `None` ends the stream (shutdown, or the
    /// session is gone).
    async fn next(&mut self) -> Option<TaskEvent> {
        loop {
            let event = tokio::select! {
                event = next_for(&mut self.receiver, &self.state.shutdown, self.user.id) => event?,
                () = tokio::time::sleep(SESSION_CHECK) => {
                    if !self.session_alive().await {
                        return None;
                    }
                    continue;
                }
            };
            return self.session_alive().await.then_some(event);
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
) -> Option<TaskEvent> {
    loop {
        let received = tokio::select! {
            () = shutdown.wait() => return None,
            received = receiver.recv() => received,
        };
        match received {
            Ok(delivery) if delivery.user_id.is_none_or(|id| id == user_id) => {
                return Some(delivery.event.clone());
            }
            Ok(_) => {}
            // This client fell behind and missed events.
            Err(broadcast::error::RecvError::Lagged(_)) => return Some(TaskEvent::Resync),
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

fn task_event(event: &TaskEvent) -> Event {
    Event::default()
        .event("task")
        .json_data(event)
        .unwrap_or_else(|_| Event::default().event("task").data(r#"{"type":"resync"}"#))
}
