//! `redkit doctor`: audits the configured Redis against what redkit needs
//! and what a production Redis should have.
//!
//! Each check yields [`Finding`]s graded pass / warn / fail with the fix.
//! The process exits 0 when everything passes, 1 with warnings, 2 with a
//! failure, so deploy scripts can gate on it (`--json` for machines).
//!
//! Why a command: the settings that break a redkit deployment live on the
//! Redis server (an eviction policy that logs users out, an ACL user who
//! may not run scripts, no persistence under a job queue), where neither
//! the compiler nor the service's own health report looks. The audit only
//! reads, except for a round trip of redkit's store operations on a scratch
//! key prefix that it removes afterwards.
//!
//! Topologies: redkit connects to a standalone Redis today; Sentinel and
//! Cluster support (and their checks: quorum, cluster state) come with
//! them. The doctor says so rather than pretending to check them.

mod checks;

use std::fmt::Write as _;
use std::time::Duration;

use redkit::config::RedisConfig;
use serde::Serialize;

/// A finding's grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// As it should be.
    Pass,
    /// Works, but a risk to fix.
    Warn,
    /// Breaks redkit, or an open door.
    Fail,
}

impl Grade {
    fn label(self) -> &'static str {
        match self {
            Grade::Pass => "PASS",
            Grade::Warn => "WARN",
            Grade::Fail => "FAIL",
        }
    }
}

/// One result of the audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check: `connection`, `version`, `permissions`, `round_trip`,
    /// `security`, `memory`, `eviction`, `persistence`, `replication`,
    /// `topology`, `latency`, `slowlog`, `clients`.
    pub check: &'static str,
    /// The grade.
    pub grade: Grade,
    /// What was found.
    pub message: String,
    /// How to fix it (empty when it passes).
    pub fix: String,
}

impl Finding {
    pub(crate) fn pass(check: &'static str, message: impl Into<String>) -> Self {
        Finding {
            check,
            grade: Grade::Pass,
            message: message.into(),
            fix: String::new(),
        }
    }

    pub(crate) fn warn(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            grade: Grade::Warn,
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn fail(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            grade: Grade::Fail,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `host:port/db` audited (never credentials).
    pub address: String,
    /// The worst grade.
    pub grade: Grade,
    /// Every finding, in check order.
    pub findings: Vec<Finding>,
}

impl Report {
    fn new(address: String, findings: Vec<Finding>) -> Self {
        let grade = findings
            .iter()
            .map(|finding| finding.grade)
            .max()
            .unwrap_or(Grade::Pass);
        Report {
            address,
            grade,
            findings,
        }
    }

    /// 0 when everything passes, 1 with warnings, 2 with failures.
    pub fn exit_code(&self) -> u8 {
        match self.grade {
            Grade::Pass => 0,
            Grade::Warn => 1,
            Grade::Fail => 2,
        }
    }

    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        let mut text = format!("redkit doctor: {}\n\n", self.address);
        for finding in &self.findings {
            let _ = writeln!(
                text,
                "{} {:<12} {}",
                finding.grade.label(),
                finding.check,
                finding.message
            );
            if !finding.fix.is_empty() {
                let _ = writeln!(text, "     {:<12} fix: {}", "", finding.fix);
            }
        }
        let count = |grade| self.findings.iter().filter(|f| f.grade == grade).count();
        let _ = writeln!(
            text,
            "\n{} passed, {} warnings, {} failures",
            count(Grade::Pass),
            count(Grade::Warn),
            count(Grade::Fail)
        );
        text
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// How the audit runs.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// PINGs in the latency sample. Default: 200.
    pub pings: u32,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        DoctorOptions { pings: 200 }
    }
}

/// Audits the Redis `config` points at.
pub async fn audit(config: RedisConfig, options: &DoctorOptions) -> Report {
    if !config.enabled {
        return Report::new(
            "none".to_owned(),
            vec![Finding::fail(
                "connection",
                "no Redis is configured (REDIS_URL / REDIS_HOST unset, or REDIS_ENABLED=false): nothing to audit",
                "set REDIS_URL (or REDIS_HOST) as for `redkit serve`",
            )],
        );
    }
    let address = config.address();
    let findings = checks::run(config, options).await;
    Report::new(address, findings)
}

/// The millisecond figure of `duration`, one decimal.
pub(crate) fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}
