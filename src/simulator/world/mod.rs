//! The simulated population: an open platform, its apps and their people.
//!
//! Everything is derived from the seed. Apps are few and stored in full.
//! People are many and stored as nothing but numbers: a person is an index
//! `0..people`, their identifiers come from [`Codec`], their profile and each
//! subscription's details are recomputed from hashes of `(seed, app, person)`
//! on demand. Per official account the world keeps only its followers, as a
//! sorted `Vec<u32>` (seeded follows, whose follow time grows with the person
//! index), a short list of later follows, and a membership bitset: about
//! 4.1 bytes per follower and 1 bit per person.
//!
//! - [`follows`]: the followers of each official account;
//! - [`people`]: a person's profile and subscriptions, derived on demand.

mod follows;
mod people;

use std::collections::HashMap;

use super::codec::{ALPHABET, Codec, IdKind, chars, hash, unit};
use super::{KindMix, SimConfig};

pub(crate) use follows::Follows;

/// The four kinds of app on an open platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimKind {
    /// 公众号: followers, user/info, callbacks.
    OfficialAccount,
    /// 小程序: jscode2session.
    MiniProgram,
    /// Mobile app: OAuth sign-in.
    MobileApp,
    /// Website: QR-code OAuth sign-in.
    Website,
}

impl SimKind {
    /// The name union360 uses for the kind.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::OfficialAccount => "OFFICIAL_ACCOUNT",
            Self::MiniProgram => "MINI_PROGRAM",
            Self::MobileApp => "MOBILE_APP",
            Self::Website => "WEBSITE",
        }
    }
}

/// One app of the open platform.
#[derive(Debug, Clone)]
pub(crate) struct AppDef {
    /// `wx` + 16 hex digits.
    pub appid: String,
    /// What kind of app it is.
    pub kind: SimKind,
    /// The AppSecret (32 hex digits).
    pub secret: String,
    /// Whether the app is bound to the open platform (returns UnionIDs).
    pub bound: bool,
    /// The callback token (official accounts).
    pub token: Option<String>,
    /// The 43-character EncodingAESKey (official accounts).
    pub aes_key: Option<String>,
    /// The original id `gh_…` (official accounts).
    pub gh_id: Option<String>,
}

/// A person's profile as WeChat knows it (before the 2021 blanking).
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub nickname: String,
    pub sex: u8,
    /// `sns/userinfo` sends this person's `sex` as a string.
    pub sex_as_string: bool,
    pub language: &'static str,
    pub city: &'static str,
    pub province: &'static str,
    pub country: &'static str,
    pub headimgurl: String,
}

/// How a follower subscribed.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub time: u64,
    pub scene: &'static str,
    pub qr_scene: u64,
    pub qr_scene_str: String,
    pub tags: Vec<u32>,
}

/// The whole simulated population.
#[derive(Debug)]
pub(crate) struct World {
    pub seed: u64,
    pub people: u32,
    pub apps: Vec<AppDef>,
    pub follows: Vec<Follows>,
    by_appid: HashMap<String, usize>,
    codec: Codec,
}

impl World {
    /// Builds the world `config` describes.
    pub(crate) fn build(config: &SimConfig) -> Self {
        let seed = config.seed;
        let count = config.apps.min(u32::from(u16::MAX - 1)) as usize;
        let kinds = allocate(count, &config.kinds);
        let unbound = unbound_apps(seed, &kinds, config.unbound_share);
        let hexdigits = b"0123456789abcdef";
        let apps: Vec<AppDef> = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| {
                let i64_ = i as u64;
                let oa = kind == SimKind::OfficialAccount;
                AppDef {
                    appid: format!("wx{}", chars(seed, &[1, i64_], 16, hexdigits)),
                    kind,
                    secret: chars(seed, &[2, i64_], 32, hexdigits),
                    bound: !unbound.contains(&i),
                    token: oa.then(|| chars(seed, &[3, i64_], 32, &ALPHABET[..62])),
                    aes_key: oa.then(|| chars(seed, &[4, i64_], 43, &ALPHABET[..62])),
                    gh_id: oa.then(|| format!("gh_{}", chars(seed, &[5, i64_], 12, hexdigits))),
                }
            })
            .collect();
        let follows = apps
            .iter()
            .enumerate()
            .map(|(i, app)| {
                let mut follows = Follows::with_people(config.people);
                if app.kind == SimKind::OfficialAccount {
                    let rate = 0.1 + 0.5 * unit(hash(seed, &[6, i as u64]));
                    let chance = |person: u32| match config.follow_share {
                        Some(share) => share.clamp(0.0, 1.0),
                        None => (rate * engagement(seed, person)).min(0.95),
                    };
                    for person in 0..config.people {
                        if unit(hash(seed, &[7, i as u64, u64::from(person)])) < chance(person) {
                            follows.base.push(person);
                            follows.set(person, true);
                        }
                    }
                    follows.base.shrink_to_fit();
                }
                follows
            })
            .collect();
        let by_appid = apps
            .iter()
            .enumerate()
            .map(|(i, a)| (a.appid.clone(), i))
            .collect();
        Self {
            seed,
            people: config.people,
            apps,
            follows,
            by_appid,
            codec: Codec::new(seed),
        }
    }

    /// The index of the app with this appid.
    pub(crate) fn app_index(&self, appid: &str) -> Option<usize> {
        self.by_appid.get(appid).copied()
    }

    /// A person's OpenID in an app.
    pub(crate) fn openid(&self, app: usize, person: u32) -> String {
        self.codec.encode(IdKind::Open, app as u16, person)
    }

    /// A person's UnionID.
    pub(crate) fn unionid(&self, person: u32) -> String {
        self.codec.encode(IdKind::Union, u16::MAX, person)
    }

    /// The virtual OpenID a snapshot-page visit yields.
    pub(crate) fn snapshot_openid(&self, app: usize, person: u32) -> String {
        self.codec.encode(IdKind::SnapshotOpen, app as u16, person)
    }

    /// The virtual UnionID a snapshot-page visit yields.
    pub(crate) fn snapshot_unionid(&self, person: u32) -> String {
        self.codec.encode(IdKind::SnapshotUnion, u16::MAX, person)
    }

    /// The person behind an OpenID of `app`, if it is one.
    pub(crate) fn person_of(&self, app: usize, openid: &str) -> Option<u32> {
        match self.codec.decode(openid)? {
            (IdKind::Open, a, person) if usize::from(a) == app && person < self.people => {
                Some(person)
            }
            _ => None,
        }
    }

    /// Heap bytes held by the follow data (for the start-up summary).
    pub(crate) fn follow_bytes(&self) -> usize {
        self.follows.iter().map(Follows::bytes).sum()
    }
}

/// How keen a person is to follow accounts: some follow many, most few.
fn engagement(seed: u64, person: u32) -> f64 {
    match hash(seed, &[11, u64::from(person)]) % 10 {
        0..=3 => 0.3,
        4..=7 => 1.0,
        _ => 2.0,
    }
}

/// Splits `count` apps among the kinds by the weights in `mix` (largest remainder).
fn allocate(count: usize, mix: &KindMix) -> Vec<SimKind> {
    let weights = [
        (SimKind::OfficialAccount, mix.oa.max(0.0)),
        (SimKind::MiniProgram, mix.mp.max(0.0)),
        (SimKind::MobileApp, mix.app.max(0.0)),
        (SimKind::Website, mix.web.max(0.0)),
    ];
    let sum: f64 = weights.iter().map(|w| w.1).sum();
    if count == 0 || sum <= 0.0 {
        return vec![SimKind::OfficialAccount; count];
    }
    let shares: Vec<f64> = weights.iter().map(|w| w.1 / sum * count as f64).collect();
    let mut counts: Vec<usize> = shares.iter().map(|s| s.floor() as usize).collect();
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|a, b| {
        let ra = shares[*a] - shares[*a].floor();
        let rb = shares[*b] - shares[*b].floor();
        rb.total_cmp(&ra).then(a.cmp(b))
    });
    let mut left = count - counts.iter().sum::<usize>();
    for i in order {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    weights
        .iter()
        .zip(counts)
        .flat_map(|(w, n)| std::iter::repeat_n(w.0, n))
        .collect()
}

/// Which apps (indices into `kinds`) are not bound to the open platform,
/// so that their APIs return no UnionID.
///
/// `share` of the apps, rounded to the nearest whole app, are unbound, but
/// official accounts, whose followers are the audience union360
/// deduplicates, stay mostly bound: of `n` official accounts, `share × n`
/// rounded down are unbound, and never more than a minority, ⌊(n − 1) / 2⌋
/// (none of 1 or 2, one of 3 or 4, …); the other unbound apps are of the
/// other kinds, and only when those run out are more official accounts
/// unbound, up to that minority. A share of 1 unbinds every app. Within
/// each group the seed decides which.
pub(crate) fn unbound_apps(seed: u64, kinds: &[SimKind], share: f64) -> Vec<usize> {
    let count = kinds.len();
    let share = if share.is_nan() {
        0.0
    } else {
        share.clamp(0.0, 1.0)
    };
    if share >= 1.0 {
        return (0..count).collect();
    }
    let seeded = |official: bool| {
        let mut group: Vec<usize> = (0..count)
            .filter(|i| (kinds[*i] == SimKind::OfficialAccount) == official)
            .collect();
        group.sort_by_key(|i| hash(seed, &[12, *i as u64]));
        group
    };
    let (official, others) = (seeded(true), seeded(false));
    let wanted = ((count as f64) * share).round() as usize;
    let cap = official_accounts_unbound_at_most(official.len());
    let official_share = ((official.len() as f64 * share).floor() as usize)
        .min(cap)
        .min(wanted);
    let from_others = (wanted - official_share).min(others.len());
    let from_official = (wanted - from_others).min(cap);
    let mut unbound: Vec<usize> = official[..from_official]
        .iter()
        .chain(&others[..from_others])
        .copied()
        .collect();
    unbound.sort_unstable();
    unbound
}

/// The most official accounts of `n` that a share below 1 leaves unbound:
/// a strict minority.
pub(crate) fn official_accounts_unbound_at_most(n: usize) -> usize {
    n.saturating_sub(1) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_world() {
        let config = SimConfig {
            people: 2000,
            ..SimConfig::default()
        };
        let (a, b) = (World::build(&config), World::build(&config));
        assert_eq!(a.apps[0].appid, b.apps[0].appid);
        assert_eq!(a.follows[0].base, b.follows[0].base);
        assert_eq!(a.openid(1, 5), b.openid(1, 5));
    }

    #[test]
    fn a_follow_share_of_one_makes_everyone_follow() {
        let config = SimConfig {
            people: 5000,
            apps: 2,
            kinds: KindMix::OFFICIAL_ACCOUNTS,
            follow_share: Some(1.0),
            ..SimConfig::default()
        };
        let world = World::build(&config);
        assert!(world.follows.iter().all(|f| f.total() == 5000));
        let half = World::build(&SimConfig {
            follow_share: Some(0.5),
            ..config
        });
        let n = half.follows[0].total();
        assert!((2300..2700).contains(&n), "{n}");
    }

    #[test]
    fn default_mix_is_mostly_official_accounts() {
        let kinds = allocate(6, &KindMix::default());
        let oa = kinds
            .iter()
            .filter(|k| **k == SimKind::OfficialAccount)
            .count();
        assert!(oa >= 3, "{kinds:?}");
        assert_eq!(kinds.len(), 6);
    }

    const MIXES: [KindMix; 4] = [
        KindMix {
            oa: 0.6,
            mp: 0.2,
            app: 0.1,
            web: 0.1,
        },
        KindMix::OFFICIAL_ACCOUNTS,
        KindMix {
            oa: 1.0,
            mp: 1.0,
            app: 0.0,
            web: 0.0,
        },
        KindMix {
            oa: 0.0,
            mp: 1.0,
            app: 1.0,
            web: 1.0,
        },
    ];

    #[test]
    fn most_official_accounts_stay_bound() {
        for seed in [1, 42, 7_777] {
            for count in 1..=12 {
                for mix in &MIXES {
                    let kinds = allocate(count, mix);
                    let oa = kinds
                        .iter()
                        .filter(|k| **k == SimKind::OfficialAccount)
                        .count();
                    for step in 0..=20 {
                        let share = f64::from(step) / 20.0;
                        let unbound = unbound_apps(seed, &kinds, share);
                        let case = format!("seed {seed}, {kinds:?}, share {share}: {unbound:?}");
                        assert!(unbound.windows(2).all(|w| w[0] < w[1]), "{case}");
                        assert!(unbound.iter().all(|i| *i < count), "{case}");
                        let unbound_oa = unbound
                            .iter()
                            .filter(|i| kinds[**i] == SimKind::OfficialAccount)
                            .count();
                        if step == 20 {
                            assert_eq!(unbound.len(), count, "{case}");
                            continue;
                        }
                        assert!(unbound_oa <= oa.saturating_sub(1) / 2, "{case}");
                        assert!(2 * unbound_oa < oa.max(1), "a minority: {case}");
                        let wanted = (count as f64 * share).round() as usize;
                        let possible = count - oa + official_accounts_unbound_at_most(oa);
                        assert_eq!(unbound.len(), wanted.min(possible), "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_default_world_of_six_apps_keeps_its_official_accounts_bound() {
        let world = World::build(&SimConfig {
            people: 10,
            apps: 6,
            ..SimConfig::default()
        });
        let oa: Vec<&AppDef> = world
            .apps
            .iter()
            .filter(|a| a.kind == SimKind::OfficialAccount)
            .collect();
        assert_eq!(oa.len(), 3);
        assert!(oa.iter().all(|a| a.bound), "{:?}", world.apps);
        assert_eq!(world.apps.iter().filter(|a| !a.bound).count(), 2);
    }

    #[test]
    fn a_share_of_a_third_unbinds_one_of_three_official_accounts() {
        let kinds = vec![SimKind::OfficialAccount; 3];
        assert_eq!(unbound_apps(42, &kinds, 0.34).len(), 1);
        assert_eq!(unbound_apps(42, &kinds, 0.9).len(), 1);
        assert_eq!(unbound_apps(42, &kinds, 1.0).len(), 3);
        assert_eq!(unbound_apps(42, &kinds, f64::NAN).len(), 0);
    }
}
