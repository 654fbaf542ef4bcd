//! `redkit queue`: what an operator needs to see and repair job queues —
//! every queue's counts, a queue's dead jobs, retrying or purging them —
//! through redkit's public queue API, against the Redis the service uses.

use std::fmt::Write;

use redkit::Redkit;
use redkit::queue::Queue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::{DeadSelection, QueueCommand};

/// Longest payload shown per dead job, in characters.
const PAYLOAD_SHOWN: usize = 200;

/// Runs `command` on `kit` and returns what to print.
pub async fn run(kit: &Redkit, command: &QueueCommand) -> redkit::Result<String> {
    let mut out = String::new();
    match command {
        QueueCommand::List => {
            let names = kit.queue_names().await?;
            if names.is_empty() {
                out.push_str("no queues\n");
            }
            let _ = writeln!(
                out,
                "{:<24} {:>9} {:>9} {:>9} {:>9} {:>12}",
                "QUEUE", "WAITING", "RUNNING", "DELAYED", "DEAD", "OLDEST_WAIT"
            );
            for name in names {
                let counts = queue(kit, &name)?.counts().await?;
                let oldest = counts.oldest_waiting_ms.map_or_else(
                    || "-".to_owned(),
                    |ms| format!("{:.1}s", ms as f64 / 1000.0),
                );
                let _ = writeln!(
                    out,
                    "{:<24} {:>9} {:>9} {:>9} {:>9} {:>12}",
                    name, counts.waiting, counts.running, counts.delayed, counts.dead, oldest
                );
            }
        }
        QueueCommand::Dead {
            queue: name,
            limit,
            offset,
        } => {
            let jobs = queue(kit, name)?.dead_jobs(*offset, *limit).await?;
            if jobs.is_empty() {
                let _ = writeln!(out, "no dead jobs in {name}");
            }
            for job in jobs {
                let died = OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(job.died_at_ms) * 1_000_000,
                )
                .ok()
                .and_then(|at| at.format(&Rfc3339).ok())
                .unwrap_or_else(|| job.died_at_ms.to_string());
                let payload: String = job.payload.chars().take(PAYLOAD_SHOWN).collect();
                let _ = writeln!(
                    out,
                    "{}\n  died:     {died} after {} attempt(s)\n  error:    {}\n  payload:  {payload}",
                    job.id, job.attempts, job.error
                );
            }
        }
        QueueCommand::Retry(selection) => {
            let n = act(kit, selection, Action::Retry).await?;
            let _ = writeln!(out, "retried {n} dead job(s) of {}", selection.queue);
        }
        QueueCommand::Purge(selection) => {
            let n = act(kit, selection, Action::Purge).await?;
            let _ = writeln!(out, "purged {n} dead job(s) of {}", selection.queue);
        }
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Action {
    Retry,
    Purge,
}

async fn act(kit: &Redkit, selection: &DeadSelection, action: Action) -> redkit::Result<u64> {
    let queue = queue(kit, &selection.queue)?;
    let run = |id: Option<&str>| {
        let queue = queue.clone();
        let id = id.map(str::to_owned);
        async move {
            match action {
                Action::Retry => queue.retry_dead(id.as_deref()).await,
                Action::Purge => queue.purge_dead(id.as_deref()).await,
            }
        }
    };
    if !selection.all {
        return run(selection.id.as_deref()).await;
    }
    // In batches, until none are left — at most as many as there were, so
    // jobs that die again meanwhile are not retried in a loop.
    let dead = queue.counts().await?.dead;
    let mut total = 0;
    while total < dead {
        let n = run(None).await?;
        if n == 0 {
            break;
        }
        total += n;
    }
    Ok(total)
}

/// Any queue by name: payloads are handled as opaque JSON here.
fn queue(kit: &Redkit, name: &str) -> redkit::Result<Queue<serde_json::Value>> {
    kit.queue(name)
}
