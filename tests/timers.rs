//! Timers with nameko's semantics, on virtual time: a drift-free schedule,
//! `eager`, no overlapping runs, and a catch-up burst after an overrun.

use std::sync::Arc;
use std::time::Duration;

use enoki::prelude::*;
use enoki::testing::{Cluster, MockProvider, replace_dependencies};
use parking_lot::Mutex;
use tokio::time::Instant;

/// When each run started, and how long each run takes.
#[derive(Clone)]
struct Script {
    starts: Arc<Mutex<Vec<Instant>>>,
    /// Duration of run n (the last one repeats).
    durations: Arc<Vec<f64>>,
    running: Arc<Mutex<u32>>,
    overlapped: Arc<Mutex<bool>>,
}

impl Script {
    fn new(durations: &[f64]) -> Self {
        Script {
            starts: Arc::default(),
            durations: Arc::new(durations.to_vec()),
            running: Arc::default(),
            overlapped: Arc::default(),
        }
    }

    fn offsets(&self, origin: Instant) -> Vec<f64> {
        self.starts
            .lock()
            .iter()
            .map(|t| ((t.duration_since(origin).as_secs_f64()) * 1000.0).round() / 1000.0)
            .collect()
    }
}

#[derive(Dependencies)]
struct Ticker {
    #[dependency(MockProvider::new(Script::new(&[0.0])))]
    script: Script,
}

impl Ticker {
    async fn run(&self) -> Result<(), RemoteError> {
        let n = {
            let mut starts = self.script.starts.lock();
            starts.push(Instant::now());
            starts.len() - 1
        };
        {
            let mut running = self.script.running.lock();
            *running += 1;
            if *running > 1 {
                *self.script.overlapped.lock() = true;
            }
        }
        let durations = &self.script.durations;
        let secs = durations[n.min(durations.len() - 1)];
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        *self.script.running.lock() -= 1;
        Ok(())
    }
}

#[service(name = "ticker")]
impl Ticker {
    #[timer(interval = 1)]
    async fn lazy(&self) -> Result<(), RemoteError> {
        self.run().await
    }

    #[timer(interval = 1, eager = true)]
    async fn eager(&self) -> Result<(), RemoteError> {
        self.run().await
    }
}

/// Runs one of the timers for `secs` of virtual time; returns the offsets
/// of its runs from the start.
async fn run_timer(method: &str, durations: &[f64], secs: f64) -> (Vec<f64>, bool) {
    let script = Script::new(durations);
    let mut builder = Cluster::builder([enoki::service::<Ticker>()], Settings::new());
    let container = builder.container_mut("ticker").unwrap();
    replace_dependencies(container, "script", MockProvider::new(script.clone())).unwrap();
    enoki::testing::restrict_entrypoints(container, &[method]).unwrap();
    let origin = Instant::now();
    let cluster = builder.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    cluster.stop().await;
    let overlapped = *script.overlapped.lock();
    (script.offsets(origin), overlapped)
}

#[tokio::test(start_paused = true)]
async fn fires_every_interval_after_the_first() {
    let (runs, _) = run_timer("lazy", &[0.0], 3.5).await;
    assert_eq!(runs, vec![1.0, 2.0, 3.0]);
}

#[tokio::test(start_paused = true)]
async fn eager_fires_at_start() {
    let (runs, _) = run_timer("eager", &[0.0], 3.5).await;
    assert_eq!(runs, vec![0.0, 1.0, 2.0, 3.0]);
}

#[tokio::test(start_paused = true)]
async fn the_schedule_does_not_drift() {
    // Each run takes 0.4 s; runs still start on the whole seconds.
    let (runs, overlapped) = run_timer("eager", &[0.4], 4.5).await;
    assert_eq!(runs, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    assert!(!overlapped);
}

#[tokio::test(start_paused = true)]
async fn runs_never_overlap_and_catch_up_after_an_overrun() {
    // The first run takes 2.5 s: the runs due at 1 and 2 fire back to back
    // as soon as it ends, then the schedule is back on the whole seconds.
    let (runs, overlapped) = run_timer("eager", &[2.5, 0.0], 4.5).await;
    assert_eq!(runs, vec![0.0, 2.5, 2.5, 3.0, 4.0]);
    assert!(!overlapped);

    // Every run overruns: they follow each other, never overlapping
    // (nameko: interval .025, duration .07 fires at 0, .07, .14).
    let (runs, overlapped) = run_timer("eager", &[2.5], 7.6).await;
    assert_eq!(runs, vec![0.0, 2.5, 5.0, 7.5]);
    assert!(!overlapped);
}

#[tokio::test(start_paused = true)]
async fn a_failing_timer_keeps_ticking() {
    #[derive(Dependencies)]
    struct Failing {
        #[dependency(MockProvider::new(Arc::new(Mutex::new(0u32))))]
        count: Arc<Mutex<u32>>,
    }

    #[service(name = "failing")]
    impl Failing {
        #[timer(interval = 1)]
        async fn tick(&self) -> Result<(), RemoteError> {
            *self.count.lock() += 1;
            Err(RemoteError::new("Oops", "timer failed"))
        }
    }

    let count = Arc::new(Mutex::new(0u32));
    let mut builder = Cluster::builder([enoki::service::<Failing>()], Settings::new());
    let container = builder.container_mut("failing").unwrap();
    replace_dependencies(container, "count", MockProvider::new(count.clone())).unwrap();
    let cluster = builder.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs_f64(3.5)).await;
    cluster.stop().await;
    assert_eq!(*count.lock(), 3);
}

/// Which instance ran which timer, and when.
type Runs = Arc<Mutex<Vec<(String, &'static str, Instant)>>>;

#[derive(Dependencies)]
struct Leased {
    #[dependency(Config)]
    config: Settings,
    #[dependency(MockProvider::new(Runs::default()))]
    runs: Runs,
}

impl Leased {
    fn record(&self, timer: &'static str) {
        let instance = self
            .config
            .get("INSTANCE")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        self.runs
            .lock()
            .push((instance.to_owned(), timer, Instant::now()));
    }
}

#[service(name = "leased")]
impl Leased {
    #[timer(interval = 1, cluster_once)]
    async fn once(&self) -> Result<(), RemoteError> {
        self.record("once");
        Ok(())
    }

    #[timer(interval = 1)]
    async fn everywhere(&self) -> Result<(), RemoteError> {
        self.record("everywhere");
        Ok(())
    }
}

/// Two instances of a service on one (embedded) broker: the `cluster_once`
/// timer fires on one of them at a time, the plain one on both (nameko's
/// behaviour); when the instance holding the lease stops, the other fires
/// the `cluster_once` timer from its next tick on.
#[tokio::test(start_paused = true)]
async fn a_cluster_once_timer_fires_on_one_instance_and_moves_when_it_stops() {
    let runs = Runs::default();
    let transport = enoki::transport::MemoryTransport::new();
    let instance = |name: &str, transport: Arc<dyn enoki::transport::Transport>| {
        let mut runner =
            ServiceRunner::new(transport, Settings::new().with("INSTANCE", name.into()));
        runner.add(enoki::service::<Leased>());
        let container = runner.container_mut("leased").unwrap();
        replace_dependencies(container, "runs", MockProvider::new(runs.clone())).unwrap();
        runner
    };
    let mut a = instance("a", transport.clone());
    let mut b = instance("b", transport.connect());
    let origin = Instant::now();
    a.start().await.unwrap();
    b.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let count = |who: &str, timer: &str, after: Instant| {
        runs.lock()
            .iter()
            .filter(|(i, t, at)| i == who && *t == timer && *at >= after)
            .count()
    };
    assert_eq!(
        (count("a", "once", origin), count("b", "once", origin)),
        (3, 0),
        "the first instance holds the lease: {:?}",
        runs.lock()
    );
    assert_eq!(
        (
            count("a", "everywhere", origin),
            count("b", "everywhere", origin)
        ),
        (3, 3)
    );

    let stopped = Instant::now();
    a.stop().await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let taken_over: Vec<_> = runs
        .lock()
        .iter()
        .filter(|(i, t, at)| i == "b" && *t == "once" && *at >= stopped)
        .map(|(_, _, at)| at.duration_since(stopped).as_secs_f64())
        .collect();
    assert_eq!(
        taken_over.len(),
        2,
        "b fires every tick after a stopped: {taken_over:?}"
    );
    assert!(
        taken_over[0] <= 1.0,
        "b took over within one interval: {taken_over:?}"
    );
    assert_eq!(count("a", "once", stopped), 0);
    b.stop().await;
}

/// When each cron run started, on the monotonic clock and the wall clock.
type CronRuns = Arc<Mutex<Vec<(Instant, chrono::DateTime<chrono::Utc>)>>>;

#[derive(Dependencies)]
struct Scheduled {
    #[dependency(MockProvider::new(CronRuns::default()))]
    runs: CronRuns,
}

#[service(name = "scheduled")]
impl Scheduled {
    #[timer(cron = "*/2 * * * * *")]
    async fn every_two_seconds(&self) -> Result<(), RemoteError> {
        self.runs.lock().push((Instant::now(), chrono::Utc::now()));
        Ok(())
    }

    #[timer(cron_from_config = "REPORT_CRON", timezone = "Europe/Paris")]
    async fn report(&self) -> Result<(), RemoteError> {
        Ok(())
    }
}

/// A cron timer fires at the occurrences of its expression: every two
/// seconds here, on the even seconds of the wall clock, five times in ten
/// seconds (virtual time; four when start-up takes real seconds).
#[tokio::test(start_paused = true)]
async fn a_cron_timer_fires_on_its_schedule() {
    let runs = CronRuns::default();
    let settings = Settings::new().with("REPORT_CRON", "0 0 6 * * Mon-Fri".into());
    let mut builder = Cluster::builder([enoki::service::<Scheduled>()], settings);
    let container = builder.container_mut("scheduled").unwrap();
    replace_dependencies(container, "runs", MockProvider::new(runs.clone())).unwrap();
    let origin = Instant::now();
    let wall = chrono::Utc::now();
    let cluster = builder.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    cluster.stop().await;
    let runs = runs.lock().clone();
    // Five, or four when the start-up took real seconds (a loaded CI
    // machine): the schedule follows the wall clock, which went on while
    // virtual time stood still, and an occurrence it is late for is
    // skipped (by design), so the first run can come one period later.
    assert!((4..=5).contains(&runs.len()), "{runs:?}");
    for (at, _) in &runs {
        // The wall-clock time of the run, as the schedule sees it (up to
        // the few real milliseconds between this test reading the clock
        // and the timer reading it: virtual time stands still meanwhile).
        let seen = wall + chrono::Duration::from_std(at.duration_since(origin)).unwrap();
        let off = seen.timestamp_millis().rem_euclid(2_000);
        assert!(off.min(2_000 - off) < 100, "not on an even second: {seen}");
    }
    let gaps: Vec<f64> = runs
        .windows(2)
        .map(|w| w[1].0.duration_since(w[0].0).as_secs_f64())
        .collect();
    assert!(gaps.iter().all(|g| (g - 2.0).abs() < 1e-6), "{gaps:?}");
}

/// A cron expression from config that does not parse, or is missing,
/// stops the start with an error naming the timer and the key.
#[tokio::test(start_paused = true)]
async fn a_bad_cron_schedule_from_config_stops_the_start() {
    for (settings, expected) in [
        (
            Settings::new().with("REPORT_CRON", "0 0 6 * *".into()),
            "has 5 fields",
        ),
        (
            Settings::new().with("REPORT_CRON", "0 0 25 * * *".into()),
            "does not parse",
        ),
        (Settings::new(), "not set to a string"),
    ] {
        let err = Cluster::start_with([enoki::service::<Scheduled>()], settings)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("timer `report`"), "{err}");
        assert!(err.contains("REPORT_CRON"), "{err}");
        assert!(err.contains(expected), "{err}");
    }
}
