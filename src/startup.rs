//! Building and running the server.
//!
//! [`Application::build`] connects to the database, applies pending
//! migrations, resolves the master key and binds the listener (port 0 picks
//! a free one, which tests use); [`Application::run_until_stopped`] serves
//! until a shutdown signal, then lets in-flight requests finish and closes
//! the database (on SQLite, that checkpoints the write-ahead log and removes
//! the `-wal` and `-shm` files).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::crypto::{KeyOrigin, MasterKey};
use crate::http::ConnectionLimits;
use crate::settings::{DatabaseSettings, Settings};
use crate::state::AppState;
use crate::store::Store;
use crate::wechat::{ClientConfig, TokenStore, WechatClient};
use crate::{http, store};

/// What start-up says when no WeChat app is registered: how to get data.
pub const NO_APP_YET: &str = "no WeChat app registered yet, so there is no data: register your apps (mutation registerApp, or `union360 app add`) and import followers (`union360 sync --app <appid>`), or try it all on simulated data with `union360 demo`; the playground's first tab says more";

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    state: AppState,
}

impl Application {
    /// Connects, migrates and binds, as `settings` say.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// Like [`Self::build`], with time read from `clock` (tests move it by hand).
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        crate::metrics::install();
        let listen = settings.server.listen;
        let metrics_listen = settings.server.http.metrics_listen;
        let state = build_state(settings, clock).await?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let metrics_listener = match metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr} for /metrics"))?,
            ),
            None => None,
        };
        Ok(Self {
            listener,
            metrics_listener,
            state,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address `/metrics` is served on when it has a listener of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests
    /// (for at most the configured grace period), closes the database and
    /// returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        let settings = self.state.settings();
        let grace = settings.shutdown_grace();
        let limits = ConnectionLimits::from(&settings.server.http);
        tracing::info!(
            http.addr = %addr,
            "union360 listening: GraphQL at http://{addr}/graphql, playground at http://{addr}/graphiql"
        );
        let keys = self.state.keys().clone();
        let db = self.state.db().clone();
        if !keys.any().await.context("reading the API keys")? {
            tracing::warn!(
                "no API key exists yet, so every GraphQL request is refused: create one with `union360 apikey create --name admin --scopes read,pii,stats,write,admin`"
            );
        }
        if self
            .state
            .apps()
            .list()
            .await
            .context("reading the apps")?
            .is_empty()
        {
            tracing::info!("{NO_APP_YET}");
        }
        let flush_every = self.state.settings().server.keys.last_used_flush();
        let flusher = tokio::spawn(store::in_background(keys.clone().flush_every(flush_every)));
        // One signal stops everything: the listeners, the sync worker, and
        // the subscribers (through the state, which the router reads).
        let stop_rx = self.state.stopping();
        let stopped = move || {
            let mut stop_rx = stop_rx.clone();
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            }
        };
        let metrics = self.metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(http.addr = %addr, "metrics at http://{addr}/metrics");
            }
            http::serve(
                listener,
                http::metrics_router(self.state.clone()),
                limits,
                stopped(),
            )
        });
        // Follower syncs asked for through the API (or due on the schedule)
        // run here; on shutdown a running job is let go at its last saved page.
        let worker = tokio::spawn(store::in_background(
            self.state.syncer().clone().work(stopped()),
        ));
        let state = self.state.clone();
        let main = http::serve(self.listener, http::router(self.state), limits, stopped());
        let serve = async move {
            match metrics {
                Some(metrics) => {
                    tokio::join!(main, metrics);
                }
                None => main.await,
            }
        };
        let grace_over = async move {
            shutdown.await;
            state.begin_stopping();
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = serve => {}
            () = grace_over => {
                tracing::warn!("shutdown grace period over; dropping open connections");
            }
        }
        flusher.abort();
        if tokio::time::timeout(Duration::from_secs(5), worker)
            .await
            .is_err()
        {
            tracing::warn!("the sync worker did not stop in time");
        }
        if let Err(e) = keys.flush_last_used().await {
            tracing::warn!(error = %e, "could not record API keys' last use");
        }
        match store::close(&db).await {
            Ok(()) => tracing::info!("stopped; database closed"),
            Err(e) => tracing::warn!(error = %e, "stopped; the database did not close cleanly"),
        }
        Ok(())
    }

    /// Serves until Ctrl-C or SIGTERM, then ends the process once the grace
    /// period has passed, even if a request is still computing.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let signalled = watch_signals(self.state.settings().shutdown_grace())?;
        self.run_until(async {
            let _ = signalled.await;
        })
        .await
    }
}

/// Resolves the master key, connects, migrates and builds the services, as
/// `settings` say, without listening: for the server and for commands that
/// work on the same data (`sync`, `demo`).
pub async fn build_state(settings: Settings, clock: Clock) -> anyhow::Result<AppState> {
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
    let store = connect_database(&settings.database).await?;
    let applied = store::migrate(&store.db)
        .await
        .context("applying database migrations")?;
    if applied > 0 {
        tracing::info!(migrations.applied = applied, "database migrated");
    }
    let mut wechat_config = ClientConfig::new(&settings.server.wechat_api_base);
    wechat_config.token_endpoint = settings.server.wechat_token_endpoint;
    let token_store = TokenStore {
        db: store.db.clone(),
        key: master_key.clone(),
    };
    let wechat = WechatClient::new(wechat_config, Some(token_store), clock.clone())?;
    Ok(AppState::new(store, master_key, settings, wechat, clock))
}

/// Connects to the database the settings name, within their connect
/// timeout; an error names the URL (without its password) and the cause.
pub async fn connect_database(settings: &DatabaseSettings) -> anyhow::Result<Store> {
    let url = &settings.database_url;
    // A database error's own message already ends with its cause.
    store::connect_within(url, settings.connect_timeout())
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the database ({}): {e}", store::redact(url)))
}

/// Listens for Ctrl-C and SIGTERM on a thread and a runtime of its own, so
/// that a signal is heard even while every worker of the server's runtime is
/// held by a long computation; reports the signal through the returned
/// receiver, then ends the process when `grace` (and the time allowed for
/// closing the database) has passed, whether or not the server has stopped
/// by then.
fn watch_signals(grace: Duration) -> anyhow::Result<oneshot::Receiver<()>> {
    let (signalled_tx, signalled_rx) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the signal runtime")?;
    // The handlers are in place before this returns, hence before the server
    // says it listens: a signal sent as soon as it does is heard.
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        let _entered = runtime.enter();
        (
            signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        )
    };
    std::thread::Builder::new()
        .name("union360-signals".to_owned())
        .spawn(move || {
            #[cfg(unix)]
            runtime.block_on(async move {
                let (mut interrupt, mut terminate) = signals;
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                tracing::info!("shutdown signal received");
            });
            #[cfg(not(unix))]
            runtime.block_on(shutdown_signal());
            let _ = signalled_tx.send(());
            std::thread::sleep(grace + store::CLOSE_TIMEOUT + Duration::from_secs(1));
            tracing::warn!("shutdown grace period over with requests still running: exiting");
            std::process::exit(0);
        })
        .context("starting the signal thread")?;
    Ok(signalled_rx)
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
