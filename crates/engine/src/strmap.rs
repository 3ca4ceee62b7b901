//! String-keyed tables for the evaluation path.
//!
//! Flag keys, list items, target ids and tenant ids are compiled once and then looked up on
//! every evaluation with text from a request; a context's attributes are filed once per
//! request and looked up by every condition. These lookups are most of what a simple
//! evaluation costs, so they are done here in the cheapest way measured (bench/compare):
//!
//! - [`Slots`]: open addressing with linear probing over the indices of entries kept in a
//!   vector, at most half full. The comparison is generic and inlined (`hashbrown`'s `find`
//!   makes an indirect call per candidate, and its `iter_hash` measured slower still).
//! - [`InlineKey`]: a key with its first bytes inline, compared without reading its heap
//!   text; [`StrMap`] also keeps each key's hash and compares it first.
//! - [`eq_bytes`]: equality of short strings with word loads, inline (a slice comparison is a
//!   `memcmp` call, which for a short key costs more than the rest of the lookup).
//!
//! [`StrMap`] and [`StrSet`] hold only compiled definitions — keys an administrator wrote,
//! never a client — so a fixed seed is fine: a client's text only ever probes. A
//! context (client input) seeds its hash (see `context.rs`).

use std::fmt;
use std::hash::BuildHasher;

use foldhash::fast::FixedState;

/// Open addressing over the indices of entries kept elsewhere (see the module's
/// documentation): `0` is an empty slot, `i + 1` entry `i`, at most half of the slots full.
/// Up to [`SMALL`] entries the slots are bytes inside the value itself (a context's usual
/// handful of attributes: a lookup then reads no cache line but the entry's); beyond, a
/// power-of-two table on the heap.
#[derive(Debug, Clone)]
pub(crate) enum Slots {
    Small([u8; 2 * SMALL]),
    Large(Box<[u32]>),
}

/// Entries that fit the inline table.
const SMALL: usize = 8;

impl Default for Slots {
    fn default() -> Self {
        Slots::Small([0; 2 * SMALL])
    }
}

impl Slots {
    /// The first entry on `hash`'s probe sequence that `is` accepts.
    #[inline(always)]
    pub(crate) fn find(&self, hash: u64, is: impl FnMut(usize) -> bool) -> Option<usize> {
        match self {
            Slots::Small(slots) => probe(slots, hash, is),
            Slots::Large(slots) => probe(slots, hash, is),
        }
    }

    /// Files entry `index` (the newest; `index + 1` entries exist) under `hash`, growing the
    /// table first when it would be more than half full. `hash_of` gives any entry's hash.
    pub(crate) fn insert(&mut self, hash: u64, index: usize, hash_of: impl Fn(usize) -> u64) {
        let entries = index + 1;
        match self {
            Slots::Small(slots) if entries <= SMALL => place(slots, hash, index),
            Slots::Large(slots) if entries * 2 <= slots.len() => place(slots, hash, index),
            _ => self.rebuild(entries, hash_of),
        }
    }

    /// Files entries `0..entries` anew (after a removal, or to grow).
    pub(crate) fn rebuild(&mut self, entries: usize, hash_of: impl Fn(usize) -> u64) {
        if entries <= SMALL {
            let mut slots = [0; 2 * SMALL];
            for i in 0..entries {
                place(&mut slots, hash_of(i), i);
            }
            *self = Slots::Small(slots);
        } else {
            let mut slots = vec![0; (entries * 2).next_power_of_two()].into_boxed_slice();
            for i in 0..entries {
                place(&mut slots, hash_of(i), i);
            }
            *self = Slots::Large(slots);
        }
    }
}

/// A slot: an entry's index plus one, `0` when empty.
trait Slot: Copy {
    fn index(self) -> Option<usize>;
    fn of(index: usize) -> Self;
}

impl Slot for u8 {
    #[inline(always)]
    fn index(self) -> Option<usize> {
        usize::from(self).checked_sub(1)
    }
    fn of(index: usize) -> Self {
        // Small tables hold at most `SMALL` entries.
        u8::try_from(index + 1).unwrap_or(u8::MAX)
    }
}

impl Slot for u32 {
    #[inline(always)]
    fn index(self) -> Option<usize> {
        (self as usize).checked_sub(1)
    }
    fn of(index: usize) -> Self {
        // Entry counts are bounded by u32 where tables are built (flags, ids, attributes).
        u32::try_from(index + 1).unwrap_or(u32::MAX)
    }
}

#[inline(always)]
fn probe<S: Slot>(slots: &[S], hash: u64, mut is: impl FnMut(usize) -> bool) -> Option<usize> {
    // The number of slots is a power of two (never zero); the low bits place, so
    // truncating the hash is the point.
    let mask = slots.len() - 1;
    #[allow(clippy::cast_possible_truncation)]
    let mut at = hash as usize & mask;
    loop {
        let i = slots[at].index()?;
        if is(i) {
            return Some(i);
        }
        at = (at + 1) & mask;
    }
}

fn place<S: Slot>(slots: &mut [S], hash: u64, index: usize) {
    let mask = slots.len() - 1;
    #[allow(clippy::cast_possible_truncation)]
    let mut at = hash as usize & mask;
    while slots[at].index().is_some() {
        at = (at + 1) & mask;
    }
    slots[at] = S::of(index);
}

/// Whether two byte strings are equal, compared inline for lengths up to 32 bytes (two or
/// four overlapping word loads) and by the slice comparison beyond.
#[inline(always)]
pub(crate) fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        // Positions 0, n/2 and n-1 cover every byte of a string of 1 to 3.
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        17..=32 => {
            word8(a, 0) == word8(b, 0)
                && word8(a, 8) == word8(b, 8)
                && word8(a, n - 16) == word8(b, n - 16)
                && word8(a, n - 8) == word8(b, n - 8)
        }
        _ => a == b,
    }
}

/// A key's text with its first 14 bytes also kept inline, so that telling whether a key of up
/// to 14 bytes is some text reads no memory beyond the key's own (the text's allocation is
/// a cache line of its own, and a lookup is mostly waiting for such loads). 32 bytes, with
/// two spare bytes its owner may use ([`InlineKey::tag`]).
#[derive(Clone)]
pub(crate) struct InlineKey {
    head: [u8; HEAD],
    tag: u16,
    text: Box<str>,
}

const HEAD: usize = 14;

impl InlineKey {
    pub(crate) fn new(text: Box<str>) -> Self {
        let mut head = [0; HEAD];
        let n = text.len().min(HEAD);
        head[..n].copy_from_slice(&text.as_bytes()[..n]);
        Self { head, tag: 0, text }
    }

    /// Whether this key is `other`.
    #[inline(always)]
    pub(crate) fn is(&self, other: &str) -> bool {
        let n = self.text.len();
        let b = other.as_bytes();
        if n != b.len() {
            return false;
        }
        if n <= HEAD {
            eq_bytes(&self.head[..n], b)
        } else {
            self.long_is(b)
        }
    }

    /// [`InlineKey::is`] for a key longer than the inline head (flag keys often are:
    /// `checkout-redesign`), with inline word compares rather than two `memcmp` calls.
    #[inline(always)]
    fn long_is(&self, b: &[u8]) -> bool {
        eq_bytes(&self.head, &b[..HEAD]) && eq_bytes(&self.text.as_bytes()[HEAD..], &b[HEAD..])
    }

    /// Whether this key and `other` are the same text (their tags aside).
    #[inline(always)]
    pub(crate) fn same(&self, other: &InlineKey) -> bool {
        let n = self.text.len();
        n == other.text.len() && self.head == other.head && (n <= HEAD || self.same_tail(other))
    }

    #[inline(never)]
    fn same_tail(&self, other: &InlineKey) -> bool {
        eq_bytes(
            &self.text.as_bytes()[HEAD..],
            &other.text.as_bytes()[HEAD..],
        )
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The owner's two bytes (0 when new).
    pub(crate) fn tag(&self) -> u16 {
        self.tag
    }

    pub(crate) fn set_tag(&mut self, tag: u16) {
        self.tag = tag;
    }
}

impl fmt::Debug for InlineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

/// Whether `text` ends with `suffix`, compared by [`eq_bytes`].
#[inline(always)]
pub(crate) fn ends_with(text: &str, suffix: &str) -> bool {
    let (t, s) = (text.as_bytes(), suffix.as_bytes());
    t.len() >= s.len() && eq_bytes(&t[t.len() - s.len()..], s)
}

/// Whether `text` starts with `prefix`, compared by [`eq_bytes`].
#[inline(always)]
pub(crate) fn starts_with(text: &str, prefix: &str) -> bool {
    let (t, p) = (text.as_bytes(), prefix.as_bytes());
    t.len() >= p.len() && eq_bytes(&t[..p.len()], p)
}

#[inline]
fn word4(bytes: &[u8], at: usize) -> u32 {
    bytes[at..]
        .first_chunk::<4>()
        .map_or(0, |w| u32::from_ne_bytes(*w))
}

#[inline]
fn word8(bytes: &[u8], at: usize) -> u64 {
    bytes[at..]
        .first_chunk::<8>()
        .map_or(0, |w| u64::from_ne_bytes(*w))
}

#[inline]
fn hash(key: &str) -> u64 {
    FixedState::with_seed(0x5357_4954_4348_5944).hash_one(key)
}

/// A map from compiled strings to `V` (see the module's documentation).
#[derive(Clone)]
pub(crate) struct StrMap<V> {
    /// `(key, value, hash of key)`.
    entries: Vec<(InlineKey, V, u64)>,
    slots: Slots,
}

impl<V> Default for StrMap<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            slots: Slots::default(),
        }
    }
}

impl<V> StrMap<V> {
    #[inline(always)]
    fn position(&self, key: &str) -> Option<usize> {
        self.position_hashed(key, hash(key))
    }

    #[inline(always)]
    fn position_hashed(&self, key: &str, h: u64) -> Option<usize> {
        self.slots.find(h, |i| {
            let (k, _, kh) = &self.entries[i];
            *kh == h && k.is(key)
        })
    }

    /// The value of `key`.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// Whether `key` is present.
    #[inline]
    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub(crate) fn insert(&mut self, key: Box<str>, value: V) -> Option<V> {
        let h = hash(&key);
        if let Some(i) = self.position_hashed(&key, h) {
            return Some(std::mem::replace(&mut self.entries[i].1, value));
        }
        self.entries.push((InlineKey::new(key), value, h));
        let entries = &self.entries;
        self.slots.insert(h, entries.len() - 1, |i| entries[i].2);
        None
    }

    /// Removes `key`, returning its value (the table is refiled: removals are rare, a
    /// definition going away).
    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let i = self.position(key)?;
        let (_, value, _) = self.entries.swap_remove(i);
        let entries = &self.entries;
        self.slots.rebuild(entries.len(), |i| entries[i].2);
        Some(value)
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.entries.iter().map(|(k, v, _)| (k.as_str(), v))
    }
}

impl<V> FromIterator<(Box<str>, V)> for StrMap<V> {
    fn from_iter<I: IntoIterator<Item = (Box<str>, V)>>(iter: I) -> Self {
        let mut map = Self::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<V: fmt::Debug> fmt::Debug for StrMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A set of compiled strings (see the module's documentation).
#[derive(Clone, Default)]
pub(crate) struct StrSet(StrMap<()>);

impl StrSet {
    /// Whether `key` is in the set.
    #[inline]
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Adds `key`; `false` when it was already there.
    pub(crate) fn insert(&mut self, key: Box<str>) -> bool {
        self.0.insert(key, ()).is_none()
    }

    /// Every string, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, ())| k)
    }
}

impl FromIterator<Box<str>> for StrSet {
    fn from_iter<I: IntoIterator<Item = Box<str>>>(iter: I) -> Self {
        let mut set = Self::default();
        for k in iter {
            set.insert(k);
        }
        set
    }
}

impl fmt::Debug for StrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn eq_bytes_is_slice_equality(a in proptest::collection::vec(0u8..4, 0..40),
                                      b in proptest::collection::vec(0u8..4, 0..40)) {
            prop_assert_eq!(eq_bytes(&a, &b), a == b);
            prop_assert!(eq_bytes(&a, &a));
            // The same length, one byte changed anywhere.
            for i in 0..a.len() {
                let mut c = a.clone();
                c[i] ^= 0x80;
                prop_assert!(!eq_bytes(&a, &c), "differs at {}", i);
            }
        }

        #[test]
        fn inline_keys_are_their_text(a in "[ab]{0,40}", b in "[ab]{0,40}") {
            let key = InlineKey::new(a.clone().into());
            prop_assert_eq!(key.is(&b), a == b);
            prop_assert!(key.is(&a));
            let mut other = InlineKey::new(b.clone().into());
            other.set_tag(7);
            prop_assert_eq!(key.same(&other), a == b);
        }

        #[test]
        fn affixes_match_str_methods(t in "[ab]{0,20}", p in "[ab]{0,6}") {
            prop_assert_eq!(ends_with(&t, &p), t.ends_with(&*p));
            prop_assert_eq!(starts_with(&t, &p), t.starts_with(&*p));
        }
    }

    #[test]
    fn map_inserts_replaces_finds_and_removes() {
        let mut map: StrMap<u32> = StrMap::default();
        assert_eq!(map.insert("checkout".into(), 1), None);
        assert_eq!(
            map.insert("a-much-longer-flag-key-than-thirty-two".into(), 2),
            None
        );
        assert_eq!(map.insert("checkout".into(), 3), Some(1));
        assert_eq!(map.get("checkout"), Some(&3));
        assert_eq!(map.get("checkou"), None);
        assert_eq!(map.get("a-much-longer-flag-key-than-thirty-two"), Some(&2));
        assert_eq!(map.iter().count(), 2);
        assert_eq!(map.remove("checkout"), Some(3));
        assert!(!map.contains_key("checkout"));
        assert_eq!(map.get("a-much-longer-flag-key-than-thirty-two"), Some(&2));
        // Growing and removing keep every key findable.
        for i in 0..1000 {
            map.insert(format!("k{i}").into(), i);
        }
        for i in (0..1000).step_by(3) {
            assert_eq!(map.remove(&format!("k{i}")), Some(i));
        }
        for i in 0..1000 {
            assert_eq!(
                map.get(&format!("k{i}")),
                (i % 3 != 0).then_some(&i),
                "k{i}"
            );
        }
        let set: StrSet = ["x", "yy", ""].into_iter().map(Box::from).collect();
        assert!(set.contains("") && set.contains("yy") && !set.contains("y"));
        assert_eq!(set.iter().count(), 3);
    }
}
