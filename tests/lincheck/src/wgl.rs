//! The Wing & Gong / Lowe search for a linearization, with Lowe's memoization of
//! (set of linearized operations, model state) pairs already explored, as Porcupine does it,
//! over any sequential [`Model`].
//!
//! Operations with an unknown outcome have no return event: nothing forces them to be
//! linearized, so the search may place them anywhere after their call, or nowhere (they did
//! not take effect). The search is done once every operation that has a return is linearized.
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// A sequential specification. `Op` is an operation together with its observed result (or
/// the fact that the result is unknown); `step` says whether the op, applied to `state`,
/// could have returned that result, and if so what the state is afterwards.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Op;
    fn init(&self) -> Self::State;
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One operation of the history to check: `ret: None` is an unknown outcome.
#[derive(Clone, Debug)]
pub struct Event<O> {
    pub op: O,
    pub call: u64,
    pub ret: Option<u64>,
}

/// Why no linearization exists, from the deepest point the search reached.
#[derive(Clone, Debug)]
pub struct Failure<S> {
    /// Indices of the longest partial linearization found, in linearization order.
    pub longest: Vec<usize>,
    /// The model state after `longest`.
    pub state: S,
    /// The operation that had to come next (its return was reached) but could not.
    pub stuck: usize,
}

#[derive(Clone, Debug)]
pub enum Verdict<S> {
    Linearizable,
    NotLinearizable(Failure<S>),
    /// The search went over its time budget before deciding.
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Outcome<S> {
    pub verdict: Verdict<S>,
    pub elapsed: Duration,
    /// Model steps taken.
    pub steps: u64,
    /// Distinct (linearized set, state) pairs memoized.
    pub memo: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Call,
    Ret,
}

struct Node {
    kind: Kind,
    op: usize,
    /// For a call: the node of its return, if it has one.
    partner: Option<usize>,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

/// The events as a doubly linked list (node 0 is the head) that operations can be lifted out
/// of and put back in LIFO order.
struct List {
    nodes: Vec<Node>,
}

impl List {
    fn unlink(&mut self, n: usize) {
        let (p, x) = (self.nodes[n].prev, self.nodes[n].next);
        self.nodes[p].next = x;
        if x != NIL {
            self.nodes[x].prev = p;
        }
    }

    fn relink(&mut self, n: usize) {
        let (p, x) = (self.nodes[n].prev, self.nodes[n].next);
        self.nodes[p].next = n;
        if x != NIL {
            self.nodes[x].prev = n;
        }
    }

    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if let Some(r) = self.nodes[call].partner {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, call: usize) {
        if let Some(r) = self.nodes[call].partner {
            self.relink(r);
        }
        self.relink(call);
    }
}

/// A memo entry: hashed by a Zobrist hash of the set and the state's hash, compared whole,
/// so a hash collision can never prune a branch that was not explored.
struct Memo<S> {
    hash: u64,
    bits: Box<[u64]>,
    state: S,
}

impl<S: Eq> PartialEq for Memo<S> {
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash && self.bits == o.bits && self.state == o.state
    }
}
impl<S: Eq> Eq for Memo<S> {}
impl<S> Hash for Memo<S> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash)
    }
}

/// A hasher for keys that are already well-mixed u64s.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type BuildPassThrough = std::hash::BuildHasherDefault<PassThrough>;

fn state_hash<S: Hash>(s: &S) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Searches for a linearization of `events` under `model`, giving up after `budget`.
pub fn check<M: Model>(model: &M, events: &[Event<M::Op>], budget: Duration) -> Outcome<M::State> {
    let start = Instant::now();
    let n = events.len();

    // Calls before returns at equal times: operations that touch are concurrent.
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, e) in events.iter().enumerate() {
        order.push((e.call, 0, i));
        if let Some(r) = e.ret {
            assert!(r >= e.call, "operation {i} returns before it is called");
            order.push((r, 1, i));
        }
    }
    order.sort_unstable();
    let mut nodes = Vec::with_capacity(order.len() + 1);
    nodes.push(Node {
        kind: Kind::Call,
        op: usize::MAX,
        partner: None,
        prev: NIL,
        next: NIL,
    });
    let mut call_node = vec![NIL; n];
    for (pos, &(_, kind, op)) in order.iter().enumerate() {
        let id = pos + 1;
        let kind = if kind == 0 { Kind::Call } else { Kind::Ret };
        match kind {
            Kind::Call => call_node[op] = id,
            Kind::Ret => nodes[call_node[op]].partner = Some(id),
        }
        nodes.push(Node {
            kind,
            op,
            partner: None,
            prev: id - 1,
            next: if pos + 1 < order.len() { id + 1 } else { NIL },
        });
    }
    nodes[0].next = if order.is_empty() { NIL } else { 1 };
    let mut list = List { nodes };

    let mut rng = fastrand::Rng::with_seed(0x6c69_6e63_6865_636b);
    let zobrist: Vec<u64> = (0..n).map(|_| rng.u64(..)).collect();
    let words = n.div_ceil(64);
    let mut bits = vec![0u64; words];
    let mut bits_hash = 0u64;
    let mut returns_left = events.iter().filter(|e| e.ret.is_some()).count();

    let mut memo: HashSet<Memo<M::State>, BuildPassThrough> = HashSet::default();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut steps = 0u64;
    let mut best: Option<(Vec<usize>, M::State, usize)> = None;
    let mut entry = list.nodes[0].next;

    let outcome = |verdict, steps, memo: usize| Outcome {
        verdict,
        elapsed: start.elapsed(),
        steps,
        memo,
    };

    while returns_left > 0 {
        debug_assert!(entry != NIL, "a return is always reached before the end");
        let node = &list.nodes[entry];
        if node.kind == Kind::Call {
            let op = node.op;
            steps += 1;
            if steps.is_multiple_of(4096) && start.elapsed() > budget {
                return outcome(Verdict::Unknown, steps, memo.len());
            }
            if let Some(next) = model.step(&state, &events[op].op) {
                bits[op / 64] |= 1 << (op % 64);
                let h = bits_hash ^ zobrist[op];
                let key = Memo {
                    hash: h ^ state_hash(&next).rotate_left(17),
                    bits: bits.clone().into_boxed_slice(),
                    state: next,
                };
                if !memo.contains(&key) {
                    let next = key.state.clone();
                    memo.insert(key);
                    let prev = std::mem::replace(&mut state, next);
                    stack.push((entry, prev));
                    bits_hash = h;
                    if list.nodes[entry].partner.is_some() {
                        returns_left -= 1;
                    }
                    list.lift(entry);
                    entry = list.nodes[0].next;
                    continue;
                }
                bits[op / 64] &= !(1 << (op % 64));
            }
            entry = list.nodes[entry].next;
        } else {
            // The return of an op not linearized yet: something before it must change.
            if best.as_ref().is_none_or(|b| stack.len() > b.0.len()) {
                let longest = stack.iter().map(|(e, _)| list.nodes[*e].op).collect();
                best = Some((longest, state.clone(), node.op));
            }
            let Some((call, prev)) = stack.pop() else {
                let (longest, state, stuck) = best.expect("recorded before giving up");
                let f = Failure {
                    longest,
                    state,
                    stuck,
                };
                return outcome(Verdict::NotLinearizable(f), steps, memo.len());
            };
            state = prev;
            let op = list.nodes[call].op;
            bits[op / 64] &= !(1 << (op % 64));
            bits_hash ^= zobrist[op];
            list.unlift(call);
            if list.nodes[call].partner.is_some() {
                returns_left += 1;
            }
            entry = list.nodes[call].next;
        }
    }
    outcome(Verdict::Linearizable, steps, memo.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of u8 with read/write ops; `None` result = unknown.
    struct Register;

    #[derive(Clone, Debug)]
    enum RegOp {
        Write(u8),
        Read(u8),
    }

    impl Model for Register {
        type State = u8;
        type Op = RegOp;
        fn init(&self) -> u8 {
            0
        }
        fn step(&self, s: &u8, op: &RegOp) -> Option<u8> {
            match op {
                RegOp::Write(v) => Some(*v),
                RegOp::Read(v) => (v == s).then_some(*s),
            }
        }
    }

    fn ev(op: RegOp, call: u64, ret: Option<u64>) -> Event<RegOp> {
        Event { op, call, ret }
    }

    fn verdict(events: &[Event<RegOp>]) -> Verdict<u8> {
        check(&Register, events, Duration::from_secs(10)).verdict
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert!(matches!(verdict(&[]), Verdict::Linearizable));
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        let h = [
            ev(RegOp::Write(1), 0, Some(10)),
            ev(RegOp::Read(0), 1, Some(5)),
            ev(RegOp::Read(1), 2, Some(6)),
        ];
        assert!(matches!(verdict(&h), Verdict::Linearizable));
    }

    #[test]
    fn read_after_write_must_see_it() {
        let h = [
            ev(RegOp::Write(1), 0, Some(10)),
            ev(RegOp::Read(0), 11, Some(12)),
        ];
        match verdict(&h) {
            Verdict::NotLinearizable(f) => {
                assert_eq!(f.longest, vec![0]);
                assert_eq!(f.stuck, 1);
                assert_eq!(f.state, 1);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        let h = [
            ev(RegOp::Write(1), 0, Some(10)),
            ev(RegOp::Read(0), 10, Some(12)),
        ];
        assert!(matches!(verdict(&h), Verdict::Linearizable));
    }

    #[test]
    fn unknown_write_may_be_skipped_or_applied_late() {
        // Never observed: fine.
        let h = [ev(RegOp::Write(7), 0, None), ev(RegOp::Read(0), 5, Some(6))];
        assert!(matches!(verdict(&h), Verdict::Linearizable));
        // Observed long after its call, after a read that did not see it: fine too.
        let h = [
            ev(RegOp::Write(7), 0, None),
            ev(RegOp::Read(0), 5, Some(6)),
            ev(RegOp::Read(7), 100, Some(101)),
        ];
        assert!(matches!(verdict(&h), Verdict::Linearizable));
        // But not before it was called.
        let h = [ev(RegOp::Read(7), 0, Some(1)), ev(RegOp::Write(7), 5, None)];
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
        // And it takes effect at most once: seen, then overwritten, it cannot come back.
        let h = [
            ev(RegOp::Write(7), 0, None),
            ev(RegOp::Read(7), 5, Some(6)),
            ev(RegOp::Write(3), 10, Some(11)),
            ev(RegOp::Read(7), 20, Some(21)),
        ];
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn budget_gives_unknown() {
        // Many concurrent writes and a read nobody wrote: exponential without the memo's
        // help would be hopeless; with a zero budget it gives up at the first check.
        let mut h: Vec<Event<RegOp>> = (0..20u8)
            .map(|i| ev(RegOp::Write(i % 4 + 1), 0, Some(1000)))
            .collect();
        h.extend((0..5000).map(|i| ev(RegOp::Read(9), 2000 + i, Some(2000 + i))));
        let o = check(&Register, &h, Duration::ZERO);
        assert!(matches!(o.verdict, Verdict::Unknown), "{:?}", o.verdict);
    }
}
