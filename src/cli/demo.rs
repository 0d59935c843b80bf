//! `union360 demo`: the whole product on simulated WeChat data, in one
//! command, with no set-up and no internet access.
//!
//! It starts the built-in WeChat simulator with a synthetic company (three
//! official accounts, a mini program and a website app; one official account
//! and one other app deliberately not bound to the open platform, so some
//! followers stay unlinked), registers the apps, imports every follower with
//! the real follower sync, starts the server on SQLite in a temporary
//! directory (`--data DIR` keeps it), creates an admin key, and prints where
//! to look. The playground opens with example operations for this data.
//! Ctrl-C stops everything and deletes the temporary directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use entity::account;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use secrecy::{ExposeSecret, SecretString};

use crate::apps::AppInput;
use crate::domain::AppId;
use crate::keys::{KeyLimits, NewKey, Scopes};
use crate::settings::{DatabaseSettings, ServerSettings, Settings};
use crate::simulator::{KindMix, SimConfig, Simulator};
use crate::startup::Application;

/// `union360 demo …`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// People in the simulated world.
    #[arg(long, default_value_t = 50_000)]
    pub people: u32,
    /// Keep the data in this directory (created when missing) instead of a
    /// temporary one deleted on exit; a later demo with the same directory
    /// starts from it.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where the server listens (another free port is used when it is taken).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The seed of the simulated world (same seed, same world).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Blank nicknames, avatars and places in `user/info`, as WeChat has
    /// since 2021 (by default the simulated profiles keep them, to show).
    #[arg(long)]
    pub blank_profiles: bool,
}

/// The simulated company's apps: kind, and a display name per kind.
const NAMES: [(&str, &[&str]); 4] = [
    (
        "OFFICIAL_ACCOUNT",
        &["Brand News", "Member Club", "Store Deals"],
    ),
    ("MINI_PROGRAM", &["Order Mini Program"]),
    ("MOBILE_APP", &["Mobile App"]),
    ("WEBSITE", &["Website Login"]),
];

/// Runs the demo until Ctrl-C.
pub(super) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (dir, temporary) = match &args.data {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("union360-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = demo(&args, &dir, started).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn demo(args: &DemoArgs, dir: &std::path::Path, started: Instant) -> anyhow::Result<()> {
    let sim = Simulator::spawn(SimConfig {
        seed: args.seed,
        people: args.people,
        apps: 5,
        // Of three official accounts one is unbound (a minority), and one
        // app of another kind.
        unbound_share: 0.34,
        kinds: KindMix {
            oa: 3.0,
            mp: 1.0,
            app: 0.0,
            web: 1.0,
        },
        blank_profiles: args.blank_profiles,
        unionid_for_non_followers: false,
        follow_share: None,
    })
    .await
    .context("starting the WeChat simulator")?;
    let database_url = format!("sqlite://{}?mode=rwc", dir.join("union360.db").display());
    let settings = |listen| Settings {
        database: DatabaseSettings::new(database_url.clone()),
        server: ServerSettings {
            listen,
            wechat_api_base: sim.base_url(),
            ..ServerSettings::default()
        },
    };
    let app = match Application::build(settings(args.listen)).await {
        Ok(app) => app,
        Err(e) if is_addr_in_use(&e) => {
            eprintln!("{} is taken; listening on another port", args.listen);
            Application::build(settings(SocketAddr::from(([127, 0, 0, 1], 0)))).await?
        }
        Err(e) => return Err(e),
    };
    let state = app.state().clone();
    let addr = app.local_addr()?;

    // The apps, registered as a company would (names by kind).
    let mut used = std::collections::HashMap::<&str, usize>::new();
    let mut official = Vec::new();
    for sim_app in sim.sim.apps() {
        let appid = AppId::parse(sim_app.appid.clone())?;
        let names = NAMES
            .iter()
            .find(|(kind, _)| *kind == sim_app.kind)
            .map_or(&[][..], |(_, names)| *names);
        let n = used
            .entry(names.first().copied().unwrap_or("App"))
            .or_default();
        let name = names.get(*n).copied().unwrap_or("App");
        *n += 1;
        let name = if sim_app.bound {
            name.to_owned()
        } else {
            format!("{name} (not bound to the open platform)")
        };
        if state.apps().find(&appid).await?.is_none() {
            let input = AppInput {
                appid: sim_app.appid.clone(),
                kind: sim_app.kind.clone(),
                name,
                secret: SecretString::from(sim_app.secret.clone()),
                callback_token: sim_app.token.clone().map(SecretString::from),
                aes_key: sim_app.aes_key.clone().map(SecretString::from),
                freshness_ttl_secs: None,
            };
            state.apps().register(input.parse()?).await?;
        }
        if sim_app.kind == "OFFICIAL_ACCOUNT" {
            official.push((appid, sim_app.bound));
        }
    }
    eprintln!(
        "Simulated company: {} people, {} apps ({} official accounts); importing their followers…",
        args.people,
        sim.sim.apps().len(),
        official.len()
    );
    for (appid, _) in &official {
        super::sync::sync_one(state.syncer(), appid).await?;
    }

    let key = state
        .keys()
        .create(NewKey {
            name: format!("demo admin {}", chrono::Utc::now().format("%Y-%m-%d %H:%M")),
            scopes: Scopes::all(),
            limits: KeyLimits::default(),
        })
        .await?;
    let examples = examples(&state, &official).await?;
    state.set_playground_examples(examples);

    let base = format!("http://{addr}");
    let unbound: Vec<String> = official
        .iter()
        .filter(|(_, bound)| !bound)
        .map(|(a, _)| a.to_string())
        .collect();
    println!();
    println!(
        "union360 demo is ready, {:.1} s after start.",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("  Dashboard:   {base}/dashboard");
    println!("  Playground:  {base}/graphiql");
    println!("  API key:     {}", key.key.expose_secret());
    println!(
        "               (every scope; paste it once into either page, it stays in your browser)"
    );
    println!(
        "  Simulator:   {} (the WeChat API stand-in; {}/_sim/apps lists its apps)",
        sim.base_url(),
        sim.base_url()
    );
    if args.data.is_some() {
        println!("  Data:        {} (kept)", dir.display());
    } else {
        println!(
            "  Data:        {} (deleted on exit; --data DIR keeps it)",
            dir.display()
        );
    }
    println!();
    println!("Try:");
    println!(
        "  - the dashboard: how many distinct people follow the 3 official accounts, and how they overlap;"
    );
    if !unbound.is_empty() {
        println!(
            "    {} is not bound to the open platform, so its followers have no UnionID: they are counted apart, as bounds",
            unbound.join(", ")
        );
    }
    println!(
        "  - the playground's tabs: one person across apps, a profile refreshed live from the simulator, the overlap;"
    );
    println!("  - the numbers as a table: union360 audience --database-url '{database_url}'");
    println!(
        "  - from a script: curl -s {base}/graphql -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d '{{\"query\":\"{{ audience {{ distinctPeople {{ atLeast atMost }} }} }}\"}}'",
        key.key.expose_secret()
    );
    println!();
    println!("Press Ctrl-C to stop.");
    app.run_until_stopped().await?;
    drop(sim);
    Ok(())
}

/// Whether start-up failed because the address is taken.
fn is_addr_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    })
}

/// The playground's example operations, filled in with this data: the
/// person followed through the most official accounts.
async fn examples(
    state: &crate::state::AppState,
    official: &[(AppId, bool)],
) -> anyhow::Result<Vec<(String, String)>> {
    let busiest: Option<(i64, i64)> = account::Entity::find()
        .select_only()
        .column(account::Column::PersonId)
        .column_as(account::Column::Id.count(), "accounts")
        .filter(account::Column::PersonId.is_not_null())
        .group_by(account::Column::PersonId)
        .order_by_desc(account::Column::Id.count())
        .order_by_asc(account::Column::PersonId)
        .into_tuple()
        .one(state.db())
        .await?;
    let unionid = match busiest {
        Some((person_id, _)) => entity::person::Entity::find_by_id(person_id)
            .one(state.db())
            .await?
            .map(|p| p.unionid),
        None => None,
    }
    .unwrap_or_default();
    let appids: Vec<String> = official.iter().map(|(a, _)| format!("\"{a}\"")).collect();
    Ok(vec![
        (
            "One person".to_owned(),
            format!(
                "# One person (one UnionID) and their accounts: a different\n\
                 # OpenID in each official account they follow.\n\
                 query OnePerson {{\n  person(unionid: \"{unionid}\") {{\n    unionid\n    nickname\n    city\n    accounts {{\n      appid\n      openid\n      following\n      followedAt\n      refreshedAt\n    }}\n  }}\n}}\n"
            ),
        ),
        (
            "Refresh live".to_owned(),
            format!(
                "# refresh: FORCE fetches the profiles from the (simulated)\n\
                 # WeChat API now; run it twice and watch refreshedAt move.\n\
                 # Without it, a profile is fetched only when stale (24 h).\n\
                 query RefreshLive {{\n  person(unionid: \"{unionid}\", refresh: FORCE) {{\n    unionid\n    accounts {{\n      appid\n      nickname\n      refreshedAt\n      stale\n    }}\n  }}\n}}\n"
            ),
        ),
        (
            "Audience".to_owned(),
            format!(
                "# How many distinct people follow the official accounts,\n\
                 # and how the audiences overlap (the dashboard charts this).\n\
                 query Overlap {{\n  audience(appids: [{}]) {{\n    distinctPeople {{ atLeast atMost }}\n    linkedPeople\n    unlinkedFollowers\n    apps {{ appid name followers linkedFollowers unlinkedFollowers }}\n    pairs {{ appids people }}\n    followCounts {{ apps people }}\n    combinations {{ appids people }}\n  }}\n}}\n",
                appids.join(", ")
            ),
        ),
    ])
}
