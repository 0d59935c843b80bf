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
//!   subscription operations (queries and mutations go to `POST /graphql`),
//!   is held to the document limits of any request, and a connection holds
//!   at most [`SubscriptionSettings::max_subscriptions`] at once (more get
//!   an `error` message with `LIMIT_EXCEEDED`);
//! - every result is one request's worth of work (its rows and statements
//!   counted afresh), in query order, at most the response size limit;
//! - a subscriber that falls behind the event bus's buffer, or does not
//!   read a message within [`SubscriptionSettings::send_timeout`], is
//!   disconnected (close 1013, "try again later"): no connection holds
//!   events without bound.
//!
//! Messages are capped at the body limit; the connection counts against
//! the server's connection caps for as long as it is open. The server pings
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
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::auth::bearer_token;
use super::graphql::{count_errors, http_error, serialize_within};
use crate::error::ErrorCode;
use crate::graphql::access::{self, Refused};
use crate::graphql::context::RequestContext;
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
    text: String,
    /// The subscription's last message (`complete` or `error`).
    last: bool,
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

/// One connection's state.
struct Connection {
    ws: WsState,
    caller: Option<Principal>,
    hangup: Hangup,
    running: HashMap<String, JoinHandle<()>>,
    outgoing: (mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>),
}

impl Connection {
    fn new(ws: WsState) -> Self {
        Self {
            ws,
            caller: None,
            hangup: Hangup::default(),
            running: HashMap::new(),
            outgoing: mpsc::channel(OUTGOING),
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
        let close = loop {
            tokio::select! {
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
                    // A subscription the client completed says no more.
                    if !self.running.contains_key(&out.id) {
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
        for (_, task) in self.running.drain() {
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
                if let Some(task) = self.running.remove(&id) {
                    task.abort();
                }
                Ok(None)
            }
            ClientMessage::Subscribe { id, payload } => {
                let Some(caller) = self.caller.clone() else {
                    return Err(Close(4401, "Unauthorized".to_owned()));
                };
                if id.is_empty() || id.len() > MAX_ID {
                    return Err(Close(
                        4400,
                        format!("a subscription id is 1 to {MAX_ID} bytes"),
                    ));
                }
                if self.running.get(&id).is_some_and(|t| !t.is_finished()) {
                    return Err(Close(4409, format!("Subscriber for {id} already exists")));
                }
                self.running.remove(&id);
                if self.running.len() >= self.ws.settings.max_subscriptions {
                    return Ok(Some(error_message(
                        &id,
                        &[Refusal::limit(format!(
                            "a connection holds at most {} subscriptions (UNION360_WS_MAX_SUBSCRIPTIONS)",
                            self.ws.settings.max_subscriptions
                        ))
                        .into()],
                    )));
                }
                if let Err(refused) = access::spend(&caller, 1, "subscriptions") {
                    let error = refused.into_server_error(async_graphql::Pos::default());
                    return Ok(Some(error_message(&id, &[error])));
                }
                match self.start(&id, payload, caller) {
                    Ok(task) => {
                        self.running.insert(id, task);
                        Ok(None)
                    }
                    Err(errors) => Ok(Some(error_message(&id, &errors))),
                }
            }
        }
    }

    /// The caller the `connection_init` payload names, or why to close.
    async fn authenticate(&self, payload: Option<&Value>) -> Result<Principal, Close> {
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
            Ok(principal) => Ok(principal),
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
        payload: SubscribePayload,
        caller: Principal,
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
        let out = self.outgoing.0.clone();
        let id = id.to_owned();
        Ok(tokio::spawn(async move {
            let _active = Active::new();
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
                let never_ran = first
                    && response.data == async_graphql::Value::Null
                    && !response.errors.is_empty()
                    && response.errors.iter().all(|e| e.path.is_empty());
                first = false;
                if never_ran {
                    let mut errors = response.errors;
                    operation::code_variable_errors(&mut errors, &ordered_by);
                    count_errors(&errors);
                    let _ = out
                        .send(Outgoing {
                            text: error_message(&id, &errors),
                            id,
                            last: true,
                        })
                        .await;
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
                let text = serialize_within(&message, limits.max_response_bytes())
                    .unwrap_or_else(|| {
                        let error: ServerError = Refusal::limit(format!(
                            "the result would be larger than {} bytes (UNION360_MAX_RESPONSE_BYTES)",
                            limits.max_response_bytes()
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
                let sent = out
                    .send(Outgoing {
                        id: id.clone(),
                        text,
                        last: false,
                    })
                    .await;
                if sent.is_err() {
                    return;
                }
            }
            let _ = out
                .send(Outgoing {
                    text: json!({ "type": "complete", "id": id }).to_string(),
                    id,
                    last: true,
                })
                .await;
        }))
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

/// An `error` message for subscription `id`.
fn error_message(id: &str, errors: &[ServerError]) -> String {
    json!({ "type": "error", "id": id, "payload": errors }).to_string()
}

/// A request error with `BAD_REQUEST`.
fn bad_request(message: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", ErrorCode::BadRequest.as_str());
    error.extensions = Some(extensions);
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
