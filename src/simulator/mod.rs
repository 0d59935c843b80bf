//! A local WeChat sandbox: the WeChat API, faithful to `WECHAT.md`, with no
//! network beyond this machine.
//!
//! Tests, the demo and the benchmarks point union360's WeChat client at it.
//! It serves the endpoints union360 uses (tokens, user info and follower
//! lists for official accounts, web/app OAuth and mini-program sign-in) over
//! a deterministic population built from a seed ([`world`]), with WeChat's
//! rules and quirks: token supersession and grace, daily quotas, single-use
//! codes, snapshot users, blanked profiles, raw control characters in
//! nicknames, the ambiguous end of the follower list. A control plane under
//! `/_sim/` ([`control`]) lets a caller inspect the world, count calls,
//! inject faults, move the clock and push signed callback events.
//!
//! - [`world`]: the population; [`codec`]: identifiers derived from numbers.
//! - [`token`]: access tokens; [`quota`]: daily quotas; [`user`]: user APIs;
//!   [`sns`]: sign-in flows; [`faults`]: injected faults and call counters;
//!   [`push`]: callback pushes; [`clock`]: the movable clock; [`wire`]: the
//!   response envelope.

mod clock;
mod codec;
mod control;
mod faults;
mod push;
mod quota;
mod sns;
mod token;
mod user;
mod wire;
mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::routing::{get, post};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use self::clock::Clock;
use self::world::World;

/// What world to build and which WeChat behaviours to switch on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// The seed everything is derived from: the same seed gives the same world.
    pub seed: u64,
    /// How many people live in the world.
    pub people: u32,
    /// How many apps the open platform has.
    pub apps: u32,
    /// The share of apps (0..1) not bound to the open platform (no
    /// UnionIDs); official accounts stay mostly bound (see
    /// `world::unbound_apps`): no more than a minority of them is unbound
    /// unless the share is 1.
    pub unbound_share: f64,
    /// How the apps split among the four kinds.
    pub kinds: KindMix,
    /// Blank nickname, avatar, sex and places in `user/info`, as WeChat has
    /// since late 2021 (keys stay, values empty).
    pub blank_profiles: bool,
    /// Return the UnionID of non-followers from `user/info` (WeChat's older
    /// behaviour; today it is withheld).
    pub unionid_for_non_followers: bool,
    /// When set, each person follows each official account with this
    /// chance (0..1) instead of the seeded mix of account popularity and
    /// personal engagement: `1.0` makes every person follow every official
    /// account, so an account with N followers is a world of N people.
    pub follow_share: Option<f64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            people: 1000,
            apps: 4,
            unbound_share: 0.25,
            kinds: KindMix::default(),
            blank_profiles: true,
            unionid_for_non_followers: false,
            follow_share: None,
        }
    }
}

/// Relative weights of the four app kinds; `oa=3,mp=1,app=1,web=1` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KindMix {
    /// Official accounts.
    pub oa: f64,
    /// Mini programs.
    pub mp: f64,
    /// Mobile apps.
    pub app: f64,
    /// Websites.
    pub web: f64,
}

impl KindMix {
    /// Official accounts only.
    pub const OFFICIAL_ACCOUNTS: Self = Self {
        oa: 1.0,
        mp: 0.0,
        app: 0.0,
        web: 0.0,
    };
}

impl Default for KindMix {
    fn default() -> Self {
        Self {
            oa: 0.6,
            mp: 0.2,
            app: 0.1,
            web: 0.1,
        }
    }
}

impl FromStr for KindMix {
    type Err = String;

    /// Parses `oa=3,mp=1`; kinds left out weigh 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut mix = Self {
            oa: 0.0,
            mp: 0.0,
            app: 0.0,
            web: 0.0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("expected kind=weight, got `{part}`"))?;
            let weight: f64 = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{weight}` is not a number"))?;
            if !(weight >= 0.0 && weight.is_finite()) {
                return Err(format!("weight of `{kind}` must be ≥ 0"));
            }
            match kind.trim() {
                "oa" => mix.oa = weight,
                "mp" => mix.mp = weight,
                "app" => mix.app = weight,
                "web" => mix.web = weight,
                other => return Err(format!("unknown kind `{other}` (oa, mp, app, web)")),
            }
        }
        Ok(mix)
    }
}

/// One app of the simulated open platform, with its secrets (for tests and the demo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimApp {
    /// The appid (`wx…`).
    pub appid: String,
    /// `OFFICIAL_ACCOUNT`, `MINI_PROGRAM`, `MOBILE_APP` or `WEBSITE`.
    pub kind: String,
    /// The AppSecret.
    pub secret: String,
    /// Whether the app is bound to the open platform (its APIs return UnionIDs).
    pub bound: bool,
    /// The callback token (official accounts).
    pub token: Option<String>,
    /// The EncodingAESKey (official accounts).
    pub aes_key: Option<String>,
    /// The original id `gh_…` (official accounts).
    pub gh_id: Option<String>,
}

/// One follower of a simulated official account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimFollower {
    /// The person's index in the world.
    pub person: u32,
    /// Their OpenID in the app.
    pub openid: String,
    /// Their UnionID, when the app is bound to the open platform (WeChat
    /// reports it then).
    pub unionid: Option<String>,
}

/// The WeChat sandbox: cheap to clone, every clone is the same simulator.
#[derive(Debug, Clone)]
pub struct Simulator(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    clock: Clock,
    state: Mutex<SimState>,
    http: reqwest::Client,
}

/// Everything mutable, behind one lock that is never held across an await.
#[derive(Debug)]
struct SimState {
    config: SimConfig,
    world: World,
    tokens: token::TokenBook,
    quotas: quota::Quotas,
    sns: sns::SnsBook,
    faults: Vec<faults::Fault>,
    calls: BTreeMap<String, u64>,
    rng: StdRng,
}

impl SimState {
    fn new(config: SimConfig) -> Self {
        Self {
            world: World::build(&config),
            rng: StdRng::seed_from_u64(config.seed),
            config,
            tokens: token::TokenBook::default(),
            quotas: quota::Quotas::default(),
            sns: sns::SnsBook::default(),
            faults: Vec::new(),
            calls: BTreeMap::new(),
        }
    }
}

/// A simulator serving in the background.
#[derive(Debug, Clone)]
pub struct SimHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The simulator itself, for direct control.
    pub sim: Simulator,
}

impl SimHandle {
    /// `http://addr`, the base URL to give a WeChat client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Simulator {
    /// Builds the world `config` describes.
    pub fn new(config: SimConfig) -> Self {
        Self(Arc::new(Inner {
            clock: Clock::default(),
            state: Mutex::new(SimState::new(config)),
            http: reqwest::Client::new(),
        }))
    }

    /// The WeChat endpoints plus the `/_sim` control plane.
    pub fn router(&self) -> Router {
        let wechat = Router::new()
            .route("/cgi-bin/token", get(token::token))
            .route(
                "/cgi-bin/stable_token",
                post(token::stable_token).get(wire_post_only),
            )
            .route("/cgi-bin/user/info", get(user::info))
            .route(
                "/cgi-bin/user/info/batchget",
                post(user::batchget).get(wire_post_only),
            )
            .route("/cgi-bin/user/get", get(user::list))
            .route(
                "/cgi-bin/openapi/quota/get",
                post(quota::quota_get).get(wire_post_only),
            )
            .route("/sns/oauth2/access_token", get(sns::oauth_access_token))
            .route("/sns/userinfo", get(sns::userinfo))
            .route("/sns/jscode2session", get(sns::jscode2session))
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                faults::count_calls,
            ));
        wechat
            .merge(control::router())
            .route("/_sim/push", post(push::push))
            .with_state(self.clone())
    }

    /// Binds `127.0.0.1:0` and serves in the background.
    pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::new(config).serve_on(listener)
    }

    /// Serves on an already bound listener in the background.
    pub fn serve_on(self, listener: tokio::net::TcpListener) -> std::io::Result<SimHandle> {
        let addr = listener.local_addr()?;
        let router = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "simulator stopped serving");
            }
        });
        Ok(SimHandle { addr, sim: self })
    }

    /// The apps of the open platform (as `GET /_sim/apps`).
    pub fn apps(&self) -> Vec<SimApp> {
        let st = self.lock();
        st.world
            .apps
            .iter()
            .map(|a| SimApp {
                appid: a.appid.clone(),
                kind: a.kind.as_str().to_owned(),
                secret: a.secret.clone(),
                bound: a.bound,
                token: a.token.clone(),
                aes_key: a.aes_key.clone(),
                gh_id: a.gh_id.clone(),
            })
            .collect()
    }

    /// Everyone who follows the official account `appid` now, by person
    /// index (`None` for an unknown appid): what a complete import of its
    /// followers must hold. Read from who follows, not from the pages
    /// `user/get` serves, so that it checks them.
    pub fn followers(&self, appid: &str) -> Option<Vec<SimFollower>> {
        let st = self.lock();
        let w = &st.world;
        let app = w.app_index(appid)?;
        let bound = w.apps.get(app).is_some_and(|a| a.bound);
        let follows = w.follows.get(app)?;
        Some(
            (0..w.people)
                .filter(|p| follows.contains(*p))
                .map(|person| SimFollower {
                    person,
                    openid: w.openid(app, person),
                    unionid: bound.then(|| w.unionid(person)),
                })
                .collect(),
        )
    }

    /// Calls per WeChat endpoint since the last reset (as `GET /_sim/calls`).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// Moves the simulator's clock forward (token and code expiry, quota days).
    pub fn advance_clock(&self, secs: u64) {
        self.0.clock.advance(secs);
    }

    /// The configuration the current world was built from.
    pub fn config(&self) -> SimConfig {
        self.lock().config.clone()
    }

    /// A one-line description of the world.
    pub fn summary(&self) -> String {
        let st = self.lock();
        let w = &st.world;
        let count = |kind: world::SimKind| w.apps.iter().filter(|a| a.kind == kind).count();
        let followers: usize = w.follows.iter().map(world::Follows::total).sum();
        format!(
            "seed {}, {}, {} ({}, {}, {}, {}; {} unbound), {} in {:.1} MiB",
            st.config.seed,
            counted(w.people as usize, "person", "people"),
            counted(w.apps.len(), "app", "apps"),
            counted(
                count(world::SimKind::OfficialAccount),
                "official account",
                "official accounts"
            ),
            counted(
                count(world::SimKind::MiniProgram),
                "mini program",
                "mini programs"
            ),
            counted(
                count(world::SimKind::MobileApp),
                "mobile app",
                "mobile apps"
            ),
            counted(count(world::SimKind::Website), "website", "websites"),
            w.apps.iter().filter(|a| !a.bound).count(),
            counted(followers, "follow", "follows"),
            w.follow_bytes() as f64 / (1024.0 * 1024.0),
        )
    }

    /// One line per app: its appid, its kind (as union360's `registerApp`
    /// takes it) and whether it is bound to the open platform.
    pub fn app_lines(&self) -> Vec<String> {
        self.apps()
            .iter()
            .map(|app| {
                let binding = if app.bound {
                    "bound: returns UnionIDs"
                } else {
                    "unbound: returns no UnionID"
                };
                format!("{}  {:<16}  {binding}", app.appid, app.kind)
            })
            .collect()
    }

    fn now(&self) -> u64 {
        self.0.clock.now()
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `n` and the noun, singular or plural as `n` asks.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `GET` on an endpoint that only takes `POST`.
async fn wire_post_only() -> axum::response::Response {
    wire::error(43002)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_one_of_each_in_the_singular() {
        let one = Simulator::new(SimConfig {
            people: 1,
            apps: 1,
            kinds: KindMix::OFFICIAL_ACCOUNTS,
            unbound_share: 0.0,
            ..SimConfig::default()
        });
        let summary = one.summary();
        assert!(
            summary.starts_with("seed 42, 1 person, 1 app (1 official account, 0 mini programs, 0 mobile apps, 0 websites; 0 unbound), "),
            "{summary}"
        );
        let many = Simulator::new(SimConfig {
            people: 200,
            apps: 8,
            kinds: KindMix {
                oa: 1.0,
                mp: 1.0,
                app: 1.0,
                web: 1.0,
            },
            ..SimConfig::default()
        });
        let summary = many.summary();
        assert!(
            summary.contains(" 200 people, 8 apps (2 official accounts, 2 mini programs, 2 mobile apps, 2 websites; 2 unbound), "),
            "{summary}"
        );
        assert!(summary.contains(" follows in "), "{summary}");
    }

    #[test]
    fn each_app_line_says_whether_it_is_bound() {
        let sim = Simulator::new(SimConfig {
            apps: 6,
            ..SimConfig::default()
        });
        let lines = sim.app_lines();
        assert_eq!(lines.len(), 6);
        for (line, app) in lines.iter().zip(sim.apps()) {
            assert!(line.starts_with(&app.appid), "{line}");
            assert!(line.contains(&app.kind), "{line}");
            let bound = if app.bound { " bound:" } else { " unbound:" };
            assert!(line.contains(bound), "{line}");
        }
        assert_eq!(lines.iter().filter(|l| l.contains(" unbound:")).count(), 2);
    }
}
