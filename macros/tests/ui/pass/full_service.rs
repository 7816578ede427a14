//! Every entrypoint kind and every kind of provider in one service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use enoki::prelude::*;
use enoki::service::{EntrypointKind, EntrypointSpec, EventHandlerSpec, TimerSpec};
use serde::{Deserialize, Serialize};

/// An event payload.
#[derive(Debug, Deserialize, Serialize)]
pub struct Payment {
    amount: u64,
}

/// A provider with `Default`.
#[derive(Default)]
pub struct Counter(Arc<AtomicU64>);

impl DependencyProvider for Counter {
    type Dependency = Arc<AtomicU64>;

    fn get_dependency(&self, _worker: &WorkerCtx) -> Arc<AtomicU64> {
        self.0.clone()
    }
}

/// A provider built by an expression.
pub struct Database {
    name: &'static str,
}

impl Database {
    pub fn new(name: &'static str) -> Self {
        Database { name }
    }
}

impl DependencyProvider for Database {
    type Dependency = String;

    fn get_dependency(&self, _worker: &WorkerCtx) -> String {
        self.name.to_owned()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("out of stock")]
pub struct OutOfStock;

#[derive(Dependencies)]
pub struct Shop {
    #[dependency(Config)]
    config: Settings,
    #[dependency(EventDispatcher)]
    dispatch: Dispatcher,
    #[dependency(RpcProxy)]
    rpc: ClusterRpc,
    #[dependency(Counter)]
    counter: Arc<AtomicU64>,
    #[dependency(Database::new("orders"))]
    db: String,
}

#[service(name = "shop")]
impl Shop {
    /// Adds two numbers.
    #[rpc]
    pub async fn add(&self, a: i64, b: i64) -> Result<i64, RemoteError> {
        Ok(a + b)
    }

    /// Optional parameters, in every spelling, and a raw identifier.
    #[rpc]
    async fn greet(
        &self,
        name: String,
        greeting: Option<String>,
        r#type: std::option::Option<u8>,
        mut times: ::core::option::Option<u8>,
    ) -> Result<String, RemoteError> {
        times.get_or_insert(1);
        Ok(format!(
            "{}, {name}! {type:?} {times:?}",
            greeting.unwrap_or_default()
        ))
    }

    /// The worker context, anywhere in the parameters.
    #[rpc]
    async fn whoami(&self, a: u8, ctx: &WorkerCtx, b: u8) -> Result<String, RemoteError> {
        Ok(format!("{a}{b}{}", ctx.call_id()))
    }

    #[rpc]
    async fn stats(&self) -> Result<serde_json::Value, RemoteError> {
        let _ = (&self.config, &self.dispatch, &self.rpc, &self.db);
        Ok(serde_json::json!({ "count": self.counter.load(Ordering::Relaxed) }))
    }

    #[rpc]
    async fn buy(&self, _item: String) -> Result<(), OutOfStock> {
        Err(OutOfStock)
    }

    #[rpc]
    async fn aliased(&self) -> enoki::Result<Vec<u8>> {
        Ok(Vec::new())
    }

    #[event_handler("payments", "paid")]
    async fn on_paid(&self, payment: Payment) -> Result<(), RemoteError> {
        self.counter.fetch_add(payment.amount, Ordering::Relaxed);
        Ok(())
    }

    #[event_handler(
        source = "payments",
        event_type = "refunded",
        handler_type = broadcast,
        requeue_on_error = true
    )]
    async fn on_refund(&self, _: Payment, _ctx: &WorkerCtx) -> Result<(), RemoteError> {
        Ok(())
    }

    #[event_handler("payments", "*", handler_type = "singleton")]
    async fn on_any(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    #[event_handler(
        "payments",
        "paid",
        handler_type = broadcast,
        reliable_delivery = true,
        broadcast_identifier = "shop-1"
    )]
    async fn on_paid_here(&self, payment: serde_json::Value) -> Result<(), RemoteError> {
        let _ = payment;
        Ok(())
    }

    #[timer(interval = 5)]
    async fn tick(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    #[enoki::timer(interval = 0.25, eager = true)]
    async fn fast(&self, ctx: &WorkerCtx) -> Result<u64, RemoteError> {
        let _ = ctx;
        Ok(1)
    }

    #[timer(interval = 60, cluster_once)]
    async fn nightly(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    #[timer(interval = 60, cluster_once = false)]
    async fn everywhere(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    /// Not an entrypoint.
    fn helper(&self) -> u8 {
        1
    }
}

fn event(source: &'static str, event_type: &'static str) -> EventHandlerSpec {
    EventHandlerSpec::new(source, event_type)
}

fn main() {
    assert_eq!(<Shop as Service>::NAME, "shop");
    assert_eq!(ShopClient::SERVICE, "shop");
    let entrypoints = <Shop as Service>::entrypoints();
    let methods: Vec<&str> = entrypoints.iter().map(|ep| ep.method).collect();
    assert_eq!(
        methods,
        [
            "add",
            "greet",
            "whoami",
            "stats",
            "buy",
            "aliased",
            "on_paid",
            "on_refund",
            "on_any",
            "on_paid_here",
            "tick",
            "fast",
            "nightly",
            "everywhere"
        ]
    );
    assert_eq!(entrypoints[0], EntrypointSpec::rpc("add"));
    assert_eq!(
        entrypoints[6],
        EntrypointSpec::event("on_paid", event("payments", "paid"))
    );
    assert_eq!(
        entrypoints[7].kind,
        EntrypointKind::Event(EventHandlerSpec {
            handler_type: HandlerType::Broadcast,
            reliable_delivery: false,
            requeue_on_error: true,
            ..event("payments", "refunded")
        })
    );
    assert_eq!(
        entrypoints[8].kind,
        EntrypointKind::Event(event("payments", "*").handler_type(HandlerType::Singleton))
    );
    assert_eq!(
        entrypoints[9].kind,
        EntrypointKind::Event(EventHandlerSpec {
            handler_type: HandlerType::Broadcast,
            reliable_delivery: true,
            broadcast_identifier: Some("shop-1"),
            ..event("payments", "paid")
        })
    );
    assert_eq!(
        entrypoints[10],
        EntrypointSpec::timer("tick", TimerSpec::every_secs(5.0))
    );
    assert_eq!(
        entrypoints[11].kind,
        EntrypointKind::Timer(TimerSpec {
            eager: true,
            ..TimerSpec::every_secs(0.25)
        })
    );
    assert_eq!(
        entrypoints[12],
        EntrypointSpec::timer("nightly", TimerSpec::every_secs(60.0).cluster_once())
    );
    assert_eq!(
        entrypoints[13],
        EntrypointSpec::timer("everywhere", TimerSpec::every_secs(60.0))
    );

    // The methods stay ordinary methods.
    fn _callable(shop: &Shop) {
        let _ = shop.helper();
        let _ = shop.add(1, 2);
    }

    // The client has one typed method per #[rpc].
    async fn _client(rpc: &ClusterRpc) -> enoki::Result<()> {
        let shop = ShopClient::new(rpc);
        let _: i64 = shop.add(1, 2).await?;
        let _: String = shop.greet("Ann".into(), None, Some(1), None).await?;
        let _: String = shop.whoami(1, 2).await?;
        let _: serde_json::Value = shop.stats().await?;
        shop.buy("apple".into()).await?;
        let _: Vec<u8> = shop.aliased().await?;
        let _ = shop.clone();
        Ok(())
    }

    let _ = enoki::service::<Shop>();
}
