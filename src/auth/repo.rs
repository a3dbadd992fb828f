//! SQL for accounts.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use super::Role;

/// A row of `users`.
#[derive(Clone, Debug, FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[tracing::instrument(skip_all)]
pub async fn insert_user(
    conn: &mut PgConnection,
    email: &str,
    name: &str,
    password_hash: &str,
    role: Role,
) -> Result<UserRow, sqlx::Error> {
    sqlx::query_as::<_, UserRow>(
        r#"insert into users (id, email, name, password_hash, role) values ($1, $2, $3, $4, $5)
           returning id, email, name, password_hash, role, created_at"#,
    )
    .bind(Uuid::now_v7())
    .bind(email)
    .bind(name)
    .bind(password_hash)
    .bind(role)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn find_user_by_email(conn: &mut PgConnection, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as::<_, UserRow>(
        r#"select id, email, name, password_hash, role, created_at from users where email = $1"#,
    )
    .bind(email)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(skip_all, fields(user.id = %id))]
pub async fn find_user(conn: &mut PgConnection, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as::<_, UserRow>(r#"select id, email, name, password_hash, role, created_at from users where id = $1"#)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Makes an existing account an admin; reports whether one was found.
#[tracing::instrument(skip_all)]
pub async fn promote_to_admin(conn: &mut PgConnection, email: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(r#"update users set role = 'admin', updated_at = now() where email = $1"#)
        .bind(email)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
