//! Getting WeChat's data in: follower sync jobs, message pushes and
//! sign-in. Everything written goes through the identity service.
//!
//! - [`sync`]: importing an official account's followers as a durable job;
//! - [`callback`]: WeChat's message-push callback: verifying the URL, and
//!   opening a push (signature, replay window, decryption, XML);
//! - [`push`]: applying the pushes that change an account, once each;
//! - [`signin`]: exchanging sign-in codes.

pub mod callback;
pub mod push;
pub mod signin;
pub mod sync;
