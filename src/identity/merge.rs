//! How one profile value from one source merges into what is stored.
//!
//! Identity rule 5: an empty value never overwrites a non-empty value that
//! another source set. WeChat's `user/info` has returned empty nicknames and
//! avatars since 2021, so without this rule every refresh would blank the
//! names users gave through sign-in.

use crate::domain::ProfileSource;

/// What to do with one stored field given an incoming value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave the stored value (and its source) as they are.
    Keep,
    /// Store this value (`None` clears it) with the incoming source.
    Set(Option<String>),
}

/// Decides one field.
///
/// - `incoming == None`: the source did not speak of this field: keep.
/// - an empty incoming value clears the field only when the stored value is
///   empty already or came from the same source (a user cleared it there);
///   otherwise the stored value stays.
/// - a non-empty incoming value replaces a different stored value.
pub fn decide(
    stored: Option<&str>,
    stored_source: Option<&str>,
    incoming: Option<&str>,
    source: ProfileSource,
) -> Decision {
    let Some(incoming) = incoming else {
        return Decision::Keep;
    };
    let stored = stored.filter(|s| !s.is_empty());
    if incoming.is_empty() {
        return match stored {
            None => Decision::Keep,
            Some(_) if stored_source == Some(source.as_str()) => Decision::Set(None),
            Some(_) => Decision::Keep,
        };
    }
    if stored == Some(incoming) {
        Decision::Keep
    } else {
        Decision::Set(Some(incoming.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProfileSource::*;

    #[test]
    fn blank_user_info_never_erases_a_name_from_sign_in() {
        assert_eq!(
            decide(Some("Alice"), Some("SNS_USERINFO"), Some(""), UserInfo),
            Decision::Keep
        );
    }

    #[test]
    fn a_source_may_clear_what_it_set_itself() {
        assert_eq!(
            decide(Some("Alice"), Some("IMPORT"), Some(""), Import),
            Decision::Set(None)
        );
    }

    #[test]
    fn missing_values_keep_and_new_values_replace() {
        assert_eq!(
            decide(Some("A"), Some("IMPORT"), None, Import),
            Decision::Keep
        );
        assert_eq!(
            decide(Some("A"), Some("USER_INFO"), Some("B"), Import),
            Decision::Set(Some("B".into()))
        );
        assert_eq!(
            decide(Some("A"), Some("IMPORT"), Some("A"), Import),
            Decision::Keep
        );
        assert_eq!(
            decide(None, None, Some("A"), UserInfo),
            Decision::Set(Some("A".into()))
        );
        assert_eq!(decide(None, None, Some(""), UserInfo), Decision::Keep);
    }
}
