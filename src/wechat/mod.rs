//! Everything union360 speaks with WeChat that is not a database concern.
//!
//! For now this is the server callback ([`callback`]): the signatures and the
//! safe-mode cipher of the message push, and the XML bodies it carries.

pub mod callback;
