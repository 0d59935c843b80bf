//! A person's details, recomputed on demand from hashes of the seed.
//!
//! Nothing about a person is stored: their profile and the details of each
//! subscription are derived from `(seed, app, person)` when asked for, from
//! the small tables of names, places and follow scenes below, so the same
//! seed always describes the same people.

use super::{Profile, Subscription, World};
use crate::simulator::codec::{ALPHABET, chars, hash};

const FIRST: [&str; 16] = [
    "小", "阿", "大", "老", "Lucky", "Sunny", "🌸", "木子", "一只", "Ms.", "安", "晨", "Coco",
    "夏天", "Mr.", "静",
];
const SECOND: [&str; 16] = [
    "明", "杰", "鱼", "王", "Star", "猫", "🍀", "李", "兔子", "Lily", "然", "风", "Kiki", "的海",
    "Chen", "好",
];
const PLACES: [(&str, &str, &str); 8] = [
    ("广州", "广东", "中国"),
    ("深圳", "广东", "中国"),
    ("杭州", "浙江", "中国"),
    ("成都", "四川", "中国"),
    ("朝阳", "北京", "中国"),
    ("浦东新区", "上海", "中国"),
    ("", "", "新加坡"),
    ("", "", ""),
];
const SCENES: [&str; 11] = [
    "ADD_SCENE_SEARCH",
    "ADD_SCENE_QR_CODE",
    "ADD_SCENE_PROFILE_CARD",
    "ADD_SCENE_ACCOUNT_MIGRATION",
    "ADD_SCENE_PROFILE_LINK",
    "ADD_SCENE_PROFILE_ITEM",
    "ADD_SCENE_PAID",
    "ADD_SCENE_WECHAT_ADVERTISEMENT",
    "ADD_SCENE_LIVESTREAM",
    "ADD_SCENE_CHANNELS",
    "ADD_SCENE_OTHERS",
];
/// Seeded follows happen between 2015-01-01 and 2024-01-01.
const FOLLOW_START: u64 = 1_420_070_400;
const FOLLOW_SPAN: u64 = 283_996_800;

impl World {
    /// A person's profile.
    pub(crate) fn profile(&self, person: u32) -> Profile {
        let p = u64::from(person);
        let h = hash(self.seed, &[8, p]);
        let mut nickname = String::new();
        nickname.push_str(FIRST[(h & 15) as usize]);
        nickname.push_str(SECOND[(h >> 4 & 15) as usize]);
        // About one nickname in 40 carries a raw control character, as real
        // ones do; a quarter of those a NUL too, which no database stores.
        if (h >> 8).is_multiple_of(40) {
            nickname.push(if (h >> 14) & 1 == 0 { '\u{1}' } else { '\u{8}' });
            if (h >> 15) & 3 == 0 {
                nickname.push('\u{0}');
            }
            nickname.push('✨');
        }
        let place = PLACES[(h >> 16 & 7) as usize];
        let language = match (h >> 20) % 20 {
            0 | 1 => "en",
            2 => "zh_TW",
            _ => "zh_CN",
        };
        Profile {
            nickname,
            sex: ((h >> 28) % 3) as u8,
            sex_as_string: (h >> 32).is_multiple_of(5),
            language,
            city: place.0,
            province: place.1,
            country: place.2,
            headimgurl: format!(
                "https://avatar.sandbox.invalid/mmopen/{}/132",
                chars(self.seed, &[9, p], 40, &ALPHABET[..62])
            ),
        }
    }

    /// The details of `person` following `app` (meaningful when they follow).
    pub(crate) fn subscription(&self, app: usize, person: u32) -> Subscription {
        let (a, p) = (app as u64, u64::from(person));
        let h = hash(self.seed, &[10, a, p]);
        let step = (FOLLOW_SPAN / u64::from(self.people.max(1))).max(1);
        let later = self.follows[app].later(person);
        let time = later
            .map(|(time, _)| time)
            .unwrap_or(FOLLOW_START + p * step + h % step);
        let tags = match (h >> 30) % 6 {
            0 => vec![2],
            1 => vec![100, 101],
            2 => vec![102],
            _ => Vec::new(),
        };
        // A follow through a parametric QR code reports its scene.
        if let Some((_, Some(qr))) = later {
            let numeric = qr.parse::<u64>().ok();
            return Subscription {
                time,
                scene: "ADD_SCENE_QR_CODE",
                qr_scene: numeric.unwrap_or(0),
                qr_scene_str: if numeric.is_none() {
                    qr.to_owned()
                } else {
                    String::new()
                },
                tags,
            };
        }
        let scene = SCENES[((h >> 20) % SCENES.len() as u64) as usize];
        Subscription {
            time,
            scene,
            qr_scene: if scene == "ADD_SCENE_QR_CODE" {
                1000 + (h >> 40) % 100
            } else {
                0
            },
            qr_scene_str: String::new(),
            tags,
        }
    }
}
