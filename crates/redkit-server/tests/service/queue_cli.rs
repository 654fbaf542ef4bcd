//! `redkit queue …` against a real Redis holding real queues.

use std::time::Duration;

use redkit::Redkit;
use redkit::config::RetryConfig;
use redkit::queue::{Job, QueueConfig};
use redkit_testkit::RedisServer;

use crate::support::{eventually, fast_redis_config};

fn redkit_queue(redis_url: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = crate::support::redkit_binary();
    if let Some(url) = redis_url {
        command.env("REDIS_URL", url);
    }
    let output = command.arg("queue").args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_subcommands_list_show_retry_and_purge_dead_jobs() {
    let redis = RedisServer::new();
    let kit =
        redkit::test_util::ready(Redkit::builder().redis(fast_redis_config(&redis.url()))).await;
    let config = QueueConfig::default()
        .poll_interval(Duration::from_millis(20))
        .retry(RetryConfig::default().max_attempts(1));
    let mail = kit
        .queue::<String>("mail")
        .unwrap()
        .with_config(config)
        .unwrap();
    for to in ["a@example.com", "b@example.com"] {
        mail.enqueue(&to.to_owned()).await.unwrap();
    }
    let worker = mail.start_worker(|job: Job<String>| async move {
        Err::<(), redkit::BoxError>(format!("smtp refused {}", job.payload).into())
    });
    let both_dead = eventually(Duration::from_secs(5), || async {
        mail.counts().await.unwrap().dead == 2
    })
    .await;
    assert!(both_dead);
    worker.shutdown(Duration::from_secs(1)).await;
    kit.queue::<u32>("other")
        .unwrap()
        .enqueue(&1)
        .await
        .unwrap();
    let url = redis.url();

    let (ok, out, err) = redkit_queue(Some(&url), &["list"]);
    assert!(ok, "{err}");
    let mail_line = out.lines().find(|line| line.starts_with("mail ")).unwrap();
    let columns: Vec<&str> = mail_line.split_whitespace().collect();
    assert_eq!(&columns[..5], ["mail", "0", "0", "0", "2"], "{out}");
    assert!(out.lines().any(|line| line.starts_with("other ")), "{out}");

    let (ok, out, err) = redkit_queue(Some(&url), &["dead", "mail"]);
    assert!(ok, "{err}");
    assert!(out.contains("smtp refused a@example.com"), "{out}");
    assert!(out.contains(r#""b@example.com""#), "{out}");
    let first_id = out.lines().next().unwrap().trim().to_owned();

    let (ok, out, _) = redkit_queue(Some(&url), &["retry", "mail", "--id", &first_id]);
    assert!(ok && out.contains("retried 1"), "{out}");
    assert_eq!(mail.counts().await.unwrap().waiting, 1);
    let (ok, out, _) = redkit_queue(Some(&url), &["purge", "mail", "--all"]);
    assert!(ok && out.contains("purged 1"), "{out}");
    assert_eq!(mail.counts().await.unwrap().dead, 0);

    // Bad use is named.
    let (ok, _, err) = redkit_queue(Some(&url), &["retry", "mail"]);
    assert!(!ok && err.contains("--id"), "{err}");
    let (ok, _, err) = redkit_queue(Some(&url), &["dead", "bad{name}"]);
    assert!(!ok && err.contains("queue name"), "{err}");
    let (ok, _, err) = redkit_queue(None, &["list"]);
    assert!(!ok && err.contains("needs Redis"), "{err}");
    kit.shutdown().await;
}
