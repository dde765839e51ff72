//! Helpers for testing services: [`MockContext`] runs one handler with stubbed invokes and
//! captured events; [`TestApp`] runs several services on the in-memory bridge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Notify;

use crate::body::Body;
use crate::bridge::{Bridge, CommandEndpoint, Delivery, EventFilter, Registration, Settlement, SubscriptionEndpoint, SubscriptionRoute};
use crate::context::{Client, Context, Endpoint, MessageInfo, StateMap};
use crate::envelope::{Address, Envelope, Message};
use crate::error::{Error, HandledError};
use crate::host::{Host, RunningApp};
use crate::id::Id;
use crate::memory::{MemoryBridge, SubscriptionStats};
use crate::name::Name;
use crate::reference::CommandRef;
use crate::service::Service;

type Stub = Arc<dyn Fn(Value) -> Result<Body, HandledError> + Send + Sync>;

/// A message a handler sent through a [`MockContext`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// `service/version/command` for invokes, the event name for events.
    pub to: String,
    /// The payload as JSON.
    pub payload: Value,
    /// The principal it carried.
    pub principal_id: Option<String>,
}

#[derive(Default)]
struct MockBridge {
    stubs: Mutex<HashMap<String, Stub>>,
    invoked: Mutex<Vec<Sent>>,
    emitted: Mutex<Vec<Sent>>,
}

fn sent(to: String, envelope: &Envelope, payload: &Body) -> Sent {
    Sent {
        to,
        payload: payload.to_value().unwrap_or(Value::Null),
        principal_id: envelope.principal_id.as_deref().map(str::to_owned),
    }
}

impl Bridge for MockBridge {
    fn name(&self) -> &str {
        "mock"
    }

    fn invoke(&self, command: Envelope, _timeout: Duration) -> BoxFuture<'_, Result<Envelope, HandledError>> {
        Box::pin(async move {
            let target = command.receiver.as_ref().map(ToString::to_string).unwrap_or_default();
            let Message::Command { payload, .. } = &command.message else {
                return Err(HandledError::bad_request("not a command"));
            };
            self.invoked
                .lock()
                .expect("mock lock")
                .push(sent(target.clone(), &command, payload));
            let stub = self.stubs.lock().expect("mock lock").get(&target).cloned();
            let Some(stub) = stub else {
                return Err(HandledError::unavailable(format!(
                    "no stub for {target}; add one with MockContext::on_invoke"
                )));
            };
            let output = stub(payload.to_value().map_err(|e| HandledError::bad_request(e.to_string()))?)?;
            Ok(Envelope::new(
                command.receiver.clone().unwrap_or_else(|| command.sender.clone()),
                Message::Success { payload: output },
            ))
        })
    }

    fn emit(&self, event: Envelope, _timeout: Duration) -> BoxFuture<'_, Result<(), HandledError>> {
        if let Message::Custom { payload } = &event.message {
            let name = event.event_name.as_deref().unwrap_or_default().to_owned();
            self.emitted.lock().expect("mock lock").push(sent(name, &event, payload));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn serve_command(&self, _: Arc<Address>, _: Arc<dyn CommandEndpoint>) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        Box::pin(std::future::ready(Err(Error::msg(
            "the mock bridge serves no commands; use TestApp to run services",
        ))))
    }

    fn subscribe(&self, _: SubscriptionRoute, _: Arc<dyn SubscriptionEndpoint>) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        Box::pin(std::future::ready(Err(Error::msg(
            "the mock bridge delivers no events; use TestApp to run services",
        ))))
    }
}

/// A [`Context`] for calling one handler directly in a unit test: invokes answer from stubs,
/// emitted events and invokes are recorded.
///
/// ```
/// use purest_core::prelude::*;
/// use purest_core::testing::MockContext;
///
/// async fn greet(ctx: Context, Payload(name): Payload<String>) -> Result<String, HandledError> {
///     let known: bool = ctx.invoke(("people", "1", "exists"), name.clone()).await?;
///     ctx.emit("greeted", name.clone()).await?;
///     Ok(if known { format!("welcome back {name}") } else { format!("hello {name}") })
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let mock = MockContext::new().principal("user-1").on_invoke("people/1/exists", |name: String| Ok(name == "ann"));
/// let text = greet(mock.context(), Payload("ann".into())).await.unwrap();
/// assert_eq!(text, "welcome back ann");
/// assert_eq!(mock.emitted()[0].to, "greeted");
/// assert_eq!(mock.invoked()[0].principal_id.as_deref(), Some("user-1"));
/// # });
/// ```
pub struct MockContext {
    bridge: Arc<MockBridge>,
    info: MessageInfo,
    state: StateMap,
    address: Address,
}

impl Default for MockContext {
    fn default() -> Self {
        Self::new()
    }
}

impl MockContext {
    /// A context as if a `command` from a test client arrived at `test/1/handler`.
    pub fn new() -> Self {
        let address = Address::new("test", "1", "handler");
        Self {
            bridge: Arc::default(),
            info: MessageInfo {
                id: Id::random(),
                timestamp: crate::envelope::now_millis(),
                message_type: "command",
                sender: Arc::new(Address::new("purest-test", "1", "test")),
                receiver: Some(Arc::new(address.clone())),
                trace_id: Id::random(),
                correlation_id: Some(Id::random()),
                principal_id: None,
                tenant_id: None,
                event_name: None,
                otp: None,
            },
            state: StateMap::default(),
            address,
        }
    }

    /// The principal of the message.
    pub fn principal(mut self, principal_id: &str) -> Self {
        self.info.principal_id = Some(Name::new(principal_id));
        self
    }

    /// The tenant of the message.
    pub fn tenant(mut self, tenant_id: &str) -> Self {
        self.info.tenant_id = Some(Name::new(tenant_id));
        self
    }

    /// State the handler may ask for.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Answers invokes of `target` (`service/version/command`) with `stub`.
    pub fn on_invoke<P, O>(self, target: &str, stub: impl Fn(P) -> Result<O, HandledError> + Send + Sync + 'static) -> Self
    where
        P: DeserializeOwned,
        O: Serialize + Send + Sync + 'static,
    {
        let stub: Stub = Arc::new(move |payload| {
            let payload = P::deserialize(payload).map_err(|e| HandledError::bad_request(format!("stub payload: {e}")))?;
            stub(payload).map(Body::typed)
        });
        self.bridge.stubs.lock().expect("mock lock").insert(target.to_owned(), stub);
        self
    }

    /// Answers invokes of the command `command` names with `stub`, which takes the command's
    /// payload type `I` and returns its output type `O`.
    ///
    /// ```
    /// use purest_core::prelude::*;
    /// use purest_core::testing::MockContext;
    /// const EXISTS: CommandRef<String, bool> = CommandRef::new("people", "1", "exists");
    ///
    /// async fn greet(ctx: Context, Payload(name): Payload<String>) -> Result<String, HandledError> {
    ///     let known = ctx.invoke(EXISTS, name.clone()).await?;
    ///     Ok(if known { format!("welcome back {name}") } else { format!("hello {name}") })
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mock = MockContext::new().on_command(EXISTS, |name: String| Ok(name == "ann"));
    /// assert_eq!(greet(mock.context(), Payload("ann".into())).await.unwrap(), "welcome back ann");
    /// assert_eq!(mock.invoked()[0].to, "people/1/exists");
    /// # });
    /// ```
    pub fn on_command<I, O, P>(
        self,
        command: CommandRef<I, O, P>,
        stub: impl Fn(I) -> Result<O, HandledError> + Send + Sync + 'static,
    ) -> Self
    where
        I: DeserializeOwned,
        O: Serialize + Send + Sync + 'static,
    {
        self.on_invoke(&command.to_string(), stub)
    }

    /// The context to pass to the handler.
    pub fn context(&self) -> Context {
        let endpoint = Endpoint::new(self.bridge.clone(), self.address.clone(), Arc::new(self.state.clone()));
        Context::new(Arc::new(endpoint), Arc::new(self.info.clone()))
    }

    /// The events emitted so far.
    pub fn emitted(&self) -> Vec<Sent> {
        self.bridge.emitted.lock().expect("mock lock").clone()
    }

    /// The invokes made so far.
    pub fn invoked(&self) -> Vec<Sent> {
        self.bridge.invoked.lock().expect("mock lock").clone()
    }
}

/// Several services on a fresh in-memory bridge, for integration tests.
///
/// ```
/// use purest_core::prelude::*;
/// use purest_core::testing::TestApp;
/// use std::time::Duration;
///
/// async fn hello(ctx: Context, Payload(name): Payload<String>) -> Result<String, HandledError> {
///     ctx.emit("greeted", name.clone()).await?;
///     Ok(format!("hello {name}"))
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let app = TestApp::new().service(Service::new("greeter", "1").command(Command::new("hello", hello))).start().await;
/// let greeted = app.record("greeted");
/// assert_eq!(app.client().invoke::<String>("greeter/1/hello", "ann".to_owned()).await.unwrap(), "hello ann");
/// assert_eq!(greeted.wait_for(1, Duration::from_secs(5)).await[0], serde_json::json!("ann"));
/// app.shutdown().await;
/// # });
/// ```
pub struct TestApp {
    app: Host,
    bridge: MemoryBridge,
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}

impl TestApp {
    /// An empty test app on its own in-memory bridge.
    pub fn new() -> Self {
        let bridge = MemoryBridge::new();
        Self {
            app: Host::new().bridge(bridge.clone()).drain_timeout(Duration::from_secs(10)),
            bridge,
        }
    }

    /// Adds a service.
    pub fn service(mut self, service: Service) -> Self {
        self.app = self.app.service(service);
        self
    }

    /// Shares state with every service.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.app = self.app.state(value);
        self
    }

    /// Starts the services; panics with the reason if they cannot start (it is a test).
    pub async fn start(self) -> RunningTestApp {
        let app = self.app.start().await.unwrap_or_else(|e| panic!("test app failed to start: {e}"));
        RunningTestApp {
            app,
            bridge: self.bridge,
            recordings: Mutex::default(),
        }
    }
}

/// A started [`TestApp`].
pub struct RunningTestApp {
    app: RunningApp,
    bridge: MemoryBridge,
    recordings: Mutex<Vec<Box<dyn Registration>>>,
}

impl RunningTestApp {
    /// A client for invokes and emits.
    pub fn client(&self) -> Client {
        self.app.client()
    }

    /// The in-memory bridge (for its counters).
    pub fn bridge(&self) -> &MemoryBridge {
        &self.bridge
    }

    /// The counters of subscription `service/version/subscription`.
    pub fn subscription_stats(&self, subscription: &str) -> SubscriptionStats {
        self.bridge.subscription_stats().get(subscription).copied().unwrap_or_default()
    }

    /// The running app.
    pub fn app(&self) -> &RunningApp {
        &self.app
    }

    /// Starts recording every event named `event_name` from now on.
    pub fn record(&self, event_name: &str) -> Recorder {
        let recorder = Recorder::default();
        let mut address = Address::new("purest-test", "1", &format!("record-{event_name}"));
        address.instance_id = Some(Id::random().to_string().into());
        let route = SubscriptionRoute {
            address: address.into(),
            filter: EventFilter {
                event_name: Some(Name::new(event_name)),
                ..Default::default()
            },
            durable: false,
            every_instance: true,
            retry: Default::default(),
            concurrency: 1,
            queue_capacity: crate::bridge::DEFAULT_QUEUE_CAPACITY,
        };
        let endpoint: Arc<dyn SubscriptionEndpoint> = recorder.0.clone();
        // The memory bridge registers synchronously, so this never blocks.
        let registration = futures::executor::block_on(self.bridge.subscribe(route, endpoint)).expect("memory bridge subscribe");
        self.recordings.lock().expect("recordings lock").push(registration);
        recorder
    }

    /// Shuts down gracefully (recorders included).
    pub async fn shutdown(self) -> bool {
        let drained = self.app.shutdown().await;
        let recordings = std::mem::take(&mut *self.recordings.lock().expect("recordings lock"));
        futures::future::join_all(recordings.into_iter().map(|r| r.close())).await;
        drained
    }
}

#[derive(Default)]
struct RecorderInner {
    payloads: Mutex<Vec<Value>>,
    changed: Notify,
}

impl SubscriptionEndpoint for RecorderInner {
    fn deliver(self: Arc<Self>, delivery: Delivery) -> BoxFuture<'static, Settlement> {
        let Ok(event) = delivery.message else {
            return Box::pin(std::future::ready(Settlement::Reject));
        };
        let payload = match &event.message {
            Message::Custom { payload } | Message::Success { payload } => payload.to_value().unwrap_or(Value::Null),
            _ => Value::Null,
        };
        self.payloads.lock().expect("recorder lock").push(payload);
        self.changed.notify_waiters();
        Box::pin(std::future::ready(Settlement::Ack))
    }
}

/// The payloads of one event name, recorded by [`RunningTestApp::record`].
#[derive(Clone, Default)]
pub struct Recorder(Arc<RecorderInner>);

impl Recorder {
    /// What was recorded so far.
    pub fn payloads(&self) -> Vec<Value> {
        self.0.payloads.lock().expect("recorder lock").clone()
    }

    /// Waits until at least `count` were recorded or `timeout` passed; returns what was recorded.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.0.changed.notified();
            let payloads = self.payloads();
            if payloads.len() >= count || tokio::time::Instant::now() >= deadline {
                return payloads;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }
}
