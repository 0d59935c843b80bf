//! Who follows each official account, stored compactly.
//!
//! A million people must fit in memory, so followers are not stored as
//! records: seeded follows are a sorted `Vec<u32>` of person indices (whose
//! order is also follow order), later follows a short list with their time,
//! and membership a bitset of one bit per person.

/// The followers of one official account, in follow order.
#[derive(Debug, Default)]
pub(crate) struct Follows {
    /// Seeded follows, ascending person index (which is also follow order).
    pub(super) base: Vec<u32>,
    /// Follows added later, in the order they happened.
    extra: Vec<Later>,
    /// One bit per person: following now.
    member: Vec<u64>,
}

/// A follow added after seeding.
#[derive(Debug)]
struct Later {
    person: u32,
    /// When, in Unix seconds.
    time: u64,
    /// The scene of the parametric QR code followed through, if any.
    qr_scene: Option<String>,
}

impl Follows {
    pub(super) fn with_people(people: u32) -> Self {
        Self {
            base: Vec::new(),
            extra: Vec::new(),
            member: vec![0; (people as usize).div_ceil(64)],
        }
    }

    /// Whether `person` follows.
    pub(crate) fn contains(&self, person: u32) -> bool {
        let i = person as usize;
        self.member
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub(super) fn set(&mut self, person: u32, on: bool) {
        let i = person as usize;
        if let Some(w) = self.member.get_mut(i / 64) {
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// How many people follow.
    pub(crate) fn total(&self) -> usize {
        self.base.len() + self.extra.len()
    }

    /// The time of a later follow, and the QR scene it came through, if
    /// `person` followed after seeding.
    pub(crate) fn later(&self, person: u32) -> Option<(u64, Option<&str>)> {
        self.extra
            .iter()
            .find(|e| e.person == person)
            .map(|e| (e.time, e.qr_scene.as_deref()))
    }

    /// Adds a follow at time `now`; false if already following.
    pub(crate) fn add(&mut self, person: u32, now: u64) -> bool {
        self.add_through(person, now, None)
    }

    /// Adds a follow at time `now` through the QR code of `qr_scene`, if
    /// any; false if already following.
    pub(crate) fn add_through(&mut self, person: u32, now: u64, qr_scene: Option<String>) -> bool {
        if self.contains(person) {
            return false;
        }
        self.extra.push(Later {
            person,
            time: now,
            qr_scene,
        });
        self.set(person, true);
        true
    }

    /// Removes a follow; false if not following.
    pub(crate) fn remove(&mut self, person: u32) -> bool {
        if !self.contains(person) {
            return false;
        }
        if let Ok(i) = self.base.binary_search(&person) {
            self.base.remove(i);
        } else {
            self.extra.retain(|e| e.person != person);
        }
        self.set(person, false);
        true
    }

    /// Up to `limit` followers after `after` (from the start when `None`);
    /// `None` when `after` does not follow.
    pub(crate) fn page(&self, after: Option<u32>, limit: usize) -> Option<Vec<u32>> {
        let start = match after {
            None => 0,
            Some(p) => match self.base.binary_search(&p) {
                Ok(i) => i + 1,
                Err(_) => self.base.len() + self.extra.iter().position(|e| e.person == p)? + 1,
            },
        };
        let base = self.base.iter().copied();
        let extra = self.extra.iter().map(|e| e.person);
        Some(base.chain(extra).skip(start).take(limit).collect())
    }

    /// Heap bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.base.capacity() * 4
            + self.extra.capacity() * std::mem::size_of::<Later>()
            + self.member.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_page_and_change() {
        let mut f = Follows::with_people(100);
        for p in [1, 5, 9] {
            f.base.push(p);
            f.set(p, true);
        }
        assert!(f.add(50, 10));
        assert!(!f.add(5, 10));
        assert_eq!(f.page(None, 2), Some(vec![1, 5]));
        assert_eq!(f.page(Some(5), 10), Some(vec![9, 50]));
        assert_eq!(f.page(Some(50), 10), Some(vec![]));
        assert!(f.remove(5));
        assert_eq!(f.page(Some(5), 10), None);
        assert_eq!(f.total(), 3);
    }
}
