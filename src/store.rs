//! The database: connecting, migrating, and counting statements.
//!
//! SQLite is the zero-set-up default; PostgreSQL is for production and for
//! fleets of instances. The same sea-orm code and migrations serve both. On
//! SQLite, file databases run in WAL mode (readers never wait for the
//! writer) with a busy timeout, and write transactions start `IMMEDIATE`
//! so that concurrent writers queue instead of failing on lock upgrade.
//!
//! Every statement is counted for the whole connection; apart from that,
//! for clients (everything but the server's own background tasks, marked
//! by [`in_background`]); and for the piece of work running it when that
//! work counts its own ([`counting_statements`]: one GraphQL request, say).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, RuntimeErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

/// Counts the SQL statements a connection has run (for `/metrics` and the N+1 tests).
#[derive(Debug, Clone, Default)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    /// Statements run so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts from zero again.
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

tokio::task_local! {
    /// The counter of the work the current task is doing, when it has one.
    static WORK_STATEMENTS: StatementCounter;
    /// Set in the server's own background tasks.
    static BACKGROUND: ();
}

/// Runs `work`, a task the server runs on its own (the follower-sync
/// worker, the API keys' last-use flush), so that its statements are not
/// counted as clients' ([`Store::client_statements`]): a test counting the
/// statements of a request is not thrown off by a worker's poll.
pub async fn in_background<F: Future>(work: F) -> F::Output {
    BACKGROUND.scope((), work).await
}

/// `work`, to be spawned as a task of its own, counted as the current task's
/// statements are: background work stays background in the tasks it starts.
pub fn counted_as_here<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let background = BACKGROUND.try_with(|()| ()).is_ok();
    async move {
        if background {
            in_background(work).await
        } else {
            work.await
        }
    }
}

/// Runs `work`, counting in `counter` the statements it runs itself (not
/// those of tasks it spawns).
pub async fn counting_statements<F: Future>(counter: StatementCounter, work: F) -> F::Output {
    WORK_STATEMENTS.scope(counter, work).await
}

/// An open database with its statement counter.
#[derive(Debug, Clone)]
pub struct Store {
    /// The connection pool.
    pub db: DatabaseConnection,
    /// Statements run through `db`.
    pub statements: StatementCounter,
    /// Statements run through `db` outside the server's background tasks.
    pub client_statements: StatementCounter,
}

impl Store {
    /// The pool's connections now: idle, held in all, and the most it may hold.
    pub fn pool_state(&self) -> (usize, u32, u32) {
        match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (
                    pool.num_idle(),
                    pool.size(),
                    pool.options().get_max_connections(),
                )
            }
            DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (
                    pool.num_idle(),
                    pool.size(),
                    pool.options().get_max_connections(),
                )
            }
            _ => (0, 0, 0),
        }
    }
}

/// Connects to `url`, SQLite or PostgreSQL, allowing the default time to reach it.
pub async fn connect(url: &str) -> Result<Store, DbErr> {
    connect_within(
        url,
        Duration::from_secs(crate::settings::DEFAULT_DATABASE_CONNECT_TIMEOUT_SECS),
    )
    .await
}

/// Connects to `url`, SQLite or PostgreSQL; a server that cannot be reached
/// within `timeout` (or refuses) fails at once with the cause.
pub async fn connect_within(url: &str, timeout: Duration) -> Result<Store, DbErr> {
    let url = &postgres_defaults(url, std::env::var_os("PGSSLMODE").is_some());
    if is_postgres(url) {
        probe(url, timeout).await?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    // Every connection to an in-memory SQLite database is a database of its
    // own: keep one, or migrations and reads would not meet.
    let in_memory = sqlite_location(url) == SqliteLocation::Memory;
    options
        .max_connections(if in_memory { 1 } else { 16 })
        .min_connections(1)
        .connect_timeout(timeout)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
        });
    let mut db = Database::connect(options).await?;
    let statements = StatementCounter::default();
    let client_statements = StatementCounter::default();
    let (counter, clients) = (statements.0.clone(), client_statements.0.clone());
    db.set_metric_callback(move |info| {
        counter.fetch_add(1, Ordering::Relaxed);
        if BACKGROUND.try_with(|()| ()).is_err() {
            clients.fetch_add(1, Ordering::Relaxed);
        }
        let _ = WORK_STATEMENTS.try_with(|work| work.0.fetch_add(1, Ordering::Relaxed));
        tracing::trace!(
            target: "union360::sql",
            sql = %info.statement,
            elapsed_us = info.elapsed.as_micros() as u64,
            failed = info.failed,
            "statement"
        );
    });
    Ok(Store {
        db,
        statements,
        client_statements,
    })
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` with union360's defaults for PostgreSQL: a server on this machine
/// (loopback, or a Unix socket) is reached without TLS unless the URL (or
/// `PGSSLMODE`, `pgsslmode_set`) says otherwise. TLS there protects nothing
/// and costs every statement: a follower sync ran 1.6 × slower with it. A
/// remote server keeps the driver's default (`prefer`: TLS when the server
/// offers it); production URLs should say `sslmode=verify-full`.
fn postgres_defaults(url: &str, pgsslmode_set: bool) -> String {
    if !is_postgres(url) || pgsslmode_set {
        return url.to_owned();
    }
    let Ok(mut parsed) = url::Url::parse(url) else {
        // The driver reports what is wrong with it.
        return url.to_owned();
    };
    let mut socket = false;
    for (key, value) in parsed.query_pairs() {
        match &*key {
            "sslmode" | "ssl-mode" => return url.to_owned(),
            "host" => socket = value.starts_with('/'),
            _ => {}
        }
    }
    let local = socket
        || match parsed.host() {
            // Hosts of `postgres://` URLs are not parsed: IPv4 comes as text.
            Some(url::Host::Domain(name)) => {
                name.eq_ignore_ascii_case("localhost")
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => true,
        };
    if !local {
        return url.to_owned();
    }
    parsed.query_pairs_mut().append_pair("sslmode", "disable");
    parsed.into()
}

/// Opens and closes one connection to a database server. The pool retries
/// failed connections until its acquire timeout and then reports only that
/// it timed out; one direct attempt fails fast and says why ("connection
/// refused", an unknown host, a rejected password).
async fn probe(url: &str, timeout: Duration) -> Result<(), DbErr> {
    use sea_orm::sqlx::Connection as _;
    let connection =
        match tokio::time::timeout(timeout, sea_orm::sqlx::PgConnection::connect(url)).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e)))),
            Err(_) => {
                return Err(DbErr::Conn(RuntimeErr::Internal(format!(
                    "no answer within {} s",
                    timeout.as_secs_f32()
                ))));
            }
        };
    let _ = connection.close().await;
    Ok(())
}

/// How long closing the database may wait for connections still in use.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes the connection pool: idle connections at once, connections in use
/// when they are returned, waiting at most [`CLOSE_TIMEOUT`]. Closing the
/// last connection of a SQLite file checkpoints its write-ahead log and
/// removes the `-wal` and `-shm` files beside it.
pub async fn close(db: &DatabaseConnection) -> Result<(), DbErr> {
    match tokio::time::timeout(CLOSE_TIMEOUT, db.close_by_ref()).await {
        Ok(result) => result,
        Err(_) => Err(DbErr::Conn(RuntimeErr::Internal(format!(
            "connections still in use after {} s",
            CLOSE_TIMEOUT.as_secs()
        )))),
    }
}

/// Applies every pending migration; returns how many were applied.
pub async fn migrate(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let pending = Migrator::get_pending_migrations(db).await?.len();
    Migrator::up(db, None).await?;
    Ok(pending)
}

/// Begins a transaction that will write: `BEGIN IMMEDIATE` on SQLite, so it
/// holds the write lock from the start and concurrent writers wait their turn.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let options = match db.get_database_backend() {
        DbBackend::Sqlite => TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        },
        _ => TransactionOptions::default(),
    };
    db.begin_with_options(options).await
}

/// Begins a write transaction for bulk writes (the follower sync's pages).
/// On PostgreSQL, its statements are planned for their own values
/// (`plan_cache_mode`): during an import the tables grow faster than their
/// statistics, and a plan a connection cached while they were small (a
/// sequential scan, matched against a list of 500 keys per row) grows slower
/// with every page.
pub async fn begin_bulk_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let txn = begin_write(db).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
            .await?;
    }
    Ok(txn)
}

/// Refreshes the planner's statistics of `tables` on PostgreSQL (`ANALYZE`),
/// for bulk writers whose tables grow faster than autovacuum looks: without
/// them, a lookup by key in a table that grew from nothing is planned as a
/// scan of every row. SQLite plans these lookups by its unique indexes
/// without statistics: nothing to do there.
pub async fn refresh_statistics(db: &DatabaseConnection, tables: &[&str]) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared(&format!("ANALYZE {}", tables.join(", ")))
            .await?;
    }
    Ok(())
}

/// Where a database URL puts a SQLite database.
#[derive(Debug, PartialEq, Eq)]
pub enum SqliteLocation {
    /// Not a SQLite URL.
    NotSqlite,
    /// An in-memory database.
    Memory,
    /// A database file.
    File(PathBuf),
}

/// Finds the SQLite file of a `sqlite:` URL.
pub fn sqlite_location(database_url: &str) -> SqliteLocation {
    let Some(rest) = database_url.strip_prefix("sqlite:") else {
        return SqliteLocation::NotSqlite;
    };
    let rest = rest.trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        SqliteLocation::Memory
    } else {
        SqliteLocation::File(PathBuf::from(path))
    }
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_postgres_server_is_reached_without_tls_unless_asked() {
        let local = [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
            ),
            (
                "postgresql://u:p@localhost/db?application_name=x",
                "postgresql://u:p@localhost/db?application_name=x&sslmode=disable",
            ),
            (
                "postgres://u@[::1]:5432/db",
                "postgres://u@[::1]:5432/db?sslmode=disable",
            ),
            (
                "postgres://u@db.internal/db?host=/run/postgresql",
                "postgres://u@db.internal/db?host=/run/postgresql&sslmode=disable",
            ),
        ];
        for (url, expected) in local {
            assert_eq!(postgres_defaults(url, false), expected, "{url}");
            assert_eq!(
                postgres_defaults(url, true),
                url,
                "PGSSLMODE decides: {url}"
            );
        }
        for url in [
            "postgres://u@127.0.0.1/db?sslmode=require",
            "postgres://u@localhost/db?ssl-mode=verify-full",
            "postgres://u@db.example.com:5432/db",
            "postgres://u@10.0.0.5/db",
            "sqlite://union360.db?mode=rwc",
            "sqlite::memory:",
        ] {
            assert_eq!(postgres_defaults(url, false), url);
        }
    }

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact("sqlite://u.db?mode=rwc"), "sqlite://u.db?mode=rwc");
    }

    #[test]
    fn sqlite_urls_locate_their_file() {
        assert_eq!(
            sqlite_location("sqlite://union360.db?mode=rwc"),
            SqliteLocation::File("union360.db".into())
        );
        assert_eq!(
            sqlite_location("sqlite:///var/lib/u.db"),
            SqliteLocation::File("/var/lib/u.db".into())
        );
        assert_eq!(sqlite_location("sqlite::memory:"), SqliteLocation::Memory);
        assert_eq!(
            sqlite_location("postgres://postgres@127.0.0.1/x"),
            SqliteLocation::NotSqlite
        );
    }
}
