//! Typed references: a command's address together with its payload, output and parameters
//! types ([`CommandRef`]), an event's name together with its payload type ([`EventRef`]).
//!
//! Declared once, next to the types they carry, and used on both sides (registration and
//! call), they turn a typo in a name or a mismatch of types into a compile error:
//!
//! ```
//! use purest_core::prelude::*;
//!
//! #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)]
//! pub struct NewUser {
//!     #[garde(length(min = 1))]
//!     pub name: String,
//! }
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
//! #[garde(allow_unvalidated)]
//! pub struct User {
//!     pub id: u64,
//!     pub name: String,
//! }
//!
//! pub const USER_REGISTERED: EventRef<User> = EventRef::new("newUserRegistered");
//! pub const REGISTER: CommandRef<NewUser, User> = CommandRef::new("user", "1", "registerNewUser").success_event(USER_REGISTERED);
//!
//! async fn register(Payload(new): Payload<NewUser>) -> Result<User, HandledError> {
//!     Ok(User { id: 1, name: new.name })
//! }
//! async fn welcome(Payload(user): Payload<User>) -> Result<(), HandledError> {
//!     println!("welcome {}", user.name);
//!     Ok(())
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let app = Host::new()
//!     .service(Service::new("user", "1").command(Command::of(REGISTER, register)))
//!     .service(Service::new("email", "1").subscription(Subscription::on(USER_REGISTERED, "sendWelcomeMail", welcome)))
//!     .start()
//!     .await?;
//! let user = app.client().invoke(REGISTER, NewUser { name: "ann".into() }).await?; // a `User`
//! assert_eq!(user, User { id: 1, name: "ann".into() });
//! // Services in other languages are reached by their string addresses, as before.
//! let same: User = app.client().invoke("user/1/registerNewUser", serde_json::json!({"name": "bob"})).await?;
//! assert_eq!(same.name, "bob");
//! app.shutdown().await;
//! # Ok::<_, purest_core::Error>(()) }).unwrap();
//! ```
//!
//! The payload must be the reference's input type:
//!
//! ```compile_fail,E0308
//! # use purest_core::prelude::*;
//! # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] pub struct NewUser { pub name: String }
//! # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] pub struct User { pub name: String }
//! pub const REGISTER: CommandRef<NewUser, User> = CommandRef::new("user", "1", "registerNewUser");
//! async fn caller(ctx: Context) -> Result<User, HandledError> {
//!     ctx.invoke(REGISTER, "ann".to_owned()).await // a String, not a NewUser
//! }
//! ```
//!
//! and the output its output type:
//!
//! ```compile_fail,E0308
//! # use purest_core::prelude::*;
//! # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] pub struct NewUser { pub name: String }
//! # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] pub struct User { pub name: String }
//! pub const REGISTER: CommandRef<NewUser, User> = CommandRef::new("user", "1", "registerNewUser");
//! async fn caller(client: Client) -> Result<String, HandledError> {
//!     client.invoke(REGISTER, NewUser { name: "ann".into() }).await // answers a User, not a String
//! }
//! ```
//!
//! while the same call with the right types compiles:
//!
//! ```
//! # use purest_core::prelude::*;
//! # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] pub struct NewUser { pub name: String }
//! # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] pub struct User { pub name: String }
//! pub const REGISTER: CommandRef<NewUser, User> = CommandRef::new("user", "1", "registerNewUser");
//! async fn caller(ctx: Context, client: Client) -> Result<User, HandledError> {
//!     let _: User = client.invoke(REGISTER, NewUser { name: "ann".into() }).await?;
//!     ctx.invoke(REGISTER, NewUser { name: "ann".into() }).await
//! }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;

use crate::context::IntoTarget;
use crate::envelope::Address;
use crate::error::HandledError;
use crate::name::Name;

/// The address of a command (`service/version/command`) with the types it takes and answers:
/// payload `I`, output `O`, parameters `P` (`()` when it takes none).
///
/// Declare it as a `const` next to the types, then use it where the command is registered
/// ([`Command::of`](crate::Command::of)) and where it is called
/// ([`Invoke::invoke`](crate::Invoke::invoke), [`Context::call`](crate::Context::call)): both
/// sides are then checked against it by the compiler. Copying it costs nothing; turning it
/// into an address parses nothing and copies no name.
///
/// ```
/// use purest_core::prelude::*;
/// #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)]
/// struct GetUser { id: String }
/// #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)]
/// struct User { id: String }
///
/// const GET_USER: CommandRef<(), User, GetUser> = CommandRef::new("user", "1", "getUser");
/// assert_eq!(GET_USER.to_string(), "user/1/getUser");
///
/// async fn lookup(ctx: Context) -> Result<User, HandledError> {
///     ctx.call(GET_USER).params(GetUser { id: "u-1".into() }).invoke(()).await
/// }
/// # let _ = Command::new("lookup", lookup);
/// ```
pub struct CommandRef<I, O, P = ()> {
    service: &'static str,
    version: &'static str,
    command: &'static str,
    success_event: Option<&'static str>,
    types: PhantomData<fn(I, P) -> O>,
}

impl<I, O, P> CommandRef<I, O, P> {
    /// The command `command` of service `service`, version `version`.
    ///
    /// The names are checked when the command is registered ([`Service::check`](crate::Service::check),
    /// run by `Host::start`); a reference to a command nobody serves is answered with 503.
    pub const fn new(service: &'static str, version: &'static str, command: &'static str) -> Self {
        Self {
            service,
            version,
            command,
            success_event: None,
            types: PhantomData,
        }
    }

    /// Declares the command's success event: every successful response is also this event.
    /// Its payload type must be the command's output `O`:
    ///
    /// ```
    /// # use purest_core::prelude::*;
    /// const PLACED: EventRef<u64> = EventRef::new("orderPlaced");
    /// const PLACE: CommandRef<String, u64> = CommandRef::new("shop", "1", "place").success_event(PLACED);
    /// assert_eq!(PLACE.get_success_event().map(|e| e.name()), Some("orderPlaced"));
    /// ```
    ///
    /// ```compile_fail,E0308
    /// # use purest_core::prelude::*;
    /// const PLACED: EventRef<String> = EventRef::new("orderPlaced");
    /// const PLACE: CommandRef<String, u64> = CommandRef::new("shop", "1", "place").success_event(PLACED); // String ≠ u64
    /// ```
    pub const fn success_event(self, event: EventRef<O>) -> Self {
        Self {
            success_event: Some(event.name),
            ..self
        }
    }

    /// The service name.
    pub const fn service(&self) -> &'static str {
        self.service
    }

    /// The service version.
    pub const fn version(&self) -> &'static str {
        self.version
    }

    /// The command name.
    pub const fn command(&self) -> &'static str {
        self.command
    }

    /// The success event, if one was declared.
    pub const fn get_success_event(&self) -> Option<EventRef<O>> {
        match self.success_event {
            Some(name) => Some(EventRef::new(name)),
            None => None,
        }
    }

    /// The address (no instance); its names are the `'static` texts, not copies.
    pub fn address(&self) -> Address {
        Address::named(
            Name::from_static(self.service),
            Name::from_static(self.version),
            Name::from_static(self.command),
        )
    }
}

impl<I, O, P> Clone for CommandRef<I, O, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O, P> Copy for CommandRef<I, O, P> {}

impl<I, O, P> PartialEq for CommandRef<I, O, P> {
    fn eq(&self, other: &Self) -> bool {
        (self.service, self.version, self.command, self.success_event) == (other.service, other.version, other.command, other.success_event)
    }
}

impl<I, O, P> Eq for CommandRef<I, O, P> {}

impl<I, O, P> fmt::Display for CommandRef<I, O, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.service, self.version, self.command)
    }
}

impl<I, O, P> fmt::Debug for CommandRef<I, O, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandRef")
            .field("address", &format_args!("{self}"))
            .field("payload", &std::any::type_name::<I>())
            .field("output", &std::any::type_name::<O>())
            .field("params", &std::any::type_name::<P>())
            .field("success_event", &self.success_event)
            .finish()
    }
}

/// The name of an event together with its payload type `T`.
///
/// Use it where the event is emitted ([`Context::emit`](crate::Context::emit), or a command's
/// [`CommandRef::success_event`]) and where it is consumed
/// ([`Subscription::on`](crate::Subscription::on)); the compiler checks that both sides agree
/// on `T`.
///
/// ```
/// use purest_core::prelude::*;
/// const TICK: EventRef<u64> = EventRef::new("tick");
///
/// async fn ticker(ctx: Context) -> Result<(), HandledError> {
///     ctx.emit(TICK, 42u64).await
/// }
/// # let _ = Command::new("ticker", ticker);
/// ```
///
/// ```compile_fail,E0308
/// # use purest_core::prelude::*;
/// const TICK: EventRef<u64> = EventRef::new("tick");
/// async fn ticker(ctx: Context) -> Result<(), HandledError> {
///     ctx.emit(TICK, "42".to_owned()).await // a String, not a u64
/// }
/// ```
pub struct EventRef<T> {
    name: &'static str,
    payload: PhantomData<fn() -> T>,
}

impl<T> EventRef<T> {
    /// The event `name` carrying a `T`. The name is checked where it is used to register
    /// ([`Service::check`](crate::Service::check)): it may not be empty or contain whitespace.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            payload: PhantomData,
        }
    }

    /// The event name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for EventRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for EventRef<T> {}

impl<T> PartialEq for EventRef<T> {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl<T> Eq for EventRef<T> {}

impl<T> fmt::Display for EventRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl<T> fmt::Debug for EventRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRef")
            .field("name", &self.name)
            .field("payload", &std::any::type_name::<T>())
            .finish()
    }
}

impl<I, O, P> IntoTarget for CommandRef<I, O, P> {
    fn into_target(self) -> Result<Arc<Address>, HandledError> {
        Ok(self.address().shared())
    }
}

/// A command target that takes payload `I` and answers `O`: a [`CommandRef<I, O, _>`] for
/// exactly those types, and a string address (`"user/1/getUser"`, a `(service, version,
/// command)` tuple, an [`Address`]) for any types, since nothing is known about them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not take a payload of type `{I}` or does not answer `{O}`",
    label = "the payload or the expected output does not match this target",
    note = "a `CommandRef<I, O, P>` takes exactly the payload `I` and answers exactly `O`"
)]
pub trait TargetTypes<I, O>: IntoTarget {}

/// A command target that takes parameters `P`: a [`CommandRef<_, _, P>`] for exactly `P`, a
/// string address for any type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not take parameters of type `{P}`",
    label = "the parameters do not match this target",
    note = "a `CommandRef<I, O, P>` takes exactly the parameters `P`"
)]
pub trait TargetParams<P>: IntoTarget {}

impl<I, O, P> TargetTypes<I, O> for CommandRef<I, O, P> {}
impl<I, O, P> TargetParams<P> for CommandRef<I, O, P> {}

macro_rules! untyped_targets {
    ($($target:ty),*) => {$(
        impl<I, O> TargetTypes<I, O> for $target {}
        impl<P> TargetParams<P> for $target {}
    )*};
}
untyped_targets!(&'static str, String, Address, Arc<Address>);

impl<I, O, S: Into<Name>, V: Into<Name>, C: Into<Name>> TargetTypes<I, O> for (S, V, C) {}
impl<P, S: Into<Name>, V: Into<Name>, C: Into<Name>> TargetParams<P> for (S, V, C) {}

/// A payload the target `T` takes when it answers `O` (see [`TargetTypes`]); implemented for
/// every such type, never by hand. It lets [`Call::invoke`](crate::context::Call::invoke) keep
/// its one type parameter (the output) while the payload is checked against the target.
#[diagnostic::on_unimplemented(
    message = "the target `{T}` does not take a payload of type `{Self}` (or does not answer `{O}`)",
    label = "wrong payload type for this target",
    note = "a `CommandRef<I, O, P>` takes exactly the payload `I`; any target's payload must be `Serialize + Send + Sync + 'static`"
)]
pub trait PayloadFor<T, O>: Serialize + Send + Sync + 'static {}

impl<X, T, O> PayloadFor<T, O> for X
where
    T: TargetTypes<X, O>,
    X: Serialize + Send + Sync + 'static,
{
}

/// An event name under which a payload of type `X` may be emitted: an [`EventRef<X>`] for
/// exactly `X`; a string (anything that converts into a [`Name`]) for any type.
#[diagnostic::on_unimplemented(
    message = "the event `{Self}` does not carry a payload of type `{X}`",
    label = "wrong payload type for this event",
    note = "an `EventRef<T>` carries exactly `T`"
)]
pub trait IntoEvent<X> {
    /// The event name.
    fn into_event_name(self) -> Name;
}

impl<N: Into<Name>, X> IntoEvent<X> for N {
    fn into_event_name(self) -> Name {
        self.into()
    }
}

impl<T> IntoEvent<T> for EventRef<T> {
    fn into_event_name(self) -> Name {
        Name::from_static(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLACED: EventRef<u64> = EventRef::new("orderPlaced");
    const PLACE: CommandRef<String, u64, bool> = CommandRef::new("shop", "1", "place").success_event(PLACED);

    #[test]
    fn a_reference_knows_its_address_and_event_without_copying_names() {
        let place = PLACE;
        let address = place.address();
        assert_eq!(address.to_string(), "shop/1/place");
        assert_eq!(address.instance_id, None);
        assert!(
            std::ptr::eq(address.service_target.as_str(), place.command()),
            "the name should be the static text, not a copy"
        );
        assert_eq!(PLACE.get_success_event(), Some(PLACED));
        assert_eq!(CommandRef::<(), ()>::new("a", "1", "b").get_success_event(), None);
        assert_eq!(PLACED.into_event_name(), "orderPlaced");
        assert!(format!("{PLACE:?}").contains("alloc::string::String"));
    }
}
