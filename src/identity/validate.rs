//! Checks a row must pass before anything is written: values that fit
//! their columns (the same widths on SQLite and PostgreSQL) and that both
//! databases can store (no NUL character, which PostgreSQL refuses).
//!
//! Rows from WeChat are not refused for what WeChat sent: [`make_storable`]
//! fits them to their columns instead, so one odd profile never fails a
//! refresh.

use super::types::{AccountUpsert, IdentityError};
use crate::domain::{check_storable, storable};

/// The widest free-text column (nickname, avatar URL, remark).
const MAX_TEXT: usize = 2048;

/// The free-text values of a row as the API names them, with the widths of
/// their columns (the same on SQLite and PostgreSQL), in the order of
/// [`texts`] and [`texts_mut`].
const WIDTHS: [(&str, usize); 9] = [
    ("nickname", MAX_TEXT),
    ("avatarUrl", MAX_TEXT),
    ("language", 32),
    ("city", 255),
    ("province", 255),
    ("country", 255),
    ("remark", MAX_TEXT),
    ("subscribeScene", 64),
    ("qrSceneStr", 255),
];

fn texts(row: &AccountUpsert) -> [&Option<String>; 9] {
    let (p, f) = (&row.profile, &row.follow);
    [
        &p.nickname,
        &p.avatar_url,
        &p.language,
        &p.city,
        &p.province,
        &p.country,
        &f.remark,
        &f.subscribe_scene,
        &f.qr_scene_str,
    ]
}

fn texts_mut(row: &mut AccountUpsert) -> [&mut Option<String>; 9] {
    let (p, f) = (&mut row.profile, &mut row.follow);
    [
        &mut p.nickname,
        &mut p.avatar_url,
        &mut p.language,
        &mut p.city,
        &mut p.province,
        &mut p.country,
        &mut f.remark,
        &mut f.subscribe_scene,
        &mut f.qr_scene_str,
    ]
}

/// Checks row `index`.
pub(super) fn validate(index: usize, row: &AccountUpsert) -> Result<(), IdentityError> {
    let invalid = |message: String| IdentityError::InvalidRow { index, message };
    for ((name, max), value) in WIDTHS.into_iter().zip(texts(row)) {
        let Some(value) = value else { continue };
        if value.chars().count() > max {
            return Err(invalid(format!("{name} is longer than {max} characters")));
        }
        check_storable(name, value).map_err(|e| invalid(e.to_string()))?;
    }
    if let Some(sex) = row.profile.sex
        && !(0..=2).contains(&sex)
    {
        return Err(invalid(format!("sex must be 0, 1 or 2, got {sex}")));
    }
    Ok(())
}

/// Fits a row from WeChat to what [`validate`] accepts: NUL characters
/// removed ([`storable`]), text cut to its column's width, an unknown sex
/// code dropped.
pub fn make_storable(row: &mut AccountUpsert) {
    for ((_, max), value) in WIDTHS.into_iter().zip(texts_mut(row)) {
        if let Some(text) = value.take() {
            let text = storable(text);
            *value = Some(if text.chars().count() > max {
                text.chars().take(max).collect()
            } else {
                text
            });
        }
    }
    row.profile.sex = row.profile.sex.filter(|s| (0..=2).contains(s));
}
