//! WeChat: the typed API client and the message-push crypto.
//!
//! - [`client`]: endpoints, retries, the 40003 isolation of `batchget`, follower pages;
//! - [`token`]: the shared, single-flight access-token cache;
//! - [`breaker`]: quota breakers (45009, 45011);
//! - [`error`]: the error taxonomy callers act on;
//! - [`types`], [`lenient`]: responses, decoded leniently where WeChat is sloppy.

pub mod breaker;
pub mod client;
pub mod error;
pub mod lenient;
pub mod token;
pub mod types;

pub use client::{BatchOutcome, ClientConfig, RetryPolicy, WechatClient};
pub use error::{ErrorClass, WechatError};
pub use token::{AppCredentials, TokenEndpoint, TokenStore};
