//! `enoki::db`: the `Database` provider on SQLite (a file per test) and on
//! the machine's PostgreSQL (a database of its own per test, dropped at
//! the end): commit on success, rollback on failure (a returned error, a
//! database error, a panic), the pool bounded by `max_workers` and never
//! left with a connection checked out, a pool that survives its
//! connections being killed (what a database restart does to them), bad
//! URIs stopping start-up with the service and the URI named (password
//! hidden), and the `users` example through the gateway.
//!
//! PostgreSQL is `ENOKI_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`); when it is unreachable the tests
//! on it say `skipped:`, or fail under `CI=true`.
//!
//! Run: `cargo test --test db`.

use std::time::{Duration, Instant};

mod common;

use enoki::db::{Database, DatabaseError, Db, Migration};
use enoki::prelude::*;
use enoki::transport::MemoryTransport;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyPoolOptions;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/users.rs"]
mod users;

const LEDGER: Migration = Migration {
    version: 1,
    description: "ledger",
    sqlite: "CREATE TABLE ledger (n BIGINT NOT NULL UNIQUE)",
    postgres: "CREATE TABLE ledger (n BIGINT NOT NULL UNIQUE)",
};

/// A service that writes, then fails in every way a worker can.
#[derive(Dependencies)]
struct Ledger {
    #[dependency(Database::new().migration(LEDGER))]
    db: Db,
}

async fn insert(db: &Db, n: i64) -> Result<(), DatabaseError> {
    let mut tx = db.tx().await?;
    sqlx::query("INSERT INTO ledger (n) VALUES ($1)")
        .bind(n)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[service(name = "ledger")]
impl Ledger {
    #[rpc]
    async fn add(&self, n: i64) -> Result<(), DatabaseError> {
        insert(&self.db, n).await?;
        // Before the reply: the tests read it back at once (the commit at
        // teardown comes after the reply).
        self.db.commit().await
    }

    /// Commits at teardown, after the reply.
    #[rpc]
    async fn add_later(&self, n: i64) -> Result<(), DatabaseError> {
        insert(&self.db, n).await
    }

    #[rpc]
    async fn add_then_fail(&self, n: i64) -> Result<(), RemoteError> {
        insert(&self.db, n).await?;
        Err(RemoteError::new("Nope", "changed my mind"))
    }

    #[rpc]
    async fn add_then_bad_sql(&self, n: i64) -> Result<(), DatabaseError> {
        insert(&self.db, n).await?;
        let mut tx = self.db.tx().await?;
        sqlx::query("SELECT no_such_column FROM ledger")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    #[rpc]
    async fn add_then_panic(&self, n: i64) -> Result<(), DatabaseError> {
        insert(&self.db, n).await?;
        panic!("boom");
    }

    /// Inserts, commits now, then fails: the committed part stays.
    #[rpc]
    async fn add_commit_then_fail(&self, n: i64) -> Result<(), RemoteError> {
        insert(&self.db, n).await?;
        self.db.commit().await?;
        insert(&self.db, n + 1).await?;
        Err(RemoteError::new("Nope", "after the commit"))
    }

    /// Holds a transaction for `ms` milliseconds.
    #[rpc]
    async fn hold(&self, ms: u64) -> Result<u32, DatabaseError> {
        let mut tx = self.db.tx().await?;
        sqlx::query("SELECT COUNT(*) FROM ledger")
            .fetch_one(&mut *tx)
            .await?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(self.db.pool().size())
    }

    #[rpc]
    async fn numbers(&self) -> Result<Vec<i64>, DatabaseError> {
        let mut tx = self.db.tx().await?;
        let rows = sqlx::query("SELECT n FROM ledger ORDER BY n")
            .fetch_all(&mut *tx)
            .await?;
        rows.iter()
            .map(|row| row.try_get::<i64, _>("n").map_err(DatabaseError))
            .collect()
    }

    /// The pool: (max connections, open, idle), without using it.
    #[rpc]
    async fn pool(&self) -> Result<(u32, u32, usize), RemoteError> {
        let pool = self.db.pool();
        Ok((
            pool.options().get_max_connections(),
            pool.size(),
            pool.num_idle(),
        ))
    }
}

/// A database for one test: a SQLite file, or a PostgreSQL database
/// dropped on drop.
struct TestDb {
    uri: String,
    cleanup: Option<(String, String)>,
}

impl TestDb {
    fn sqlite(tag: &str) -> TestDb {
        let path = std::env::temp_dir().join(format!(
            "enoki-db-{tag}-{}-{}.db",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        TestDb {
            uri: format!("sqlite://{}?mode=rwc", path.display()),
            cleanup: None,
        }
    }

    async fn postgres() -> Option<TestDb> {
        sqlx::any::install_default_drivers();
        let server = std::env::var("ENOKI_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let admin_uri = format!("{server}/postgres");
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&admin_uri)
            .await;
        let admin = match admin {
            Ok(admin) => admin,
            Err(err) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "PostgreSQL is not reachable at {server} (CI=true): {err}"
                );
                println!("skipped: PostgreSQL not reachable at {server}: {err}");
                return None;
            }
        };
        let name = format!("enoki_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        Some(TestDb {
            uri: format!("{server}/{name}"),
            cleanup: Some((admin_uri, name)),
        })
    }

    /// Kills every connection to the database but the caller's, as a
    /// restart of the server does.
    async fn kill_connections(&self) -> u64 {
        let (admin_uri, name) = self.cleanup.as_ref().expect("PostgreSQL only");
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(admin_uri)
            .await
            .unwrap();
        let killed = sqlx::query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .fetch_all(&admin)
        .await
        .unwrap()
        .len() as u64;
        admin.close().await;
        killed
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self.cleanup.take() {
            Some((admin_uri, name)) => {
                // Dropped from a thread of its own: the test's runtime is busy.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        if let Ok(admin) = AnyPoolOptions::new()
                            .max_connections(1)
                            .connect(&admin_uri)
                            .await
                        {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&admin)
                            .await;
                            admin.close().await;
                        }
                    });
                })
                .join();
            }
            None => {
                if let Some(path) = self.uri.strip_prefix("sqlite://") {
                    let path = path.split('?').next().unwrap_or(path);
                    for suffix in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{path}{suffix}"));
                    }
                }
            }
        }
    }
}

fn settings(db: &TestDb, key: &str, max_workers: u64) -> Settings {
    Settings::new()
        .with("DB_URIS", json!({ key: db.uri }))
        .with("max_workers", json!(max_workers))
}

async fn start(def: enoki::ServiceDef, settings: &Settings) -> (ServiceRunner, ClusterRpc) {
    let transport = MemoryTransport::new();
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    runner.add(def);
    runner.start().await.unwrap();
    let rpc = ClusterRpc::connect(transport, settings).await.unwrap();
    (runner, rpc)
}

async fn call(rpc: &ClusterRpc, method: &str, args: Value) -> enoki::Result<Value> {
    rpc.call("ledger", method, args, Default::default()).await
}

fn remote(result: enoki::Result<Value>) -> RemoteError {
    match result {
        Err(enoki::Error::Remote(remote)) => remote,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

/// Waits (bounded) until every connection of the pool is back.
async fn all_returned(rpc: &ClusterRpc) -> (u32, u32, usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats: (u32, u32, usize) =
            serde_json::from_value(call(rpc, "pool", json!([])).await.unwrap()).unwrap();
        if stats.1 as usize == stats.2 {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "connections still checked out: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything but the restart, on one backend.
async fn commit_rollback_and_the_pool(db: &TestDb) {
    let settings = settings(db, "ledger", 3);
    let (runner, rpc) = start(enoki::service::<Ledger>(), &settings).await;

    call(&rpc, "add", json!([1])).await.unwrap();
    assert_eq!(
        remote(call(&rpc, "add_then_fail", json!([2])).await).exc_type,
        "Nope"
    );
    let err = remote(call(&rpc, "add_then_bad_sql", json!([3])).await);
    assert_eq!(err.exc_type, "DatabaseError", "{err:?}");
    assert!(err.value.contains("no_such_column"), "{err:?}");
    let err = remote(call(&rpc, "add_then_panic", json!([4])).await);
    assert!(err.value.contains("boom"), "{err:?}");
    // A unique violation is a DatabaseError too, and rolls back.
    let err = remote(call(&rpc, "add", json!([1])).await);
    assert_eq!(err.exc_type, "DatabaseError", "{err:?}");
    assert_eq!(
        remote(call(&rpc, "add_commit_then_fail", json!([10])).await).exc_type,
        "Nope"
    );
    assert_eq!(
        call(&rpc, "numbers", json!([])).await.unwrap(),
        json!([1, 10]),
        "only the successful worker's and the explicitly committed rows"
    );
    // A successful worker's transaction is committed at teardown, just
    // after its reply.
    call(&rpc, "add_later", json!([20])).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&rpc, "numbers", json!([])).await.unwrap() != json!([1, 10, 20]) {
        assert!(Instant::now() < deadline, "the teardown commit never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Bounded by max_workers, under more concurrent workers than that.
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let rpc = rpc.clone();
            tokio::spawn(async move { call(&rpc, "hold", json!([30])).await.unwrap() })
        })
        .collect();
    let mut biggest = 0;
    for handle in calls {
        biggest = biggest.max(handle.await.unwrap().as_u64().unwrap());
    }
    assert!((1..=3).contains(&biggest), "pool grew to {biggest}");
    // Nothing left checked out after all those failures.
    let (max, size, _) = all_returned(&rpc).await;
    assert_eq!(max, 3);
    assert!(size <= 3);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_rolls_back_and_bounds_its_pool() {
    let db = TestDb::sqlite("ledger");
    commit_rollback_and_the_pool(&db).await;
    // Migrations are applied once: a second start finds them recorded.
    let (runner, rpc) = start(enoki::service::<Ledger>(), &settings(&db, "ledger", 3)).await;
    assert_eq!(
        call(&rpc, "numbers", json!([])).await.unwrap(),
        json!([1, 10, 20])
    );
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commits_rolls_back_and_bounds_its_pool() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    commit_rollback_and_the_pool(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pool_survives_its_connections_dying() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (runner, rpc) = start(enoki::service::<Ledger>(), &settings(&db, "ledger", 4)).await;
    call(&rpc, "add", json!([1])).await.unwrap();
    let killed = db.kill_connections().await;
    assert!(killed >= 1, "no connection to kill");
    // The pool notices the dead connections and opens new ones.
    call(&rpc, "add", json!([2])).await.unwrap();
    assert_eq!(
        call(&rpc, "numbers", json!([])).await.unwrap(),
        json!([1, 2])
    );
    // Killed in the middle of a worker: that worker fails, the next works.
    let held = {
        let rpc = rpc.clone();
        tokio::spawn(async move { call(&rpc, "hold", json!([500])).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.kill_connections().await == 0 {
        assert!(
            Instant::now() < deadline,
            "the held connection never showed up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = held.await.unwrap();
    call(&rpc, "add", json!([3])).await.unwrap();
    assert_eq!(
        call(&rpc, "numbers", json!([])).await.unwrap(),
        json!([1, 2, 3])
    );
    all_returned(&rpc).await;
    runner.stop().await;
}

/// Two instances of a service migrating the same SQLite file at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_migrate_once() {
    let db = TestDb::sqlite("race");
    let settings = settings(&db, "ledger", 2);
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let settings = settings.clone();
            tokio::spawn(async move { start(enoki::service::<Ledger>(), &settings).await })
        })
        .collect();
    let mut running = Vec::new();
    for handle in starts {
        running.push(handle.await.unwrap());
    }
    let (_, rpc) = &running[0];
    call(rpc, "add", json!([7])).await.unwrap();
    for (runner, _) in running {
        runner.stop().await;
    }
}

async fn start_error(uris: Value) -> String {
    let settings = Settings::new().with("DB_URIS", uris);
    let mut runner = ServiceRunner::new(MemoryTransport::new(), settings);
    runner.add(enoki::service::<Ledger>());
    let err = runner.start().await.unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("s3cret"), "password shown: {text}");
    assert!(text.contains("ledger"), "service not named: {text}");
    text
}

#[tokio::test]
async fn bad_uris_stop_start_up_naming_the_service_and_hiding_the_password() {
    let err = start_error(json!({"ledger": "postgres://enoki:s3cret@127.0.0.1:1/x"})).await;
    assert!(err.contains("postgres://enoki:***@127.0.0.1:1/x"), "{err}");
    assert!(err.contains("cannot open database"), "{err}");

    let err = start_error(json!({"ledger": "postgres://enoki:s3cret@[::1/x"})).await;
    assert!(err.contains("malformed database URI"), "{err}");

    let err = start_error(json!({"ledger": "mysql://enoki:s3cret@h/x"})).await;
    assert!(err.contains("not a sqlite: or postgres: URI"), "{err}");
    assert!(err.contains("mysql://enoki:***@h/x"), "{err}");

    let err = start_error(json!({"ledger": 7})).await;
    assert!(
        err.contains("DB_URIS.ledger: expected a database URI"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("enoki-db-nodir-{}", std::process::id()));
    let err = start_error(json!({
        "ledger": format!("sqlite://{}/no/such/dir/x.db?mode=rwc", dir.display())
    }))
    .await;
    assert!(err.contains("cannot open database"), "{err}");

    // The wrong shape of DB_URIS itself is a config error.
    let err = Settings::new()
        .with("DB_URIS", json!("sqlite://x.db"))
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("DB_URIS"), "{err}");
}

/// The `users` example: create, get, list, a duplicate username, a
/// missing user, on both backends.
async fn users_example(db: &TestDb) {
    let settings = settings(db, "users", 4);
    let transport = MemoryTransport::new();
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    // The profile endpoint on a port of this test's own.
    runner.web_server(enoki::web::WebServer::new("127.0.0.1:0"));
    runner.add(enoki::service::<users::Users>());
    runner.start().await.unwrap();
    let rpc = ClusterRpc::connect(transport, &settings).await.unwrap();
    let client = users::UsersClient::new(&rpc);
    let ann = client
        .create("ann".into(), Some("Ann".into()))
        .await
        .unwrap();
    assert_eq!(ann.username, "ann");
    let bo = client.create("bo".into(), None).await.unwrap();
    assert!(bo.id > ann.id);
    assert_eq!(client.get(ann.id).await.unwrap(), ann);
    let dup = client.create("ann".into(), None).await.unwrap_err();
    assert!(
        matches!(&dup, enoki::Error::Remote(r) if r.exc_type == "Conflict"),
        "{dup}"
    );
    let missing = client.get(9999).await.unwrap_err();
    assert!(
        matches!(&missing, enoki::Error::Remote(r) if r.exc_type == "NotFound"),
        "{missing}"
    );
    let bad = client.create("Not Valid".into(), None).await.unwrap_err();
    assert!(
        matches!(&bad, enoki::Error::Remote(r) if r.exc_type == "BadRequest"),
        "{bad}"
    );
    assert_eq!(
        client.list(None, None).await.unwrap(),
        vec![ann.clone(), bo.clone()]
    );
    assert_eq!(client.list(Some(1), Some(ann.id)).await.unwrap(), vec![bo]);
    assert!(client.list(Some(0), None).await.is_err());
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_example_on_sqlite() {
    users_example(&TestDb::sqlite("users")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_example_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    users_example(&db).await;
}

/// The `users` routes of the `enoki` binary's gateway: 201, 409, 404, 200.
#[test]
fn users_routes_through_the_gateway() {
    let db = TestDb::sqlite("gw");
    let dir = std::env::temp_dir().join(format!("enoki-db-gw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let define = format!("DB_URIS={{users: \"{}\"}}", db.uri);
    let (mut child, listen) =
        common::binary::start_gateway(&dir, std::process::Stdio::null(), &["--define", &define]);
    let request = |method: &str, path: &str, body: &str| -> (u16, Value) {
        let response = common::binary::http(&listen, method, path, body);
        let status = response[9..12].parse().unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    };
    let (status, ann) = request("POST", "/users", r#"{"username": "ann", "name": "Ann"}"#);
    assert_eq!(status, 201, "{ann}");
    assert_eq!(ann["username"], "ann");
    let (status, body) = request("POST", "/users", r#"{"username": "ann"}"#);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["type"], "Conflict");
    let (status, body) = request("GET", &format!("/users/{}", ann["id"]), "");
    assert_eq!((status, &body), (200, &ann));
    let (status, body) = request("GET", "/users/424242", "");
    assert_eq!(status, 404, "{body}");
    let (status, body) = request("GET", "/users/abc", "");
    assert_eq!(status, 400, "{body}");
    let (status, body) = request("GET", "/users?limit=10", "");
    assert_eq!((status, body), (200, json!([ann])));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
