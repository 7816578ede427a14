// The expansion of `examples/listener.rs`, checked by macros/src/snapshots.rs.
// Regenerate: ENOKI_BLESS=1 cargo test -p enoki-macros snapshots

use std::collections::VecDeque;
use std::sync::Arc;
use enoki::prelude::*;
use parking_lot::Mutex;
use serde_json::{Value, json};
/// How many handled events `received()` remembers.
const KEEP: usize = 100;
/// The events this instance has handled, newest last.
#[derive(Debug, Clone, Default)]
pub struct Inbox(Arc<Mutex<VecDeque<Value>>>);
impl Inbox {
    fn record(&self, handler_type: HandlerType, ctx: &WorkerCtx, payload: Value) {
        let mut events = self.0.lock();
        if events.len() == KEEP {
            events.pop_front();
        }
        events
            .push_back(
                json!(
                    { "handler_type" : handler_type.as_str(), "handler" : ctx
                    .entrypoint(), "payload" : payload, }
                ),
            );
    }
    fn snapshot(&self) -> Vec<Value> {
        self.0.lock().iter().cloned().collect()
    }
}
/// A custom provider: one `Inbox` per container, shared by its workers.
#[derive(Debug, Default)]
pub struct Received {
    inbox: Inbox,
}
impl DependencyProvider for Received {
    type Dependency = Inbox;
    fn get_dependency(&self, _worker: &WorkerCtx) -> Inbox {
        self.inbox.clone()
    }
}
/// Listens to `greeter.greeted` in every way nameko can.
#[derive(Debug)]
pub struct Listener {
    inbox: Inbox,
}
impl ::enoki::Dependencies for Listener {
    fn providers() -> ::enoki::ProviderSet {
        let __provider_0 = <Received as ::core::default::Default>::default();
        ::enoki::__private::assert_provides::<_, Inbox>(&__provider_0);
        ::enoki::ProviderSet::new().with("inbox", __provider_0)
    }
    #[allow(unused_variables)]
    fn inject(
        __providers: &::enoki::ProviderSet,
        __worker: &::enoki::WorkerCtx,
    ) -> Self {
        Self {
            inbox: __providers.get(0, __worker),
        }
    }
}
impl Listener {
    /// One copy per listener service, shared by its instances.
    pub async fn on_greeted_pool(
        &self,
        payload: Value,
        ctx: &WorkerCtx,
    ) -> Result<(), RemoteError> {
        self.inbox.record(HandlerType::ServicePool, ctx, payload);
        Ok(())
    }
    /// One copy for all singleton handlers of `greeted`.
    pub async fn on_greeted_singleton(
        &self,
        payload: Value,
        ctx: &WorkerCtx,
    ) -> Result<(), RemoteError> {
        self.inbox.record(HandlerType::Singleton, ctx, payload);
        Ok(())
    }
    /// One copy per running listener instance.
    pub async fn on_greeted_broadcast(
        &self,
        payload: Value,
        ctx: &WorkerCtx,
    ) -> Result<(), RemoteError> {
        self.inbox.record(HandlerType::Broadcast, ctx, payload);
        Ok(())
    }
    /// The events handled so far (the last 100), each with its handler type.
    pub async fn received(&self) -> Result<Vec<Value>, RemoteError> {
        Ok(self.inbox.snapshot())
    }
}
impl ::enoki::Service for Listener {
    const NAME: &'static str = "listener";
    fn entrypoints() -> ::std::vec::Vec<::enoki::__private::EntrypointSpec> {
        ::std::vec![
            ::enoki::__private::EntrypointSpec::event("on_greeted_pool",
            ::enoki::__private::EventHandlerSpec { source_service : "greeter", event_type
            : "greeted", handler_type : ::enoki::HandlerType::ServicePool,
            reliable_delivery : true, requeue_on_error : false, broadcast_identifier :
            ::core::option::Option::None, }),
            ::enoki::__private::EntrypointSpec::event("on_greeted_singleton",
            ::enoki::__private::EventHandlerSpec { source_service : "greeter", event_type
            : "greeted", handler_type : ::enoki::HandlerType::Singleton,
            reliable_delivery : true, requeue_on_error : false, broadcast_identifier :
            ::core::option::Option::None, }),
            ::enoki::__private::EntrypointSpec::event("on_greeted_broadcast",
            ::enoki::__private::EventHandlerSpec { source_service : "greeter", event_type
            : "greeted", handler_type : ::enoki::HandlerType::Broadcast,
            reliable_delivery : false, requeue_on_error : false, broadcast_identifier :
            ::core::option::Option::None, }),
            ::enoki::__private::EntrypointSpec::rpc("received")
        ]
    }
    fn schemas() -> ::std::vec::Vec<::enoki::__private::MethodSchema> {
        #[allow(unused_imports)]
        use ::enoki::__private::{ViaAny as _, ViaJsonSchema as _};
        ::std::vec![
            ::enoki::__private::MethodSchema::new("on_greeted_pool", &
            [" One copy per listener service, shared by its instances."],
            ::std::vec![("payload", true, (& ::enoki::__private::SchemaProbe:: < Value >
            ::new()).probe())],
            ::enoki::__private::Probed::Schema(::enoki::__private::schema_any()),),
            ::enoki::__private::MethodSchema::new("on_greeted_singleton", &
            [" One copy for all singleton handlers of `greeted`."],
            ::std::vec![("payload", true, (& ::enoki::__private::SchemaProbe:: < Value >
            ::new()).probe())],
            ::enoki::__private::Probed::Schema(::enoki::__private::schema_any()),),
            ::enoki::__private::MethodSchema::new("on_greeted_broadcast", &
            [" One copy per running listener instance."], ::std::vec![("payload", true,
            (& ::enoki::__private::SchemaProbe:: < Value > ::new()).probe())],
            ::enoki::__private::Probed::Schema(::enoki::__private::schema_any()),),
            ::enoki::__private::MethodSchema::new("received", &
            [" The events handled so far (the last 100), each with its handler type."],
            ::std::vec![], (& ::enoki::__private::SchemaProbe:: < Vec < Value > >
            ::new()).probe(),)
        ]
    }
    #[allow(unused_variables)]
    async fn dispatch(
        &self,
        __method: &::core::primitive::str,
        __payload: &[::core::primitive::u8],
        __ctx: &::enoki::WorkerCtx,
    ) -> ::enoki::__private::Outcome {
        match __method {
            "on_greeted_pool" => {
                let __event = ::enoki::__private::event_payload::<
                    Value,
                >("on_greeted_pool", __payload)?;
                let __returned = self.on_greeted_pool(__event, __ctx).await;
                ::enoki::__private::IntoOutcome::into_outcome(__returned)
            }
            "on_greeted_singleton" => {
                let __event = ::enoki::__private::event_payload::<
                    Value,
                >("on_greeted_singleton", __payload)?;
                let __returned = self.on_greeted_singleton(__event, __ctx).await;
                ::enoki::__private::IntoOutcome::into_outcome(__returned)
            }
            "on_greeted_broadcast" => {
                let __event = ::enoki::__private::event_payload::<
                    Value,
                >("on_greeted_broadcast", __payload)?;
                let __returned = self.on_greeted_broadcast(__event, __ctx).await;
                ::enoki::__private::IntoOutcome::into_outcome(__returned)
            }
            "received" => {
                const PARAMS: &[::enoki::__private::Param] = &[];
                ::enoki::__private::Args::bind("received", __payload, PARAMS)?;
                let __returned = self.received().await;
                ::enoki::__private::IntoOutcome::into_outcome(__returned)
            }
            __other => {
                ::core::result::Result::Err(
                    ::enoki::RemoteError::method_not_found(__other),
                )
            }
        }
    }
}
/** A typed client of the `listener` service: one method per `#[rpc]` of `Listener`.

 Generated by `#[service]`.*/
#[derive(::core::fmt::Debug, ::core::clone::Clone)]
#[allow(dead_code, unreachable_pub)]
pub struct ListenerClient {
    rpc: ::enoki::ClusterRpc,
}
#[allow(dead_code, unreachable_pub, private_interfaces)]
impl ListenerClient {
    /// The service name, `listener`.
    pub const SERVICE: &'static str = "listener";
    /// A client calling through `rpc`.
    pub fn new(rpc: impl ::core::convert::AsRef<::enoki::ClusterRpc>) -> Self {
        ListenerClient {
            rpc: ::core::clone::Clone::clone(
                <_ as ::core::convert::AsRef<::enoki::ClusterRpc>>::as_ref(&rpc),
            ),
        }
    }
    /// The events handled so far (the last 100), each with its handler type.
    ///
    /// Calls `listener.received`.
    pub async fn received(&self) -> ::enoki::Result<Vec<Value>> {
        self.rpc.call_typed(Self::SERVICE, "received", &[(); 0]).await
    }
}
#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    enoki::cli::main([enoki::service::<Listener>()]).await
}
