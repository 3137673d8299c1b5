//! The checker on hand-written histories with a known answer, and on random histories that
//! are linearizable by construction.
use std::collections::BTreeMap;
use std::time::Duration;

use muster_lincheck::{check_history, History, Op, Record, Ret, TxnOp, TxnRet, Val};

const BUDGET: Duration = Duration::from_secs(30);

fn v(s: &str) -> Val {
    Val::new(s, 0)
}

fn rec(op: Op, call: u64, ret: Option<(u64, Ret)>) -> Record {
    Record {
        client: 0,
        op,
        call,
        ret,
    }
}

fn put(k: &str, val: &str, call: u64, ret: u64) -> Record {
    rec(
        Op::Put {
            key: k.into(),
            val: v(val),
        },
        call,
        Some((ret, Ret::Done(true))),
    )
}

fn get(k: &str, val: Option<&str>, call: u64, ret: u64) -> Record {
    rec(
        Op::Get { key: k.into() },
        call,
        Some((ret, Ret::Value(val.map(v)))),
    )
}

fn list(prefix: &str, got: &[(&str, &str)], call: u64, ret: u64) -> Record {
    rec(
        Op::List {
            prefix: prefix.into(),
        },
        call,
        Some((
            ret,
            Ret::List(got.iter().map(|(k, x)| (k.to_string(), v(x))).collect()),
        )),
    )
}

fn txn_set(kvs: &[(&str, &str)], call: u64, ret: Option<u64>) -> Record {
    rec(
        Op::Txn(
            kvs.iter()
                .map(|(k, x)| TxnOp::Set {
                    key: k.to_string(),
                    val: v(x),
                })
                .collect(),
        ),
        call,
        ret.map(|t| (t, Ret::Txn(TxnRet::Committed { reads: vec![] }))),
    )
}

fn verdict(records: Vec<Record>) -> bool {
    let h = History {
        initial: vec![],
        records,
    };
    let r = check_history(&h, BUDGET).expect("well-formed history");
    if let Some(e) = &r.explanation {
        eprintln!("{}\n{e}", r.summary());
    }
    r.linearizable.expect("decided within the budget")
}

#[test]
fn sequential_history_is_linearizable() {
    assert!(verdict(vec![
        get("a", None, 0, 1),
        put("a", "1", 2, 3),
        get("a", Some("1"), 4, 5),
        rec(
            Op::Delete { key: "a".into() },
            6,
            Some((7, Ret::Done(true)))
        ),
        get("a", None, 8, 9),
    ]));
}

#[test]
fn concurrent_reads_may_see_old_or_new() {
    assert!(verdict(vec![
        put("a", "1", 0, 100),
        get("a", None, 10, 20),
        get("a", Some("1"), 30, 40),
        get("a", Some("1"), 101, 102),
    ]));
}

#[test]
fn stale_read_is_caught() {
    assert!(!verdict(vec![put("a", "1", 0, 10), get("a", None, 20, 30)]));
}

#[test]
fn read_going_back_in_time_is_caught() {
    // Concurrent with the write, one read sees it and a later one does not.
    assert!(!verdict(vec![
        put("a", "1", 0, 100),
        get("a", Some("1"), 10, 20),
        get("a", None, 30, 40),
    ]));
}

#[test]
fn lost_write_is_caught() {
    assert!(!verdict(vec![
        put("a", "1", 0, 10),
        put("a", "2", 20, 30),
        get("a", Some("1"), 40, 50),
    ]));
}

#[test]
fn flags_are_part_of_the_value() {
    let r = rec(
        Op::Put {
            key: "a".into(),
            val: Val::new("1", 7),
        },
        0,
        Some((1, Ret::Done(true))),
    );
    assert!(!verdict(vec![r.clone(), get("a", Some("1"), 2, 3)]));
    let g = rec(
        Op::Get { key: "a".into() },
        2,
        Some((3, Ret::Value(Some(Val::new("1", 7))))),
    );
    assert!(verdict(vec![r, g]));
}

#[test]
fn torn_recursive_read_is_caught() {
    let writes = || {
        vec![
            txn_set(&[("t/a", "1"), ("t/b", "1")], 0, Some(10)),
            txn_set(&[("t/a", "2"), ("t/b", "2")], 20, Some(30)),
        ]
    };
    // A read spanning both transactions may see either whole state...
    for seen in [
        &[][..],
        &[("t/a", "1"), ("t/b", "1")][..],
        &[("t/a", "2"), ("t/b", "2")][..],
    ] {
        let mut h = writes();
        h.push(list("t/", seen, 5, 40));
        assert!(verdict(h), "{seen:?}");
    }
    // ...but not half of each, nor half of one.
    for seen in [
        &[("t/a", "1"), ("t/b", "2")][..],
        &[("t/a", "2"), ("t/b", "1")][..],
        &[("t/a", "1")][..],
    ] {
        let mut h = writes();
        h.push(list("t/", seen, 5, 40));
        assert!(!verdict(h), "{seen:?}");
    }
}

#[test]
fn recursive_read_covers_only_its_prefix_in_key_order() {
    let h = || {
        vec![
            put("p/b", "1", 0, 1),
            put("p/a", "2", 2, 3),
            put("q/a", "3", 4, 5),
        ]
    };
    let mut ok = h();
    ok.push(list("p/", &[("p/a", "2"), ("p/b", "1")], 10, 11));
    assert!(verdict(ok));
    let mut unsorted = h();
    unsorted.push(list("p/", &[("p/b", "1"), ("p/a", "2")], 10, 11));
    assert!(!verdict(unsorted));
    let mut extra = h();
    extra.push(list(
        "p/",
        &[("p/a", "2"), ("p/b", "1"), ("q/a", "3")],
        10,
        11,
    ));
    assert!(!verdict(extra));
    let mut phantom = h();
    phantom.push(list(
        "p/",
        &[("p/a", "2"), ("p/b", "1"), ("p/c", "9")],
        10,
        11,
    ));
    assert!(!verdict(phantom));
}

#[test]
fn torn_txn_is_caught() {
    // One reader sees the txn's write to a, then does not see its write to b.
    assert!(!verdict(vec![
        txn_set(&[("a", "1"), ("b", "1")], 0, Some(100)),
        get("a", Some("1"), 10, 20),
        get("b", None, 30, 40),
    ]));
    // Without the first read, either order is fine.
    assert!(verdict(vec![
        txn_set(&[("a", "1"), ("b", "1")], 0, Some(100)),
        get("b", None, 30, 40),
    ]));
    // A txn's own gets see one state: a txn that read a's new value and b's old one.
    let reader = rec(
        Op::Txn(vec![
            TxnOp::Get { key: "a".into() },
            TxnOp::Get { key: "b".into() },
        ]),
        5,
        Some((
            50,
            Ret::Txn(TxnRet::Committed {
                reads: vec![v("2"), v("1")],
            }),
        )),
    );
    let base = || {
        vec![
            txn_set(&[("a", "1"), ("b", "1")], 0, Some(1)),
            txn_set(&[("a", "2"), ("b", "2")], 2, Some(60)),
        ]
    };
    let mut h = base();
    h.push(reader.clone());
    assert!(!verdict(h));
    let mut fine = base();
    let mut r = reader;
    r.ret = Some((
        50,
        Ret::Txn(TxnRet::Committed {
            reads: vec![v("2"), v("2")],
        }),
    ));
    fine.push(r);
    assert!(verdict(fine));
}

#[test]
fn txn_rolls_back_on_a_failed_get_or_cas() {
    let aborted_at = |i| Some((10, Ret::Txn(TxnRet::Aborted { first_failed: i })));
    let t = Op::Txn(vec![
        TxnOp::Set {
            key: "a".into(),
            val: v("1"),
        },
        TxnOp::Get { key: "b".into() },
    ]);
    // b is absent: op 1 fails, and a is not written.
    assert!(verdict(vec![
        rec(t.clone(), 0, aborted_at(1)),
        get("a", None, 20, 30),
    ]));
    assert!(!verdict(vec![
        rec(t.clone(), 0, aborted_at(1)),
        get("a", Some("1"), 20, 30),
    ]));
    assert!(!verdict(vec![rec(t.clone(), 0, aborted_at(0))]));
    // Committed while b is absent cannot be.
    assert!(!verdict(vec![rec(
        t,
        0,
        Some((
            10,
            Ret::Txn(TxnRet::Committed {
                reads: vec![v("x")]
            })
        ))
    )]));
    // A CAS inside a txn against the value read.
    let cas = |expect: Option<&str>| {
        Op::Txn(vec![TxnOp::Cas {
            key: "a".into(),
            val: v("2"),
            expect: expect.map(v),
        }])
    };
    let ok = Some((30, Ret::Txn(TxnRet::Committed { reads: vec![] })));
    assert!(verdict(vec![
        put("a", "1", 0, 10),
        rec(cas(Some("1")), 20, ok.clone()),
        get("a", Some("2"), 40, 50),
    ]));
    assert!(!verdict(vec![put("a", "1", 0, 10), rec(cas(None), 20, ok)]));
}

#[test]
fn cas_succeeds_exactly_when_the_value_read_is_current() {
    let cas = |expect: Option<&str>, val: &str, ok: bool, call, ret| {
        rec(
            Op::Cas {
                key: "a".into(),
                val: v(val),
                expect: expect.map(v),
            },
            call,
            Some((ret, Ret::Done(ok))),
        )
    };
    // Create-only on an absent key.
    assert!(verdict(vec![cas(None, "1", true, 0, 1)]));
    assert!(!verdict(vec![cas(None, "1", false, 0, 1)]));
    assert!(!verdict(vec![
        put("a", "0", 0, 1),
        cas(None, "1", true, 2, 3)
    ]));
    // Two clients CAS from the same read: only one may win.
    assert!(verdict(vec![
        put("a", "0", 0, 1),
        cas(Some("0"), "1", true, 2, 10),
        cas(Some("0"), "2", false, 3, 9),
        get("a", Some("1"), 11, 12),
    ]));
    assert!(!verdict(vec![
        put("a", "0", 0, 1),
        cas(Some("0"), "1", true, 2, 10),
        cas(Some("0"), "2", true, 3, 9),
    ]));
}

#[test]
fn unknown_outcome_write_may_appear_later_but_not_earlier() {
    let unknown = |k: &str, x: &str, call| {
        rec(
            Op::Put {
                key: k.into(),
                val: v(x),
            },
            call,
            None,
        )
    };
    // Not seen at first, seen much later: it took effect in between.
    assert!(verdict(vec![
        unknown("a", "1", 0),
        get("a", None, 10, 20),
        get("a", Some("1"), 1000, 1001),
    ]));
    // Never seen: it did not take effect.
    assert!(verdict(vec![unknown("a", "1", 0), get("a", None, 10, 20)]));
    // Seen before it was issued: impossible.
    assert!(!verdict(vec![
        get("a", Some("1"), 0, 5),
        unknown("a", "1", 10)
    ]));
    // Seen, overwritten, seen again: it cannot take effect twice.
    assert!(!verdict(vec![
        unknown("a", "1", 0),
        get("a", Some("1"), 10, 20),
        put("a", "2", 30, 40),
        get("a", Some("1"), 50, 60),
    ]));
    // An unknown txn is still all-or-nothing.
    assert!(!verdict(vec![
        txn_set(&[("a", "1"), ("b", "1")], 0, None),
        list("", &[("a", "1")], 100, 110),
    ]));
    assert!(verdict(vec![
        txn_set(&[("a", "1"), ("b", "1")], 0, None),
        list("", &[("a", "1"), ("b", "1")], 100, 110),
    ]));
}

#[test]
fn malformed_history_is_refused() {
    let bad = History {
        initial: vec![],
        records: vec![rec(
            Op::Get { key: "a".into() },
            0,
            Some((1, Ret::Done(true))),
        )],
    };
    assert!(check_history(&bad, BUDGET).is_err());
    let backwards = History {
        initial: vec![],
        records: vec![get("a", None, 10, 5)],
    };
    assert!(check_history(&backwards, BUDGET).is_err());
}

#[test]
fn initial_state_counts() {
    let h = History {
        initial: vec![("a".into(), v("0"))],
        records: vec![get("a", Some("0"), 0, 1)],
    };
    assert_eq!(check_history(&h, BUDGET).unwrap().linearizable, Some(true));
}

// ---------------------------------------------------------------------------------------------
// Random histories, linearizable by construction
// ---------------------------------------------------------------------------------------------

/// Runs random ops one after another on a plain map (the reference, written apart from the
/// checker's model), gives op `i` the linearization point `10 * i`, and an interval around
/// it of random width, so that ops overlap in random ways. Some writes lose their outcome
/// (applied or not). The history that results is linearizable whatever the widths.
fn random_history(seed: u64, n: usize, keys: usize, max_width: u64) -> History {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut map: BTreeMap<String, Val> = BTreeMap::new();
    let mut seen: Vec<Val> = Vec::new();
    let mut next = 0u64;
    let mut fresh = |rng: &mut fastrand::Rng| {
        next += 1;
        Val::new(format!("v{next}"), rng.u64(0..2))
    };
    let key =
        |rng: &mut fastrand::Rng| format!("{}/{}", ["x", "y"][rng.usize(0..2)], rng.usize(0..keys));
    let mut records = Vec::new();
    for i in 0..n {
        let point = 1000 + 10 * i as u64;
        let call = point - rng.u64(0..=max_width);
        let ret = point + rng.u64(0..=max_width);
        // An expected value for CAS: current, absent, or some older value.
        let expect =
            |rng: &mut fastrand::Rng, k: &str, map: &BTreeMap<String, Val>| match rng.u8(0..3) {
                0 => map.get(k).cloned(),
                1 => None,
                _ => seen.get(rng.usize(0..seen.len().max(1))).cloned(),
            };
        let (op, result) = match rng.u8(0..7) {
            0 => {
                let k = key(&mut rng);
                (Op::Get { key: k.clone() }, Ret::Value(map.get(&k).cloned()))
            }
            1 => {
                let (k, val) = (key(&mut rng), fresh(&mut rng));
                map.insert(k.clone(), val.clone());
                seen.push(val.clone());
                (Op::Put { key: k, val }, Ret::Done(true))
            }
            2 => {
                let (k, val) = (key(&mut rng), fresh(&mut rng));
                let e = expect(&mut rng, &k, &map);
                let ok = map.get(&k) == e.as_ref();
                if ok {
                    map.insert(k.clone(), val.clone());
                    seen.push(val.clone());
                }
                (
                    Op::Cas {
                        key: k,
                        val,
                        expect: e,
                    },
                    Ret::Done(ok),
                )
            }
            3 => {
                let k = key(&mut rng);
                map.remove(&k);
                (Op::Delete { key: k }, Ret::Done(true))
            }
            4 => {
                let prefix = ["", "x/", "y/"][rng.usize(0..3)].to_string();
                let l = map
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (Op::List { prefix }, Ret::List(l))
            }
            _ => {
                let mut ops = Vec::new();
                for _ in 0..rng.usize(1..5) {
                    let k = key(&mut rng);
                    ops.push(match rng.u8(0..4) {
                        0 => TxnOp::Set {
                            key: k,
                            val: fresh(&mut rng),
                        },
                        1 => TxnOp::Get { key: k },
                        2 => TxnOp::Delete { key: k },
                        _ => TxnOp::Cas {
                            val: fresh(&mut rng),
                            expect: expect(&mut rng, &k, &map),
                            key: k,
                        },
                    });
                }
                let mut m = map.clone();
                let mut reads = Vec::new();
                let mut failed = None;
                for (j, o) in ops.iter().enumerate() {
                    match o {
                        TxnOp::Set { key, val } => {
                            m.insert(key.clone(), val.clone());
                        }
                        TxnOp::Delete { key } => {
                            m.remove(key);
                        }
                        TxnOp::Get { key } => match m.get(key) {
                            Some(x) => reads.push(x.clone()),
                            None => {
                                failed = Some(j);
                                break;
                            }
                        },
                        TxnOp::Cas { key, val, expect } => {
                            if m.get(key) != expect.as_ref() {
                                failed = Some(j);
                                break;
                            }
                            m.insert(key.clone(), val.clone());
                        }
                    }
                }
                let r = match failed {
                    Some(first_failed) => TxnRet::Aborted { first_failed },
                    None => {
                        map = m;
                        for o in &ops {
                            if let TxnOp::Set { val, .. } | TxnOp::Cas { val, .. } = o {
                                seen.push(val.clone());
                            }
                        }
                        TxnRet::Committed { reads }
                    }
                };
                (Op::Txn(ops), Ret::Txn(r))
            }
        };
        let ret = if op.writes() && rng.u8(0..25) == 0 {
            None
        } else {
            Some((ret, result))
        };
        records.push(Record {
            client: i % 8,
            op,
            call,
            ret,
        });
        // Now and then a write whose outcome is unknown and that did not take effect.
        if rng.u8(0..40) == 0 {
            let k = key(&mut rng);
            records.push(Record {
                client: 8,
                op: Op::Put {
                    key: k,
                    val: fresh(&mut rng),
                },
                call: point,
                ret: None,
            });
        }
    }
    records.sort_by_key(|r| r.call);
    History {
        initial: vec![],
        records,
    }
}

#[test]
fn random_linearizable_histories_are_accepted() {
    for seed in 0..300 {
        let n = 20 + (seed as usize % 7) * 10;
        let width = [0, 5, 15, 40][seed as usize % 4];
        let h = random_history(seed, n, 3, width);
        let r = check_history(&h, BUDGET).unwrap();
        assert_eq!(
            r.linearizable,
            Some(true),
            "seed {seed}: {}\n{}",
            r.summary(),
            r.explanation.unwrap_or_default()
        );
    }
}

#[test]
fn large_random_history_checks_quickly() {
    // About the size of an end-to-end history: 2,000 ops, ~8 overlapping at a time.
    let h = random_history(7, 2000, 8, 40);
    let r = check_history(&h, BUDGET).unwrap();
    eprintln!("{}", r.summary());
    assert_eq!(r.linearizable, Some(true), "{}", r.summary());
}

#[test]
fn random_history_with_a_corrupted_read_is_mostly_refused() {
    // Replace one read result with a value nobody wrote: never linearizable.
    for seed in 0..50 {
        let mut h = random_history(1000 + seed, 60, 3, 20);
        let Some(r) = h
            .records
            .iter_mut()
            .find(|r| matches!(r.ret, Some((_, Ret::Value(_)))))
        else {
            continue;
        };
        if let Some((_, ret)) = &mut r.ret {
            *ret = Ret::Value(Some(v("never-written")));
        }
        let rep = check_history(&h, BUDGET).unwrap();
        assert_eq!(rep.linearizable, Some(false), "seed {seed}");
    }
}
