//! `seatgate seed-users`: bench accounts in bulk with one shared password, idempotent, run as a
//! process against the test's database.

use serde_json::Value;
use sqlx::PgPool;

use crate::cli::seatgate;
use crate::helpers::TestApp;

/// The command's JSON summary (the last stdout line that is one).
fn summary(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "seed-users failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v.get("created").is_some()))
        .unwrap_or_else(|| panic!("no JSON summary in {stdout}"))
}

async fn database_name(db: &PgPool) -> String {
    sqlx::query_scalar("select current_database()").fetch_one(db).await.expect("name")
}

async fn seeded(db: &PgPool, prefix: &str) -> i64 {
    sqlx::query_scalar("select count(*) from users where starts_with(email, $1)")
        .bind(prefix)
        .fetch_one(db)
        .await
        .expect("count")
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn seed_users_writes_n_accounts_that_log_in_with_the_shared_password(db: PgPool) {
    // Arrange
    let name = database_name(&db).await;
    // Act
    let out = seatgate(
        &["seed-users", "--count", "3", "--email-prefix", "seeded-", "--password", "shared-password", "--print-ids"],
        &name,
    );
    // Assert
    let summary = summary(&out);
    assert_eq!((summary["created"].as_u64(), summary["existing"].as_u64()), (Some(3), Some(0)), "{summary}");
    assert_eq!(summary["ids"].as_array().map(Vec::len), Some(3));
    assert_eq!(seeded(&db, "seeded-").await, 3);
    let app = TestApp::spawn(db.clone()).await;
    for i in 1..=3 {
        let login = app.login(&format!("seeded-{i}@example.com"), "shared-password").await.json_status(200).await;
        assert_eq!(login["user"]["id"], summary["ids"][i - 1], "ids are printed in email order");
        assert_eq!(login["user"]["role"], "user");
    }
    app.login("seeded-1@example.com", "another-password").await.assert_status(401);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_second_seed_users_run_adds_none_and_leaves_existing_passwords_alone(db: PgPool) {
    // Arrange
    let name = database_name(&db).await;
    let args = |count: &'static str, password: &'static str| {
        ["seed-users", "--count", count, "--email-prefix", "again-", "--password", password]
    };
    summary(&seatgate(&args("2", "first-password"), &name));
    // Act: the same accounts and one more, with another password.
    let rerun = summary(&seatgate(&args("3", "second-password"), &name));
    let again = summary(&seatgate(&args("3", "second-password"), &name));
    // Assert
    assert_eq!((rerun["created"].as_u64(), rerun["existing"].as_u64()), (Some(1), Some(2)), "{rerun}");
    assert_eq!((again["created"].as_u64(), again["existing"].as_u64()), (Some(0), Some(3)), "{again}");
    assert_eq!(seeded(&db, "again-").await, 3);
    let app = TestApp::spawn(db.clone()).await;
    app.login("again-1@example.com", "first-password").await.assert_status(200);
    app.login("again-3@example.com", "second-password").await.assert_status(200);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn seed_users_refuses_a_password_registration_would_refuse_and_writes_nothing(db: PgPool) {
    // Arrange
    let name = database_name(&db).await;
    // Act
    let out = seatgate(&["seed-users", "--count", "2", "--email-prefix", "weak-", "--password", "short"], &name);
    // Assert
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 to 128"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(seeded(&db, "weak-").await, 0);
}
