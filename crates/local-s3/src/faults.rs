//! Latency and fault injection, adjustable while the server runs.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::op::Op;
use crate::store::lock;

/// A failure the server can inject in place of (or after) a real response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// 503 with S3's `SlowDown` XML error; the request is not processed.
    SlowDown,
    /// 500 with S3's `InternalError` XML error; the request is not processed.
    InternalError,
    /// The request is processed, then the connection is closed without a
    /// response, so the client cannot know whether it took effect.
    DropConnection,
    /// CopyObject / UploadPartCopy only: the copy is performed, then the
    /// answer is a 200 whose body is an `InternalError` XML error, as S3
    /// does when a copy fails after the headers were sent.
    CopyError200,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] =
        [FaultKind::SlowDown, FaultKind::InternalError, FaultKind::DropConnection, FaultKind::CopyError200];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::SlowDown => "SlowDown",
            FaultKind::InternalError => "InternalError",
            FaultKind::DropConnection => "DropConnection",
            FaultKind::CopyError200 => "CopyError200",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn applies_to(self, op: Op) -> bool {
        self != FaultKind::CopyError200 || op.is_copy()
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown fault kind {0:?} (expected SlowDown, InternalError, DropConnection or CopyError200)")]
pub struct UnknownFaultKind(String);

impl FromStr for FaultKind {
    type Err = UnknownFaultKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFaultKind(s.to_owned()))
    }
}

struct Rule {
    op: Op,
    /// Per-operation arrival number that triggers the rule.
    at: u64,
    kind: FaultKind,
}

struct State {
    rate: f64,
    kinds: Vec<FaultKind>,
    rules: Vec<Rule>,
    /// Buckets answered with 403 AccessDenied, each for some operations
    /// (empty = all).
    denied: Vec<(String, Vec<Op>)>,
    rng: StdRng,
}

/// Runtime control of injected latency and faults; see [`crate::LocalS3::faults`].
pub struct Faults {
    state: Mutex<State>,
    /// Lets the common no-fault path skip the mutex.
    armed: AtomicBool,
    /// Whether any bucket is denied; lets the common path skip the mutex.
    denying: AtomicBool,
    latency_ns: AtomicU64,
    jitter_ns: AtomicU64,
    /// Requests seen per operation, never reset; `fail_nth` counts from here.
    arrivals: Vec<AtomicU64>,
    injected: [AtomicU64; 4],
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Faults {
    pub(crate) fn new(seed: u64, rate: f64, kinds: &[FaultKind], latency: Duration, jitter: Duration) -> Faults {
        let faults = Faults {
            state: Mutex::new(State {
                rate: 0.0,
                kinds: Vec::new(),
                rules: Vec::new(),
                denied: Vec::new(),
                rng: StdRng::seed_from_u64(seed),
            }),
            armed: AtomicBool::new(false),
            denying: AtomicBool::new(false),
            latency_ns: AtomicU64::new(0),
            jitter_ns: AtomicU64::new(0),
            arrivals: (0..Op::COUNT).map(|_| AtomicU64::new(0)).collect(),
            injected: Default::default(),
        };
        faults.set_rate(rate, kinds);
        faults.set_latency(latency, jitter);
        faults
    }

    /// Injects a fault into a fraction `rate` (0.0–1.0) of all requests,
    /// each time picking uniformly among those of `kinds` that apply to the
    /// request (`CopyError200` applies only to CopyObject and UploadPartCopy).
    /// A rate of 0 or empty `kinds` turns random faults off.
    pub fn set_rate(&self, rate: f64, kinds: &[FaultKind]) {
        let rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
        let mut st = lock(&self.state);
        st.rate = rate;
        st.kinds = kinds.to_vec();
        self.rearm(&st);
    }

    /// Delays every request by `latency` plus a uniformly random extra of up
    /// to `jitter`, before it is processed.
    pub fn set_latency(&self, latency: Duration, jitter: Duration) {
        self.latency_ns.store(nanos(latency), Ordering::Relaxed);
        self.jitter_ns.store(nanos(jitter), Ordering::Relaxed);
    }

    /// Fails the `n`th request (1-based) of `operation` counted from now,
    /// with `kind`; the rule fires once. Operation names are those of
    /// [`crate::LocalS3::counters`], such as `"PutObject"` or `"CopyObject"`.
    ///
    /// # Panics
    /// On an unknown operation name, `n == 0`, or `CopyError200` for an
    /// operation other than CopyObject / UploadPartCopy: such a rule could
    /// never fire and would let a test pass vacuously.
    pub fn fail_nth(&self, operation: &str, n: u64, kind: FaultKind) {
        let op = op_named("fail_nth", operation);
        assert!(n >= 1, "fail_nth: n is 1-based");
        assert!(kind.applies_to(op), "fail_nth: {kind} only applies to CopyObject and UploadPartCopy, not {operation}");
        let mut st = lock(&self.state);
        let at = self.arrivals[op.index()].load(Ordering::SeqCst) + n;
        st.rules.push(Rule { op, at, kind });
        self.rearm(&st);
    }

    /// Answers every request on `bucket` whose operation is one of
    /// `operations` (empty = every operation) with 403 `AccessDenied`, as S3
    /// does when the caller's policy lacks the action, until [`Faults::clear`].
    /// The request is not processed. Denials are not counted as injected
    /// faults: they are a policy, not a transient failure.
    ///
    /// # Panics
    /// On an unknown operation name, for the same reason as [`Faults::fail_nth`].
    pub fn deny(&self, bucket: &str, operations: &[&str]) {
        let ops = operations.iter().map(|name| op_named("deny", name)).collect();
        let mut st = lock(&self.state);
        st.denied.push((bucket.to_owned(), ops));
        self.denying.store(true, Ordering::SeqCst);
    }

    /// Whether a request of `op` on `bucket` is denied by [`Faults::deny`].
    pub(crate) fn is_denied(&self, op: Op, bucket: &str) -> bool {
        if !self.denying.load(Ordering::SeqCst) {
            return false;
        }
        lock(&self.state).denied.iter().any(|(b, ops)| b == bucket && (ops.is_empty() || ops.contains(&op)))
    }

    /// Whether any [`Faults::deny`] rule is in force.
    pub(crate) fn denies_any(&self) -> bool {
        self.denying.load(Ordering::SeqCst)
    }

    /// Removes all rules, denials, random faults and latency.
    pub fn clear(&self) {
        let mut st = lock(&self.state);
        st.rate = 0.0;
        st.rules.clear();
        st.denied.clear();
        self.denying.store(false, Ordering::SeqCst);
        self.rearm(&st);
        self.set_latency(Duration::ZERO, Duration::ZERO);
    }

    /// How many `fail_nth` rules have not fired yet.
    pub fn pending_rules(&self) -> usize {
        lock(&self.state).rules.len()
    }

    fn rearm(&self, st: &State) {
        let armed = !st.rules.is_empty() || (st.rate > 0.0 && !st.kinds.is_empty());
        self.armed.store(armed, Ordering::SeqCst);
    }

    /// Counts the request and decides whether it gets a fault.
    pub(crate) fn decide(&self, op: Op) -> Option<FaultKind> {
        let arrival = self.arrivals[op.index()].fetch_add(1, Ordering::SeqCst) + 1;
        if !self.armed.load(Ordering::SeqCst) {
            return None;
        }
        let mut st = lock(&self.state);
        let kind = if let Some(i) = st.rules.iter().position(|r| r.op == op && r.at == arrival) {
            let rule = st.rules.remove(i);
            self.rearm(&st);
            Some(rule.kind)
        } else {
            random_fault(&mut st, op)
        };
        if let Some(k) = kind {
            self.injected[k.index()].fetch_add(1, Ordering::Relaxed);
        }
        kind
    }

    /// The delay for one request.
    pub(crate) fn latency(&self) -> Duration {
        let base = self.latency_ns.load(Ordering::Relaxed);
        let jitter = self.jitter_ns.load(Ordering::Relaxed);
        let extra = if jitter == 0 { 0 } else { lock(&self.state).rng.random_range(0..=jitter) };
        Duration::from_nanos(base.saturating_add(extra))
    }

    pub(crate) fn injected(&self) -> impl Iterator<Item = (FaultKind, u64)> + '_ {
        FaultKind::ALL.into_iter().map(|k| (k, self.injected[k.index()].load(Ordering::Relaxed)))
    }

    pub(crate) fn reset_injected(&self) {
        for c in &self.injected {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// The operation called `name`; a name that is none is a test's mistake
/// (its rule could never fire), so it panics, naming `caller` and the
/// known names.
fn op_named(caller: &str, name: &str) -> Op {
    Op::from_name(name).unwrap_or_else(|| {
        let known: Vec<_> = Op::ALL.iter().map(|o| o.name()).collect();
        panic!("{caller}: unknown operation {name:?}; known: {known:?}")
    })
}

fn random_fault(st: &mut State, op: Op) -> Option<FaultKind> {
    if st.rate <= 0.0 {
        return None;
    }
    let applicable: Vec<FaultKind> = st.kinds.iter().copied().filter(|k| k.applies_to(op)).collect();
    if applicable.is_empty() || !st.rng.random_bool(st.rate) {
        return None;
    }
    Some(applicable[st.rng.random_range(0..applicable.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults() -> Faults {
        Faults::new(7, 0.0, &FaultKind::ALL, Duration::ZERO, Duration::ZERO)
    }

    #[test]
    fn nth_rule_fires_once_on_exactly_the_nth_request() {
        let f = faults();
        f.decide(Op::PutObject);
        f.fail_nth("PutObject", 2, FaultKind::SlowDown);
        assert_eq!(f.decide(Op::GetObject), None);
        assert_eq!(f.decide(Op::PutObject), None);
        assert_eq!(f.decide(Op::PutObject), Some(FaultKind::SlowDown));
        assert_eq!(f.decide(Op::PutObject), None);
        assert_eq!(f.pending_rules(), 0);
        let injected: Vec<_> = f.injected().collect();
        assert!(injected.contains(&(FaultKind::SlowDown, 1)));
    }

    #[test]
    fn random_faults_respect_rate_and_applicability() {
        let f = faults();
        f.set_rate(1.0, &[FaultKind::CopyError200]);
        assert_eq!(f.decide(Op::PutObject), None);
        assert_eq!(f.decide(Op::CopyObject), Some(FaultKind::CopyError200));
        f.set_rate(0.5, &[FaultKind::SlowDown]);
        let hits = (0..2000).filter(|_| f.decide(Op::GetObject).is_some()).count();
        assert!((800..1200).contains(&hits), "{hits} of 2000 at rate 0.5");
        f.clear();
        assert_eq!(f.decide(Op::GetObject), None);
    }

    #[test]
    #[should_panic(expected = "unknown operation")]
    fn unknown_operation_names_are_rejected() {
        faults().fail_nth("PutObjects", 1, FaultKind::SlowDown);
    }

    #[test]
    fn denials_name_a_bucket_and_some_operations() {
        let f = faults();
        assert!(!f.is_denied(Op::GetObject, "b"));
        f.deny("b", &["DeleteObject"]);
        f.deny("c", &[]);
        assert!(f.is_denied(Op::DeleteObject, "b"));
        assert!(!f.is_denied(Op::GetObject, "b"));
        assert!(f.is_denied(Op::PutObject, "c"));
        assert!(!f.is_denied(Op::DeleteObject, "d"));
        f.clear();
        assert!(!f.is_denied(Op::PutObject, "c"));
    }

    #[test]
    fn kinds_parse_case_insensitively() {
        assert_eq!("slowdown".parse::<FaultKind>().ok(), Some(FaultKind::SlowDown));
        assert!("nope".parse::<FaultKind>().is_err());
    }
}
