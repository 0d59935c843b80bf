//! Getting WeChat's data in: follower sync jobs (and, later, message pushes
//! and sign-in). Everything written goes through the identity service.
//!
//! - [`sync`]: importing an official account's followers as a durable job;
//! - [`callback`]: WeChat's verification of the message-push callback URL.

pub mod callback;
pub mod sync;
