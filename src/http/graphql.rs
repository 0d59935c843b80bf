//! GraphQL over HTTP, as the GraphQL-over-HTTP specification says.
//!
//! The stock async-graphql axum service falls short of the specification
//! in ways clients notice, so this module speaks the protocol itself and
//! leaves only execution to async-graphql:
//!
//! - the response media type follows `Accept`: `application/graphql-response+json`
//!   when asked for, `application/json` when asked for, for `*/*` or when
//!   `Accept` is absent; anything else gets 406;
//! - request errors (body not JSON, bad parameters, a document that does not
//!   parse or validate) are 400 without a `data` entry under
//!   `application/graphql-response+json`, and 200 with `errors` under
//!   `application/json`, as the specification asks for legacy clients;
//! - `GET` honours `operationName` and `variables`, and refuses mutations
//!   with 405 (`Allow: POST`): a GET must never change anything;
//! - `POST` bodies must be `application/json` (UTF-8), else 415;
//! - the document is measured before any parser reads it, parsed once and
//!   measured again ([`crate::graphql::limits`]); over a limit it is a
//!   request error with `extensions.code = LIMIT_EXCEEDED`.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::parser::types::OperationType;
use async_graphql::{ServerError, Variables};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::json::{self, StrictJsonError};
use super::playground;
use crate::error::ErrorCode;
use crate::graphql::ApiSchema;
use crate::graphql::access::Refused;
use crate::graphql::limits::{Limits, Refusal};
use crate::graphql::node::RuntimeTypes;
use crate::graphql::persisted::{PersistedError, PersistedQueries};
use crate::graphql::{operation, order};
use crate::keys::Principal;
use crate::metrics::{self, Outcome};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// The response media type a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Media {
    GraphqlResponseJson,
    Json,
}

impl Media {
    fn content_type(self) -> &'static str {
        match self {
            Self::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
            Self::Json => JSON,
        }
    }

    /// The status of a request error under this media type.
    fn request_error_status(self) -> StatusCode {
        match self {
            Self::GraphqlResponseJson => StatusCode::BAD_REQUEST,
            Self::Json => StatusCode::OK,
        }
    }
}

/// What `Accept` asks for, by preference.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Negotiated {
    Media(Media),
    Html,
    NotAcceptable,
}

/// Picks the response type from an `Accept` header (quality values honoured;
/// ties go to the first listed).
pub(super) fn negotiate(accept: Option<&str>, html_allowed: bool) -> Negotiated {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Negotiated::Media(Media::Json);
    };
    let mut best: Option<(f32, Negotiated)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        let choice = match media.as_str() {
            "application/graphql-response+json" => Negotiated::Media(Media::GraphqlResponseJson),
            "application/json" | "*/*" | "application/*" => Negotiated::Media(Media::Json),
            "text/html" if html_allowed => Negotiated::Html,
            _ => continue,
        };
        if best.as_ref().is_none_or(|(bq, _)| q > *bq) {
            best = Some((q, choice));
        }
    }
    best.map_or(Negotiated::NotAcceptable, |(_, choice)| choice)
}

fn accept_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

pub(super) fn body(media: Media, status: StatusCode, value: &impl serde::Serialize) -> Response {
    // Serialised directly (not through `serde_json::Value`) so that fields keep
    // the order of the query, as GraphQL asks.
    let text = match serde_json::to_string(value) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "could not serialise a GraphQL response");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, JSON)],
                r#"{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}"#,
            )
                .into_response();
        }
    };
    text_body(media, status, text)
}

/// A serialised answer of `media`.
fn text_body(media: Media, status: StatusCode, text: String) -> Response {
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    response
}

/// An error answer: no `data` entry, one error with a code.
fn error_body(media: Media, status: StatusCode, code: ErrorCode, message: &str) -> Response {
    metrics::graphql_errors([Some(code.as_str())]);
    body(
        media,
        status,
        &json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] }),
    )
}

/// A request error: no `data` entry, one error with a code.
fn request_error(media: Media, message: &str) -> Response {
    error_body(
        media,
        media.request_error_status(),
        ErrorCode::BadRequest,
        message,
    )
}

/// An error answer of the HTTP layer in the GraphQL shape, as
/// `application/graphql-response+json` when the client asks for it and as
/// `application/json` otherwise (even when it accepts neither: a 406 must
/// still say why).
pub(super) fn http_error(
    headers: &HeaderMap,
    status: StatusCode,
    code: ErrorCode,
    message: &str,
) -> Response {
    let media = match negotiate(accept_header(headers), false) {
        Negotiated::Media(media) => media,
        Negotiated::Html | Negotiated::NotAcceptable => Media::Json,
    };
    error_body(media, status, code, message)
}

fn not_acceptable(headers: &HeaderMap) -> Response {
    http_error(
        headers,
        StatusCode::NOT_ACCEPTABLE,
        ErrorCode::BadRequest,
        "union360 answers GraphQL as application/graphql-response+json or application/json",
    )
}

/// The parameters of one GraphQL request, validated.
struct Params {
    /// Absent when the request names a persisted query by its hash.
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<Map<String, Value>>,
    extensions: Option<Map<String, Value>>,
}

impl Params {
    /// Reads parameters from a JSON object (a POST body, or GET parameters
    /// with `variables`/`extensions` already decoded).
    fn from_json(value: Value) -> Result<Self, String> {
        let Value::Object(mut map) = value else {
            return Err("the request body must be a JSON object".to_owned());
        };
        let query = match map.remove("query") {
            Some(Value::String(q)) => Some(q),
            None => None,
            Some(_) => return Err("`query` must be a string".to_owned()),
        };
        let operation_name = match map.remove("operationName") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err("`operationName` must be a string or null".to_owned()),
        };
        let object = |name: &str, v: Option<Value>| match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(format!("`{name}` must be an object or null")),
        };
        let variables = object("variables", map.remove("variables"))?;
        let extensions = object("extensions", map.remove("extensions"))?;
        Ok(Self {
            query,
            operation_name,
            variables,
            extensions,
        })
    }

    /// Reads parameters from a GET query string.
    fn from_query_string(raw: Option<&str>) -> Result<Self, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
            .map_err(|_| "the query string is not valid URL encoding".to_owned())?;
        let mut map = Map::new();
        for (key, value) in pairs {
            let value = match key.as_str() {
                "variables" | "extensions" => match json::parse(value.as_bytes()) {
                    Ok(value) => value,
                    Err(StrictJsonError::DuplicateKey(name)) => {
                        return Err(format!(
                            "`{key}` names the key `{name}` twice in one object"
                        ));
                    }
                    Err(StrictJsonError::Syntax) => {
                        return Err(format!("`{key}` must be a URL-encoded JSON object"));
                    }
                },
                _ => Value::String(value),
            };
            map.insert(key, value);
        }
        Self::from_json(Value::Object(map))
    }
}

/// `GET /graphql`: the playground for browsers, queries for everyone else.
pub async fn get(
    State(schema): State<ApiSchema>,
    caller: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut response = match negotiate(accept_header(&headers), true) {
        Negotiated::Html => playground::page(),
        Negotiated::NotAcceptable => not_acceptable(&headers),
        Negotiated::Media(media) => match Params::from_query_string(raw.as_deref()) {
            Ok(params) => execute(&schema, media, params, true, caller).await,
            Err(message) => request_error(media, &message),
        },
    };
    // The same URL answers HTML or JSON depending on Accept: caches must know.
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

/// `POST /graphql`: a JSON-encoded GraphQL request.
pub async fn post(
    State(schema): State<ApiSchema>,
    caller: Option<Extension<Principal>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !is_json_utf8(content_type) {
        return http_error(
            &headers,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            "POST /graphql takes a JSON body: Content-Type: application/json",
        );
    }
    let media = match negotiate(accept_header(&headers), false) {
        Negotiated::Media(media) => media,
        _ => return not_acceptable(&headers),
    };
    let value: Value = match json::parse(&bytes) {
        Ok(value) => value,
        Err(StrictJsonError::DuplicateKey(name)) => {
            return request_error(
                media,
                &format!("the request body names the key `{name}` twice in one object"),
            );
        }
        // A body that is not JSON is a 400 whatever the media type.
        Err(StrictJsonError::Syntax) => {
            return error_body(
                media,
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "the request body is not valid JSON",
            );
        }
    };
    match Params::from_json(value) {
        Ok(params) => execute(&schema, media, params, false, caller).await,
        Err(message) => request_error(media, &message),
    }
}

/// `application/json`, with no charset or charset UTF-8.
fn is_json_utf8(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|p| {
        let p = p.trim().to_ascii_lowercase();
        match p.strip_prefix("charset=") {
            Some(charset) => matches!(charset.trim_matches('"'), "utf-8" | "utf8"),
            None => true,
        }
    })
}

/// Counts one GraphQL request when it is dropped, however it ended (an
/// error answer unless [`Self::outcome`] was set; a client that went away
/// counts as one too).
struct OperationMetrics {
    started: Instant,
    name: Option<String>,
    kind: Option<&'static str>,
    outcome: Outcome,
}

impl OperationMetrics {
    fn start() -> Self {
        Self {
            started: Instant::now(),
            name: None,
            kind: None,
            outcome: Outcome::Error,
        }
    }
}

impl Drop for OperationMetrics {
    fn drop(&mut self) {
        metrics::graphql_operation(
            self.name.as_deref(),
            self.kind,
            self.outcome,
            self.started.elapsed(),
        );
    }
}

async fn execute(
    schema: &ApiSchema,
    media: Media,
    params: Params,
    is_get: bool,
    caller: Option<Extension<Principal>>,
) -> Response {
    let mut counted = OperationMetrics::start();
    let limits = Limits::of(schema);
    let persisted = schema
        .data::<PersistedQueries>()
        .cloned()
        .unwrap_or_default();
    let asked = match persisted.resolve(params.query, params.extensions.as_ref()) {
        Ok(Some(asked)) => asked,
        Ok(None) => return request_error(media, "the `query` parameter is missing"),
        // Apollo's clients send the document on this answer, a 200.
        Err(e @ PersistedError::NotFound) => {
            return error_body(
                media,
                StatusCode::OK,
                ErrorCode::PersistedQueryNotFound,
                &e.to_string(),
            );
        }
        Err(e) => return request_error(media, &e.to_string()),
    };
    // Measured before and after parsing; parsed once, here.
    let document = match limits.parse(&asked.query) {
        Ok(document) => document,
        Err(error) => return request_errors(media, vec![error]),
    };
    let selected = operation::selected(&document, params.operation_name.as_deref());
    if let Some(selected) = selected {
        counted.kind = Some(match selected.node.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        });
        counted.name = params.operation_name.clone().or_else(|| {
            document
                .operations
                .iter()
                .find_map(|(name, _)| name.map(ToString::to_string))
        });
    }
    if is_get && selected.is_some_and(|op| op.node.ty == OperationType::Mutation) {
        let mut response = error_body(
            media,
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "mutations must be sent with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if selected.is_some_and(|op| op.node.ty == OperationType::Subscription) {
        return request_error(
            media,
            "subscriptions run over WebSocket: GET /graphql/ws, subprotocol graphql-transport-ws",
        );
    }
    let variables = params
        .variables
        .map(|v| Variables::from_json(Value::Object(v)))
        .unwrap_or_default();
    if let Some(selected) = selected
        && let Err(errors) = operation::check_variables(&selected.node, &variables)
    {
        return request_errors(media, errors);
    }

    // The text is kept only to be stored under its hash.
    let to_keep = asked.to_keep.map(|hash| (hash, asked.query.clone()));
    let types = Arc::new(RuntimeTypes::default());
    let mut request = async_graphql::Request::new(asked.query)
        .data(Refused::new(limits.max_errors()))
        .data(types.clone())
        .variables(variables.clone());
    if let Some(Extension(caller)) = caller {
        request = request.data(caller);
    }
    // Kept to put the answer's keys in query order.
    let ordered_by = document.clone();
    request.set_parsed_query(document);
    if let Some(name) = &params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(extensions) = params.extensions {
        for (key, value) in extensions {
            if let Ok(value) = async_graphql::Value::from_json(value) {
                request.extensions.insert(key, value);
            }
        }
    }
    let mut response = match limits.execute(schema, request).await {
        Ok(response) => response,
        // It ran, and was stopped: an execution result without data.
        Err(error) => {
            count_errors(std::slice::from_ref(&error));
            return body(
                media,
                StatusCode::OK,
                &async_graphql::Response::from_errors(vec![error]),
            );
        }
    };
    if never_executed(&response) {
        let mut errors = response.errors;
        operation::code_variable_errors(&mut errors, &ordered_by);
        return request_errors(media, errors);
    }
    // A document is kept by its hash once it has passed validation.
    if let Some((hash, query)) = to_keep {
        persisted.keep(hash, &query);
    }
    count_errors(&response.errors);
    counted.outcome = match (&response.data, response.errors.is_empty()) {
        (async_graphql::Value::Null, _) => Outcome::Error,
        (_, true) => Outcome::Ok,
        (_, false) => Outcome::Partial,
    };
    order::in_query_order(
        &mut response.data,
        &ordered_by,
        params.operation_name.as_deref(),
        &variables,
        &types,
    );
    let max = limits.max_response_bytes();
    match serialize_within(&response, max) {
        Some(text) => text_body(media, StatusCode::OK, text),
        None => {
            let error: ServerError = Refusal::limit(format!(
                "the response would be larger than {max} bytes (UNION360_MAX_RESPONSE_BYTES)"
            ))
            .into();
            count_errors(std::slice::from_ref(&error));
            counted.outcome = Outcome::Error;
            body(
                media,
                StatusCode::OK,
                &async_graphql::Response::from_errors(vec![error]),
            )
        }
    }
}

/// Whether `response` never started executing: no data, and errors that
/// carry no path (the document did not validate, a variable did not
/// coerce, or a limit was exceeded). That is a request error.
pub(super) fn never_executed(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// `value` as JSON, or `None` when it would pass `max` bytes (serialisation
/// stops there: an oversized answer is never held whole).
pub(super) fn serialize_within(value: &impl serde::Serialize, max: usize) -> Option<String> {
    struct Capped {
        buf: Vec<u8>,
        max: usize,
    }
    impl std::io::Write for Capped {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.buf.len() + bytes.len() > self.max {
                return Err(std::io::Error::other("response too large"));
            }
            self.buf.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped {
        buf: Vec::new(),
        max,
    };
    serde_json::to_writer(&mut out, value).ok()?;
    String::from_utf8(out.buf).ok()
}

/// Counts `errors` in the metrics, by code.
pub(super) fn count_errors(errors: &[ServerError]) {
    metrics::graphql_errors(errors.iter().map(|error| {
        match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(async_graphql::Value::String(code)) => Some(code.as_str()),
            _ => None,
        }
    }));
}

/// A request error made of `errors` (which carry their codes).
fn request_errors(media: Media, errors: Vec<ServerError>) -> Response {
    /// Serialised as a struct, so each error's message comes first.
    #[derive(serde::Serialize)]
    struct Errors {
        errors: Vec<ServerError>,
    }
    count_errors(&errors);
    body(media, media.request_error_status(), &Errors { errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation_follows_the_specification() {
        use Media::*;
        assert_eq!(negotiate(None, true), Negotiated::Media(Json));
        assert_eq!(negotiate(Some("*/*"), true), Negotiated::Media(Json));
        assert_eq!(
            negotiate(Some("application/graphql-response+json"), false),
            Negotiated::Media(GraphqlResponseJson)
        );
        assert_eq!(
            negotiate(
                Some("application/graphql-response+json, application/json;q=0.9"),
                false
            ),
            Negotiated::Media(GraphqlResponseJson)
        );
        assert_eq!(
            negotiate(
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                true
            ),
            Negotiated::Html
        );
        assert_eq!(
            negotiate(Some("text/html"), false),
            Negotiated::NotAcceptable
        );
        assert_eq!(
            negotiate(Some("image/png"), true),
            Negotiated::NotAcceptable
        );
    }

    #[test]
    fn only_utf8_json_bodies_are_accepted() {
        assert!(is_json_utf8("application/json"));
        assert!(is_json_utf8("application/json; charset=utf-8"));
        assert!(is_json_utf8("Application/JSON;charset=UTF-8"));
        assert!(!is_json_utf8("application/json; charset=latin1"));
        assert!(!is_json_utf8("text/plain"));
        assert!(!is_json_utf8(""));
    }

    #[test]
    fn params_refuse_wrongly_typed_fields() {
        assert!(Params::from_json(json!({"query": "{a}"})).is_ok());
        assert!(Params::from_json(json!({"query": 0})).is_err());
        // No query: a persisted query's hash may stand for it (else the
        // request is refused when it runs).
        assert!(
            Params::from_json(json!({"qeury": "{a}"}))
                .unwrap()
                .query
                .is_none()
        );
        assert!(Params::from_json(json!({"query": "{a}", "variables": "x"})).is_err());
        assert!(Params::from_json(json!({"query": "{a}", "operationName": false})).is_err());
        assert!(Params::from_json(json!({"query": "{a}", "extensions": []})).is_err());
        assert!(Params::from_json(json!(["array"])).is_err());
    }
}
