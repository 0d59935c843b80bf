//! Follower sync: every follower imported, those who left marked, a killed
//! process resumed without losing or double-counting anyone, WeChat's quota
//! and errors handled, and one run per job across instances.
//!
//! What is expected is read from the simulator's own world (who follows
//! each app, checked once against its control plane's `/_sim/people/{i}`),
//! never from what union360 stored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use entity::{account, app, person, sync_job};
use futures::StreamExt;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use union360::clock::Clock;
use union360::crypto::MasterKey;
use union360::ingest::sync::SyncSettings;
use union360::keys::{Scope, Scopes};
use union360::simulator::{KindMix, SimConfig, SimHandle, Simulator};
use union360::wechat::client::RetryPolicy;

use crate::helpers::{
    Backend, SimControl, TestApp, client_with_key, codes, create_key, fresh_database, spawn_app_in,
};

const USER_GET: &str = "/cgi-bin/user/get";
const BATCHGET: &str = "/cgi-bin/user/info/batchget";
/// Openids per `user/get` page.
const PAGE: usize = 10_000;
/// Openids per `batchget` call.
const BATCH: usize = 100;

/// A world whose first official account has more than one page of
/// followers (12,492: two pages, then the data-less one) and whose second
/// has 3,304, every app bound to the open platform.
fn big_world() -> SimConfig {
    SimConfig {
        seed: 1,
        people: 25_000,
        apps: 2,
        unbound_share: 0.0,
        kinds: KindMix::OFFICIAL_ACCOUNTS,
        ..SimConfig::default()
    }
}

/// A small world of `apps` bound official accounts.
fn small_world(people: u32, apps: u32) -> SimConfig {
    SimConfig {
        seed: 7,
        people,
        apps,
        unbound_share: 0.0,
        kinds: KindMix::OFFICIAL_ACCOUNTS,
        ..SimConfig::default()
    }
}

const JOB: &str = "id appid state total pages listed imported linked failed unfollowed progress
    errorCode errorMessage requestedBy resumeAt createdAt startedAt updatedAt finishedAt";

/// Asks for a sync of `appid` through the API; the job.
async fn start_sync(app: &TestApp, appid: &str) -> Value {
    let query = format!("mutation($a: String!) {{ startFollowerSync(appid: $a) {{ {JOB} }} }}");
    app.data(&query, json!({ "a": appid })).await["startFollowerSync"].clone()
}

/// A job through the API.
async fn sync_job(app: &TestApp, id: &str) -> Value {
    let query = format!("query($id: ID!) {{ syncJob(id: $id) {{ {JOB} }} }}");
    app.data(&query, json!({ "id": id })).await["syncJob"].clone()
}

/// Polls job `id` until `done` holds, for at most `limit`; fails with the
/// job as it stands.
async fn wait_for(
    app: &TestApp,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let job = sync_job(app, id).await;
        if done(&job) {
            return job;
        }
        assert!(
            start.elapsed() < limit,
            "sync job {id} not done after {limit:?}: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for job `id` to succeed (at most 300 s); fails at once if it fails.
async fn wait_succeeded(app: &TestApp, id: &str) -> Value {
    let job = wait_for(app, id, Duration::from_secs(300), |job| {
        job["state"] == "SUCCEEDED" || job["state"] == "FAILED"
    })
    .await;
    assert_eq!(job["state"], "SUCCEEDED", "{job:#}");
    job
}

/// One follower of an official account in the simulated world.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Follower {
    person: u32,
    /// The UnionID, when the app is bound (WeChat reports it then).
    unionid: Option<String>,
}

/// The followers of each official account of the simulated world, by
/// appid, then by openid, as the simulator holds them now.
fn world_followers(sim: &SimHandle) -> BTreeMap<String, BTreeMap<String, Follower>> {
    sim.sim
        .apps()
        .into_iter()
        .filter(|a| a.kind == "OFFICIAL_ACCOUNT")
        .map(|a| {
            let followers = sim.sim.followers(&a.appid).unwrap();
            let followers = followers
                .into_iter()
                .map(|f| {
                    let follower = Follower {
                        person: f.person,
                        unionid: f.unionid,
                    };
                    (f.openid, follower)
                })
                .collect();
            (a.appid, followers)
        })
        .collect()
}

/// Checks the followers the simulator lists against each person's record
/// on its control plane (`/_sim/people/{i}`), person by person.
async fn check_against_people(
    sim: &SimHandle,
    followers: &BTreeMap<String, BTreeMap<String, Follower>>,
) {
    let client = reqwest::Client::new();
    let base = sim.base_url();
    let people: Vec<Value> = futures::stream::iter(0..sim.sim.config().people)
        .map(|i| {
            let request = client.get(format!("{base}/_sim/people/{i}"));
            async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
        })
        .buffered(16)
        .collect()
        .await;
    let mut seen: BTreeMap<String, BTreeMap<String, Follower>> = followers
        .keys()
        .map(|appid| (appid.clone(), BTreeMap::new()))
        .collect();
    for p in &people {
        for a in p["apps"].as_array().unwrap() {
            let Some(app) = seen.get_mut(a["appid"].as_str().unwrap()) else {
                continue;
            };
            if a["following"] == true {
                let follower = Follower {
                    person: u32::try_from(p["index"].as_u64().unwrap()).unwrap(),
                    unionid: p["unionid"].as_str().map(str::to_owned),
                };
                app.insert(a["openid"].as_str().unwrap().to_owned(), follower);
            }
        }
    }
    assert_eq!(&seen, followers);
}

/// An account as stored: following, UnionID, person.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    subscribed: Option<bool>,
    unionid: Option<String>,
    person_id: Option<i64>,
    unfollowed_at: Option<DateTime<Utc>>,
}

/// Every account of `appid` in the database, by openid.
async fn stored_accounts(db: &DatabaseConnection, appid: &str) -> BTreeMap<String, Stored> {
    let app = app::Entity::find()
        .filter(app::Column::Appid.eq(appid))
        .one(db)
        .await
        .unwrap()
        .expect("registered");
    account::Entity::find()
        .filter(account::Column::AppId.eq(app.id))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|a| {
            let stored = Stored {
                subscribed: a.subscribed,
                unionid: a.unionid,
                person_id: a.person_id,
                unfollowed_at: a.unfollowed_at,
            };
            (a.openid, stored)
        })
        .collect()
}

/// `user/get` pages a full listing of `n` followers takes, the data-less
/// page after the last included.
fn pages_for(n: usize) -> usize {
    n.div_ceil(PAGE) + 1
}

/// `batchget` calls a full import of `n` followers takes.
fn batchgets_for(n: usize) -> usize {
    (n / PAGE) * PAGE.div_ceil(BATCH) + (n % PAGE).div_ceil(BATCH)
}

fn int(v: &Value) -> usize {
    usize::try_from(v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))).unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// Followers of `appid` as the API counts them.
async fn following_count(app: &TestApp, appid: &str) -> usize {
    let data = app
        .data(
            "query($a: String!) { accounts(appid: $a, first: 1, refresh: CACHE_ONLY,
                filter: { following: true }) { totalCount } }",
            json!({ "a": appid }),
        )
        .await;
    int(&data["accounts"]["totalCount"])
}

const AUDIENCE: &str = "query { audience { linkedPeople unlinkedFollowers
    apps { appid followers linkedFollowers unlinkedFollowers } pairs { appids people } } }";

on_each_backend!(
    a_sync_imports_every_follower,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn a_sync_imports_every_follower(backend: Backend) {
    let app = spawn_app_in(backend, Clock::system(), big_world(), |_| {}).await;
    let appids = app.register_official_accounts().await;
    assert_eq!(appids.len(), 2);
    let expected = world_followers(&app.sim);
    let sizes: Vec<usize> = appids.iter().map(|a| expected[a].len()).collect();
    assert!(
        sizes.iter().any(|n| *n > PAGE),
        "the world has an app with several pages of followers: {sizes:?}"
    );
    app.sim.reset_calls().await;

    let mut jobs = Vec::new();
    for appid in &appids {
        let job = start_sync(&app, appid).await;
        assert_eq!(job["appid"], appid.as_str());
        assert!(
            ["QUEUED", "RUNNING"].contains(&job["state"].as_str().unwrap()),
            "{job:#}"
        );
        jobs.push(job["id"].as_str().unwrap().to_owned());
    }
    let mut pages = 0;
    for ((appid, id), n) in appids.iter().zip(&jobs).zip(&sizes) {
        let job = wait_succeeded(&app, id).await;
        let n = *n;
        assert_eq!(int(&job["total"]), n, "{backend:?} {job:#}");
        assert_eq!(int(&job["listed"]), n, "{backend:?} {job:#}");
        assert_eq!(int(&job["imported"]), n, "{backend:?} {job:#}");
        assert_eq!(int(&job["linked"]), n, "every app is bound: {job:#}");
        assert_eq!(int(&job["failed"]), 0, "{job:#}");
        assert_eq!(int(&job["unfollowed"]), 0, "{job:#}");
        assert_eq!(int(&job["pages"]), pages_for(n), "{job:#}");
        assert_eq!(job["progress"], 1.0, "{job:#}");
        assert!(job["errorMessage"].is_null(), "{job:#}");
        assert!(time(&job["finishedAt"]) >= time(&job["startedAt"]));
        pages += pages_for(n);

        // Exactly the followers, each following, each with its UnionID.
        let stored = stored_accounts(app.state.db(), appid).await;
        let want = &expected[appid.as_str()];
        assert_eq!(stored.len(), want.len(), "{backend:?} {appid}");
        for (openid, follower) in want {
            let account = stored
                .get(openid)
                .unwrap_or_else(|| panic!("{appid} follower {openid} not imported"));
            assert_eq!(account.subscribed, Some(true), "{openid}");
            assert_eq!(account.unionid, follower.unionid, "{openid}");
            assert!(account.person_id.is_some(), "{openid} is linked");
        }
        assert_eq!(following_count(&app, appid).await, n, "{backend:?}");
    }
    // Every page listed once, the data-less last one included, and every
    // profile fetched once.
    assert_eq!(app.sim.calls_to(USER_GET) as usize, pages, "{backend:?}");
    let batchgets: usize = sizes.iter().map(|n| batchgets_for(*n)).sum();
    assert_eq!(
        app.sim.calls_to(BATCHGET) as usize,
        batchgets,
        "{backend:?}"
    );

    // UnionIDs link one person across the apps: one person per UnionID,
    // holding that person's account in each app they follow.
    let persons: HashMap<i64, String> = person::Entity::find()
        .all(app.state.db())
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.id, p.unionid))
        .collect();
    let mut by_unionid: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for appid in &appids {
        for account in stored_accounts(app.state.db(), appid).await.values() {
            let person_id = account.person_id.unwrap();
            assert_eq!(account.unionid.as_ref(), persons.get(&person_id));
            by_unionid
                .entry(account.unionid.clone().unwrap())
                .or_default()
                .insert(person_id);
        }
    }
    assert!(by_unionid.values().all(|ids| ids.len() == 1));
    let unionids = |appid: &str| -> BTreeSet<String> {
        expected[appid]
            .values()
            .map(|f| f.unionid.clone().unwrap())
            .collect()
    };
    let (first, second) = (unionids(&appids[0]), unionids(&appids[1]));
    let both: Vec<&String> = first.intersection(&second).collect();
    let everyone: BTreeSet<&String> = first.union(&second).collect();
    assert_eq!(persons.len(), everyone.len(), "{backend:?}");
    assert!(!both.is_empty());
    for unionid in both.iter().take(3) {
        let data = app
            .data(
                "query($u: String!) { person(unionid: $u, refresh: CACHE_ONLY) {
                    accounts { appid following } } }",
                json!({ "u": unionid }),
            )
            .await;
        let mut seen: Vec<(String, String)> = data["person"]["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["appid"].as_str().unwrap().to_owned(),
                    a["following"].to_string(),
                )
            })
            .collect();
        seen.sort();
        let mut want: Vec<(String, String)> = appids
            .iter()
            .map(|a| (a.clone(), "true".to_owned()))
            .collect();
        want.sort();
        assert_eq!(seen, want, "{unionid}");
    }

    // The audience counts the same people.
    let audience = app.data(AUDIENCE, json!({})).await["audience"].clone();
    assert_eq!(
        int(&audience["linkedPeople"]),
        everyone.len(),
        "{audience:#}"
    );
    assert_eq!(int(&audience["unlinkedFollowers"]), 0, "{audience:#}");
    for (i, appid) in appids.iter().enumerate() {
        let counted = &audience["apps"][i];
        assert_eq!(counted["appid"], appid.as_str());
        assert_eq!(int(&counted["followers"]), sizes[i]);
        assert_eq!(int(&counted["linkedFollowers"]), sizes[i]);
    }
    assert_eq!(
        int(&audience["pairs"][0]["people"]),
        both.len(),
        "{audience:#}"
    );
}

on_each_backend!(
    unfollows_are_marked_at_the_end_of_a_complete_pass,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn unfollows_are_marked_at_the_end_of_a_complete_pass(backend: Backend) {
    let app = spawn_app_in(backend, Clock::system(), small_world(600, 2), |_| {}).await;
    let appids = app.register_official_accounts().await;
    let (oa, other) = (appids[0].as_str(), appids[1].as_str());
    for appid in &appids {
        let job = start_sync(&app, appid).await;
        wait_succeeded(&app, job["id"].as_str().unwrap()).await;
    }
    let before = world_followers(&app.sim);
    let audience_before = app.data(AUDIENCE, json!({})).await["audience"].clone();

    // Ten followers leave `oa`, five people follow it.
    let leaving: Vec<(String, Follower)> = before[oa]
        .iter()
        .step_by(7)
        .take(10)
        .map(|(o, f)| (o.clone(), f.clone()))
        .collect();
    assert_eq!(leaving.len(), 10);
    for (_, follower) in &leaving {
        let answer = app
            .sim
            .control(
                reqwest::Method::DELETE,
                "/_sim/follows",
                json!({ "appid": oa, "person": follower.person }),
            )
            .await;
        assert_eq!(answer["changed"], true, "{answer}");
    }
    let followers: BTreeSet<u32> = before[oa].values().map(|f| f.person).collect();
    let joining: Vec<u32> = (0..600)
        .filter(|p| !followers.contains(p))
        .take(5)
        .collect();
    for person in &joining {
        let answer = app
            .sim
            .control(
                reqwest::Method::POST,
                "/_sim/follows",
                json!({ "appid": oa, "person": person }),
            )
            .await;
        assert_eq!(answer["changed"], true, "{answer}");
    }
    let after = world_followers(&app.sim);
    check_against_people(&app.sim, &after).await;
    assert_eq!(after[oa].len(), before[oa].len() - 10 + 5);

    let first = start_sync(&app, oa).await;
    let id = first["id"].as_str().unwrap();
    let job = wait_succeeded(&app, id).await;
    assert_eq!(int(&job["listed"]), after[oa].len(), "{job:#}");
    assert_eq!(int(&job["unfollowed"]), 10, "{backend:?} {job:#}");
    let (started, finished) = (time(&job["startedAt"]), time(&job["finishedAt"]));

    // Those who left are kept, marked, and dated within the pass.
    let stored = stored_accounts(app.state.db(), oa).await;
    assert_eq!(
        stored.len(),
        before[oa].len() + 5,
        "no account is deleted: {backend:?}"
    );
    for (openid, _) in &leaving {
        let data = app
            .data(
                "query($a: String!, $o: String!) { account(appid: $a, openid: $o, refresh: CACHE_ONLY) {
                    following unfollowedAt person { unionid } } }",
                json!({ "a": oa, "o": openid }),
            )
            .await;
        let account = &data["account"];
        assert_eq!(account["following"], false, "{openid}: {account}");
        let at = time(&account["unfollowedAt"]);
        assert!(
            started <= at && at <= finished,
            "{at} within {started}..{finished}"
        );
        assert!(account["person"]["unionid"].is_string(), "still linked");
    }
    for (openid, follower) in &after[oa] {
        assert_eq!(stored[openid].subscribed, Some(true), "{openid}");
        assert_eq!(stored[openid].unionid, follower.unionid);
        assert!(stored[openid].unfollowed_at.is_none(), "{openid}");
    }
    assert_eq!(following_count(&app, oa).await, after[oa].len());

    // The audience drops by those who left and grows by those who came.
    let audience = app.data(AUDIENCE, json!({})).await["audience"].clone();
    let followed = |a: &BTreeMap<String, BTreeMap<String, Follower>>| -> BTreeSet<u32> {
        a.values()
            .flat_map(|f| f.values().map(|f| f.person))
            .collect()
    };
    let both = |a: &BTreeMap<String, BTreeMap<String, Follower>>| -> usize {
        let x: BTreeSet<u32> = a[oa].values().map(|f| f.person).collect();
        a[other].values().filter(|f| x.contains(&f.person)).count()
    };
    assert_eq!(
        int(&audience_before["linkedPeople"]),
        followed(&before).len()
    );
    assert_eq!(
        int(&audience["linkedPeople"]),
        followed(&after).len(),
        "{audience:#}"
    );
    assert_eq!(int(&audience["apps"][0]["followers"]), after[oa].len());
    assert_eq!(int(&audience["apps"][1]["followers"]), after[other].len());
    assert_eq!(
        int(&audience["pairs"][0]["people"]),
        both(&after),
        "{audience:#}"
    );

    // A pass that finds nobody gone marks nobody and dates nothing anew.
    let again = start_sync(&app, oa).await;
    assert_ne!(again["id"], first["id"], "a finished job is not reused");
    let job = wait_succeeded(&app, again["id"].as_str().unwrap()).await;
    assert_eq!(int(&job["unfollowed"]), 0, "{job:#}");
    assert_eq!(stored_accounts(app.state.db(), oa).await, stored);
}

/// The real binary, on `db`, talking to the simulator at `sim`.
fn union360(db: &str, master_key: Option<&str>, sim: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_union360"));
    command
        .env("DATABASE_URL", db)
        .env("WECHAT_API_BASE", sim)
        .env_remove("UNION360_MASTER_KEY")
        .env_remove("UNION360_SYNC_LEASE_SECS")
        .stdin(Stdio::null());
    if let Some(key) = master_key {
        command.env("UNION360_MASTER_KEY", key);
    }
    command
}

/// The job of the app in the database (the one job it has).
async fn only_job(db: &DatabaseConnection) -> Option<sync_job::Model> {
    let mut jobs = sync_job::Entity::find().all(db).await.ok()?;
    assert!(jobs.len() <= 1, "{jobs:?}");
    jobs.pop()
}

on_each_backend!(
    a_killed_sync_resumes_at_its_saved_page,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn a_killed_sync_resumes_at_its_saved_page(backend: Backend) {
    const LEASE_SECS: u64 = 4;
    let (db_url, _dir) = fresh_database(backend).await;
    let master_key = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(MasterKey::generate().1.expose_secret().to_owned()),
    };
    let key = master_key.as_deref();
    let sim = Simulator::spawn(big_world()).await.unwrap();
    let oa = sim.official_accounts().remove(0);
    let n = world_followers(&sim)[&oa.appid].len();
    assert!(n > PAGE && n < 2 * PAGE, "{n} followers: two pages");
    let register = union360(&db_url, key, &sim.base_url())
        .args([
            "app",
            "add",
            "--appid",
            &oa.appid,
            "--kind",
            "official-account",
        ])
        .args(["--name", "Big"])
        .env("UNION360_APP_SECRET", &oa.secret)
        .env("UNION360_APP_CALLBACK_TOKEN", "")
        .env("UNION360_APP_AES_KEY", "")
        .output()
        .unwrap();
    assert!(register.status.success(), "{register:?}");

    // The first page's profiles come quickly, the second page's slowly
    // (within the client's timeout): the process is killed in between.
    sim.fault(BATCHGET, json!({ "count": PAGE / BATCH, "latency_ms": 5 }))
        .await;
    sim.fault(BATCHGET, json!({ "latency_ms": 4_000 })).await;
    let dir = tempfile::tempdir().unwrap();
    let sync = |log: &str| {
        let mut command = union360(&db_url, key, &sim.base_url());
        command
            .args(["sync", "--app", &oa.appid, "--sync-lease-secs"])
            .arg(LEASE_SECS.to_string())
            .stdout(std::fs::File::create(dir.path().join(format!("{log}.out"))).unwrap())
            .stderr(std::fs::File::create(dir.path().join(format!("{log}.err"))).unwrap());
        command
    };
    let mut first = sync("first").spawn().unwrap();
    let db = sea_orm::Database::connect(&db_url).await.unwrap();
    let start = Instant::now();
    loop {
        if only_job(&db).await.is_some_and(|job| job.pages >= 1) {
            break;
        }
        if let Some(status) = first.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.path().join("first.err")).unwrap();
            panic!("the first sync ended ({status}) before saving a page: {log}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no page saved in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL: no chance to let go of the job.
    first.wait().unwrap();
    let killed = only_job(&db).await.unwrap();
    assert_eq!(killed.state, "RUNNING", "{killed:?}");
    assert_eq!(killed.pages, 1, "{killed:?}");
    assert_eq!(killed.listed, PAGE as i64, "{killed:?}");
    assert!(
        killed.owner.is_some() && killed.cursor.is_some(),
        "{killed:?}"
    );
    let written = stored_accounts(&db, &oa.appid).await.len();
    assert!(
        (PAGE..n).contains(&written),
        "the first page is written: {written}"
    );

    sim.control(reqwest::Method::DELETE, "/_sim/faults", json!({}))
        .await;
    sim.reset_calls().await;
    // While the dead process's lease holds, nobody takes the job over.
    let lease_until = killed.lease_until.unwrap();
    if lease_until - Utc::now() > chrono::Duration::seconds(2) {
        let early = sync("early").output().unwrap();
        assert!(!early.status.success(), "{early:?}");
        assert_eq!(
            sim.calls_to(USER_GET),
            0,
            "nothing fetched while the lease holds"
        );
        let stderr = std::fs::read_to_string(dir.path().join("early.err")).unwrap();
        assert!(stderr.contains("another process"), "{stderr}");
    }
    let wait = (lease_until - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(300)).await;

    let second = sync("second").output().unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("second.err")).unwrap();
    assert!(second.status.success(), "{backend:?}: {stderr}");
    let stdout = std::fs::read_to_string(dir.path().join("second.out")).unwrap();
    assert!(
        stdout.contains(&format!("{n} followers listed")),
        "{stdout}"
    );

    let job = only_job(&db).await.unwrap();
    assert_eq!(job.id, killed.id, "the same job resumed");
    assert_eq!(job.state, "SUCCEEDED", "{job:?}");
    assert_eq!(job.listed, n as i64, "{job:?}");
    assert_eq!(job.imported, n as i64, "{job:?}");
    assert_eq!(job.linked, n as i64, "{job:?}");
    assert_eq!(job.failed, 0, "{job:?}");
    assert_eq!(job.total, Some(n as i64), "{job:?}");
    assert_eq!(job.pages, pages_for(n) as i64, "{job:?}");
    // One row per follower, each following.
    let expected = world_followers(&sim);
    let stored = stored_accounts(&db, &oa.appid).await;
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        expected[&oa.appid].keys().collect::<Vec<_>>()
    );
    assert!(stored.values().all(|a| a.subscribed == Some(true)));
    let rows = account::Entity::find().all(&db).await.unwrap().len();
    assert_eq!(rows, n, "{backend:?}");
    // The second run started at the saved page: the first page was listed
    // and fetched once, by the first run.
    assert_eq!(
        sim.calls_to(USER_GET) as usize,
        pages_for(n) - 1,
        "{backend:?}"
    );
    assert_eq!(
        sim.calls_to(BATCHGET) as usize,
        batchgets_for(n) - PAGE / BATCH,
        "{backend:?}"
    );
}

/// The next midnight in China Standard Time (UTC+8) after `now`.
fn next_cst_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    let cst = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let tomorrow = now.with_timezone(&cst).date_naive().succ_opt().unwrap();
    tomorrow
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_local_timezone(cst)
        .unwrap()
        .with_timezone(&Utc)
}

on_each_backend!(
    a_spent_quota_pauses_the_sync_until_it_resets,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn a_spent_quota_pauses_the_sync_until_it_resets(backend: Backend) {
    let start = Utc::now().trunc_subsecs(0);
    let clock = Clock::manual(start);
    let app = spawn_app_in(backend, clock.clone(), small_world(300, 1), |_| {}).await;
    let oa = app.register_official_accounts().await.remove(0);
    let n = world_followers(&app.sim)[&oa].len();
    app.sim
        .control(
            reqwest::Method::POST,
            "/_sim/quota/exhaust",
            json!({ "appid": oa, "path": BATCHGET }),
        )
        .await;

    let job = start_sync(&app, &oa).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let paused = wait_for(&app, &id, Duration::from_secs(30), |j| {
        j["state"] != "QUEUED" && j["state"] != "RUNNING"
    })
    .await;
    assert_eq!(paused["state"], "PAUSED", "{backend:?} {paused:#}");
    assert_eq!(paused["errorCode"], 45009, "{paused:#}");
    let message = paused["errorMessage"].as_str().unwrap();
    assert!(message.contains("daily quota"), "{message}");
    assert_eq!(
        time(&paused["resumeAt"]),
        next_cst_midnight(start),
        "{paused:#}"
    );
    assert!(paused["finishedAt"].is_null());
    assert_eq!(int(&paused["listed"]), 0);

    // Nothing runs before the reset, however often it is asked for.
    app.sim.reset_calls().await;
    let asked = start_sync(&app, &oa).await;
    assert_eq!(asked["id"], id.as_str(), "the paused job is the app's sync");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sync_job(&app, &id).await["state"], "PAUSED");
    assert_eq!(app.sim.calls_to(BATCHGET), 0, "no call while paused");

    // The quota resets at midnight: the job resumes and finishes.
    app.sim
        .control(reqwest::Method::POST, "/_sim/quota/reset", json!({}))
        .await;
    clock.advance(time(&paused["resumeAt"]) - start + chrono::Duration::seconds(1));
    start_sync(&app, &oa).await; // wakes the worker rather than waiting for its poll
    let done = wait_succeeded(&app, &id).await;
    assert_eq!(int(&done["listed"]), n, "{done:#}");
    assert_eq!(int(&done["imported"]), n, "{done:#}");
    assert!(
        done["errorCode"].is_null() && done["errorMessage"].is_null(),
        "{done:#}"
    );
    assert!(done["resumeAt"].is_null(), "{done:#}");
    assert_eq!(following_count(&app, &oa).await, n);
}

on_each_backend!(
    other_wechat_errors_are_retried_then_fail_the_sync,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn other_wechat_errors_are_retried_then_fail_the_sync(backend: Backend) {
    let start = Utc::now().trunc_subsecs(0);
    let clock = Clock::manual(start);
    let app = spawn_app_in(backend, clock.clone(), small_world(200, 2), |_| {}).await;
    let appids = app.register_official_accounts().await;
    let (busy, refused) = (appids[0].as_str(), appids[1].as_str());
    // WeChat stays busy (-1) for one app.
    app.sim
        .fault(USER_GET, json!({ "appid": busy, "errcode": -1 }))
        .await;
    let id = start_sync(&app, busy).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let settings = SyncSettings::default();
    let base = chrono::Duration::from_std(settings.retry_base).unwrap();
    let mut last_resume = None;
    for attempt in 1..settings.max_attempts {
        let job = wait_for(&app, &id, Duration::from_secs(30), |j| {
            j["state"] == "FAILED"
                || (j["state"] == "PAUSED" && j["resumeAt"].as_str() != last_resume.as_deref())
        })
        .await;
        assert_eq!(job["state"], "PAUSED", "attempt {attempt}: {job:#}");
        assert_eq!(job["errorCode"], -1, "{job:#}");
        assert!(
            job["errorMessage"].as_str().unwrap().contains("-1"),
            "{job:#}"
        );
        // The backoff doubles each time.
        let backoff = time(&job["resumeAt"]) - clock.now();
        assert_eq!(
            backoff,
            base * 2_i32.pow(attempt as u32 - 1),
            "attempt {attempt}"
        );
        last_resume = job["resumeAt"].as_str().map(str::to_owned);
        clock.advance(backoff);
        start_sync(&app, busy).await;
    }
    let failed = wait_for(&app, &id, Duration::from_secs(30), |j| {
        j["state"] == "FAILED"
    })
    .await;
    assert_eq!(failed["errorCode"], -1, "{backend:?} {failed:#}");
    assert!(
        failed["errorMessage"].as_str().unwrap().contains("-1"),
        "the error is kept: {failed:#}"
    );
    assert!(failed["finishedAt"].is_string(), "{failed:#}");
    assert!(failed["resumeAt"].is_null() || time(&failed["resumeAt"]) <= clock.now());
    // Each run tried the call as often as the client retries, no more.
    let tries = RetryPolicy::default().max_attempts as i32 * settings.max_attempts;
    assert_eq!(
        app.sim.calls_to(USER_GET) as i32,
        tries,
        "nothing hot-loops"
    );
    // A failed job is over: asking again makes a new one, which runs.
    app.sim
        .control(reqwest::Method::DELETE, "/_sim/faults", json!({}))
        .await;
    let next = start_sync(&app, busy).await;
    assert_ne!(next["id"], id.as_str());
    wait_succeeded(&app, next["id"].as_str().unwrap()).await;

    // An error retrying cannot clear (40013, invalid appid) fails at once.
    app.sim.reset_calls().await;
    app.sim
        .fault(USER_GET, json!({ "appid": refused, "errcode": 40013 }))
        .await;
    let id = start_sync(&app, refused).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = wait_for(&app, &id, Duration::from_secs(30), |j| {
        j["state"] == "FAILED" || j["state"] == "PAUSED"
    })
    .await;
    assert_eq!(failed["state"], "FAILED", "{failed:#}");
    assert_eq!(failed["errorCode"], 40013, "{failed:#}");
    assert_eq!(app.sim.calls_to(USER_GET), 1, "not retried");
}

on_each_backend!(
    one_sync_per_app_at_a_time,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn one_sync_per_app_at_a_time(backend: Backend) {
    let app = spawn_app_in(backend, Clock::system(), small_world(300, 1), |_| {}).await;
    let oa = app.register_official_accounts().await.remove(0);
    // Slow enough that the job is unfinished while it is asked for again.
    app.sim
        .fault(BATCHGET, json!({ "latency_ms": 1_000 }))
        .await;
    let asks = (0..8).map(|_| start_sync(&app, &oa));
    let jobs = futures::future::join_all(asks).await;
    let ids: BTreeSet<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "{backend:?}: {jobs:#?}");
    let id = ids.into_iter().next().unwrap();
    let listed = app
        .data(
            "query($a: String!) { syncJobs(appid: $a) { id state } }",
            json!({ "a": oa }),
        )
        .await;
    assert_eq!(listed["syncJobs"].as_array().unwrap().len(), 1, "{listed}");
    let done = wait_succeeded(&app, id).await;
    let n = world_followers(&app.sim)[&oa].len();
    assert_eq!(int(&done["listed"]), n);
    assert_eq!(app.sim.calls_to(USER_GET) as usize, pages_for(n));
}

on_postgres!(
    instances_on_one_database_never_run_one_job_twice,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn instances_on_one_database_never_run_one_job_twice(backend: Backend) {
    let a = spawn_app_in(backend, Clock::system(), small_world(1500, 4), |_| {}).await;
    let b = a.another_instance().await;
    let appids = a.register_official_accounts().await;
    let expected = world_followers(&a.sim);
    a.sim.fault(BATCHGET, json!({ "latency_ms": 40 })).await;
    a.sim.reset_calls().await;

    // Every app's sync asked for on both instances at once.
    let asks = appids
        .iter()
        .flat_map(|appid| [start_sync(&a, appid), start_sync(&b, appid)]);
    let jobs = futures::future::join_all(asks).await;
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for job in &jobs {
        let previous = ids.insert(
            job["appid"].as_str().unwrap().to_owned(),
            job["id"].as_str().unwrap().to_owned(),
        );
        assert!(
            previous.is_none_or(|p| p == job["id"].as_str().unwrap()),
            "{jobs:#?}"
        );
    }

    // Watch who holds each job until all are done.
    let mut holders: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let start = Instant::now();
    loop {
        let rows = sync_job::Entity::find().all(a.state.db()).await.unwrap();
        for job in &rows {
            if let Some(owner) = &job.owner {
                let seen = holders.entry(job.id).or_default();
                if seen.last() != Some(owner) {
                    seen.push(owner.clone());
                }
            }
        }
        if rows
            .iter()
            .all(|j| j.state == "SUCCEEDED" || j.state == "FAILED")
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "{rows:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (job, owners) in &holders {
        assert_eq!(owners.len(), 1, "job {job} changed hands: {owners:?}");
    }
    let mut pages = 0;
    for appid in &appids {
        let job = wait_succeeded(&a, &ids[appid]).await;
        let n = expected[appid].len();
        assert_eq!(int(&job["listed"]), n, "{job:#}");
        assert_eq!(int(&job["imported"]), n, "{job:#}");
        assert_eq!(stored_accounts(a.state.db(), appid).await.len(), n);
        pages += pages_for(n);
    }
    // No page was listed twice, no profile fetched twice.
    assert_eq!(a.sim.calls_to(USER_GET) as usize, pages);
    let batchgets: usize = appids
        .iter()
        .map(|a| batchgets_for(expected[a].len()))
        .sum();
    assert_eq!(a.sim.calls_to(BATCHGET) as usize, batchgets);

    // Runners racing for one job: exactly one runs it.
    for appid in &appids {
        let id = start_sync(&a, appid).await["id"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap();
        let run = |app: &TestApp| {
            let syncer = app.state.syncer().clone();
            tokio::spawn(async move { syncer.run_next(Some(id), &|_| {}).await.unwrap() })
        };
        let (x, y) = (run(&a), run(&b));
        let (x, y) = (x.await.unwrap(), y.await.unwrap());
        let ran: Vec<_> = [x, y].into_iter().flatten().collect();
        // The instances' own workers may have won the race: then neither did.
        assert!(ran.len() <= 1, "both ran job {id}: {ran:#?}");
        let job = wait_succeeded(&a, &id.to_string()).await;
        assert_eq!(int(&job["listed"]), expected[appid].len());
    }
}

on_each_backend!(sync_and_audience_refuse_what_they_cannot_answer);
async fn sync_and_audience_refuse_what_they_cannot_answer(backend: Backend) {
    let app = spawn_app_in(backend, Clock::system(), small_world(50, 1), |_| {}).await;
    let oa = app.register_official_accounts().await.remove(0);
    let mp = "wx00000000000000b2";
    app.register_app(mp, "MINI_PROGRAM").await;
    let start = "mutation($a: String!) { startFollowerSync(appid: $a) { id } }";
    let audience = "query($a: [String!]) { audience(appids: $a) { linkedPeople } }";
    let history =
        "query($from: Date!, $to: Date!) { audienceHistory(from: $from, to: $to) { day } }";

    let unknown = app
        .graphql(audience, json!({ "a": ["wx0000000000000bad"] }))
        .await;
    assert_eq!(codes(&unknown), ["NOT_FOUND"], "{unknown}");
    let not_oa = app.graphql(audience, json!({ "a": [oa, mp] })).await;
    assert_eq!(codes(&not_oa), ["BAD_USER_INPUT"], "{not_oa}");
    let twice = app.graphql(audience, json!({ "a": [oa, oa] })).await;
    assert_eq!(codes(&twice), ["BAD_USER_INPUT"], "{twice}");
    let backwards = app
        .graphql(history, json!({ "from": "2026-03-02", "to": "2026-03-01" }))
        .await;
    assert_eq!(codes(&backwards), ["BAD_USER_INPUT"], "{backwards}");
    let too_long = app
        .graphql(history, json!({ "from": "2025-01-01", "to": "2026-01-02" }))
        .await;
    assert_eq!(codes(&too_long), ["BAD_USER_INPUT"], "367 days: {too_long}");
    let longest = app
        .graphql(history, json!({ "from": "2025-01-01", "to": "2026-01-01" }))
        .await;
    assert!(longest.get("errors").is_none(), "366 days: {longest}");
    let bad_day = app
        .graphql(history, json!({ "from": "2026-02-30", "to": "2026-03-01" }))
        .await;
    assert!(!codes(&bad_day).is_empty(), "{bad_day}");

    let unknown = app
        .graphql(start, json!({ "a": "wx0000000000000bad" }))
        .await;
    assert_eq!(codes(&unknown), ["NOT_FOUND"], "{unknown}");
    let not_oa = app.graphql(start, json!({ "a": mp })).await;
    assert_eq!(codes(&not_oa), ["BAD_USER_INPUT"], "{not_oa}");

    // Scopes: statistics need `stats`, starting a sync `write`.
    let scopes = |list: &[Scope]| list.iter().copied().collect::<Scopes>();
    let reader = client_with_key(
        &create_key(&app.state, "reader", scopes(&[Scope::Read, Scope::Pii])).await,
    );
    let stats = client_with_key(
        &create_key(&app.state, "stats", scopes(&[Scope::Read, Scope::Stats])).await,
    );
    let ask = |client: &reqwest::Client, query: &'static str, variables: Value| {
        let request = client
            .post(format!("{}/graphql", app.address))
            .json(&json!({ "query": query, "variables": variables }));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let refused = ask(&reader, audience, json!({})).await;
    assert_eq!(codes(&refused), ["FORBIDDEN"], "{refused}");
    let refused = ask(
        &reader,
        history,
        json!({ "from": "2026-01-01", "to": "2026-01-02" }),
    )
    .await;
    assert_eq!(codes(&refused), ["FORBIDDEN"], "{refused}");
    let allowed = ask(&stats, audience, json!({})).await;
    assert!(allowed.get("errors").is_none(), "{allowed}");
    let refused = ask(&stats, start, json!({ "a": oa })).await;
    assert_eq!(codes(&refused), ["FORBIDDEN"], "{refused}");
    assert!(
        sync_job::Entity::find()
            .all(app.state.db())
            .await
            .unwrap()
            .is_empty(),
        "a refused start queues nothing"
    );
    // Following a job is reading.
    let job = start_sync(&app, &oa).await;
    let seen = ask(
        &reader,
        "query($id: ID!) { syncJob(id: $id) { id state } }",
        json!({ "id": job["id"] }),
    )
    .await;
    assert_eq!(seen["data"]["syncJob"]["id"], job["id"], "{seen}");
    let none = ask(&reader, "{ syncJob(id: \"nope\") { id } }", json!({})).await;
    assert_eq!(none["data"]["syncJob"], Value::Null, "{none}");
}

/// The worker's statements are its own: what a test or a benchmark counts
/// as a request's statements never includes a sync running beside it.
#[tokio::test]
async fn a_sync_the_worker_runs_is_not_counted_as_clients_statements() {
    let app = spawn_app_in(
        Backend::Sqlite,
        Clock::system(),
        small_world(300, 1),
        |_| {},
    )
    .await;
    let appid = app.register_official_accounts().await.remove(0);
    let id = start_sync(&app, &appid).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = app.state.store();
    let (all, clients) = (store.statements.get(), store.client_statements.get());
    let id: i64 = id.parse().unwrap();
    let start = Instant::now();
    loop {
        // Read from the test itself as background work, so that only the
        // worker could move the clients' count.
        let job = union360::store::in_background(app.state.syncer().job(id))
            .await
            .unwrap()
            .expect("the job exists");
        if job.state == "SUCCEEDED" {
            break;
        }
        assert_ne!(job.state, "FAILED", "{job:?}");
        assert!(start.elapsed() < Duration::from_secs(60), "{job:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        store.statements.get() > all + 5,
        "the worker wrote the followers"
    );
    assert_eq!(store.client_statements.get(), clients);
}
