//! The WeChat simulator over real HTTP: shapes from `WECHAT.md`, token
//! rules, quotas, faults, counters, sign-in codes and pushes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use union360::simulator::{KindMix, SimApp, SimConfig, SimHandle, Simulator};
use union360::wechat::callback::{self, MessageCrypto};

/// A simulator and a client to talk to it.
struct Sim {
    handle: SimHandle,
    client: reqwest::Client,
}

async fn start(config: SimConfig) -> Sim {
    Sim {
        handle: Simulator::spawn(config).await.unwrap(),
        client: reqwest::Client::new(),
    }
}

/// A small world: 2,000 people, the default mix, every app bound (the
/// tests of unbound apps build a world with some).
async fn small() -> Sim {
    start(SimConfig {
        people: 2000,
        apps: 6,
        unbound_share: 0.0,
        ..SimConfig::default()
    })
    .await
}

/// Three official accounts, one of them unbound.
async fn one_unbound_of_three() -> Sim {
    start(SimConfig {
        people: 2000,
        apps: 3,
        unbound_share: 0.34,
        kinds: KindMix::OFFICIAL_ACCOUNTS,
        ..SimConfig::default()
    })
    .await
}

/// Parses a body that may hold raw control characters in strings, as the
/// union360 client does.
fn lenient(bytes: &[u8]) -> Value {
    union360::wechat::lenient::parse(bytes).unwrap()
}

impl Sim {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    async fn raw(&self, path: &str) -> Vec<u8> {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap().to_vec()
    }

    async fn get(&self, path: &str) -> Value {
        lenient(&self.raw(path).await)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        lenient(&r.bytes().await.unwrap())
    }

    fn app(&self, kind: &str, bound: bool) -> SimApp {
        self.handle
            .sim
            .apps()
            .into_iter()
            .find(|a| a.kind == kind && a.bound == bound)
            .unwrap_or_else(|| panic!("no {kind} app with bound={bound}"))
    }

    async fn token(&self, app: &SimApp) -> String {
        let v = self
            .get(&format!(
                "/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
                app.appid, app.secret
            ))
            .await;
        v["access_token"].as_str().unwrap().to_owned()
    }

    async fn person(&self, index: u32) -> Value {
        self.get(&format!("/_sim/people/{index}")).await
    }

    /// The openid of `person` in `app`, and whether they follow it.
    async fn openid(&self, app: &SimApp, index: u32) -> (String, bool) {
        let p = self.person(index).await;
        let entry = p["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["appid"] == app.appid.as_str())
            .unwrap()
            .clone();
        (
            entry["openid"].as_str().unwrap().to_owned(),
            entry["following"].as_bool().unwrap(),
        )
    }

    /// The first person who does (or does not) follow `app`.
    async fn find(&self, app: &SimApp, following: bool) -> (u32, String) {
        for i in 0..500 {
            let (openid, f) = self.openid(app, i).await;
            if f == following {
                return (i, openid);
            }
        }
        panic!("nobody with following={following}");
    }

    async fn code(&self, app: &SimApp, person: u32, scope: Option<&str>, snapshot: bool) -> String {
        let v = self
            .post(
                "/_sim/codes",
                json!({"appid": app.appid, "person": person, "scope": scope, "snapshot": snapshot}),
            )
            .await;
        v["code"].as_str().unwrap().to_owned()
    }

    async fn info(&self, token: &str, openid: &str) -> Value {
        self.get(&format!(
            "/cgi-bin/user/info?access_token={token}&openid={openid}&lang=zh_CN"
        ))
        .await
    }
}

fn errcode(v: &Value) -> i64 {
    v["errcode"].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn token_endpoint_shapes_and_errors() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let ok = sim
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
            oa.appid, oa.secret
        ))
        .await;
    assert_eq!(ok["access_token"].as_str().unwrap().len(), 136);
    assert_eq!(ok["expires_in"], 7200);
    let bad = sim
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={}&secret=nope",
            oa.appid
        ))
        .await;
    assert_eq!(errcode(&bad), 40001);
    assert!(bad["errmsg"].as_str().unwrap().contains(" rid: "), "{bad}");
    let unknown = sim
        .get("/cgi-bin/token?grant_type=client_credential&appid=wx0000000000000000&secret=x")
        .await;
    assert_eq!(errcode(&unknown), 40013);

    assert_eq!(errcode(&sim.get("/cgi-bin/stable_token").await), 43002);
    let body = |secret: &str, appid: &str| json!({"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": false});
    let v = sim
        .post("/cgi-bin/stable_token", body("nope", &oa.appid))
        .await;
    assert_eq!(errcode(&v), 40125);
    let v = sim
        .post("/cgi-bin/stable_token", body("x", "wx0000000000000000"))
        .await;
    assert_eq!(errcode(&v), 40013);
}

#[tokio::test]
async fn stable_token_is_shared_until_it_nears_expiry() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let req = |force: bool| json!({"grant_type": "client_credential", "appid": oa.appid, "secret": oa.secret, "force_refresh": force});
    let first = sim.post("/cgi-bin/stable_token", req(false)).await;
    let t1 = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(first["expires_in"], 7200);
    sim.handle.sim.advance_clock(100);
    let second = sim.post("/cgi-bin/stable_token", req(false)).await;
    assert_eq!(second["access_token"], t1.as_str());
    let left = second["expires_in"].as_u64().unwrap();
    assert!((7099..=7100).contains(&left), "{left}");

    // The last five minutes overlap with the next token.
    sim.handle.sim.advance_clock(6850);
    let third = sim.post("/cgi-bin/stable_token", req(false)).await;
    let t2 = third["access_token"].as_str().unwrap().to_owned();
    assert_ne!(t1, t2);
    assert!(third["expires_in"].as_u64().unwrap() >= 300);
    let (_, openid) = sim.find(&oa, true).await;
    assert_eq!(errcode(&sim.info(&t1, &openid).await), 0);

    // Stable tokens are independent of /cgi-bin/token.
    let plain = sim.token(&oa).await;
    assert_eq!(errcode(&sim.info(&t2, &openid).await), 0);
    assert_eq!(errcode(&sim.info(&plain, &openid).await), 0);

    // force_refresh replaces the token at once, at most every 30 s.
    let forced = sim.post("/cgi-bin/stable_token", req(true)).await;
    let t3 = forced["access_token"].as_str().unwrap().to_owned();
    assert_ne!(t3, t2);
    assert_eq!(errcode(&sim.info(&t2, &openid).await), 40001);
    assert_eq!(errcode(&sim.info(&t3, &openid).await), 0);
    assert_eq!(
        errcode(&sim.post("/cgi-bin/stable_token", req(true)).await),
        45011
    );
    sim.handle.sim.advance_clock(31);
    assert_eq!(
        errcode(&sim.post("/cgi-bin/stable_token", req(true)).await),
        0
    );
}

#[tokio::test]
async fn plain_token_supersedes_the_previous_after_five_minutes() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let (_, openid) = sim.find(&oa, true).await;
    let t1 = sim.token(&oa).await;
    let t2 = sim.token(&oa).await;
    assert_ne!(t1, t2);
    assert_eq!(errcode(&sim.info(&t1, &openid).await), 0, "grace period");
    sim.handle.sim.advance_clock(301);
    let stale = sim.info(&t1, &openid).await;
    assert_eq!(errcode(&stale), 40001);
    assert!(stale["errmsg"].as_str().unwrap().contains("not latest"));
    assert_eq!(errcode(&sim.info(&t2, &openid).await), 0);
    sim.handle.sim.advance_clock(7200);
    assert_eq!(errcode(&sim.info(&t2, &openid).await), 42001);
    assert_eq!(
        errcode(
            &sim.get(&format!("/cgi-bin/user/info?openid={openid}"))
                .await
        ),
        41001
    );
    assert_eq!(errcode(&sim.info("bogus", &openid).await), 40014);

    // Control plane invalidation.
    let t3 = sim.token(&oa).await;
    sim.post("/_sim/tokens/invalidate", json!({"appid": oa.appid}))
        .await;
    assert_eq!(errcode(&sim.info(&t3, &openid).await), 40001);
}

#[tokio::test]
async fn user_info_shapes() {
    let sim = small().await;
    let bound = sim.app("OFFICIAL_ACCOUNT", true);
    let token = sim.token(&bound).await;
    let (person, openid) = sim.find(&bound, true).await;
    let v = sim.info(&token, &openid).await;
    assert_eq!(v["subscribe"], 1);
    assert_eq!(v["openid"], openid.as_str());
    assert_eq!(v["unionid"], sim.person(person).await["unionid"]);
    // Blanked since 2021: keys present, values empty.
    for key in ["nickname", "headimgurl", "city", "province", "country"] {
        assert_eq!(v[key], "", "{key}");
    }
    assert_eq!(v["sex"], 0);
    assert!(v["subscribe_time"].as_u64().unwrap() > 1_400_000_000);
    assert!(
        v["subscribe_scene"]
            .as_str()
            .unwrap()
            .starts_with("ADD_SCENE_")
    );
    assert!(v["tagid_list"].is_array());
    for key in ["language", "remark", "groupid", "qr_scene", "qr_scene_str"] {
        assert!(v.get(key).is_some(), "{key}");
    }

    let (_, stranger) = sim.find(&bound, false).await;
    let v = sim.info(&token, &stranger).await;
    assert_eq!(v, json!({"subscribe": 0, "openid": stranger}));

    // An openid of another app is invalid here.
    let other = sim.app("MINI_PROGRAM", true);
    let (foreign, _) = sim.openid(&other, 0).await;
    assert_eq!(errcode(&sim.info(&token, &foreign).await), 40003);
    // Only official accounts may call user/info.
    let mp_token = sim.token(&other).await;
    assert_eq!(errcode(&sim.info(&mp_token, &openid).await), 48001);

    let sim = one_unbound_of_three().await;
    let unbound = sim.app("OFFICIAL_ACCOUNT", false);
    let token = sim.token(&unbound).await;
    let (_, openid) = sim.find(&unbound, true).await;
    let v = sim.info(&token, &openid).await;
    assert_eq!(v["subscribe"], 1);
    assert!(v.get("unionid").is_none(), "unbound apps return no unionid");
}

#[tokio::test]
async fn older_behaviours_can_be_switched_on() {
    let sim = start(SimConfig {
        people: 2000,
        apps: 6,
        blank_profiles: false,
        unionid_for_non_followers: true,
        ..SimConfig::default()
    })
    .await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let token = sim.token(&oa).await;
    let (_, openid) = sim.find(&oa, true).await;
    let v = sim.info(&token, &openid).await;
    assert_ne!(v["nickname"], "");
    assert_ne!(v["headimgurl"], "");
    let (person, stranger) = sim.find(&oa, false).await;
    let v = sim.info(&token, &stranger).await;
    assert_eq!(v["subscribe"], 0);
    assert_eq!(v["unionid"], sim.person(person).await["unionid"]);
}

#[tokio::test]
async fn batchget_caps_at_100_and_one_bad_openid_fails_the_batch() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let token = sim.token(&oa).await;
    let mut list = Vec::new();
    for i in 0..101 {
        let (openid, _) = sim.openid(&oa, i).await;
        list.push(json!({"openid": openid, "lang": "zh_CN"}));
    }
    let path = format!("/cgi-bin/user/info/batchget?access_token={token}");
    let v = sim.post(&path, json!({"user_list": list[..100]})).await;
    let infos = v["user_info_list"].as_array().unwrap();
    assert_eq!(infos.len(), 100);
    assert_eq!(infos[7]["openid"], list[7]["openid"]);
    assert_eq!(
        errcode(&sim.post(&path, json!({"user_list": list})).await),
        40032
    );
    assert_eq!(
        errcode(&sim.post(&path, json!({"user_list": []})).await),
        40032
    );

    let mut bad = list[..10].to_vec();
    bad[4] = json!({"openid": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "lang": "zh_CN"});
    assert_eq!(
        errcode(&sim.post(&path, json!({"user_list": bad})).await),
        40003
    );

    let form = sim
        .client
        .post(sim.url(&path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("user_list=x")
        .send()
        .await
        .unwrap();
    assert_eq!(errcode(&lenient(&form.bytes().await.unwrap())), 47001);
}

#[tokio::test]
async fn user_get_pages_in_follow_order_and_ends_ambiguously() {
    let sim = start(SimConfig {
        seed: 7,
        people: 80_000,
        apps: 1,
        kinds: KindMix::OFFICIAL_ACCOUNTS,
        ..SimConfig::default()
    })
    .await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let token = sim.token(&oa).await;
    let mut next = String::new();
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let v = sim
            .get(&format!(
                "/cgi-bin/user/get?access_token={token}&next_openid={next}"
            ))
            .await;
        let count = v["count"].as_u64().unwrap();
        if count == 0 {
            assert!(v.get("data").is_none(), "{v}");
            assert_eq!(v["next_openid"], "");
            assert_eq!(v["total"].as_u64().unwrap(), seen.len() as u64);
            break;
        }
        let ids = v["data"]["openid"].as_array().unwrap();
        assert_eq!(ids.len() as u64, count);
        next = v["next_openid"].as_str().unwrap().to_owned();
        assert_eq!(
            ids.last().unwrap(),
            next.as_str(),
            "the last page still names next_openid"
        );
        seen.extend(ids.iter().map(|i| i.as_str().unwrap().to_owned()));
        pages.push(count);
    }
    let total = seen.len();
    assert!(total > 20_000, "{total}");
    assert_eq!(pages.len(), total.div_ceil(10_000));
    assert!(pages[..pages.len() - 1].iter().all(|c| *c == 10_000));
    // Follow order: subscribe_time never goes backwards.
    let a = sim.info(&token, &seen[0]).await["subscribe_time"]
        .as_u64()
        .unwrap();
    let b = sim.info(&token, &seen[total - 1]).await["subscribe_time"]
        .as_u64()
        .unwrap();
    assert!(a <= b);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), total);

    // A follow added later comes last; an unfollow disappears.
    let (person, _) = sim.find(&oa, false).await;
    sim.post(
        "/_sim/follows",
        json!({"appid": oa.appid, "person": person}),
    )
    .await;
    let v = sim
        .get(&format!(
            "/cgi-bin/user/get?access_token={token}&next_openid={next}"
        ))
        .await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["total"].as_u64().unwrap(), total as u64 + 1);
}

#[tokio::test]
async fn oauth_codes_are_single_use_and_expire() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let exchange = |code: String| {
        format!(
            "/sns/oauth2/access_token?appid={}&secret={}&code={code}&grant_type=authorization_code",
            oa.appid, oa.secret
        )
    };
    let code = sim.code(&oa, 3, Some("snsapi_userinfo"), false).await;
    let v = sim.get(&exchange(code.clone())).await;
    let person = sim.person(3).await;
    assert_eq!(v["openid"], sim.openid(&oa, 3).await.0.as_str());
    assert_eq!(v["unionid"], person["unionid"]);
    assert_eq!(v["scope"], "snsapi_userinfo");
    assert_eq!(v["expires_in"], 7200);
    assert!(v["refresh_token"].is_string());
    assert!(v.get("is_snapshotuser").is_none());
    assert_eq!(errcode(&sim.get(&exchange(code)).await), 40163);

    let info = sim
        .get(&format!(
            "/sns/userinfo?access_token={}&openid={}&lang=zh_CN",
            v["access_token"].as_str().unwrap(),
            v["openid"].as_str().unwrap()
        ))
        .await;
    assert_eq!(info["unionid"], person["unionid"]);
    assert_eq!(info["privilege"], json!([]));
    for key in [
        "nickname",
        "sex",
        "province",
        "city",
        "country",
        "headimgurl",
    ] {
        assert!(info.get(key).is_some(), "{key}");
    }

    let late = sim.code(&oa, 3, None, false).await;
    sim.handle.sim.advance_clock(301);
    assert_eq!(errcode(&sim.get(&exchange(late)).await), 42003);
    assert_eq!(errcode(&sim.get(&exchange("nope".into())).await), 40029);

    // snsapi_base: no unionid, no userinfo.
    let base = sim
        .get(&exchange(sim.code(&oa, 4, None, false).await))
        .await;
    assert_eq!(base["scope"], "snsapi_base");
    assert!(base.get("unionid").is_none());
    let refused = sim
        .get(&format!(
            "/sns/userinfo?access_token={}&openid={}",
            base["access_token"].as_str().unwrap(),
            base["openid"].as_str().unwrap()
        ))
        .await;
    assert_eq!(errcode(&refused), 48001);
}

#[tokio::test]
async fn snapshot_users_get_virtual_ids() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let code = sim.code(&oa, 5, None, true).await;
    let v = sim
        .get(&format!(
            "/sns/oauth2/access_token?appid={}&secret={}&code={code}&grant_type=authorization_code",
            oa.appid, oa.secret
        ))
        .await;
    assert_eq!(v["is_snapshotuser"], 1);
    let person = sim.person(5).await;
    assert_ne!(v["openid"], sim.openid(&oa, 5).await.0.as_str());
    assert_ne!(v["unionid"], person["unionid"]);
    assert_eq!(v["openid"].as_str().unwrap().len(), 28);
    // A virtual openid is no user of the account.
    let token = sim.token(&oa).await;
    let info = sim.info(&token, v["openid"].as_str().unwrap()).await;
    assert_eq!(errcode(&info), 40003);
}

#[tokio::test]
async fn sns_userinfo_sends_sex_as_a_string_and_raw_control_characters() {
    let sim = small().await;
    let app = sim.app("MOBILE_APP", true);
    let mut string_sex = None;
    let mut control = None;
    for i in 0..400 {
        let p = sim.person(i).await;
        if string_sex.is_none() && p["profile"]["sex_as_string"] == true {
            string_sex = Some(i);
        }
        let nick = p["profile"]["nickname"].as_str().unwrap();
        if control.is_none() && nick.chars().any(|c| c == '\u{1}' || c == '\u{8}') {
            control = Some(i);
        }
    }
    let userinfo = async |person: u32| {
        let code = sim.code(&app, person, None, false).await;
        let v = sim
            .get(&format!(
                "/sns/oauth2/access_token?appid={}&secret={}&code={code}&grant_type=authorization_code",
                app.appid, app.secret
            ))
            .await;
        sim.raw(&format!(
            "/sns/userinfo?access_token={}&openid={}",
            v["access_token"].as_str().unwrap(),
            v["openid"].as_str().unwrap()
        ))
        .await
    };
    let v = lenient(&userinfo(string_sex.unwrap()).await);
    assert!(v["sex"].is_string(), "{v}");
    let raw = userinfo(control.unwrap()).await;
    assert!(
        raw.iter().any(|b| *b == 0x01 || *b == 0x08),
        "raw control byte in the body"
    );
    assert!(
        serde_json::from_slice::<Value>(&raw).is_err(),
        "a strict parser rejects it"
    );
    let v = lenient(&raw);
    assert!(
        v["nickname"]
            .as_str()
            .unwrap()
            .chars()
            .any(char::is_control)
    );
}

#[tokio::test]
async fn jscode2session_and_its_minute_limit() {
    let sim = small().await;
    let mp = sim.app("MINI_PROGRAM", true);
    let path = |code: &str| {
        format!(
            "/sns/jscode2session?appid={}&secret={}&js_code={code}&grant_type=authorization_code",
            mp.appid, mp.secret
        )
    };
    let code = sim.code(&mp, 9, None, false).await;
    let v = sim.get(&path(&code)).await;
    assert_eq!(v["openid"], sim.openid(&mp, 9).await.0.as_str());
    assert_eq!(v["unionid"], sim.person(9).await["unionid"]);
    assert_eq!(v["session_key"].as_str().unwrap().len(), 24);
    assert_eq!(errcode(&sim.get(&path("bad")).await), 40029);
    assert_eq!(errcode(&sim.get(&path(&code)).await), 40163);
    // The limit counts per calendar minute: start at one's beginning, so
    // that the 101 exchanges below fall within it even on a slow machine.
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    sim.handle.sim.advance_clock(60 - unix % 60);
    let mut last = 0;
    for _ in 0..100 {
        let code = sim.code(&mp, 10, None, false).await;
        last = errcode(&sim.get(&path(&code)).await);
        if last != 0 {
            break;
        }
    }
    // A hundred exchanges for one user this minute succeed; the 101st is refused.
    assert_eq!(last, 0);
    let code = sim.code(&mp, 10, None, false).await;
    assert_eq!(errcode(&sim.get(&path(&code)).await), 45011);
    sim.handle.sim.advance_clock(60);
    assert_eq!(errcode(&sim.get(&path(&code)).await), 0);
}

#[tokio::test]
async fn quotas_run_out_and_reset_at_beijing_midnight() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let token = sim.token(&oa).await;
    let list = format!("/cgi-bin/user/get?access_token={token}");
    assert_eq!(errcode(&sim.get(&list).await), 0);
    let quota = |path: &str| json!({"cgi_path": path});
    let q = sim
        .post(
            &format!("/cgi-bin/openapi/quota/get?access_token={token}"),
            quota("/cgi-bin/user/get"),
        )
        .await;
    assert_eq!(
        q["quota"],
        json!({"daily_limit": 500, "used": 1, "remain": 499})
    );
    sim.post(
        "/_sim/quota/exhaust",
        json!({"appid": oa.appid, "path": "/cgi-bin/user/get"}),
    )
    .await;
    assert_eq!(errcode(&sim.get(&list).await), 45009);
    sim.post(
        "/_sim/quota/exhaust",
        json!({"appid": oa.appid, "path": "/cgi-bin/token"}),
    )
    .await;
    let v = sim
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
            oa.appid, oa.secret
        ))
        .await;
    assert_eq!(errcode(&v), 45009);
    // A day later every counter starts again (the old token has expired meanwhile).
    sim.handle.sim.advance_clock(86_400);
    let token = sim.token(&oa).await;
    assert_eq!(
        errcode(
            &sim.get(&format!("/cgi-bin/user/get?access_token={token}"))
                .await
        ),
        0
    );
}

#[tokio::test]
async fn faults_return_errors_add_latency_and_hang() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let token = sim.token(&oa).await;
    let (_, openid) = sim.find(&oa, true).await;
    let fault = |body: Value| sim.post("/_sim/faults", body);
    fault(json!({"path": "/cgi-bin/user/info", "errcode": -1, "count": 1})).await;
    assert_eq!(errcode(&sim.info(&token, &openid).await), -1);
    assert_eq!(
        errcode(&sim.info(&token, &openid).await),
        0,
        "count 1 retires"
    );

    // Scoped to another app: not hit.
    let other = sim
        .handle
        .sim
        .apps()
        .into_iter()
        .find(|a| a.kind == "OFFICIAL_ACCOUNT" && a.appid != oa.appid)
        .unwrap();
    fault(json!({"path": "/cgi-bin/user/info", "appid": other.appid, "errcode": 45009})).await;
    assert_eq!(errcode(&sim.info(&token, &openid).await), 0);
    sim.client
        .delete(sim.url("/_sim/faults"))
        .send()
        .await
        .unwrap();

    fault(json!({"path": "/cgi-bin/user/info", "latency_ms": 300, "count": 1})).await;
    let started = Instant::now();
    assert_eq!(errcode(&sim.info(&token, &openid).await), 0);
    assert!(started.elapsed() >= Duration::from_millis(300));

    fault(json!({"path": "/cgi-bin/user/info", "hang": true})).await;
    let hung = sim
        .client
        .get(sim.url(&format!(
            "/cgi-bin/user/info?access_token={token}&openid={openid}"
        )))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    sim.client
        .delete(sim.url("/_sim/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(errcode(&sim.info(&token, &openid).await), 0);

    let refused = sim
        .client
        .post(sim.url("/_sim/faults"))
        .json(&json!({"path": "x"}))
        .send();
    assert_eq!(refused.await.unwrap().status(), 400);
}

#[tokio::test]
async fn counters_count_every_call_including_failures() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let token = sim.token(&oa).await;
    sim.client
        .delete(sim.url("/_sim/calls"))
        .send()
        .await
        .unwrap();
    let (openid, _) = sim.openid(&oa, 0).await;
    let path = format!("/cgi-bin/user/info/batchget?access_token={token}");
    sim.post(&path, json!({"user_list": [{"openid": openid}]}))
        .await;
    sim.post(&path, json!({"user_list": [{"openid": openid}]}))
        .await;
    sim.post(&path, json!({"user_list": []})).await;
    let calls = sim.get("/_sim/calls").await;
    assert_eq!(calls, json!({"/cgi-bin/user/info/batchget": 3}));
    assert_eq!(
        sim.handle.sim.calls().get("/cgi-bin/user/info/batchget"),
        Some(&3)
    );
}

#[tokio::test]
async fn the_same_seed_gives_the_same_world() {
    let config = SimConfig {
        people: 3000,
        ..SimConfig::default()
    };
    let a = start(config.clone()).await;
    let b = start(config.clone()).await;
    let c = start(SimConfig { seed: 43, ..config }).await;
    assert_eq!(a.handle.sim.apps(), b.handle.sim.apps());
    assert_ne!(a.handle.sim.apps(), c.handle.sim.apps());
    assert_eq!(a.person(1234).await, b.person(1234).await);

    // Reset through the control plane rebuilds from a new seed.
    let v = a.post("/_sim/reset", json!({"seed": 43})).await;
    assert!(v["summary"].as_str().unwrap().starts_with("seed 43"));
    assert_eq!(a.handle.sim.apps(), c.handle.sim.apps());
}

type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A callback receiver that is slow on its first request.
async fn receiver(seen: Seen) -> String {
    use axum::extract::{RawQuery, State};
    let app = axum::Router::new()
        .route(
            "/callback",
            axum::routing::post(
                async |State(seen): State<Seen>, RawQuery(q): RawQuery, body: String| {
                    let first = {
                        let mut seen = seen.lock().unwrap();
                        seen.push((q.unwrap_or_default(), body));
                        seen.len() == 1
                    };
                    if first {
                        // Far past the push's timeout, so it surely times out.
                        tokio::time::sleep(Duration::from_millis(5000)).await;
                    }
                    "success"
                },
            ),
        )
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/callback")
}

#[tokio::test]
async fn push_signs_events_and_retries_a_slow_receiver() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let seen: Seen = Arc::default();
    let url = receiver(seen.clone()).await;
    let (person, openid) = sim.find(&oa, false).await;
    let report = sim
        .post(
            "/_sim/push",
            json!({"appid": oa.appid, "target_url": url, "event": "subscribe", "person": person,
                   "event_key": "42", "safe_mode": false, "timeout_ms": 2000}),
        )
        .await;
    assert_eq!(report["delivered"], true, "{report}");
    let attempts = report["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["outcome"], "timeout");
    assert_eq!(attempts[1]["outcome"], "ok");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let (query, body) = &seen[1];
    let params: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(query).unwrap();
    assert!(callback::verify_signature(
        oa.token.as_deref().unwrap(),
        &params["timestamp"],
        &params["nonce"],
        &params["signature"]
    ));
    assert_eq!(params["openid"], openid);
    assert!(body.contains(&format!(
        "<FromUserName><![CDATA[{openid}]]></FromUserName>"
    )));
    assert!(body.contains(&format!(
        "<ToUserName><![CDATA[{}]]></ToUserName>",
        oa.gh_id.clone().unwrap()
    )));
    assert!(body.contains("<Event><![CDATA[subscribe]]></Event>"));
    assert!(body.contains("<EventKey><![CDATA[qrscene_42]]></EventKey>"));
    // The subscribe took effect.
    assert!(sim.openid(&oa, person).await.1);
}

#[tokio::test]
async fn safe_mode_pushes_are_encrypted_and_carry_a_msg_signature() {
    let sim = small().await;
    let oa = sim.app("OFFICIAL_ACCOUNT", true);
    let seen: Seen = Arc::default();
    let url = receiver(seen.clone()).await;
    let (person, openid) = sim.find(&oa, true).await;
    let report = sim
        .post(
            "/_sim/push",
            json!({"appid": oa.appid, "target_url": url, "event": "unsubscribe", "person": person,
                   "safe_mode": true, "timeout_ms": 2000}),
        )
        .await;
    assert_eq!(report["delivered"], true, "{report}");
    let (query, body) = seen.lock().unwrap()[0].clone();
    let params: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(&query).unwrap();
    assert_eq!(params["encrypt_type"], "aes");
    let envelope = callback::parse_encrypted_envelope(&body).unwrap();
    let token = oa.token.as_deref().unwrap();
    assert!(callback::verify_msg_signature(
        token,
        &params["timestamp"],
        &params["nonce"],
        &envelope.encrypt,
        &params["msg_signature"]
    ));
    let crypto = MessageCrypto::new(oa.aes_key.as_deref().unwrap(), &oa.appid).unwrap();
    let message = callback::parse_message(&crypto.decrypt(&envelope.encrypt).unwrap()).unwrap();
    assert_eq!(message.from_user_name, openid);
    assert_eq!(message.event.as_deref(), Some("unsubscribe"));
    assert!(
        !sim.openid(&oa, person).await.1,
        "the unsubscribe took effect"
    );
}
