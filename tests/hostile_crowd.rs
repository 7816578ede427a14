//! A crowd against the real binary: 10,000 WebSocket clients that connect,
//! subscribe and never read again, held open while another client is
//! served. The gateway runs as its own process (`enoki`, embedded), so the
//! two sides do not share a file-descriptor limit, and its memory is read
//! from `/proc`.
//!
//! It prints `hostile_crowd: ...` lines with the figures: memory per idle
//! connection and the probe's latency while the crowd is connected.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 10_000;
/// The bound `docs/limits.md` states for an idle WebSocket connection.
const MAX_BYTES_PER_CONNECTION: u64 = 32 * 1024;

struct Gateway {
    child: Child,
    addr: String,
    _dir: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn start_gateway() -> Gateway {
    let dir = std::env::temp_dir().join(format!("enoki-crowd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(&config, "GATEWAY:\n  max_connections: 12000\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_enoki"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env_remove("AMQP_URI")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the enoki binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the gateway prints its address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("enoki gateway: listening on http://") {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    Gateway {
        child,
        addr,
        _dir: dir,
    }
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

async fn probe(client: &reqwest::Client, addr: &str, rounds: usize) -> Vec<Duration> {
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let response = client
            .get(format!("http://{addr}/hello/Probe"))
            .send()
            .await
            .expect("the probe is served");
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "\"Hello, Probe!\"");
        took.push(started.elapsed());
    }
    took.sort();
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_websockets_and_the_gateway_serves_on() {
    let gateway = start_gateway();
    let addr = gateway.addr.clone();
    let pid = gateway.child.id();
    let client = reqwest::Client::new();
    let quiet = probe(&client, &addr, 200).await;
    let before = rss(pid);

    let mut crowd = Vec::with_capacity(CLIENTS);
    for batch in 0..CLIENTS / 500 {
        let connects = (0..500).map(|_| {
            let url = format!("ws://{addr}/ws");
            async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .expect("a WebSocket connects");
                let subscribe = r#"{"type": "subscribe", "events": ["clock.tick"]}"#;
                ws.send(Message::text(subscribe)).await.unwrap();
                ws
            }
        });
        crowd.extend(futures::future::join_all(connects).await);
        assert_eq!(crowd.len(), (batch + 1) * 500);
    }
    // The gateway registers them all (its gauge), while none reads.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix("enoki_gateway_ws_clients "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if count as usize >= CLIENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {count} sessions after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = probe(&client, &addr, 200).await;
    let after = rss(pid);
    let per_connection = after.saturating_sub(before) / CLIENTS as u64;
    println!(
        "hostile_crowd: {CLIENTS} idle WebSockets: RSS {} -> {} MiB, {} bytes per connection",
        before / (1 << 20),
        after / (1 << 20),
        per_connection
    );
    println!(
        "hostile_crowd: probe GET /hello: quiet p50 {:?} p99 {:?}; with the crowd p50 {:?} p99 {:?}",
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        percentile(&during, 0.5),
        percentile(&during, 0.99)
    );
    assert!(
        per_connection <= MAX_BYTES_PER_CONNECTION,
        "{per_connection} bytes per idle connection, above {MAX_BYTES_PER_CONNECTION}"
    );
    // Still alive and well after the crowd leaves.
    drop(crowd);
    let done = probe(&client, &addr, 20).await;
    assert_eq!(done.len(), 20);
}
