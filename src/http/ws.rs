//! GraphQL subscriptions over WebSocket: `GET /graphql/ws`, protocol
//! `graphql-transport-ws` (the `graphql-ws` library's, which GraphiQL,
//! Apollo Client and urql speak).
//!
//! The protocol is spoken here, message by message, so that every rule of
//! it holds and every connection is bounded:
//!
//! - the client has [`SubscriptionSettings::init_timeout`] to send
//!   `connection_init` (else close 4408); its payload carries the API key as
//!   `{"Authorization": "Bearer <key>"}` (a browser cannot set headers on a
//!   WebSocket); a missing or bad key closes with 4403, a second
//!   `connection_init` with 4429;
//! - `subscribe` before the acknowledgement closes with 4401, one reusing
//!   the id of a running subscription with 4409, a message that is not one
//!   of the protocol's with 4400;
//! - each `subscribe` costs one token of the key's rate limit, runs only
//!   subscription operations with exactly one root field (queries and
//!   mutations go to `POST /graphql`), is held to the document limits of
//!   any request, and an API key holds at most
//!   [`SubscriptionSettings::max_subscriptions`] at once in this instance,
//!   over all its connections (more get an `error` message with
//!   `LIMIT_EXCEEDED`): what one write costs its subscribers is bounded per
//!   key;
//! - the key is checked again every
//!   [`SubscriptionSettings::key_recheck`]: a revoked key's connection is
//!   closed (4403);
//! - every result is one request's worth of work (its rows and statements
//!   counted afresh), in query order, at most [`MAX_RESULT`] bytes; the
//!   results waiting to be sent hold at most [`OUTGOING_BYTES`] per
//!   connection;
//! - a subscriber that falls behind the event bus's buffer, or does not
//!   read a message within [`SubscriptionSettings::send_timeout`], is
//!   disconnected (close 1013, "try again later"), and so is every
//!   subscriber when events stop reaching this instance (the database
//!   connection that listens for them was lost): no connection holds
//!   events without bound, and none misses events without being told.
//!
//! Messages are capped at the body limit; the connection counts against
//! the server's connection caps for as long as it is open, and is closed
//! with 1001 ("going away") when the server shuts down. The server pings
//! every [`KEEPALIVE`] (a WebSocket ping, which browsers and clients answer
//! by themselves) and drops a peer that sent nothing since the last ping.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use async_graphql::{Data, ServerError, Variables};
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::auth::bearer_token;
use super::graphql::{count_errors, http_error, never_executed, serialize_within};
use crate::error::ErrorCode;
use crate::graphql::access::{self, Refused};
use crate::graphql::context::RequestContext;
use crate::graphql::error::code_if_missing;
use crate::graphql::events::Hangup;
use crate::graphql::limits::{Limits, Refusal};
use crate::graphql::node::RuntimeTypes;
use crate::graphql::{ApiSchema, operation, order};
use crate::keys::{AuthError, Keys, Principal};
use crate::settings::SubscriptionSettings;

/// The one protocol spoken.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// What the route needs.
#[derive(Clone)]
pub struct WsState {
    /// The schema subscriptions run on.
    pub schema: ApiSchema,
    /// API keys, to authenticate `connection_init`.
    pub keys: Keys,
    /// The connection's bounds.
    pub settings: SubscriptionSettings,
    /// The largest message taken.
    pub max_message: usize,
    /// The event bus, which must be listening before a connection is
    /// acknowledged.
    pub events: crate::events::Events,
    /// Subscriptions running, per API key.
    pub per_key: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    /// Set when the server shuts down: every connection is closed (1001).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl WsState {
    /// Counts one more subscription of `key`, unless it holds the most it may.
    fn hold(&self, key: &str) -> Option<Held> {
        let mut held = self.per_key.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(key.to_owned()).or_default();
        if *count >= self.settings.max_subscriptions {
            return None;
        }
        *count += 1;
        Some(Held {
            per_key: self.per_key.clone(),
            key: key.to_owned(),
        })
    }
}

/// One running subscription of a key, counted until dropped.
struct Held {
    per_key: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.per_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// `GET /graphql/ws`: upgrades to a `graphql-transport-ws` connection.
pub async fn upgrade(
    State(ws): State<WsState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let status = rejection.status();
            return http_error(
                &headers,
                status,
                ErrorCode::BadRequest,
                &format!(
                    "/graphql/ws is a WebSocket endpoint (subprotocol {PROTOCOL}): {}",
                    rejection.body_text()
                ),
            );
        }
    };
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);
    if !offered {
        return http_error(
            &headers,
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            &format!(
                "/graphql/ws speaks the {PROTOCOL} subprotocol only: ask for it in Sec-WebSocket-Protocol"
            ),
        );
    }
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(ws.max_message)
        .max_frame_size(ws.max_message)
        .on_upgrade(move |socket| Connection::new(ws).run(socket))
        .into_response()
}

/// A message from the client.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    Ping {
        #[serde(default)]
        payload: Option<Value>,
    },
    Pong {
        #[serde(default, rename = "payload")]
        _payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: SubscribePayload,
    },
    Complete {
        id: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribePayload {
    query: String,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<Map<String, Value>>,
}

/// What a subscription's task hands the connection to send.
struct Outgoing {
    id: String,
    /// Which subscription of that id (an id may be used again once free).
    seq: u64,
    text: String,
    /// The subscription's last message (`complete` or `error`).
    last: bool,
    /// Its share of the connection's [`OUTGOING_BYTES`], until sent.
    _bytes: OwnedSemaphorePermit,
}

/// Why the connection closes.
struct Close(u16, String);

/// The longest an id may be.
const MAX_ID: usize = 128;

/// How often the server pings; a peer silent for that long after a ping is
/// gone.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

/// Messages from subscriptions waiting to be sent, per connection.
const OUTGOING: usize = 64;

/// Bytes of results waiting to be sent, per connection.
pub const OUTGOING_BYTES: usize = 1 << 20;

/// The largest result of one event (a larger one is replaced by an error).
pub const MAX_RESULT: usize = 1 << 20;

/// How long a new connection waits for the event bus to listen.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// One connection's state.
struct Connection {
    ws: WsState,
    /// The key and who it is, once `connection_init` is accepted.
    caller: Option<(String, Principal)>,
    hangup: Hangup,
    /// Running subscriptions by id: which one, and its task.
    running: HashMap<String, (u64, JoinHandle<()>)>,
    next_seq: u64,
    outgoing: (mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>),
    budget: Arc<Semaphore>,
}

impl Connection {
    fn new(ws: WsState) -> Self {
        Self {
            ws,
            caller: None,
            hangup: Hangup::default(),
            running: HashMap::new(),
            next_seq: 0,
            outgoing: mpsc::channel(OUTGOING),
            budget: Arc::new(Semaphore::new(OUTGOING_BYTES)),
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let send_timeout = self.ws.settings.send_timeout();
        let init_deadline = tokio::time::sleep(self.ws.settings.init_timeout());
        tokio::pin!(init_deadline);
        let hangup = self.hangup.clone();
        let wanted = hangup.wanted();
        tokio::pin!(wanted);
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        let mut heard = true;
        let mut stopping = self.ws.stopping.clone();
        let stopping = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopping);
        let every = self.ws.settings.key_recheck();
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let close = loop {
            tokio::select! {
                () = &mut stopping => {
                    break Some(Close(1001, "the server is shutting down; connect again".to_owned()));
                }
                _ = recheck.tick(), if self.caller.is_some() => {
                    if let Err(close) = self.recheck().await {
                        break Some(close);
                    }
                }
                _ = keepalive.tick() => {
                    if !heard {
                        break None;
                    }
                    heard = false;
                    if !send(&mut sink, Message::Ping(Default::default()), send_timeout).await {
                        break None;
                    }
                }
                () = &mut init_deadline, if self.caller.is_none() => {
                    break Some(Close(4408, "Connection initialisation timeout".to_owned()));
                }
                reason = &mut wanted => {
                    metrics::counter!("union360_subscribers_dropped_total", "reason" => "slow").increment(1);
                    break Some(Close(1013, reason));
                }
                Some(out) = self.outgoing.1.recv() => {
                    // A subscription the client completed says no more,
                    // even when its id was used again since.
                    if self.running.get(&out.id).is_none_or(|(seq, _)| *seq != out.seq) {
                        continue;
                    }
                    if out.last {
                        self.running.remove(&out.id);
                    }
                    if !send(&mut sink, Message::Text(out.text.into()), send_timeout).await {
                        metrics::counter!("union360_subscribers_dropped_total", "reason" => "not_reading").increment(1);
                        break None;
                    }
                }
                message = stream.next() => {
                    heard = true;
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            break Some(Close(4400, "messages are JSON text".to_owned()));
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                    };
                    match self.handle(&text).await {
                        Ok(None) => {}
                        Ok(Some(reply)) => {
                            if !send(&mut sink, Message::Text(reply.into()), send_timeout).await {
                                break None;
                            }
                        }
                        Err(close) => break Some(close),
                    }
                }
            }
        };
        for (_, (_, task)) in self.running.drain() {
            task.abort();
        }
        if let Some(Close(code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from(truncate(&reason, 120)),
            };
            let _ = send(&mut sink, Message::Close(Some(frame)), send_timeout).await;
        }
    }

    /// Handles one client message: a reply to send, or why to close.
    async fn handle(&mut self, text: &str) -> Result<Option<String>, Close> {
        let message: ClientMessage = serde_json::from_str(text)
            .map_err(|e| Close(4400, format!("not a {PROTOCOL} message: {e}")))?;
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.caller.is_some() {
                    return Err(Close(4429, "Too many initialisation requests".to_owned()));
                }
                let caller = self.authenticate(payload.as_ref()).await?;
                // Acknowledged, a subscriber sees every event from now on.
                if !self.ws.events.ready(READY_WITHIN).await {
                    return Err(Close(
                        1013,
                        "live events are unavailable right now; try again later".to_owned(),
                    ));
                }
                self.caller = Some(caller);
                Ok(Some(json!({ "type": "connection_ack" }).to_string()))
            }
            ClientMessage::Ping { payload } => Ok(Some(
                match payload {
                    Some(payload) => json!({ "type": "pong", "payload": payload }),
                    None => json!({ "type": "pong" }),
                }
                .to_string(),
            )),
            ClientMessage::Pong { .. } => Ok(None),
            ClientMessage::Complete { id } => {
                if let Some((_, task)) = self.running.remove(&id) {
                    task.abort();
                }
                Ok(None)
            }
            ClientMessage::Subscribe { id, payload } => {
                let Some((_, caller)) = self.caller.clone() else {
                    return Err(Close(4401, "Unauthorized".to_owned()));
                };
                if id.is_empty() || id.len() > MAX_ID {
                    return Err(Close(
                        4400,
                        format!("a subscription id is 1 to {MAX_ID} bytes"),
                    ));
                }
                if self.running.get(&id).is_some_and(|(_, t)| !t.is_finished()) {
                    return Err(Close(4409, format!("Subscriber for {id} already exists")));
                }
                self.running.retain(|_, (_, task)| !task.is_finished());
                let Some(held) = self.ws.hold(&caller.key_id) else {
                    return Ok(Some(error_message(
                        &id,
                        &[Refusal::limit(format!(
                            "an API key holds at most {} subscriptions at once (UNION360_WS_MAX_SUBSCRIPTIONS)",
                            self.ws.settings.max_subscriptions
                        ))
                        .into()],
                    )));
                };
                if let Err(refused) = access::spend(&caller, 1, "subscriptions") {
                    let error = refused.into_server_error(async_graphql::Pos::default());
                    return Ok(Some(error_message(&id, &[error])));
                }
                self.next_seq += 1;
                let seq = self.next_seq;
                match self.start(&id, seq, payload, caller, held) {
                    Ok(task) => {
                        self.running.insert(id, (seq, task));
                        Ok(None)
                    }
                    Err(errors) => Ok(Some(error_message(&id, &errors))),
                }
            }
        }
    }

    /// Checks the connection's key again: closes when it was revoked.
    async fn recheck(&mut self) -> Result<(), Close> {
        let Some((token, _)) = &self.caller else {
            return Ok(());
        };
        match self.ws.keys.authenticate(token).await {
            Ok(principal) => {
                self.caller = Some((token.clone(), principal));
                Ok(())
            }
            // The database is down: the key stays as it was checked.
            Err(AuthError::Db(e)) => {
                tracing::warn!(error = %e, "could not check a subscriber's API key again");
                Ok(())
            }
            Err(e) => Err(Close(4403, format!("Forbidden: {e}"))),
        }
    }

    /// The caller the `connection_init` payload names, or why to close.
    async fn authenticate(&self, payload: Option<&Value>) -> Result<(String, Principal), Close> {
        let authorization = payload
            .and_then(Value::as_object)
            .and_then(|p| {
                p.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                    .map(|(_, v)| v)
            })
            .and_then(Value::as_str)
            .unwrap_or_default();
        let token = bearer_token(authorization);
        match self.ws.keys.authenticate(token).await {
            Ok(principal) => Ok((token.to_owned(), principal)),
            Err(AuthError::Db(e)) => {
                tracing::error!(error = %e, "could not read the API key table");
                Err(Close(4500, "internal error".to_owned()))
            }
            Err(e) => {
                let why = if token.is_empty() {
                    format!(
                        "Forbidden: connection_init must carry {{\"Authorization\": \"Bearer <API key>\"}} ({e})"
                    )
                } else {
                    format!("Forbidden: {e}")
                };
                Err(Close(4403, why))
            }
        }
    }

    /// Starts subscription `id`, or says why it cannot run.
    fn start(
        &self,
        id: &str,
        seq: u64,
        payload: SubscribePayload,
        caller: Principal,
        held: Held,
    ) -> Result<JoinHandle<()>, Vec<ServerError>> {
        let schema = self.ws.schema.clone();
        let limits = Limits::of(&schema);
        let document = limits.parse(&payload.query).map_err(|e| vec![e])?;
        let name = payload.operation_name;
        let selected = operation::selected(&document, name.as_deref()).ok_or_else(|| {
            vec![
                Refusal::invalid(match &name {
                    Some(name) => format!("the document has no operation named `{name}`"),
                    None => "the document holds several operations: name one in operationName"
                        .to_owned(),
                })
                .into(),
            ]
        })?;
        if selected.node.ty != OperationType::Subscription {
            return Err(vec![bad_request(
                "/graphql/ws runs subscriptions only; send queries and mutations to POST /graphql",
            )]);
        }
        operation::check_single_root_field(selected).map_err(|e| vec![e])?;
        let variables = payload
            .variables
            .map(|v| Variables::from_json(Value::Object(v)))
            .unwrap_or_default();
        operation::check_variables(&selected.node, &variables)?;
        let types = Arc::new(RuntimeTypes::default());
        let context = RequestContext::new(limits.max_rows(), limits.max_statements());
        let renewal = context.renewal();
        let statements = context.statements();
        let ordered_by = document.clone();
        let mut request = async_graphql::Request::new(payload.query)
            .data(Refused::new(limits.max_errors()))
            .data(types.clone())
            .data(context)
            .variables(variables.clone());
        request.set_parsed_query(document);
        if let Some(name) = &name {
            request = request.operation_name(name);
        }
        let mut session = Data::default();
        session.insert(caller);
        session.insert(self.hangup.clone());
        let out = Sender {
            to: self.outgoing.0.clone(),
            budget: self.budget.clone(),
            id: id.to_owned(),
            seq,
        };
        let id = id.to_owned();
        let max_result = limits.max_response_bytes().min(MAX_RESULT);
        Ok(tokio::spawn(async move {
            let _active = Active::new();
            let _held = held;
            let mut results = schema.execute_stream_with_session_data(request, Arc::new(session));
            let mut first = true;
            loop {
                let next = crate::store::counting_statements(statements.clone(), results.next());
                let Some(mut response) = next.await else {
                    break;
                };
                renewal.renew();
                // Refused before it ran (validation, say): an `error`
                // message, and nothing more.
                let never_ran = first && never_executed(&response);
                first = false;
                if never_ran {
                    let mut errors = response.errors;
                    operation::code_variable_errors(&mut errors, &ordered_by);
                    count_errors(&errors);
                    out.send(error_message(&id, &errors), true).await;
                    return;
                }
                limits.cap_errors(&mut response.errors);
                count_errors(&response.errors);
                order::in_query_order(
                    &mut response.data,
                    &ordered_by,
                    name.as_deref(),
                    &variables,
                    &types,
                );
                let message = NextMessage {
                    id: &id,
                    kind: "next",
                    payload: &response,
                };
                let text = serialize_within(&message, max_result).unwrap_or_else(|| {
                    let error: ServerError = Refusal::limit(format!(
                        "the result of one event would be larger than {max_result} bytes"
                    ))
                    .into();
                    let response = async_graphql::Response::from_errors(vec![error]);
                    serde_json::to_string(&NextMessage {
                        id: &id,
                        kind: "next",
                        payload: &response,
                    })
                    .unwrap_or_default()
                });
                if !out.send(text, false).await {
                    return;
                }
            }
            out.send(json!({ "type": "complete", "id": id }).to_string(), true)
                .await;
        }))
    }
}

/// Where a subscription's task hands its messages to the connection.
struct Sender {
    to: mpsc::Sender<Outgoing>,
    budget: Arc<Semaphore>,
    id: String,
    seq: u64,
}

impl Sender {
    /// Waits for room, then queues `text`; whether the connection takes it.
    async fn send(&self, text: String, last: bool) -> bool {
        let bytes = u32::try_from(text.len().clamp(1, OUTGOING_BYTES)).unwrap_or(u32::MAX);
        let Ok(permit) = self.budget.clone().acquire_many_owned(bytes).await else {
            return false;
        };
        self.to
            .send(Outgoing {
                id: self.id.clone(),
                seq: self.seq,
                text,
                last,
                _bytes: permit,
            })
            .await
            .is_ok()
    }
}

/// A `next` message, serialised with the result's keys in their order.
#[derive(serde::Serialize)]
struct NextMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    payload: &'a async_graphql::Response,
}

/// Counts a running subscription while it lives.
struct Active;

impl Active {
    fn new() -> Self {
        metrics::gauge!("union360_subscriptions_active").increment(1.0);
        Self
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        metrics::gauge!("union360_subscriptions_active").decrement(1.0);
    }
}

/// An `error` message for subscription `id` (each error's message first).
fn error_message(id: &str, errors: &[ServerError]) -> String {
    #[derive(serde::Serialize)]
    struct ErrorMessage<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
        payload: &'a [ServerError],
    }
    serde_json::to_string(&ErrorMessage {
        id,
        kind: "error",
        payload: errors,
    })
    .unwrap_or_default()
}

/// A request error with `BAD_REQUEST`.
fn bad_request(message: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    code_if_missing(&mut error, ErrorCode::BadRequest);
    error
}

/// Sends `message` unless the client does not take it within `within`;
/// whether it was sent.
async fn send(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    message: Message,
    within: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(within, sink.send(message)).await,
        Ok(Ok(()))
    )
}

/// `text` cut to at most `max` bytes, at a character boundary (a close
/// frame's reason is at most 123 bytes).
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
