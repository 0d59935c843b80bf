//! Getting WeChat's data in: follower sync jobs and message pushes (and,
//! later, sign-in). Everything written goes through the identity service.
//!
//! - [`sync`]: importing an official account's followers as a durable job;
//! - [`callback`]: WeChat's message-push callback: verifying the URL, and
//!   opening a push (signature, replay window, decryption, XML);
//! - [`push`]: applying the pushes that change an account, once each.

pub mod callback;
pub mod push;
pub mod sync;
