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
    /// The share of apps (0..1) not bound to the open platform.
    #[arg(long, default_value_t = 0.25)]
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

/// Runs the simulator until Ctrl-C.
pub(super) async fn run(args: SimulatorArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        seed: args.seed,
        people: args.people,
        apps: args.apps,
        unbound_share: args.unbound_share,
        kinds: args.kinds.unwrap_or_default(),
        blank_profiles: args.blank_profiles,
        unionid_for_non_followers: args.unionid_for_non_followers,
        follow_share: args.follow_share,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let handle = Simulator::new(config).serve_on(listener)?;
    println!("WeChat simulator listening on {}", handle.base_url());
    println!("{}", handle.sim.summary());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
