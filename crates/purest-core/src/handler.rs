//! Handlers are plain async functions whose arguments are extractors ([`Context`], [`Payload`],
//! [`Params`], [`Principal`], [`State`]), in the style of axum. The argument and output types
//! describe the command: their JSON Schemas are compiled once and checked on every call.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::body::Body;
use crate::context::Context;
use crate::error::{Error, HandledError};
use crate::validation::{Schema, Validate, Violation, take_validated};

/// The JSON Schema and Rust name of one part of a handler's signature.
#[derive(Debug, Clone)]
pub struct TypeSchema {
    /// The Rust type, for messages.
    pub rust_type: &'static str,
    /// JSON Schema (draft 2020-12).
    pub json: Value,
}

impl TypeSchema {
    fn of<T: JsonSchema>() -> Self {
        Self {
            rust_type: std::any::type_name::<T>(),
            json: Schema::json_of::<T>(),
        }
    }
}

/// What a handler takes and returns, read from its argument and output types.
#[derive(Debug, Clone, Default)]
pub struct Signature {
    /// The handler function's Rust name.
    pub handler: &'static str,
    /// The payload type, when the handler takes [`Payload`].
    pub payload: Option<TypeSchema>,
    /// The parameters type, when the handler takes [`Params`].
    pub params: Option<TypeSchema>,
    /// The output type.
    pub output: Option<TypeSchema>,
    /// Whether the output is `()`.
    pub output_is_unit: bool,
}

/// The compiled checks of one command or subscription; `None` schemas mean "not checked".
#[derive(Default)]
pub(crate) struct Checks {
    pub payload: Option<Schema>,
    pub params: Option<Schema>,
    pub validate_output: bool,
}

/// One message on its way into a handler (borrowing the endpoint's compiled checks): what an
/// extractor ([`FromInvocation`]) reads.
///
/// Extractors run left to right. [`Payload`] and [`Params`] take their body out of the
/// invocation; every other accessor only borrows, so an extractor of your own placed before
/// `Payload<T>` can look at the raw payload and `Payload<T>` still gets it.
pub struct Invocation<'a> {
    pub(crate) ctx: Context,
    pub(crate) payload: Option<Body>,
    pub(crate) params: Option<Body>,
    pub(crate) checks: &'a Arc<Checks>,
}

impl Invocation<'_> {
    /// The handled message's [`Context`]: principal, tenant, trace and correlation ids, the
    /// message's metadata ([`Context::message`]), this command's or subscription's address and
    /// shared state ([`Context::state_ref`], [`Context::state`]). Clone it only if you keep it.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The raw payload, still in place (JSON from a wire, or the typed value a caller in this
    /// process passed: see [`Body::as_json`], [`Body::downcast_ref`]). `None` once a [`Payload`]
    /// extractor took it.
    pub fn payload(&self) -> Option<&Body> {
        self.payload.as_ref()
    }

    /// The raw parameters, still in place (`{}` when the caller sent none). `None` in a
    /// subscription, which receives no parameters, and once a [`Params`] extractor took them.
    pub fn params(&self) -> Option<&Body> {
        self.params.as_ref()
    }

    /// Shared state of type `T` ([`Service::state`](crate::Service::state),
    /// [`Host::state`](crate::Host::state)), borrowed. When none was added this is a mistake in the
    /// app, not in the message: the error is logged naming `T` and this endpoint, and the caller
    /// gets the generic 500 (what [`State`] does).
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<&T, HandledError> {
        self.ctx.state_ref::<T>().ok_or_else(|| {
            tracing::error!(
                state = std::any::type_name::<T>(),
                endpoint = %self.ctx.address(),
                "a handler asks for shared state (State<T> or an extractor) that was never added; add it with Service::state or Host::state"
            );
            HandledError::generic_internal()
        })
    }
}

/// An argument a handler can ask for. `M` only disambiguates implementations; it is inferred.
///
/// Implement it (with `M = ()`) for extractors of your own; [`Invocation`] gives them the
/// message's context and, read-only, its raw payload and parameters. An `Err` refuses the call
/// before the handler runs: the caller gets that error (status and message), and a durable
/// subscription dead-letters the message at once, since retrying cannot help.
///
/// A tenant every call must carry, refused with 403 when missing:
///
/// ```
/// use purest_core::prelude::*;
/// use purest_core::{FromInvocation, Invocation};
///
/// struct Tenant(String);
///
/// impl FromInvocation<()> for Tenant {
///     fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
///         match invocation.context().tenant_id() {
///             Some(tenant) => Ok(Tenant(tenant.to_owned())),
///             None => Err(HandledError::forbidden(
///                 "this command needs a tenant; send the call with a tenant id (Client::with_tenant, or the gateway's tenant claim)",
///             )),
///         }
///     }
/// }
///
/// async fn quota(Tenant(tenant): Tenant) -> Result<String, HandledError> {
///     Ok(format!("quota of {tenant}: 10"))
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let app = Host::new().service(Service::new("billing", "1").command(Command::new("quota", quota))).start().await?;
/// let refused = app.client().invoke::<String>("billing/1/quota", ()).await.unwrap_err();
/// assert_eq!(refused.status, 403);
/// assert!(refused.message.contains("needs a tenant"));
/// let answer: String = app.client().with_tenant("acme").invoke("billing/1/quota", ()).await?;
/// assert_eq!(answer, "quota of acme: 10");
/// app.shutdown().await;
/// # Ok::<_, purest_core::Error>(()) }).unwrap();
/// ```
///
/// A database handle from shared state. A missing handle is the app's mistake, not the
/// caller's: [`Invocation::state`] logs which type is missing and refuses with the generic 500,
/// so no internals reach the caller.
///
/// ```
/// use std::sync::Arc;
/// use purest_core::prelude::*;
/// use purest_core::{FromInvocation, Invocation};
///
/// /// Stands in for a connection pool (cheap to clone).
/// #[derive(Clone)]
/// struct Pool(Arc<Vec<String>>);
///
/// /// What handlers ask for: a connection taken from the pool.
/// struct Db(Pool);
///
/// impl FromInvocation<()> for Db {
///     fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
///         Ok(Db(invocation.state::<Pool>()?.clone()))
///     }
/// }
///
/// async fn count_users(Db(pool): Db) -> Result<usize, HandledError> {
///     Ok(pool.0.len())
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let users = || Service::new("users", "1").command(Command::new("count", count_users));
///
/// let app = Host::new().state(Pool(Arc::new(vec!["ann".into(), "bob".into()]))).service(users()).start().await?;
/// assert_eq!(app.client().invoke::<usize>("users/1/count", ()).await?, 2);
/// app.shutdown().await;
///
/// // Forgot `.state(pool)`: the caller sees a generic 500; the log names `Pool`.
/// let app = Host::new().service(users()).start().await?;
/// let refused = app.client().invoke::<usize>("users/1/count", ()).await.unwrap_err();
/// assert_eq!((refused.status, refused.message.as_str()), (500, "internal server error"));
/// app.shutdown().await;
/// # Ok::<_, purest_core::Error>(()) }).unwrap();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an extractor a handler can take",
    label = "not an extractor",
    note = "handler arguments are extractors: `Context`, `Payload<T>`, `Params<T>`, `Principal`, `State<T>`, or your own type implementing `FromInvocation<()>`"
)]
pub trait FromInvocation<M>: Sized + Send + 'static {
    /// Records what this argument adds to the handler's signature.
    fn describe(_signature: &mut Signature) {}
    /// Takes the argument out of the invocation, or refuses the call.
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError>;
}

impl FromInvocation<()> for Context {
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
        Ok(invocation.ctx.clone())
    }
}

/// The message's payload, validated against `T`'s schema before the handler runs.
///
/// ```
/// use purest_core::prelude::*;
/// #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)]
/// struct NewUser {
///     #[garde(length(min = 1))]
///     name: String,
/// }
/// async fn register(Payload(user): Payload<NewUser>) -> Result<String, HandledError> {
///     Ok(user.name)
/// }
/// # let _ = Command::new("register", register);
/// ```
#[derive(Debug, Clone)]
pub struct Payload<T>(pub T);

/// The parameters of a command (query-like values beside the payload), validated like [`Payload`].
#[derive(Debug, Clone)]
pub struct Params<T>(pub T);

/// The authenticated principal; the call is refused with 401 when there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

/// Shared state of type `T` added with `Service::state` or `Host::state`.
#[derive(Debug, Clone)]
pub struct State<T>(pub T);

#[doc(hidden)]
pub enum PayloadMarker {}
#[doc(hidden)]
pub enum ParamsMarker {}

impl<T, M> FromInvocation<(PayloadMarker, M)> for Payload<T>
where
    T: Validate<M> + JsonSchema + DeserializeOwned + Clone + Send + Sync + 'static,
    M: 'static,
{
    fn describe(signature: &mut Signature) {
        signature.payload = Some(TypeSchema::of::<T>());
    }
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
        let body = invocation.payload.take().unwrap_or_else(|| Body::json(Value::Null));
        take_validated::<T, M>(body, invocation.checks.payload.as_ref(), "payload").map(Payload)
    }
}

impl<T, M> FromInvocation<(ParamsMarker, M)> for Params<T>
where
    T: Validate<M> + JsonSchema + DeserializeOwned + Clone + Send + Sync + 'static,
    M: 'static,
{
    fn describe(signature: &mut Signature) {
        signature.params = Some(TypeSchema::of::<T>());
    }
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
        let body = invocation.params.take().unwrap_or_else(Body::empty_object);
        take_validated::<T, M>(body, invocation.checks.params.as_ref(), "parameters").map(Params)
    }
}

impl FromInvocation<()> for Principal {
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
        match invocation.ctx.principal_id() {
            Some(principal) => Ok(Principal(principal.to_owned())),
            None => Err(HandledError::unauthorized("authentication required")),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> FromInvocation<()> for State<T> {
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
        invocation.state::<T>().map(|value| State(value.clone()))
    }
}

/// What a handler's `Ok` value may be: any serializable, schema'd, validatable type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler's output",
    label = "not an output",
    note = "an output is `Serialize + JsonSchema` with garde rules: `#[derive(Serialize, JsonSchema, Validate)]` (schemars 1.x), with `#[garde(allow_unvalidated)]` when it has none; plain types (`String`, numbers, `bool`, `()`, `Vec`, `Option`, maps) work as they are"
)]
pub trait Output<M>: Send + 'static {
    /// Records the output schema.
    fn describe(signature: &mut Signature);
    /// Checks the value (when `validate`) and wraps it for the bridge.
    fn into_body(self, validate: bool) -> Result<Body, Vec<Violation>>;
}

impl<T, M> Output<M> for T
where
    T: Validate<M> + Serialize + JsonSchema + Send + Sync + 'static,
{
    fn describe(signature: &mut Signature) {
        signature.output = Some(TypeSchema::of::<T>());
        signature.output_is_unit = std::any::TypeId::of::<T>() == std::any::TypeId::of::<()>();
    }
    fn into_body(self, validate: bool) -> Result<Body, Vec<Violation>> {
        if validate {
            self.validate_value()?;
        }
        Ok(Body::typed(self))
    }
}

/// An async function usable as a command or subscription handler.
///
/// Implemented for every `async fn(A1, …, An) -> Result<O, E>` with up to 8 extractor arguments,
/// where `O` is an [`Output`] and `E: Into<`[`Error`]`>` (e.g. [`HandledError`], or any
/// `std::error::Error`, which callers only see as a generic 500). The requirements are checked in
/// steps — the function's shape ([`HandlerFn`]), each argument ([`FromInvocation`]), the result
/// ([`HandlerResult`]) — so a compile error names the one type that falls short.
pub trait Handler<Args>: Clone + Send + Sync + 'static {
    /// Records the handler's signature.
    fn describe(signature: &mut Signature);
    /// Extracts the arguments (validating them), runs the before guards, calls the function and
    /// checks its output.
    fn call(self, invocation: Invocation<'_>) -> BoxFuture<'static, Result<Body, CallError>>;
}

/// The shape of a handler: a function of the arguments `Args` (a tuple) returning a future.
/// It asks nothing of the arguments or the result, so the compiler settles on the function's
/// arity first and then checks each argument on its own.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a purest handler",
    label = "not an async fn of at most 8 arguments",
    note = "a handler is an `async fn` (or a closure returning a future) of up to 8 extractors, e.g. `async fn register(Payload(user): Payload<NewUser>) -> Result<User, HandledError>`"
)]
pub trait HandlerFn<Args>: Clone + Send + Sync + 'static {
    /// What the future resolves to.
    type Output;
    /// The future the function returns.
    type Future: Future<Output = Self::Output> + Send + 'static;
    /// Calls the function.
    fn call_with(&self, args: Args) -> Self::Future;
}

/// A handler's arguments (a tuple), each an extractor.
pub trait Extract<Markers>: Sized + Send + 'static {
    /// Records what the arguments add to the signature.
    fn describe(signature: &mut Signature);
    /// Takes every argument out of the invocation, in order, or refuses the call.
    fn extract(invocation: &mut Invocation<'_>) -> Result<Self, HandledError>;
}

/// What a handler's future resolves to: `Result<O, E>`, with `O` an [`Output`] and `E` an error
/// that converts into [`Error`].
#[diagnostic::on_unimplemented(
    message = "a handler returns `Result<O, E>`, not `{Self}`",
    label = "return a `Result`: `Ok(value)`, or `Err(error)`",
    note = "e.g. `-> Result<bool, HandledError>` ending in `Ok(true)`; `E` is `HandledError` or any `std::error::Error`"
)]
pub trait HandlerResult<M>: Send + 'static {
    /// The `Ok` type.
    type Output;
    /// Records the output schema.
    fn describe(signature: &mut Signature);
    /// The output for the bridge (checked against its schema when `validate`), or the failure.
    fn into_body(self, validate: bool) -> Result<Body, CallError>;
}

impl<O, OutMarker, E> HandlerResult<OutMarker> for Result<O, E>
where
    O: Output<OutMarker>,
    E: Into<Error> + Send + 'static,
{
    type Output = O;
    fn describe(signature: &mut Signature) {
        O::describe(signature);
    }
    fn into_body(self, validate: bool) -> Result<Body, CallError> {
        let output = self.map_err(|e| CallError::Failed(e.into()))?;
        output.into_body(validate).map_err(|v| CallError::Failed(invalid_output(v)))
    }
}

impl<Func, Args, Markers, Res, ResMarker> Handler<(Args, Markers, Res, ResMarker)> for Func
where
    Func: HandlerFn<Args, Output = Res>,
    Args: Extract<Markers>,
    Res: HandlerResult<ResMarker>,
{
    fn describe(signature: &mut Signature) {
        signature.handler = std::any::type_name::<Func>();
        Args::describe(signature);
        Res::describe(signature);
    }

    fn call(self, mut invocation: Invocation<'_>) -> BoxFuture<'static, Result<Body, CallError>> {
        // Extraction and validation run now; only the handler's own future is boxed.
        let args = match Args::extract(&mut invocation) {
            Ok(args) => args,
            Err(refusal) => return Box::pin(std::future::ready(Err(CallError::Rejected(refusal)))),
        };
        let validate = invocation.checks.validate_output;
        drop(invocation);
        let running = self.call_with(args);
        Box::pin(async move { running.await.into_body(validate) })
    }
}

/// Why a call produced no output.
pub enum CallError {
    /// Refused before the handler ran (invalid input, missing principal, a guard): retrying the
    /// same message cannot succeed.
    Rejected(HandledError),
    /// The handler ran and failed.
    Failed(Error),
}

impl CallError {
    /// The error, whether refused or failed (layers see one error type).
    pub(crate) fn into_error(self) -> Error {
        match self {
            CallError::Rejected(refusal) => refusal.into(),
            CallError::Failed(error) => error,
        }
    }
}

impl From<Error> for CallError {
    fn from(error: Error) -> Self {
        CallError::Failed(error)
    }
}

fn invalid_output(violations: Vec<Violation>) -> Error {
    Error::msg(format!(
        "the handler's output fails its own schema: {}",
        serde_json::to_string(&violations).unwrap_or_default()
    ))
}

/// A handler's signature as types, for checking it against a [`CommandRef`](crate::CommandRef)
/// or an [`EventRef`](crate::EventRef) at compile time: which payload and which parameters it
/// takes (each [`Present<T>`] or [`Absent`]) and what it returns.
///
/// Implemented for the same argument tuples as [`Handler`], as long as the handler takes at most
/// one [`Payload`] and one [`Params`]. Extractors other than those two count as taking neither
/// when they implement [`FromInvocation<()>`](FromInvocation) (as [`Context`], [`Principal`],
/// [`State`] and extractors of your own usually do).
pub trait HandlerTypes {
    /// [`Present<T>`] when the handler takes `Payload<T>`, else [`Absent`].
    type Payload;
    /// [`Present<T>`] when the handler takes `Params<T>`, else [`Absent`].
    type Params;
    /// The `Ok` type of the handler's result.
    type Output;
}

/// In [`HandlerTypes`]: the handler takes no argument of this kind.
pub enum Absent {}

/// In [`HandlerTypes`]: the handler takes a `T` as this kind of argument.
pub struct Present<T>(PhantomData<fn() -> T>);

/// What one argument of a handler adds to [`HandlerTypes`]: [`Present<T>`] in the payload slot
/// for `Payload<T>`, in the params slot for `Params<T>`, [`Absent`] otherwise.
pub trait ArgTypes<M> {
    /// What the argument says about the payload.
    type Payload;
    /// What the argument says about the parameters.
    type Params;
}

impl<T, M> ArgTypes<(PayloadMarker, M)> for Payload<T> {
    type Payload = Present<T>;
    type Params = Absent;
}

impl<T, M> ArgTypes<(ParamsMarker, M)> for Params<T> {
    type Payload = Absent;
    type Params = Present<T>;
}

impl<A> ArgTypes<()> for A {
    type Payload = Absent;
    type Params = Absent;
}

/// Merges what two arguments say about one slot; two `Present`s (two `Payload` arguments) do
/// not merge.
#[diagnostic::on_unimplemented(message = "the handler takes two `Payload` (or two `Params`) arguments; take one")]
pub trait Combine<Rhs> {
    /// The merged slot.
    type Out;
}

impl Combine<Absent> for Absent {
    type Out = Absent;
}

impl<T> Combine<Present<T>> for Absent {
    type Out = Present<T>;
}

impl<T> Combine<Absent> for Present<T> {
    type Out = Present<T>;
}

/// Folds a type-level list `(First, (Second, (…, ())))` of slots with [`Combine`], starting
/// from `Self`.
pub trait Fold<List> {
    /// The folded slot.
    type Out;
}

impl<Acc> Fold<()> for Acc {
    type Out = Acc;
}

impl<Acc, Head, Tail> Fold<(Head, Tail)> for Acc
where
    Acc: Combine<Head>,
    <Acc as Combine<Head>>::Out: Fold<Tail>,
{
    type Out = <<Acc as Combine<Head>>::Out as Fold<Tail>>::Out;
}

/// A command handler's slot matches a reference's type: [`Present<T>`] matches `T`, and
/// [`Absent`] (no such argument) matches `()`.
#[diagnostic::on_unimplemented(
    message = "the handler does not take what the reference declares: `{Self}` where it declares `{T}`",
    label = "the handler's `Payload`/`Params` type differs from the `CommandRef`'s",
    note = "`Command::of(CommandRef<I, O, P>, handler)` needs a handler taking `Payload<I>` (none when `I` is `()`) and `Params<P>` (none when `P` is `()`), returning `Result<O, _>`; `Present<X>` is the handler's argument of type `X`, `Absent` none"
)]
pub trait Matches<T> {}

impl Matches<()> for Absent {}
impl<T> Matches<T> for Present<T> {}

/// A subscription handler's payload slot accepts an event's payload `T`: [`Present<T>`]
/// (the handler takes `Payload<T>`) or [`Absent`] (it does not read the payload).
#[diagnostic::on_unimplemented(
    message = "the handler takes a different payload than the event carries: `{Self}` where the event carries `{T}`",
    label = "the handler's `Payload` type differs from the `EventRef`'s",
    note = "`Subscription::on(EventRef<T>, name, handler)` needs a handler taking `Payload<T>` or no payload; `Present<X>` is the handler's `Payload<X>`"
)]
pub trait Accepts<T> {}

impl<T> Accepts<T> for Absent {}
impl<T> Accepts<T> for Present<T> {}

/// The type-level list of the arguments' payload (or params) slots.
macro_rules! slots {
    ($slot:ident;) => { () };
    ($slot:ident; $arg:ident $marker:ident $(, $rest_arg:ident $rest_marker:ident)*) => {
        (<$arg as ArgTypes<$marker>>::$slot, slots!($slot; $($rest_arg $rest_marker),*))
    };
}

macro_rules! impl_handler {
    ($($arg:ident $marker:ident),*) => {
        impl<Func, Fut, $($arg,)*> HandlerFn<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future + Send + 'static,
        {
            type Output = Fut::Output;
            type Future = Fut;
            #[allow(non_snake_case, clippy::unused_unit)]
            fn call_with(&self, ($($arg,)*): ($($arg,)*)) -> Fut {
                (self)($($arg),*)
            }
        }

        impl<$($arg: FromInvocation<$marker>, $marker,)*> Extract<($($marker,)*)> for ($($arg,)*) {
            #[allow(unused_variables)]
            fn describe(signature: &mut Signature) {
                $($arg::describe(signature);)*
            }
            #[allow(unused_variables, clippy::unused_unit)]
            fn extract(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
                Ok(($($arg::from_invocation(invocation)?,)*))
            }
        }

        impl<Res, ResMarker, $($arg, $marker,)*> HandlerTypes for (($($arg,)*), ($($marker,)*), Res, ResMarker)
        where
            $($arg: ArgTypes<$marker>,)*
            Absent: Fold<slots!(Payload; $($arg $marker),*)> + Fold<slots!(Params; $($arg $marker),*)>,
            Res: HandlerResult<ResMarker>,
        {
            type Payload = <Absent as Fold<slots!(Payload; $($arg $marker),*)>>::Out;
            type Params = <Absent as Fold<slots!(Params; $($arg $marker),*)>>::Out;
            type Output = Res::Output;
        }
    };
}

impl_handler!();
impl_handler!(A1 M1);
impl_handler!(A1 M1, A2 M2);
impl_handler!(A1 M1, A2 M2, A3 M3);
impl_handler!(A1 M1, A2 M2, A3 M3, A4 M4);
impl_handler!(A1 M1, A2 M2, A3 M3, A4 M4, A5 M5);
impl_handler!(A1 M1, A2 M2, A3 M3, A4 M4, A5 M5, A6 M6);
impl_handler!(A1 M1, A2 M2, A3 M3, A4 M4, A5 M5, A6 M6, A7 M7);
impl_handler!(A1 M1, A2 M2, A3 M3, A4 M4, A5 M5, A6 M6, A7 M7, A8 M8);

/// A handler with its argument types forgotten, so commands of any signature fit one list.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn call(&self, invocation: Invocation<'_>) -> BoxFuture<'static, Result<Body, CallError>>;
}

pub(crate) struct TypedHandler<H, Args> {
    handler: H,
    _args: PhantomData<fn() -> Args>,
}

impl<H: Handler<Args>, Args: 'static> TypedHandler<H, Args> {
    pub(crate) fn erase(handler: H) -> (Arc<dyn ErasedHandler>, Signature) {
        let mut signature = Signature::default();
        H::describe(&mut signature);
        (
            Arc::new(TypedHandler {
                handler,
                _args: PhantomData,
            }),
            signature,
        )
    }
}

impl<H: Handler<Args>, Args: 'static> ErasedHandler for TypedHandler<H, Args> {
    fn call(&self, invocation: Invocation<'_>) -> BoxFuture<'static, Result<Body, CallError>> {
        self.handler.clone().call(invocation)
    }
}
