//! A job queue end to end: enqueue now, later and with an id; a worker with
//! retries; counts; graceful shutdown.
//!
//! Runs on the embedded store by default; with `REDIS_URL` (or the other
//! `REDIS_*` variables) on Redis:
//!
//! ```sh
//! cargo run -p redkit --example job_worker
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p redkit --example job_worker
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redkit::Redkit;
use redkit::config::{RedisConfig, RetryConfig};
use redkit::queue::{EnqueueOptions, Job, QueueConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Email {
    to: String,
    subject: String,
}

#[tokio::main]
async fn main() -> Result<(), redkit::BoxError> {
    let kit = Redkit::builder().redis(RedisConfig::from_env()?).build()?;
    if let Some(connection) = kit.connection() {
        connection.wait_ready(Duration::from_secs(5)).await?;
    }
    println!("queue on the {} store", kit.backend());

    let config = QueueConfig::default().concurrency(4).retry(
        RetryConfig::default()
            .initial_delay(Duration::from_millis(200))
            .max_delay(Duration::from_secs(2))
            .max_attempts(3),
    );
    let emails = kit.queue::<Email>("example-emails")?.with_config(config)?;

    let email = |to: &str, subject: &str| Email {
        to: to.to_owned(),
        subject: subject.to_owned(),
    };
    emails.enqueue(&email("ada@example.com", "hello")).await?;
    emails
        .enqueue_after(
            &email("bob@example.com", "a second later"),
            Duration::from_secs(1),
        )
        .await?;
    // An id deduplicates: the second enqueue changes nothing.
    let welcome = EnqueueOptions::new().id("welcome:cy");
    emails
        .enqueue_with(&email("cy@example.com", "welcome"), welcome.clone())
        .await?;
    let again = emails
        .enqueue_with(&email("cy@example.com", "welcome"), welcome)
        .await?;
    println!("enqueued welcome:cy twice; second added: {}", again.added);
    // This one fails on its first attempt and succeeds on the retry.
    emails
        .enqueue(&email("flaky@example.com", "retried"))
        .await?;

    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    let worker = emails.start_worker(move |job: Job<Email>| {
        let counter = counter.clone();
        async move {
            if job.payload.to.starts_with("flaky") && job.attempt == 1 {
                return Err("the mail server said try again".into());
            }
            println!(
                "sent {:?} to {} (job {}, attempt {}, waited {:?})",
                job.payload.subject, job.payload.to, job.id, job.attempt, job.waited
            );
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while done.load(Ordering::SeqCst) < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = worker.shutdown(Duration::from_secs(5)).await;
    println!("worker stopped: {report:?}");
    println!("counts: {:?}", emails.counts().await?);
    kit.shutdown().await;
    Ok(())
}
