//! A throwaway RabbitMQ vhost per test: created with `rabbitmqctl`, deleted
//! when the guard drops (also when the test panics).
//!
//! ```ignore
//! mod common;
//! let Some(vhost) = common::amqp::TestVhost::create() else { return };
//! let transport = AmqpTransport::connect(&vhost.uri, AmqpOptions::default()).await?;
//! ```
//!
//! When RabbitMQ is not reachable the helper prints
//! `skipped: RabbitMQ not reachable at ...` and returns `None`, unless the
//! environment has `CI=true`, where it panics.
#![allow(dead_code)]

use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

/// The broker address (`ENOKI_RABBITMQ_ADDR`, default `127.0.0.1:5672`).
pub(crate) fn broker_addr() -> String {
    std::env::var("ENOKI_RABBITMQ_ADDR").unwrap_or_else(|_| "127.0.0.1:5672".into())
}

/// Whether something accepts TCP connections at the broker address.
pub(crate) fn broker_reachable() -> bool {
    let Ok(mut addrs) = broker_addr().to_socket_addrs() else {
        return false;
    };
    addrs.any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
}

/// Runs `rabbitmqctl` with `args`, returning its stdout; panics on failure.
pub(crate) fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run rabbitmqctl {args:?}: {err}"));
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fresh vhost `enoki-test-<random>` that guest may use fully.
#[derive(Debug)]
pub(crate) struct TestVhost {
    /// The vhost name.
    pub(crate) name: String,
    /// `amqp://guest:guest@<broker>/<vhost>`.
    pub(crate) uri: String,
}

impl TestVhost {
    /// Creates the vhost, or `None` (after printing why) when RabbitMQ is not
    /// reachable and `CI` is not `true`.
    pub(crate) fn create() -> Option<TestVhost> {
        if !broker_reachable() {
            let message = format!("RabbitMQ not reachable at {}", broker_addr());
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message} (CI=true: RabbitMQ tests must run)");
            }
            println!("skipped: {message}");
            eprintln!("skipped: {message}");
            return None;
        }
        let name = format!("enoki-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]);
        let vhost = TestVhost {
            uri: format!("amqp://guest:guest@{}/{name}", broker_addr()),
            name,
        };
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
        Some(vhost)
    }

    /// `rabbitmqctl list_queues -p <vhost> <columns...>`, without headers.
    pub(crate) fn list_queues(&self, columns: &[&str]) -> String {
        let mut args = vec!["list_queues", "-q", "--no-table-headers", "-p", &self.name];
        args.extend_from_slice(columns);
        rabbitmqctl(&args)
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}
