//! Where to cut a key range so that its parts hold about the same number of
//! keys, and how many keys lie between two bounds, judged from one page of
//! keys already listed.
//!
//! S3 says nothing about how keys are spread, so the page just listed is the
//! sample. Keys are read as numbers: the characters past a shared prefix
//! are digits, each position counting in the characters the sample used
//! there and at every position where its keys differ (so decimal counters
//! and hex UUIDs are not spread over all of Unicode, nor a counter over
//! ".csv"'s letters), and the stretch of that number line the sample's keys
//! took is the width of one page. The page's characters are gathered once
//! ([`Sample`]); each estimate and each try at cutting then reads only the
//! positions it needs.
//!
//! Cuts are placed a few page widths apart. When they would leave the keys
//! that share the sample's common prefix, the base is shortened a
//! character at a time: further reach, coarser view.
//!
//! A cut is only a hint: any key strictly inside the range keeps the parts
//! disjoint and complete, and every cut is checked against the real bounds
//! as strings, so a poor guess costs requests, never keys. Cuts are made of
//! characters the sample's keys hold, so they are valid `StartAfter`
//! values.

use std::collections::BTreeSet;

/// How far the base may be shortened below the sample's common prefix.
const MAX_SHORTENING: usize = 12;
/// Positions are kept below 2^120 so that sums and products of a few stay
/// inside u128.
const POSITION_BITS: u32 = 120;

/// The characters seen at one position: ASCII (nearly every key) in a
/// bitmap, the rest in an ordered set.
#[derive(Default, Clone)]
struct Seen {
    ascii: u128,
    other: BTreeSet<char>,
}

impl Seen {
    fn add(&mut self, c: char) {
        if c.is_ascii() {
            self.ascii |= 1 << u32::from(c);
        } else {
            self.other.insert(c);
        }
    }

    fn count(&self) -> usize {
        self.ascii.count_ones() as usize + self.other.len()
    }

    fn union(&mut self, other: &Seen) {
        self.ascii |= other.ascii;
        self.other.extend(other.other.iter().copied());
    }

    /// These characters and `more`'s, in order: every ASCII character
    /// sorts below every other.
    fn alphabet_with(&self, more: &Seen) -> Vec<char> {
        let ascii = self.ascii | more.ascii;
        (0u8..128)
            .filter(|b| ascii & (1 << b) != 0)
            .map(char::from)
            .chain(self.other.union(&more.other).copied())
            .collect()
    }
}

/// One page of keys, in key order, gathered once: the characters each
/// position holds. It answers where to cut the rest of the page's range
/// ([`Sample::cut_points`]) and how many keys lie between two bounds
/// ([`Sample::keys_between`]).
pub(super) struct Sample {
    first: String,
    last: String,
    keys: usize,
    /// The characters the keys use at each character position.
    columns: Vec<Seen>,
    /// The characters of every position where the keys differ: the digits
    /// they count in. Positions inside the prefix every key shares show
    /// one character, so this is the same whatever the base.
    digits: Seen,
    /// The shortest key's length in characters: it ends before every
    /// later position.
    shortest: usize,
    /// Past the last position where some key holds a character other than
    /// ASCII, if any.
    ascii_from: usize,
}

impl Sample {
    /// `None` when the keys cannot say: fewer than two distinct ones.
    pub(super) fn of<'k>(keys: impl IntoIterator<Item = &'k str>) -> Option<Self> {
        let (mut first, mut last, mut count) = (None, None, 0usize);
        let (mut columns, mut shortest, mut ascii_from) = (Vec::<Seen>::new(), usize::MAX, 0);
        for key in keys {
            first.get_or_insert(key);
            last = Some(key);
            count += 1;
            if key.is_ascii() {
                let bytes = key.as_bytes();
                if columns.len() < bytes.len() {
                    columns.resize(bytes.len(), Seen::default());
                }
                shortest = shortest.min(bytes.len());
                for (column, &b) in columns.iter_mut().zip(bytes) {
                    column.ascii |= 1 << b;
                }
            } else {
                let mut length = 0;
                for (i, c) in key.chars().enumerate() {
                    if columns.len() <= i {
                        columns.push(Seen::default());
                    }
                    columns[i].add(c);
                    if !c.is_ascii() {
                        ascii_from = ascii_from.max(i + 1);
                    }
                    length = i + 1;
                }
                shortest = shortest.min(length);
            }
        }
        let (first, last) = (first?, last?);
        if first >= last {
            return None;
        }
        let mut digits = Seen::default();
        for column in columns.iter().filter(|c| c.count() >= 2) {
            digits.union(column);
        }
        Some(Self {
            first: first.to_owned(),
            last: last.to_owned(),
            keys: count,
            columns,
            digits,
            shortest,
            ascii_from,
        })
    }

    /// Each position's alphabet on the cuts' line: the characters used
    /// there plus the digits. It does not depend on the base.
    fn alphabets(&self) -> Vec<Vec<char>> {
        self.columns.iter().map(|column| column.alphabet_with(&self.digits)).collect()
    }

    /// The number line past `base`, a prefix every sample key shares, on
    /// [`Sample::alphabets`].
    fn line<'s>(base: &'s str, alphabets: &'s [Vec<char>]) -> Option<Line<'s>> {
        let places = alphabets.get(base.chars().count()..).unwrap_or_default();
        let (mut used, mut top) = (0, 1u128);
        for alphabet in places {
            let Some(next) = top.checked_mul(alphabet.len() as u128 + 1).filter(|t| *t < 1 << POSITION_BITS) else {
                break;
            };
            top = next;
            used += 1;
        }
        (top >= 2).then_some(Line { base, places: &places[..used], top })
    }

    /// Up to `count` cut points strictly between the sample's last key and
    /// `upto` (the range's inclusive end; `None` when it runs to the end of
    /// the listing), increasing: for an open range each `pages_per_range`
    /// sample widths after the one before, for a bounded one evenly spread.
    /// Empty when the range is too short to be worth cutting.
    pub(super) fn cut_points(&self, upto: Option<&str>, pages_per_range: u128, count: usize) -> Cuts {
        let mut best = Cuts { points: Vec::new(), guessed: false };
        if count == 0 {
            return best;
        }
        let shared = common_prefix(&self.first, &self.last);
        let alphabets = self.alphabets();
        let mut base = shared;
        for _ in 0..=MAX_SHORTENING {
            if let Some(line) = Self::line(base, &alphabets) {
                let points = cuts_on(&line, &self.first, &self.last, upto, pages_per_range, count);
                if points.len() > best.points.len() {
                    let guessed = base.len() < shared.len() && upto.is_some_and(|u| !u.starts_with(base));
                    best = Cuts { points, guessed };
                }
            }
            // Shortening past `upto`'s own prefix cannot place cuts anywhere new.
            if best.points.len() >= count || base.is_empty() || upto.is_some_and(|u| u.starts_with(base)) {
                break;
            }
            let cut = base.char_indices().last().map_or(0, |(i, _)| i);
            base = &base[..cut];
        }
        best
    }

    /// About how many keys lie after `after` and up to `upto`, at the
    /// sample's density. `None` when `upto` is not past `after`, or where
    /// characters other than ASCII follow the part the sample and both
    /// bounds share.
    ///
    /// Unlike the cuts' line, only a position where some key or bound ends
    /// has an "ends here" digit, and the bounds' own characters count:
    /// counts of flat sequential and random keys come out nearly exact. (A
    /// single alphabet for every position, as the cuts first had, put them
    /// off by 0.4-2.8x.)
    pub(super) fn keys_between(&self, after: &str, upto: &str) -> Option<f64> {
        if upto <= after {
            return None;
        }
        let (first, last) = (self.first.as_str(), self.last.as_str());
        // Every sample key lies between `first` and `last`, so shares their
        // prefix. It ends on a character boundary of all four.
        let shared = [last, after, upto].iter().fold(first.len(), |n, k| n.min(common_prefix(first, k).len()));
        let skip = first[..shared].chars().count();
        let [first, last, after, upto] = [first, last, after, upto].map(|k| &k.as_bytes()[shared..]);
        // Past the shared part the sample is ASCII, so `first` and `last` are.
        if self.ascii_from > skip || !after.is_ascii() || !upto.is_ascii() {
            return None;
        }
        let longest = self.columns.len().saturating_sub(skip).max(after.len()).max(upto.len());
        // The bounds may hold characters the sample never showed at a place
        // (a page of a counter shows one value of its higher digits, a page
        // of UUIDs a few of its first): every place counts in the characters
        // the sample's varying places use, or '0' to '4' would be one step.
        let mut places: Vec<Place> = Vec::new();
        let mut scale = 1u128;
        for offset in 0..longest {
            let mut used = self.digits.ascii | self.columns.get(skip + offset).map_or(0, |c| c.ascii);
            let mut ends = self.shortest <= skip + offset;
            for bound in [after, upto] {
                match bound.get(offset) {
                    Some(&b) => used |= 1 << b,
                    None => ends = true,
                }
            }
            let place = Place { offset, used, ends, radix: u128::from(used.count_ones()) + u128::from(ends) };
            if place.radix < 2 {
                continue;
            }
            let Some(next) = scale.checked_mul(place.radix).filter(|s| *s < 1 << POSITION_BITS) else { break };
            scale = next;
            places.push(place);
        }
        let position = |key: &[u8]| places.iter().fold(0u128, |value, place| value * place.radix + place.digit(key));
        let distance = |a: &[u8], b: &[u8]| Some(position(b).checked_sub(position(a))? as f64);
        let width = distance(first, last).filter(|w| *w > 0.0)?;
        let span = distance(after, upto).unwrap_or(0.0);
        Some(span / width * (self.keys - 1) as f64)
    }
}

/// Where [`Sample::cut_points`] would cut a range.
pub(super) struct Cuts {
    pub points: Vec<String>,
    /// Set when the points stretch over characters the sample holds
    /// still (its shared prefix, shortened) towards the end of a line the
    /// range's end is not on: a folder's range, whose keys may stop
    /// anywhere before the next folder. One page cannot tell a counter
    /// about to carry (`part-0999…` then `part-1000…`) from a folder whose
    /// keys stop at `part-0999…`; in the listing bench's dated keys, parts
    /// cut past a folder's keys made 60 calls that each returned a page of
    /// the next folders' keys.
    pub guessed: bool,
}

/// One character position of [`Sample::keys_between`]'s mixed-radix
/// number, counted from the end of the shared prefix.
struct Place {
    offset: usize,
    /// The ASCII characters used there.
    used: u128,
    /// Set when some key ends before it: "ends here" is its digit 0.
    ends: bool,
    radix: u128,
}

impl Place {
    fn digit(&self, rest: &[u8]) -> u128 {
        match rest.get(self.offset) {
            // Characters below `b` among those used, after "ends here".
            Some(&b) => u128::from((self.used & ((1u128 << b) - 1)).count_ones()) + u128::from(self.ends),
            None => 0,
        }
    }
}

/// The cuts' number line past one base: the characters after the base are
/// digits of a mixed-radix number, each position counting in the
/// characters the sample used there plus its digits, with "ends here" as
/// every position's digit 0 (so a cut may stop short). One alphabet for
/// every position put ".csv"'s letters among a counter's digits: cuts fell
/// where no key could be, and for 1M sequential keys about a tenth of the
/// calls went to parts that held no key.
struct Line<'a> {
    base: &'a str,
    /// Per position, sorted; digit 0 means "the key ends here", digit d is
    /// alphabet[d-1].
    places: &'a [Vec<char>],
    top: u128,
}

impl Line<'_> {
    fn digit(alphabet: &[char], c: char) -> u128 {
        // The largest alphabet character not above `c`; characters below
        // them all count as the smallest. Either way order is kept.
        alphabet.partition_point(|&a| a <= c).max(1) as u128
    }

    fn position(&self, key: &str) -> u128 {
        match key.strip_prefix(self.base) {
            Some(rest) => {
                let mut chars = rest.chars();
                self.places.iter().fold(0, |value, alphabet| {
                    value * (alphabet.len() as u128 + 1) + chars.next().map_or(0, |c| Self::digit(alphabet, c))
                })
            }
            None if key > self.base => self.top,
            None => 0,
        }
    }

    /// The key at `position`, cut at its first "ends here" digit.
    fn key_at(&self, mut position: u128) -> String {
        let mut digits = vec![0u128; self.places.len()];
        for (digit, alphabet) in digits.iter_mut().zip(self.places).rev() {
            let radix = alphabet.len() as u128 + 1;
            *digit = position % radix;
            position /= radix;
        }
        let mut key = String::from(self.base);
        for (d, alphabet) in digits.into_iter().zip(self.places) {
            let Some(&c) = usize::try_from(d).ok().and_then(|d| d.checked_sub(1)).and_then(|i| alphabet.get(i)) else {
                break;
            };
            key.push(c);
        }
        key
    }
}

fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let end = a.char_indices().zip(b.chars()).find(|((_, x), y)| x != y).map_or(a.len().min(b.len()), |((i, _), _)| i);
    // `end` is a char boundary of `a`: a differing char's start or the
    // length of the shorter key, all of whose chars `a` shares.
    &a[..end]
}

fn cuts_on(line: &Line<'_>, first: &str, last: &str, upto: Option<&str>, pages: u128, count: usize) -> Vec<String> {
    let start = line.position(last);
    let end = upto.map_or(line.top, |u| line.position(u));
    let width = start.saturating_sub(line.position(first));
    let step = match upto {
        // An open range's end says nothing about where keys stop: cut
        // `pages` sample widths apart.
        None => width.saturating_mul(pages.max(1)),
        // A bounded one is spread evenly over `count + 1` parts, none
        // under two sample widths: near the end of a listing, the last
        // long ranges are cut finer as calls fall idle.
        Some(_) => width.saturating_mul(2).max(end.saturating_sub(start) / (count as u128 + 1)),
    };
    if step == 0 || end.saturating_sub(start) < step.saturating_mul(2) {
        return Vec::new();
    }
    let mut cuts: Vec<String> = Vec::with_capacity(count);
    for j in 1..=count as u128 {
        let at = start.saturating_add(step.saturating_mul(j));
        if at >= end {
            break;
        }
        let cut = line.key_at(at);
        let above = cuts.last().map_or(last, String::as_str);
        if cut.as_str() > above && upto.is_none_or(|u| cut.as_str() < u) {
            cuts.push(cut);
        }
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut_points(sample: &[&str], upto: Option<&str>, pages: u128, count: usize) -> Vec<String> {
        Sample::of(sample.iter().copied()).map_or_else(Vec::new, |s| s.cut_points(upto, pages, count).points)
    }

    fn assert_inside(last: &str, upto: Option<&str>, cuts: &[String]) {
        let mut below = last.to_owned();
        for cut in cuts {
            assert!(*cut > below, "{cut:?} not above {below:?}");
            assert!(upto.is_none_or(|u| cut.as_str() < u), "{cut:?} not below {upto:?}");
            below = cut.clone();
        }
    }

    fn page(keys: impl Iterator<Item = String>) -> Vec<String> {
        keys.collect()
    }

    fn refs(keys: &[String]) -> Vec<&str> {
        keys.iter().map(String::as_str).collect()
    }

    /// How many of `all` fall in each part the cuts make after `last`.
    fn part_sizes(all: &[String], last: &str, cuts: &[String]) -> Vec<usize> {
        let mut bounds: Vec<&str> = vec![last];
        bounds.extend(cuts.iter().map(String::as_str));
        bounds.windows(2).map(|w| all.iter().filter(|k| k.as_str() > w[0] && k.as_str() <= w[1]).count()).collect()
    }

    /// No part is a long serial listing, and a gap in the alphabet (after
    /// '9' come no more digits) leaves few parts nearly empty.
    fn assert_parts_of_a_few_pages(sizes: &[usize]) {
        assert!(sizes.iter().all(|&n| n <= 8_000), "{sizes:?}");
        assert!(sizes.iter().filter(|&&n| n >= 1_000).count() >= sizes.len() * 3 / 4, "{sizes:?}");
    }

    #[test]
    fn sequential_keys_are_cut_into_parts_of_a_few_pages() {
        let all = page((0..100_000).map(|i| format!("csvs/f{i:07}.csv")));
        let sample = refs(&all[..1000]);
        let cuts = cut_points(&sample, None, 4, 8);
        assert_eq!(cuts.len(), 8, "{cuts:?}");
        assert_inside(&all[999], None, &cuts);
        assert_parts_of_a_few_pages(&part_sizes(&all, &all[999], &cuts));
    }

    #[test]
    fn uuid_like_keys_are_cut_in_proportion_to_the_sample() {
        // Hex keys spread evenly, as UUIDs are.
        let all = page((0..65_536u64).map(|i| format!("u/{:04x}{:04x}.csv", i, (i * 7919) % 65_536)));
        let sample = refs(&all[..1000]);
        let cuts = cut_points(&sample, None, 4, 8);
        assert_eq!(cuts.len(), 8, "{cuts:?}");
        assert_parts_of_a_few_pages(&part_sizes(&all, &all[999], &cuts));
    }

    #[test]
    fn bounded_ranges_are_spread_evenly_and_stay_inside() {
        let all = page((0..20_000).map(|i| format!("p/{i:06}.csv")));
        let upto = all[15_000].as_str();
        let cuts = cut_points(&refs(&all[..1000]), Some(upto), 4, 7);
        assert!(!cuts.is_empty());
        assert_inside(&all[999], Some(upto), &cuts);
    }

    /// One alphabet for every position let cuts fall among ".csv"'s
    /// letters ("csvs/f003v3.6.csv"), between two keys with none between
    /// them: a part's first call then listed only the next part's keys.
    #[test]
    fn cuts_of_a_counter_fall_between_its_keys() {
        let all = s3mm_test_support::shapes::sequential(200_000);
        for (start, end) in [(0, 150_000), (41_000, 47_000), (120_000, 199_999)] {
            let sample = refs(&all[start..start + 1000]);
            let upto = all[end].as_str();
            let cuts = cut_points(&sample, Some(upto), 4, 15);
            assert!(!cuts.is_empty(), "{cuts:?}");
            let sizes = part_sizes(&all, &all[start + 999], &cuts);
            assert!(sizes.iter().all(|&n| n > 0), "{sizes:?} {cuts:?}");
        }
    }

    /// A folder's range ends at the next folder: cuts that reach past the
    /// sample's shared prefix guess where its keys stop. Cuts towards a
    /// bound on their own line, or along an open range, do not.
    #[test]
    fn cuts_past_a_folders_sample_are_guesses() {
        let day: Vec<String> = (0..3_000).map(|i| format!("csvs/2026/01/01/part-{:07}.csv", i * 360)).collect();
        let sample = Sample::of(day[..1000].iter().map(String::as_str)).expect("a sample");
        let cuts = sample.cut_points(Some("csvs/2026/01/02/"), 4, 16);
        assert!(!cuts.points.is_empty() && cuts.guessed, "{:?}", cuts.points);
        let flat = s3mm_test_support::shapes::sequential(100_000);
        let sample = Sample::of(flat[..1000].iter().map(String::as_str)).expect("a sample");
        for upto in [None, Some(flat[20_000].as_str())] {
            let cuts = sample.cut_points(upto, 4, 16);
            assert!(!cuts.points.is_empty() && !cuts.guessed, "{upto:?}: {:?}", cuts.points);
        }
    }

    #[test]
    fn nothing_to_cut_when_the_range_is_short_or_the_sample_flat() {
        assert!(cut_points(&["a/x1", "a/x2"], Some("a/x3"), 4, 8).is_empty());
        assert!(cut_points(&["k", "k"], None, 4, 8).is_empty());
        assert!(cut_points(&["a", "b"], None, 4, 0).is_empty());
        assert!(cut_points(&[], None, 4, 8).is_empty());
    }

    #[test]
    fn cuts_are_made_of_the_samples_characters() {
        let all = page((0..5_000).map(|i| format!("日本/é{i:05}")));
        let cuts = cut_points(&refs(&all[..1000]), None, 4, 5);
        assert!(!cuts.is_empty());
        assert_inside(&all[999], None, &cuts);
        for cut in &cuts {
            assert!(cut.chars().all(|c| "日本/é0123456789".contains(c)), "{cut:?}");
        }
    }

    /// The estimate against the true count, for samples of 1,000 keys at
    /// `start` and bounds `ahead` keys further.
    fn estimate_ratios(all: &[String], cases: &[(usize, usize)]) -> Vec<f64> {
        cases
            .iter()
            .map(|&(start, ahead)| {
                let sample = refs(&all[start..start + 1000]);
                let last = start + 999;
                let density = Sample::of(sample).expect("a sample");
                let estimate = density.keys_between(&all[last], &all[last + ahead]).expect("estimate");
                estimate / ahead as f64
            })
            .collect()
    }

    #[test]
    fn keys_between_counts_at_the_samples_density() {
        let cases = [(2_000, 300), (2_000, 38_000), (2_500, 300), (10_000, 700), (41_234, 50)];
        let sequential = s3mm_test_support::shapes::sequential(100_000);
        let hex = page((0..65_536u64).map(|i| format!("u/{:04x}{:04x}.csv", i, (i * 7919) % 65_536)));
        for all in [&sequential, &hex] {
            let ratios = estimate_ratios(all, &cases);
            assert!(ratios.iter().all(|r| (0.99..=1.01).contains(r)), "{ratios:?}");
        }
        // UUIDs are random: a count of a few hundred is off by its noise.
        let mut uuids = s3mm_test_support::shapes::random(100_000);
        uuids.sort();
        let ratios = estimate_ratios(&uuids, &[(2_000, 300), (2_000, 38_000), (50_000, 700), (70_000, 5_000)]);
        assert!(ratios.iter().all(|r| (0.75..=1.33).contains(r)), "{ratios:?}");
        assert!(Sample::of(["k", "k"]).is_none());
        assert!(Sample::of(std::iter::empty()).is_none());
        let density = Sample::of(["k1", "k2"]).expect("a sample");
        assert_eq!(density.keys_between("k5", "k3"), None);
        // Past the shared part only ASCII is counted.
        assert_eq!(density.keys_between("k2", "kü"), None);
        assert!(Sample::of(["kü1", "kü2"]).expect("a sample").keys_between("kü2", "kü9").is_some());
    }

    #[test]
    fn positions_follow_key_order_and_round_trip() {
        let keys = ["", "a", "a ", "a0", "a~", "b", "~"];
        let alphabets = Sample::of(keys).expect("a sample").alphabets();
        let line = Sample::line("", &alphabets).expect("line");
        for pair in keys.windows(2) {
            assert!(line.position(pair[0]) < line.position(pair[1]), "{pair:?}");
        }
        let alphabets = Sample::of(["p/abc", "p/b"]).expect("a sample").alphabets();
        let line = Sample::line("p/", &alphabets).expect("line");
        assert_eq!(line.position("a/zzz"), 0);
        assert_eq!(line.position("q"), line.top);
        assert_eq!(line.key_at(line.position("p/abc")), "p/abc");
    }
}
