//! Checks a row must pass before anything is written: values that fit
//! their columns (the same widths on SQLite and PostgreSQL).

use super::types::{AccountUpsert, IdentityError};

/// The widest free-text column (nickname, avatar URL, remark).
const MAX_TEXT: usize = 2048;

/// Checks row `index`.
pub(super) fn validate(index: usize, row: &AccountUpsert) -> Result<(), IdentityError> {
    let p = &row.profile;
    // The widths of the columns (the same on SQLite and PostgreSQL).
    let texts = [
        ("nickname", &p.nickname, MAX_TEXT),
        ("avatarUrl", &p.avatar_url, MAX_TEXT),
        ("language", &p.language, 32),
        ("city", &p.city, 255),
        ("province", &p.province, 255),
        ("country", &p.country, 255),
        ("remark", &row.follow.remark, MAX_TEXT),
        ("subscribeScene", &row.follow.subscribe_scene, 64),
        ("qrSceneStr", &row.follow.qr_scene_str, 255),
    ];
    for (name, value, max) in texts {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(IdentityError::InvalidRow {
                index,
                message: format!("{name} is longer than {max} characters"),
            });
        }
    }
    if let Some(sex) = p.sex
        && !(0..=2).contains(&sex)
    {
        return Err(IdentityError::InvalidRow {
            index,
            message: format!("sex must be 0, 1 or 2, got {sex}"),
        });
    }
    Ok(())
}
