pub mod body;
pub mod envelope;
pub mod error;
pub mod id;
pub mod validation;
pub use body::Body;
pub use envelope::{Address, Envelope, Message};
pub use error::{BuildError, Error, HandledError, Result};
pub use id::Id;
