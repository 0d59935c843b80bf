//! `union360 simulator`: the WeChat simulator alone, a local WeChat sandbox.

use anyhow::Context as _;

use crate::simulator::{KindMix, SimConfig, Simulator};

/// `union360 simulator …`
#[derive(Debug, clap::Args)]
pub struct SimulatorArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: std::net::SocketAddr,
    /// The seed the world is derived from (same seed, same world).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How many people live in the world.
    #[arg(long, default_value_t = 1000)]
    pub people: u32,
    /// How many apps the open platform has.
    #[arg(long, default_value_t = 4)]
    pub apps: u32,
    /// The share of apps (0..1) not bound to the open platform: their APIs
    /// return no UnionID. Official accounts stay mostly bound: of n, the
    /// share rounded down is unbound, never more than (n - 1) / 2 of them
    /// (none of 1 or 2, one of 3 or 4); the other unbound apps are of other
    /// kinds. 1 unbinds every app. Start-up lists which apps are bound.
    #[arg(long, default_value_t = SimConfig::default().unbound_share)]
    pub unbound_share: f64,
    /// Relative weights of the app kinds, e.g. `oa=3,mp=1,app=1,web=1`.
    #[arg(long)]
    pub kinds: Option<KindMix>,
    /// Blank nickname, avatar, sex and places in user/info (WeChat since 2021).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub blank_profiles: bool,
    /// Return UnionIDs of non-followers from user/info (WeChat's older behaviour).
    #[arg(long)]
    pub unionid_for_non_followers: bool,
    /// The chance (0..1) that a person follows each official account, in
    /// place of the seeded mix (1 makes everyone follow every account).
    #[arg(long)]
    pub follow_share: Option<f64>,
}

impl SimulatorArgs {
    /// The world these flags describe.
    pub fn config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            people: self.people,
            apps: self.apps,
            unbound_share: self.unbound_share,
            kinds: self.kinds.unwrap_or_default(),
            blank_profiles: self.blank_profiles,
            unionid_for_non_followers: self.unionid_for_non_followers,
            follow_share: self.follow_share,
        }
    }
}

/// Runs the simulator until Ctrl-C.
pub(super) async fn run(args: SimulatorArgs) -> anyhow::Result<()> {
    let config = args.config();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let handle = Simulator::new(config).serve_on(listener)?;
    let base = handle.base_url();
    println!("WeChat simulator listening on {base}");
    println!("{}", handle.sim.summary());
    println!("apps (their secrets, tokens and AES keys: GET {base}/_sim/apps):");
    for line in handle.sim.app_lines() {
        println!("  {line}");
    }
    println!("point union360 at it: WECHAT_API_BASE={base} union360 serve");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
