//! The per-request context of a GraphQL request, and how resolvers reach
//! the application state.
//!
//! [`RequestContext`] lives as long as one request: its copy of the apps
//! (read once, from the process's in-memory copy; once per event of a
//! subscription), its refresh [`Round`],
//! its refresh deadline, and the rows it has read and the SQL statements it
//! has run against their limits. [`ContextExt`] gives resolvers the application state
//! and the request context with coded errors, never a bare `ctx.data()?`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use async_graphql::{Context, ErrorExtensions, ServerResult, Value};
use entity::app;
use sea_orm::DbErr;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::error::{ApiError, ApiResult};
use super::round::{self, Round, Ticket};
use crate::apps::{Apps, AppsById};
use crate::state::AppState;
use crate::store::StatementCounter;

/// What one GraphQL request shares between its resolvers.
pub struct RequestContext {
    apps: SeenApps,
    round: Arc<Round>,
    deadline: OnceLock<Instant>,
    rows: Arc<AtomicUsize>,
    max_rows: usize,
    statements: StatementCounter,
    max_statements: u64,
}

impl Default for RequestContext {
    /// A context with the default limits.
    fn default() -> Self {
        use crate::settings::{DEFAULT_MAX_ROWS, DEFAULT_MAX_STATEMENTS};
        Self::new(DEFAULT_MAX_ROWS, DEFAULT_MAX_STATEMENTS)
    }
}

impl RequestContext {
    /// A context for a request that may read at most `max_rows` rows and
    /// run at most `max_statements` SQL statements.
    pub fn new(max_rows: usize, max_statements: u64) -> Self {
        Self {
            apps: SeenApps::default(),
            round: Arc::default(),
            deadline: OnceLock::new(),
            rows: Arc::default(),
            max_rows,
            statements: StatementCounter::default(),
            max_statements,
        }
    }

    /// The counter of the request's SQL statements, for the request's
    /// execution to count into ([`crate::store::counting_statements`]).
    pub fn statements(&self) -> StatementCounter {
        self.statements.clone()
    }

    /// What starts the next result of a subscription afresh (each event is
    /// held to the limits of one request, and sees the apps as they are).
    pub fn renewal(&self) -> Renewal {
        Renewal {
            apps: self.apps.clone(),
            rows: self.rows.clone(),
            statements: self.statements.clone(),
        }
    }

    /// Fails with `LIMIT_EXCEEDED` once the request has run its share of
    /// SQL statements.
    pub fn check_statements(&self) -> ApiResult<()> {
        if self.statements.get() >= self.max_statements {
            return Err(ApiError::LimitExceeded(format!(
                "the request ran {} SQL statements, its limit (UNION360_MAX_STATEMENTS)",
                self.max_statements
            ))
            .extend());
        }
        Ok(())
    }

    /// Counts `n` more rows read by the request; fails with
    /// `LIMIT_EXCEEDED` once the request has read more than its limit (the
    /// list that passes it is not served, nor any after it).
    pub fn read_rows(&self, n: usize) -> ApiResult<()> {
        let before = self.rows.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.max_rows {
            return Err(ApiError::LimitExceeded(format!(
                "the request reads more than {} rows (UNION360_MAX_ROWS); ask for smaller pages or fewer lists",
                self.max_rows
            ))
            .extend());
        }
        Ok(())
    }

    /// Every app by id, as the request (or the subscription's event) first
    /// saw them (from the process's in-memory copy).
    pub async fn apps(&self, apps: &Apps) -> Result<Arc<AppsById>, DbErr> {
        // Resolvers asking at once wait for one read.
        let cell = self.apps.current();
        cell.get_or_try_init(|| apps.all()).await.cloned()
    }

    /// App `id`; one registered since the request's copy was taken is
    /// found by reloading the apps.
    pub async fn app(&self, apps: &Apps, id: i64) -> Result<Option<app::Model>, DbErr> {
        if let Some(app) = self.apps(apps).await?.get(&id) {
            return Ok(Some(app.clone()));
        }
        Ok(apps.covering([id]).await?.get(&id).cloned())
    }

    /// When the request's refresh budget runs out: `budget` after it first
    /// waited for a refresh (or for its round to gather).
    pub fn deadline(&self, budget: Duration) -> Instant {
        *self.deadline.get_or_init(|| Instant::now() + budget)
    }
}

/// The apps as a request saw them first: read once, by whichever resolver
/// asks first, until a subscription's next event forgets them.
#[derive(Clone, Default)]
struct SeenApps(Arc<Mutex<Arc<OnceCell<Arc<AppsById>>>>>);

impl SeenApps {
    fn current(&self) -> Arc<OnceCell<Arc<AppsById>>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn forget(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Arc::default();
    }
}

/// Starts the next result of a subscription afresh: its rows and SQL
/// statements are counted from zero, and the apps read anew (an app's
/// settings changed since the subscription began show as they are now).
pub struct Renewal {
    apps: SeenApps,
    rows: Arc<AtomicUsize>,
    statements: StatementCounter,
}

impl Renewal {
    /// Counts from zero again, and forgets the apps seen.
    pub fn renew(&self) {
        self.apps.forget();
        self.rows.store(0, Ordering::Relaxed);
        self.statements.reset();
    }
}

/// The application state and the request context, from a resolver.
pub trait ContextExt {
    /// The application state.
    fn state(&self) -> ApiResult<&AppState>;
    /// The request's context.
    fn request(&self) -> ApiResult<&RequestContext>;

    /// Counts `n` rows read by a list against the request's row limit.
    fn read_rows(&self, n: usize) -> ApiResult<()> {
        self.request()?.read_rows(n)
    }
}

impl ContextExt for Context<'_> {
    /// The state, the way to the database: refused once the request has
    /// run its share of SQL statements.
    fn state(&self) -> ApiResult<&AppState> {
        if let Some(request) = self.data_opt::<RequestContext>() {
            request.check_statements()?;
        }
        self.data_opt::<AppState>()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no application state")).extend())
    }

    fn request(&self) -> ApiResult<&RequestContext> {
        self.data_opt::<RequestContext>()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no request context")).extend())
    }
}

/// The ticket of the root field `ctx` belongs to, in a query (mutations run
/// their root fields one after the other and have no round).
pub fn ticket(ctx: &Context<'_>) -> Option<Ticket> {
    if ctx.query_env.operation.node.ty != OperationType::Query {
        return None;
    }
    let request = ctx.data_opt::<RequestContext>()?;
    let key = round::root_key(ctx)?;
    round::takes_part(round::root_name(ctx)?).then(|| Ticket::new(request.round.clone(), key))
}

/// Resolves one root field of a query (`resolution`: its whole resolution,
/// arguments included), and counts it finished in the request's round when
/// it is done, whether it succeeded or not.
pub async fn resolve_root<F>(ctx: &Context<'_>, resolution: F) -> ServerResult<Option<Value>>
where
    F: Future<Output = ServerResult<Option<Value>>>,
{
    let resolved = resolution.await;
    if let Some(ticket) = ticket(ctx) {
        ticket.round().finished(ctx, ticket.key());
    }
    resolved
}
