//! The database session: nameko-sqlalchemy's `Database` provider, on sqlx.
//!
//! [`Database`] is a [`DependencyProvider`]. Per container it opens one
//! pool (in `setup`, closed in `stop`), bounded by `max_workers`, and
//! applies its [`Migration`]s. Per worker it hands out a [`Db`]: the
//! worker's transaction, begun on first use; in `worker_teardown` (for
//! RPC after the reply) it is **committed when the worker succeeded and
//! rolled back when it failed**, so a method that returns an error (a
//! database error with `?` included) leaves nothing behind and never a
//! connection checked out.
//!
//! The URI comes from nameko-sqlalchemy's config key `DB_URIS`, by service
//! name (or `service:name` for [`Database::named`]), with the usual
//! `${VAR:default}`:
//!
//! ```yaml
//! DB_URIS:
//!   users: ${USERS_DB:sqlite://users.db?mode=rwc}
//!   # users: postgres://enoki@localhost/users
//! ```
//!
//! Without an entry the service gets SQLite in a file of the working
//! directory, `<service>.db` (`sqlite::memory:` works too: the pool then
//! keeps one shared in-memory database). The same code runs on SQLite and
//! PostgreSQL (sqlx's `Any` driver); write placeholders as `$1, $2`, which
//! both understand, and give a [`Migration`] both dialects where they
//! differ.
//!
//! ```
//! use enoki::db::{Database, Db, DatabaseError, Migration};
//! use enoki::prelude::*;
//! use sqlx::Row;
//!
//! #[derive(Dependencies)]
//! struct Notes {
//!     #[dependency(Database::new().migration(Migration::same(
//!         1, "notes", "CREATE TABLE notes (body TEXT NOT NULL)",
//!     )))]
//!     db: Db,
//! }
//!
//! #[service(name = "notes")]
//! impl Notes {
//!     #[rpc]
//!     async fn add(&self, body: String) -> Result<i64, DatabaseError> {
//!         let mut tx = self.db.tx().await?;
//!         sqlx::query("INSERT INTO notes (body) VALUES ($1)").bind(body).execute(&mut *tx).await?;
//!         let row = sqlx::query("SELECT COUNT(*) AS n FROM notes").fetch_one(&mut *tx).await?;
//!         Ok(row.try_get("n")?)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
//! let settings = Settings::new().with("DB_URIS", serde_json::json!({"notes": "sqlite::memory:"}));
//! let transport = enoki::transport::MemoryTransport::new();
//! let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
//! runner.add(enoki::service::<Notes>());
//! runner.start().await?;
//! let rpc = ClusterRpc::connect(transport, &settings).await?;
//! assert_eq!(NotesClient::new(&rpc).add("hi".into()).await?, 1);
//! runner.stop().await;
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{MigrationSource, MigrationType, Migrator};
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::MappedMutexGuard;

use crate::container_ctx::ContainerCtx;
use crate::context::WorkerCtx;
use crate::dependency::DependencyProvider;
use crate::error::{Error, Result};
use crate::outcome::Outcome;

/// The config key of the database URIs (nameko-sqlalchemy's).
pub const DB_URIS: &str = "DB_URIS";

/// How long opening the pool, or a connection from it, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An error of the database: what a worker returns with `?` on sqlx calls.
/// It reaches callers as a remote `DatabaseError`, and the worker's
/// transaction is rolled back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DatabaseError(#[from] pub sqlx::Error);

/// Which database a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// One schema change, applied once at start (sqlx's `_sqlx_migrations`
/// table records it), in the dialect of the database.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Its order and identity: applied in increasing order, once.
    pub version: i64,
    /// What it does.
    pub description: &'static str,
    /// The SQL for SQLite.
    pub sqlite: &'static str,
    /// The SQL for PostgreSQL.
    pub postgres: &'static str,
}

impl Migration {
    /// A migration written once for both dialects.
    pub const fn same(version: i64, description: &'static str, sql: &'static str) -> Self {
        Migration {
            version,
            description,
            sqlite: sql,
            postgres: sql,
        }
    }

    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

/// The migrations of one backend, as sqlx reads them.
#[derive(Debug)]
struct Migrations(Vec<sqlx::migrate::Migration>);

impl MigrationSource<'static> for Migrations {
    fn resolve(
        self,
    ) -> BoxFuture<
        'static,
        std::result::Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async move { Ok(self.0) })
    }
}

/// The provider: a pool per container, a transaction per worker.
pub struct Database {
    name: Option<String>,
    migrations: Vec<Migration>,
    pool: Option<Pool>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

#[derive(Clone)]
struct Pool {
    pool: AnyPool,
    backend: Backend,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("name", &self.name)
            .field("migrations", &self.migrations.len())
            .field("open", &self.pool.is_some())
            .finish()
    }
}

impl Default for Database {
    fn default() -> Self {
        Database::new()
    }
}

impl Database {
    /// The service's database: `DB_URIS[<service>]`.
    pub fn new() -> Self {
        Database {
            name: None,
            migrations: Vec::new(),
            pool: None,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// A second database of a service: `DB_URIS["<service>:<name>"]`
    /// (nameko-sqlalchemy's key for a declarative base).
    pub fn named(name: impl Into<String>) -> Self {
        Database {
            name: Some(name.into()),
            ..Database::new()
        }
    }

    /// Adds a migration, applied at start.
    #[must_use]
    pub fn migration(mut self, migration: Migration) -> Self {
        self.migrations.push(migration);
        self
    }

    fn key(&self, service: &str) -> String {
        match &self.name {
            Some(name) => format!("{service}:{name}"),
            None => service.to_owned(),
        }
    }

    /// Opens the pool and applies the migrations.
    async fn open(&self, ctx: &ContainerCtx) -> Result<Pool> {
        sqlx::any::install_default_drivers();
        let key = self.key(ctx.service_name());
        let default = || format!("sqlite://{}.db?mode=rwc", key.replace(':', "-"));
        let uri = match ctx.settings().get(DB_URIS) {
            None | Some(serde_json::Value::Null) => default(),
            Some(serde_json::Value::Object(uris)) => match uris.get(&key) {
                Some(serde_json::Value::String(uri)) => uri.clone(),
                None | Some(serde_json::Value::Null) => default(),
                Some(other) => {
                    return Err(Error::Config(format!(
                        "{DB_URIS}.{key}: expected a database URI, got {other}"
                    )));
                }
            },
            Some(other) => {
                return Err(Error::Config(format!(
                    "{DB_URIS} must be a mapping of service names to URIs, got {other}"
                )));
            }
        };
        let shown = redact(&uri);
        let backend = match uri.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Backend::Sqlite,
            Some("postgres" | "postgresql") => Backend::Postgres,
            _ => {
                return Err(Error::Config(format!(
                    "{DB_URIS}.{key}: `{shown}` is not a sqlite: or postgres: URI"
                )));
            }
        };
        let options = AnyConnectOptions::from_str(&uri).map_err(|err| {
            Error::Config(format!(
                "{DB_URIS}.{key}: malformed database URI `{shown}`: {}",
                redact_in(&err.to_string(), &uri, &shown)
            ))
        })?;
        let max = u32::try_from(ctx.settings().max_workers())
            .unwrap_or(u32::MAX)
            .max(1);
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(CONNECT_TIMEOUT);
        if uri.contains(":memory:") || uri.contains("mode=memory") {
            // An in-memory SQLite database lives as long as a connection.
            pool_options = pool_options
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = pool_options.connect_with(options).await.map_err(|err| {
            database(
                format!("cannot open database `{shown}` for `{key}`"),
                &err,
                &uri,
                &shown,
            )
        })?;
        if !self.migrations.is_empty() {
            let migrations = self
                .migrations
                .iter()
                .map(|m| {
                    sqlx::migrate::Migration::new(
                        m.version,
                        Cow::Borrowed(m.description),
                        MigrationType::Simple,
                        Cow::Borrowed(m.sql(backend)),
                        false,
                    )
                })
                .collect();
            let migrator = Migrator::new(Migrations(migrations))
                .await
                .map_err(|err| database(format!("migrations of `{key}`"), &err, &uri, &shown))?;
            // PostgreSQL serialises concurrent migrators with an advisory
            // lock; SQLite has none, so an instance that lost the race to
            // another (the table exists already) reads the record again.
            let mut attempt = 0u64;
            loop {
                match migrator.run(&pool).await {
                    Ok(()) => break,
                    Err(err) if backend == Backend::Sqlite && attempt < 3 => {
                        attempt += 1;
                        tracing::debug!(%err, attempt, "migration raced another instance; retrying");
                        tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                    }
                    Err(err) => {
                        return Err(database(
                            format!("migrating `{key}` ({shown})"),
                            &err,
                            &uri,
                            &shown,
                        ));
                    }
                }
            }
        }
        tracing::info!(service = ctx.service_name(), database = %shown, max_connections = max, "database pool open");
        Ok(Pool { pool, backend })
    }
}

/// `Error::Database` with the URI's password hidden in the message.
fn database(context: String, err: &dyn std::error::Error, uri: &str, shown: &str) -> Error {
    Error::Database {
        context,
        source: redact_in(&err.to_string(), uri, shown).into(),
    }
}

/// `uri` with its password replaced by `***`.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => uri.to_owned(),
        },
        None => uri.to_owned(),
    }
}

fn redact_in(text: &str, uri: &str, shown: &str) -> String {
    let mut out = text.replace(uri, shown);
    if let Some(password) = password(uri) {
        out = out.replace(password, "***");
    }
    out
}

fn password(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then_some(password)
}

impl DependencyProvider for Database {
    type Dependency = Db;

    async fn setup(&mut self, ctx: &ContainerCtx) -> Result<()> {
        self.pool = Some(self.open(ctx).await?);
        Ok(())
    }

    async fn stop(&self) {
        if let Some(pool) = &self.pool {
            pool.pool.close().await;
        }
    }

    fn kill(&self) {
        if let Some(pool) = &self.pool {
            let pool = pool.pool.clone();
            // Connections close as their futures are dropped with the runtime.
            tokio::spawn(async move { pool.close().await });
        }
    }

    fn get_dependency(&self, worker: &WorkerCtx) -> Db {
        let pool = self
            .pool
            .clone()
            .expect("Database::setup runs before any worker");
        let session = Arc::new(Session {
            pool,
            tx: tokio::sync::Mutex::new(None),
            failed: AtomicBool::new(false),
        });
        self.sessions
            .lock()
            .insert(worker.call_id().to_owned(), session.clone());
        Db { session }
    }

    async fn worker_result(&self, worker: &WorkerCtx, outcome: &Outcome) {
        if outcome.is_err()
            && let Some(session) = self.sessions.lock().get(worker.call_id())
        {
            session.failed.store(true, Ordering::Relaxed);
        }
    }

    async fn worker_teardown(&self, worker: &WorkerCtx) {
        let session = self.sessions.lock().remove(worker.call_id());
        if let Some(session) = session {
            session.finish(worker).await;
        }
    }
}

/// What a worker gets: its database session. Cheap to clone; every clone
/// is the same transaction.
#[derive(Clone)]
pub struct Db {
    session: Arc<Session>,
}

struct Session {
    pool: Pool,
    tx: tokio::sync::Mutex<Option<Transaction<'static, Any>>>,
    failed: AtomicBool,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.session.pool.backend)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// The worker's transaction (begun now if it is the first use), as a
    /// connection to run queries on: `query.execute(&mut *tx)`. Hold it
    /// for one query or several; other users of the same `Db` wait.
    pub async fn tx(
        &self,
    ) -> std::result::Result<MappedMutexGuard<'_, AnyConnection>, DatabaseError> {
        let mut guard = self.session.tx.lock().await;
        if guard.is_none() {
            *guard = Some(self.session.pool.pool.begin().await?);
        }
        Ok(tokio::sync::MutexGuard::map(guard, |tx| {
            &mut **tx.as_mut().expect("begun above")
        }))
    }

    /// Commits what the worker did so far, now (the next [`Db::tx`] begins
    /// a new transaction): for a method whose caller must know that the
    /// commit succeeded, as the commit at teardown happens after the reply.
    pub async fn commit(&self) -> std::result::Result<(), DatabaseError> {
        let tx = self.session.tx.lock().await.take();
        if let Some(tx) = tx {
            tx.commit().await?;
        }
        Ok(())
    }

    /// Rolls back what the worker did so far, now.
    pub async fn rollback(&self) -> std::result::Result<(), DatabaseError> {
        let tx = self.session.tx.lock().await.take();
        if let Some(tx) = tx {
            tx.rollback().await?;
        }
        Ok(())
    }

    /// The container's pool, for work outside the worker's transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.session.pool.pool
    }

    /// Which database it is.
    pub fn backend(&self) -> Backend {
        self.session.pool.backend
    }
}

impl Session {
    /// Commits (the worker succeeded) or rolls back (it failed); either
    /// way the connection goes back to the pool.
    async fn finish(&self, worker: &WorkerCtx) {
        let Some(tx) = self.tx.lock().await.take() else {
            return;
        };
        let failed = self.failed.load(Ordering::Relaxed);
        let (what, result) = if failed {
            ("roll back", tx.rollback().await)
        } else {
            ("commit", tx.commit().await)
        };
        if let Err(err) = result {
            tracing::error!(
                service = worker.service_name(),
                method = worker.entrypoint(),
                %err,
                "could not {what} the worker's transaction"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://enoki:s3cret@db:5432/users?sslmode=disable"),
            "postgres://enoki:***@db:5432/users?sslmode=disable"
        );
        assert_eq!(
            redact("postgres://enoki@db/users"),
            "postgres://enoki@db/users"
        );
        assert_eq!(
            redact("sqlite://users.db?mode=rwc"),
            "sqlite://users.db?mode=rwc"
        );
        assert_eq!(redact("postgres://u:p@ss@h/d"), "postgres://u:***@h/d");
        assert_eq!(
            redact_in(
                "failed for s3cret at postgres://u:s3cret@h/d",
                "postgres://u:s3cret@h/d",
                "postgres://u:***@h/d"
            ),
            "failed for *** at postgres://u:***@h/d"
        );
    }
}
