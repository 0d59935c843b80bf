//! Building and running the server.
//!
//! [`Application::build`] connects to the database, applies pending
//! migrations, resolves the master key and binds the listener (port 0 picks
//! a free one, which tests use); [`Application::run_until_stopped`] serves
//! until a shutdown signal, then lets in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::crypto::{KeyOrigin, MasterKey};
use crate::settings::Settings;
use crate::state::AppState;
use crate::wechat::{ClientConfig, TokenStore, WechatClient};
use crate::{http, store};

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects, migrates and binds, as `settings` say.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// Like [`Self::build`], with time read from `clock` (tests move it by hand).
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        let url = settings.database.database_url.clone();
        let (master_key, origin) = MasterKey::resolve(settings.database.master_key.as_ref(), &url)?;
        match &origin {
            KeyOrigin::Generated(path) => tracing::warn!(
                key.file = %path.display(),
                "no UNION360_MASTER_KEY set: generated a master key beside the database; back it up with the database, or app secrets cannot be decrypted"
            ),
            KeyOrigin::File(path) => {
                tracing::info!(key.file = %path.display(), "master key read from key file");
            }
            KeyOrigin::Ephemeral => tracing::warn!(
                "in-memory database without UNION360_MASTER_KEY: using a throw-away master key"
            ),
            KeyOrigin::Setting => {}
        }
        crate::metrics::install();
        let store = store::connect(&url)
            .await
            .with_context(|| format!("connecting to the database ({})", store::redact(&url)))?;
        let applied = store::migrate(&store.db)
            .await
            .context("applying database migrations")?;
        if applied > 0 {
            tracing::info!(migrations.applied = applied, "database migrated");
        }
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let mut wechat_config = ClientConfig::new(&settings.server.wechat_api_base);
        wechat_config.token_endpoint = settings.server.wechat_token_endpoint;
        let token_store = TokenStore {
            db: store.db.clone(),
            key: master_key.clone(),
        };
        let wechat = WechatClient::new(wechat_config, Some(token_store), clock.clone())?;
        let state = AppState::new(store, master_key, settings, wechat, clock);
        Ok(Self { listener, state })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests
    /// (for at most the configured grace period).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        let grace = self.state.settings().shutdown_grace();
        tracing::info!(
            http.addr = %addr,
            "union360 listening: GraphQL at http://{addr}/graphql, playground at http://{addr}/graphiql"
        );
        let keys = self.state.keys().clone();
        if !keys.any().await.context("reading the API keys")? {
            tracing::warn!(
                "no API key exists yet, so every GraphQL request is refused: create one with `union360 apikey create --name admin --scopes read,pii,stats,write,admin`"
            );
        }
        let flush_every = self.state.settings().server.keys.last_used_flush();
        let flusher = tokio::spawn(keys.clone().flush_every(flush_every));
        let router = http::router(self.state);
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(self.listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopped_tx.send(());
        });
        let served = tokio::select! {
            result = serve => result.context("serving HTTP"),
            () = async {
                let _ = stopped_rx.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("shutdown grace period over; dropping open connections");
                Ok(())
            }
        };
        flusher.abort();
        if let Err(e) = keys.flush_last_used().await {
            tracing::warn!(error = %e, "could not record API keys' last use");
        }
        served
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
