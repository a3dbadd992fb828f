//! The `seatgate` command itself, run as a process: what it writes, and what it refuses to write.

use std::process::{Command, Output};

use sqlx::PgPool;
use uuid::Uuid;

/// The test server's PostgreSQL URL (what `#[sqlx::test]` uses), pointing at another database.
fn database_url(name: &str) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let (server, _) = base.rsplit_once('/').expect("DATABASE_URL ends in a database name");
    format!("{server}/{name}")
}

/// Runs `seatgate <args>` against database `name`, with a throw-away Redis prefix.
pub(crate) fn seatgate(args: &[&str], database: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .args(args)
        .env("SEATGATE_DATABASE_URL", database_url(database))
        .env("SEATGATE_REDIS_KEY_PREFIX", format!("t{}", Uuid::new_v4().simple()))
        .env("SEATGATE_LOG_FORMAT", "pretty")
        .env_remove("RUST_LOG")
        .output()
        .expect("the seatgate binary runs")
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn check_invariants_of_a_database_that_does_not_exist_fails_and_creates_nothing(db: PgPool) {
    // Arrange
    let missing = format!("seatgate_missing_{}", Uuid::new_v4().simple());
    // Act
    let out = seatgate(&["check-invariants"], &missing);
    // Assert
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a missing database must not pass the check");
    assert!(stderr.contains("does not exist") && stderr.contains(&missing), "{stderr}");
    let created: i64 = sqlx::query_scalar("select count(*) from pg_database where datname = $1")
        .bind(&missing)
        .fetch_one(&db)
        .await
        .expect("pg_database is readable");
    assert_eq!(created, 0, "the checker created the database it was asked to check");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn logs_written_to_a_pipe_carry_no_colour_codes(db: PgPool) {
    // Arrange: the test's own, already migrated database.
    let name: String = sqlx::query_scalar("select current_database()").fetch_one(&db).await.expect("name");
    // Act: stdout is a pipe here, as it is for a log file under target/up/.
    let out = seatgate(&["migrate"], &name);
    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "migrate failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("migrations applied"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "ANSI escape codes in piped logs: {stdout:?}");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn check_invariants_writes_only_its_report_to_stdout_and_its_log_to_stderr(db: PgPool) {
    // Arrange: the test's own, already migrated database, and a filter that logs everything
    // (a dying Redis Cluster node makes redis-rs warn while the checker connects, for one).
    let name: String = sqlx::query_scalar("select current_database()").fetch_one(&db).await.expect("name");
    // Act
    let out = Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .args(["check-invariants", "--slack-secs", "5"])
        .env("SEATGATE_DATABASE_URL", database_url(&name))
        .env("SEATGATE_REDIS_KEY_PREFIX", format!("t{}", Uuid::new_v4().simple()))
        .env("SEATGATE_LOG_FORMAT", "pretty")
        .env("RUST_LOG", "debug")
        .output()
        .expect("the seatgate binary runs");
    // Assert: stdout parses as the report as a whole; the log lines went to stderr.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check-invariants failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is exactly the JSON report");
    assert_eq!(report["violations"], serde_json::json!([]), "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("telemetry initialised"), "the log is on stderr");
}
