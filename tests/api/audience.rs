//! The audience statistics against brute force: whatever writers do, at
//! once, and whatever was stored before the counts were kept, the counts
//! equal what a full scan of the accounts says.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use entity::{account, app, person};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use serde_json::{Value, json};
use union360::domain::Day;

use crate::helpers::{Backend, TestApp, spawn_app};

/// The official accounts: the last is not bound to the open platform, so
/// its rows never carry a UnionID.
const OAS: [&str; 4] = [
    "wx00000000000000a1",
    "wx00000000000000a2",
    "wx00000000000000a3",
    "wx00000000000000a4",
];
/// A mini program: its accounts link people but are never counted.
const MP: &str = "wx00000000000000b1";

const AUDIENCE_FIELDS: &str = "day apps { appid followers linkedFollowers unlinkedFollowers }
    distinctPeople { atLeast atMost } linkedPeople unlinkedFollowers
    pairs { appids people } followCounts { apps people } combinations { appids people }";

/// What a full scan of the accounts says: the official accounts in
/// registration order, each one's linked and unlinked followers, and the
/// set of official accounts (indexes) each linked person follows.
struct Truth {
    appids: Vec<String>,
    linked: Vec<u64>,
    unlinked: Vec<u64>,
    follows: BTreeMap<i64, BTreeSet<usize>>,
}

/// Scans every app and account.
async fn truth(db: &DatabaseConnection) -> Truth {
    let apps = app::Entity::find()
        .order_by_asc(app::Column::Id)
        .all(db)
        .await
        .unwrap();
    let oas: Vec<&app::Model> = apps
        .iter()
        .filter(|a| a.kind == "OFFICIAL_ACCOUNT")
        .collect();
    assert!(oas.iter().all(|a| a.audience_bit.is_some()), "{oas:?}");
    let index: BTreeMap<i64, usize> = oas.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
    let mut truth = Truth {
        appids: oas.iter().map(|a| a.appid.clone()).collect(),
        linked: vec![0; oas.len()],
        unlinked: vec![0; oas.len()],
        follows: BTreeMap::new(),
    };
    for account in account::Entity::find().all(db).await.unwrap() {
        let Some(&i) = index.get(&account.app_id) else {
            continue;
        };
        if account.subscribed != Some(true) {
            continue;
        }
        match account.person_id {
            Some(person) => {
                truth.linked[i] += 1;
                let new = truth.follows.entry(person).or_default().insert(i);
                assert!(new, "person {person} has two followers in one app");
            }
            None => truth.unlinked[i] += 1,
        }
    }
    truth
}

impl Truth {
    /// The audience of `appids` (all when `None`) as the API shapes it,
    /// combinations in a canonical order.
    fn audience(&self, appids: Option<&[&str]>) -> Value {
        // The apps asked about, in registration order.
        let chosen: Vec<usize> = (0..self.appids.len())
            .filter(|&i| appids.is_none_or(|a| a.contains(&self.appids[i].as_str())))
            .collect();
        let appid = |k: usize| self.appids[chosen[k]].clone();
        // Each linked person's follows among the chosen apps, as positions in `chosen`.
        let sets: Vec<BTreeSet<usize>> = self
            .follows
            .values()
            .map(|s| {
                (0..chosen.len())
                    .filter(|k| s.contains(&chosen[*k]))
                    .collect::<BTreeSet<usize>>()
            })
            .filter(|s| !s.is_empty())
            .collect();
        let unlinked: u64 = chosen.iter().map(|&i| self.unlinked[i]).sum();
        let linked_people = sets.len() as u64;
        let mut pairs = Vec::new();
        for x in 0..chosen.len() {
            for y in x + 1..chosen.len() {
                let people = sets
                    .iter()
                    .filter(|s| s.contains(&x) && s.contains(&y))
                    .count();
                pairs.push(json!({ "appids": [appid(x), appid(y)], "people": people }));
            }
        }
        let follow_counts: Vec<Value> = (1..=chosen.len())
            .map(|k| json!({ "apps": k, "people": sets.iter().filter(|s| s.len() == k).count() }))
            .collect();
        let mut combinations: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for s in &sets {
            *combinations
                .entry(s.iter().map(|&k| appid(k)).collect())
                .or_default() += 1;
        }
        let combinations: Vec<Value> = combinations
            .into_iter()
            .map(|(appids, people)| json!({ "appids": appids, "people": people }))
            .collect();
        canonical(json!({
            "day": null,
            "apps": chosen.iter().map(|&i| json!({
                "appid": self.appids[i],
                "followers": self.linked[i] + self.unlinked[i],
                "linkedFollowers": self.linked[i],
                "unlinkedFollowers": self.unlinked[i],
            })).collect::<Vec<_>>(),
            "distinctPeople": { "atLeast": linked_people, "atMost": linked_people + unlinked },
            "linkedPeople": linked_people,
            "unlinkedFollowers": unlinked,
            "pairs": pairs,
            "followCounts": follow_counts,
            "combinations": combinations,
        }))
    }
}

/// `audience` with its combinations sorted by size then appids (the API
/// promises largest first, which is checked here, not how ties go), and
/// `day` set to null.
fn canonical(mut audience: Value) -> Value {
    let combinations = audience["combinations"].as_array_mut().unwrap();
    let people = |c: &Value| c["people"].as_u64().unwrap();
    combinations.sort_by(|a, b| {
        people(b)
            .cmp(&people(a))
            .then_with(|| a["appids"].to_string().cmp(&b["appids"].to_string()))
    });
    audience["day"] = Value::Null;
    audience
}

/// The audience the API gives for `appids` (all when `None`), on `day`.
async fn asked(app: &TestApp, appids: Option<&[&str]>, day: Option<&str>) -> Value {
    let query = format!(
        "query($a: [String!], $d: Date) {{ audience(appids: $a, day: $d) {{ {AUDIENCE_FIELDS} }} }}"
    );
    let audience = app.data(&query, json!({ "a": appids, "d": day })).await["audience"].clone();
    let people = |c: &Value| c["people"].as_u64().unwrap();
    let combinations = audience["combinations"].as_array().unwrap();
    assert!(
        combinations
            .windows(2)
            .all(|w| people(&w[0]) >= people(&w[1])),
        "combinations come largest first: {audience:#}"
    );
    assert_eq!(audience["day"], json!(day), "{audience:#}");
    canonical(audience)
}

/// The subsets of the official accounts the tests ask about.
fn subsets() -> Vec<Option<Vec<&'static str>>> {
    let mut all = vec![None];
    all.extend(OAS.iter().map(|a| Some(vec![*a])));
    all.extend([
        Some(vec![OAS[0], OAS[1]]),
        Some(vec![OAS[1], OAS[3]]),
        // Asked in another order: answered in registration order.
        Some(vec![OAS[2], OAS[0]]),
        Some(vec![OAS[0], OAS[1], OAS[2]]),
        Some(vec![OAS[3], OAS[2], OAS[1], OAS[0]]),
    ]);
    all
}

/// One random upsert row: a follow (with or without the UnionID), an
/// unfollow, a UnionID arriving for an account, a profile change, or a
/// second openid of a person in an app (its link refused and recorded).
fn random_row(rng: &mut StdRng, people: u32) -> Value {
    let app = rng.gen_range(0..=OAS.len());
    let appid = OAS.get(app).copied().unwrap_or(MP);
    let bound = app != 3;
    let person = rng.gen_range(0..people);
    let unionid = format!("u-{person}");
    let mut row = json!({ "appid": appid, "openid": format!("o{app}-{person}") });
    match rng.gen_range(0..10) {
        0..=3 => {
            row["following"] = json!(true);
            if bound && rng.gen_bool(0.6) {
                row["unionid"] = json!(unionid);
            }
        }
        4 | 5 => row["following"] = json!(false),
        6 | 7 if bound => row["unionid"] = json!(unionid),
        6..=8 => row["nickname"] = json!(format!("n{}", rng.gen_range(0..5))),
        _ => {
            row["openid"] = json!(format!("o{app}-{person}-b"));
            row["following"] = json!(rng.gen_bool(0.7));
            if bound {
                row["unionid"] = json!(unionid);
            }
        }
    }
    row
}

const UPSERT: &str =
    "mutation($rows: [AccountInput!]!) { upsertAccounts(input: $rows) { created } }";

on_each_backend!(
    the_audience_is_exact_under_concurrent_writers,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn the_audience_is_exact_under_concurrent_writers(backend: Backend) {
    const WRITERS: u64 = 8;
    const CALLS: usize = 30;
    const PEOPLE: u32 = 40;
    let app = spawn_app(backend).await;
    for appid in OAS {
        app.register_app(appid, "OFFICIAL_ACCOUNT").await;
    }
    app.register_app(MP, "MINI_PROGRAM").await;

    let writers = (0..WRITERS).map(|writer| {
        let app = &app;
        async move {
            let mut rng = StdRng::seed_from_u64(0x5eed + writer);
            for _ in 0..CALLS {
                // Rows of one call name distinct accounts.
                let mut rows: BTreeMap<String, Value> = BTreeMap::new();
                for _ in 0..rng.gen_range(1..=6) {
                    let row = random_row(&mut rng, PEOPLE);
                    rows.insert(format!("{}/{}", row["appid"], row["openid"]), row);
                }
                let rows: Vec<Value> = rows.into_values().collect();
                let body = app.graphql(UPSERT, json!({ "rows": rows })).await;
                assert!(body.get("errors").is_none(), "{backend:?}: {body:#}");
            }
        }
    });
    futures::future::join_all(writers).await;

    let truth = truth(app.state.db()).await;
    assert!(truth.follows.len() > 10, "the writers linked people");
    assert!(
        truth.unlinked.iter().all(|n| *n > 0),
        "{:?}",
        truth.unlinked
    );
    assert!(
        truth.follows.values().any(|s| s.len() >= 3),
        "some people follow three apps"
    );
    for subset in subsets() {
        let want = truth.audience(subset.as_deref());
        let got = asked(&app, subset.as_deref(), None).await;
        assert_eq!(got, want, "{backend:?} {subset:?}");
    }

    // Today's count as of now, and the day's history, are the same numbers.
    let today = Day::of(chrono::Utc::now()).to_string();
    let want = truth.audience(None);
    assert_eq!(
        asked(&app, None, Some(&today)).await,
        want,
        "{backend:?} as of today"
    );
    let history = app
        .data(
            &format!(
                "query($d: Date!) {{ audienceHistory(from: $d, to: $d) {{ {AUDIENCE_FIELDS} }} }}"
            ),
            json!({ "d": today }),
        )
        .await["audienceHistory"]
        .clone();
    let days = history.as_array().unwrap();
    assert_eq!(days.len(), 1, "{history:#}");
    assert_eq!(days[0]["day"], today.as_str());
    assert_eq!(canonical(days[0].clone()), want, "{backend:?} history");

    // The command line counts the same.
    let url = &app.state.settings().database.database_url;
    let output = Command::new(env!("CARGO_BIN_EXE_union360"))
        .arg("audience")
        .env("DATABASE_URL", url)
        .env_remove("UNION360_MASTER_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let (low, high) = (
        &want["distinctPeople"]["atLeast"],
        &want["distinctPeople"]["atMost"],
    );
    assert!(
        text.contains(&format!("Distinct people: between {low} and {high} ")),
        "{text}"
    );
    for a in want["apps"].as_array().unwrap() {
        let appid = a["appid"].as_str().unwrap();
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with(appid))
            .unwrap_or_else(|| panic!("no row for {appid}: {text}"))
            .split_whitespace()
            .collect();
        let counts = [
            &a["followers"],
            &a["linkedFollowers"],
            &a["unlinkedFollowers"],
        ];
        let counts: Vec<String> = counts.iter().map(|c| c.to_string()).collect();
        assert_eq!(row[2..], counts, "{appid}: {text}");
    }
    for pair in want["pairs"].as_array().unwrap() {
        let line = format!(
            "  {} & {}: {}",
            pair["appids"][0].as_str().unwrap(),
            pair["appids"][1].as_str().unwrap(),
            pair["people"]
        );
        assert!(text.lines().any(|l| l == line), "{line}: {text}");
    }
}

on_each_backend!(a_new_person_whose_rows_are_not_all_applied_gets_its_true_mask);
/// A person created by a call starts with the mask its rows promise; when
/// a row is refused (rule 6: a second account of one app for the person),
/// the mask stored and the counts are those of what was applied.
async fn a_new_person_whose_rows_are_not_all_applied_gets_its_true_mask(backend: Backend) {
    let app = spawn_app(backend).await;
    for appid in OAS {
        app.register_app(appid, "OFFICIAL_ACCOUNT").await;
    }
    let (a, b) = (OAS[0], OAS[1]);
    // In key order: `o-1` takes the person's seat in `a` without
    // following; `o-2`, following, is refused the link and stays unlinked.
    let rows = json!([
        { "appid": a, "openid": "o-1", "unionid": "u-new", "following": false },
        { "appid": a, "openid": "o-2", "unionid": "u-new", "following": true },
        { "appid": b, "openid": "o-3", "unionid": "u-new", "following": true },
    ]);
    let body = app.graphql(UPSERT, json!({ "rows": rows })).await;
    assert!(body.get("errors").is_none(), "{backend:?}: {body:#}");
    let check = |when: &'static str| {
        let app = &app;
        async move {
            let db = app.state.db();
            let truth = truth(db).await;
            // Each official account's bit, in the order `truth` indexes them.
            let apps = app::Entity::find()
                .order_by_asc(app::Column::Id)
                .all(db)
                .await
                .unwrap();
            let bit = |i: usize| {
                let appid = &truth.appids[i];
                let found = apps.iter().find(|a| &a.appid == appid).unwrap();
                1i64 << found.audience_bit.unwrap()
            };
            for p in person::Entity::find().all(db).await.unwrap() {
                let want: i64 = truth
                    .follows
                    .get(&p.id)
                    .map(|s| s.iter().map(|&i| bit(i)).sum())
                    .unwrap_or(0);
                assert_eq!(p.audience_mask, want, "{backend:?} {when}: {p:?}");
            }
            assert_eq!(
                asked(app, None, None).await,
                truth.audience(None),
                "{backend:?} {when}"
            );
            truth
        }
    };
    let truth = check("after the call").await;
    assert_eq!(truth.unlinked[0], 1, "{backend:?}: o-2 stays unlinked");
    assert_eq!(
        truth.follows.len(),
        1,
        "{backend:?}: one person, through o-3"
    );
    // The person moves from the mask stored: it must be the true one.
    let rows = json!([{ "appid": a, "openid": "o-1", "following": true }]);
    let body = app.graphql(UPSERT, json!({ "rows": rows })).await;
    assert!(body.get("errors").is_none(), "{backend:?}: {body:#}");
    let truth = check("after o-1 follows").await;
    assert_eq!(truth.follows.values().next().map(BTreeSet::len), Some(2));
}

on_each_backend!(the_migration_counts_what_was_stored_before_it);
async fn the_migration_counts_what_was_stored_before_it(backend: Backend) {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::Set;

    let (url, _dir) = crate::helpers::fresh_database(backend).await;
    let db = sea_orm::Database::connect(&url).await.unwrap();
    // The schema before the counts were kept.
    Migrator::up(&db, Some(6)).await.unwrap();
    let now = chrono::Utc::now();
    let mut apps = Vec::new();
    for (appid, kind) in [
        (OAS[0], "OFFICIAL_ACCOUNT"),
        (MP, "MINI_PROGRAM"),
        (OAS[1], "OFFICIAL_ACCOUNT"),
        (OAS[2], "OFFICIAL_ACCOUNT"),
    ] {
        // Inserted without reading back: the entities have columns this
        // older schema lacks.
        let inserted = app::Entity::insert(app::ActiveModel {
            appid: Set(appid.to_owned()),
            kind: Set(kind.to_owned()),
            name: Set(appid.to_owned()),
            secret_sealed: Set("v1:sealed".to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .exec(&db)
        .await
        .unwrap();
        apps.push(inserted.last_insert_id);
    }
    let mut rng = StdRng::seed_from_u64(7);
    let mut accounts = 0;
    for p in 0..60 {
        let person = person::Entity::insert(person::ActiveModel {
            unionid: Set(format!("u-{p}")),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .exec(&db)
        .await
        .unwrap()
        .last_insert_id;
        for (a, &app_id) in apps.iter().enumerate() {
            if !rng.gen_bool(0.6) {
                continue;
            }
            // Linked or not; following, not, or unknown.
            let linked = rng.gen_bool(0.8);
            let subscribed = [Some(true), Some(true), Some(false), None][rng.gen_range(0..4)];
            account::Entity::insert(account::ActiveModel {
                app_id: Set(app_id),
                openid: Set(format!("o{a}-{p}")),
                person_id: Set(linked.then_some(person)),
                unionid: Set(linked.then(|| format!("u-{p}"))),
                subscribed: Set(subscribed),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            })
            .exec(&db)
            .await
            .unwrap();
            accounts += 1;
        }
    }
    assert!(accounts > 100);
    Migrator::up(&db, None).await.unwrap();

    let truth = truth(&db).await;
    assert!(
        truth.unlinked.iter().all(|n| *n > 0),
        "{:?}",
        truth.unlinked
    );
    let today = Day::of(chrono::Utc::now());
    for subset in subsets() {
        let appids: Option<Vec<union360::domain::AppId>> = subset.as_ref().map(|s| {
            s.iter()
                .filter(|a| **a != OAS[3]) // not registered in this database
                .map(|a| union360::domain::AppId::parse(*a).unwrap())
                .collect()
        });
        if appids.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        let names: Option<Vec<&str>> = appids
            .as_ref()
            .map(|a| a.iter().map(union360::domain::AppId::as_str).collect());
        let want = truth.audience(names.as_deref());
        for day in [None, Some(today)] {
            let got = union360::stats::audience(&db, appids.as_deref(), day)
                .await
                .unwrap();
            assert_eq!(to_json(&got), want, "{backend:?} {names:?} {day:?}");
        }
    }
}

/// A library `Audience` shaped like the API's answer.
fn to_json(a: &union360::stats::Audience) -> Value {
    assert!(
        a.combinations.windows(2).all(|w| w[0].1 >= w[1].1),
        "combinations come largest first: {a:?}"
    );
    let appid = |i: usize| a.apps[i].appid.clone();
    canonical(json!({
        "day": null,
        "apps": a.apps.iter().map(|f| json!({
            "appid": f.appid,
            "followers": f.followers(),
            "linkedFollowers": f.linked,
            "unlinkedFollowers": f.unlinked,
        })).collect::<Vec<_>>(),
        "distinctPeople": { "atLeast": a.distinct_people().0, "atMost": a.distinct_people().1 },
        "linkedPeople": a.linked_people,
        "unlinkedFollowers": a.unlinked_followers,
        "pairs": a.pairs.iter().map(|&(i, j, n)| json!({ "appids": [appid(i), appid(j)], "people": n })).collect::<Vec<_>>(),
        "followCounts": a.follow_counts.iter().enumerate().map(|(k, n)| json!({ "apps": k + 1, "people": n })).collect::<Vec<_>>(),
        "combinations": a.combinations.iter().map(|(m, n)| json!({
            "appids": m.iter().map(|&i| appid(i)).collect::<Vec<_>>(),
            "people": n,
        })).collect::<Vec<_>>(),
    }))
}
