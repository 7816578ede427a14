//! The `users` service: a database session per worker ([`enoki::db`]),
//! committed when the method succeeds and rolled back when it fails; and
//! an `#[http]` endpoint, `GET /users/{id}/profile`, that calls another
//! service (`greeter`) over RPC.
//!
//! Run with: `cargo run` (the gateway serves `POST /users`, `GET
//! /users/{id}`, `GET /users` from its route file and the service's own
//! `GET /users/{id}/profile`), or `cargo run -- run users` (the profile
//! endpoint on the process's web server, `WEB_SERVER_ADDRESS`, default
//! `0.0.0.0:8000`). Its database
//! is `DB_URIS.users` (default: SQLite in `users.db` in the working
//! directory), for example
//! `cargo run -- --define 'DB_URIS={users: "postgres://postgres@127.0.0.1/users"}'`.

use enoki::axum::Json;
use enoki::axum::extract::Path;
use enoki::db::{Database, DatabaseError, Db, Migration};
use enoki::prelude::*;
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// The schema, in both dialects.
pub const CREATE_USERS: Migration = Migration {
    version: 1,
    description: "create users",
    sqlite: "CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT ''
    )",
    postgres: "CREATE TABLE users (
        id BIGSERIAL PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT ''
    )",
};

/// The most users `list` returns at once.
pub const MAX_LIST: i64 = 1000;

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Given by the database.
    pub id: i64,
    /// Unique: 1 to 64 of `a-z`, `0-9`, `_`, `.`, `-`.
    pub username: String,
    /// A display name (may be empty).
    pub name: String,
}

impl User {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<User, DatabaseError> {
        Ok(User {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            name: row.try_get("name")?,
        })
    }
}

/// What `GET /users/{id}/profile` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The user.
    pub user: User,
    /// What the `greeter` service says to them.
    pub greeting: String,
}

/// The service.
#[derive(Debug, Dependencies)]
pub struct Users {
    #[dependency(Database::new().migration(CREATE_USERS))]
    db: Db,
    #[dependency(RpcProxy)]
    rpc: ClusterRpc,
}

fn not_found(id: i64) -> RemoteError {
    RemoteError::new("NotFound", format!("no user with id {id}"))
}

#[service(name = "users")]
impl Users {
    /// Creates a user; a username that is taken is a `Conflict` (409
    /// through the gateway), a malformed one a `BadRequest` (400).
    #[rpc]
    pub async fn create(
        &self,
        username: String,
        name: Option<String>,
    ) -> Result<User, RemoteError> {
        let valid = (1..=64).contains(&username.len())
            && username
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        if !valid {
            return Err(RemoteError::new(
                "BadRequest",
                format!("username {username:?}: 1 to 64 of a-z, 0-9, _, ., -"),
            ));
        }
        let name = name.unwrap_or_default();
        if name.len() > 256 {
            return Err(RemoteError::new("BadRequest", "name: at most 256 bytes"));
        }
        let mut tx = self.db.tx().await.map_err(RemoteError::from)?;
        let inserted = sqlx::query(
            "INSERT INTO users (username, name) VALUES ($1, $2) RETURNING id, username, name",
        )
        .bind(&username)
        .bind(&name)
        .fetch_one(&mut *tx)
        .await;
        drop(tx);
        match inserted {
            Ok(row) => {
                let user = User::from_row(&row)?;
                // Committed before the reply, so that the caller can read
                // what it wrote at once (the commit at teardown comes after
                // the reply, as in nameko-sqlalchemy).
                self.db.commit().await.map_err(RemoteError::from)?;
                Ok(user)
            }
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Err(RemoteError::new(
                "Conflict",
                format!("username {username:?} is taken"),
            )),
            Err(err) => Err(DatabaseError(err).into()),
        }
    }

    /// The user `id`, or `NotFound` (404 through the gateway). One read
    /// needs no transaction: it goes to the pool directly.
    #[rpc]
    pub async fn get(&self, id: i64) -> Result<User, RemoteError> {
        let row = sqlx::query("SELECT id, username, name FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(DatabaseError)?;
        match row {
            Some(row) => Ok(User::from_row(&row)?),
            None => Err(not_found(id)),
        }
    }

    /// `GET /users/{id}/profile`: the user, greeted by the `greeter`
    /// service over RPC (nameko's "the endpoint function can itself invoke
    /// other parts of the system via RPC"). A missing user is 404, an id
    /// that is not a number 400, an unreachable greeter 500, all as JSON.
    #[http(GET, "/users/{id}/profile")]
    pub async fn profile(&self, Path(id): Path<i64>) -> Result<Json<Profile>, RemoteError> {
        let user = self.get(id).await?;
        let greeting = self
            .rpc
            .service("greeter")
            .call("hello", serde_json::json!([user.username]))
            .await?;
        let greeting = serde_json::from_value(greeting)
            .map_err(|err| RemoteError::new("ValueError", format!("greeter.hello: {err}")))?;
        Ok(Json(Profile { user, greeting }))
    }

    /// Users in id order, at most `limit` (default 100, at most
    /// [`MAX_LIST`]), after id `after` (for the next page).
    #[rpc]
    pub async fn list(
        &self,
        limit: Option<i64>,
        after: Option<i64>,
    ) -> Result<Vec<User>, RemoteError> {
        let limit = limit.unwrap_or(100);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(RemoteError::new(
                "BadRequest",
                format!("limit: from 1 to {MAX_LIST}"),
            ));
        }
        let mut tx = self.db.tx().await?;
        let rows =
            sqlx::query("SELECT id, username, name FROM users WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.unwrap_or(0))
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err(DatabaseError)?;
        rows.iter()
            .map(|row| User::from_row(row).map_err(RemoteError::from))
            .collect()
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    enoki::cli::main([enoki::service::<Users>()]).await
}
