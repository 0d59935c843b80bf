//! Scopes: what an API key may see and do.

use std::fmt;
use std::str::FromStr;

/// One permission an API key can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The identity graph without personal data: people, accounts, apps,
    /// follow status, freshness.
    Read,
    /// Personal profile fields: nickname, avatar, sex, region, language, remark.
    Pii,
    /// Audience statistics.
    Stats,
    /// Changes to the graph: refreshes, upserts, syncs, sign-ins.
    Write,
    /// Registering apps and changing their settings; API keys.
    Admin,
}

impl Scope {
    /// Every scope, in the order they are listed.
    pub const ALL: [Scope; 5] = [
        Scope::Read,
        Scope::Pii,
        Scope::Stats,
        Scope::Write,
        Scope::Admin,
    ];

    /// The scope's name, as keys and errors spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Pii => "pii",
            Self::Stats => "stats",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}` (scopes: read, pii, stats, write, admin)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownScope(s.trim().to_owned()))
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope.
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl From<Scope> for Scopes {
    fn from(scope: Scope) -> Self {
        Self(scope.bit())
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, scope| bits | scope.bit()))
    }
}

impl FromStr for Scopes {
    type Err = UnknownScope;

    /// Parses a comma-separated list (`read,pii`); blanks are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .filter(|part| !part.trim().is_empty())
            .map(str::parse::<Scope>)
            .collect()
    }
}

impl fmt::Display for Scopes {
    /// The comma-separated list, in [`Scope::ALL`] order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_and_print_in_a_fixed_order() {
        let scopes: Scopes = "pii, READ,,admin".parse().expect("valid");
        assert_eq!(scopes.to_string(), "read,pii,admin");
        assert!(scopes.contains(Scope::Pii));
        assert!(!scopes.contains(Scope::Write));
        assert_eq!(Scopes::all().to_string(), "read,pii,stats,write,admin");
        assert_eq!(
            "read,everything".parse::<Scopes>(),
            Err(UnknownScope("everything".to_owned()))
        );
        assert!("".parse::<Scopes>().expect("empty").is_empty());
    }
}
