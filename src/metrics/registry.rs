//! The per-core (thread-local) registry and the recording API.
//!
//! Every executor thread owns one registry; recording touches only that
//! thread's `RefCell`, so there are no locks or atomics on the hot path. The
//! free functions do one family lookup (by `&'static str`) and one series lookup
//! (by the label slice, without allocating when labels are already sorted by
//! name). Hot paths should resolve a handle once per core ([`counter`],
//! [`gauge`], [`sample`]) and record through it: a handle is an `Rc` to the
//! series cell, so recording is a couple of loads and stores.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use super::snapshot::{
    Aggregate, GaugeValue, Labels, MetricKind, SampleValue, SeriesKey, Snapshot,
};

/// Series allowed per family and core. Label values can come from users
/// (service names, routes), so an unbounded family would be a memory leak;
/// records beyond the cap are dropped and counted in [`DROPPED_SERIES`].
pub const MAX_SERIES_PER_FAMILY: usize = 4096;

/// Counter of records dropped because their family hit [`MAX_SERIES_PER_FAMILY`].
pub const DROPPED_SERIES: &str = "muster.metrics.dropped_series";

/// A family to pre-register so it is exposed (at zero) before its first event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricDef {
    /// Consul dotted name, e.g. `consul.raft.apply`.
    pub name: &'static str,
    pub kind: MetricKind,
    /// Prometheus `# HELP` text; empty means "use the dotted name".
    pub help: &'static str,
}

type Families<T> = HashMap<&'static str, HashMap<Labels, Rc<T>>>;

struct Registry {
    since: SystemTime,
    counters: Families<Cell<Aggregate>>,
    gauges: Families<Cell<GaugeValue>>,
    samples: Families<RefCell<SampleValue>>,
    help: HashMap<&'static str, &'static str>,
    dropped: u64,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry {
        since: SystemTime::now(),
        counters: HashMap::new(),
        gauges: HashMap::new(),
        samples: HashMap::new(),
        help: HashMap::new(),
        dropped: 0,
    });
}

/// Finds or creates the series `name{labels}` and runs `f` on it; does nothing
/// (but count the drop) when the family is full.
#[inline]
fn with_series<T: Default>(
    families: &mut Families<T>,
    dropped: &mut u64,
    name: &'static str,
    labels: &[(&'static str, String)],
    f: impl FnOnce(&Rc<T>),
) {
    let family = families.entry(name).or_default();
    if labels.is_sorted_by(|a, b| a.0 <= b.0) {
        if let Some(series) = family.get(labels) {
            f(series);
            return;
        }
        insert(family, dropped, labels.to_vec(), f);
    } else {
        // Unsorted input costs one allocation per call; callers on hot paths
        // should pass labels sorted by name or use a handle.
        let key = SeriesKey::new(name, labels).labels;
        if let Some(series) = family.get(&key) {
            f(series);
            return;
        }
        insert(family, dropped, key, f);
    }
}

#[cold]
fn insert<T: Default>(
    family: &mut HashMap<Labels, Rc<T>>,
    dropped: &mut u64,
    labels: Labels,
    f: impl FnOnce(&Rc<T>),
) {
    if family.len() >= MAX_SERIES_PER_FAMILY {
        *dropped += 1;
        return;
    }
    f(family.entry(labels).or_default());
}

/// Runs `f` on this thread's registry; silently does nothing while the thread
/// is being torn down (recording from a destructor must not panic).
#[inline]
fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
    REGISTRY.try_with(|r| f(&mut r.borrow_mut())).ok()
}

/// Adds `by` to counter `name{labels}` on this core.
#[inline]
pub fn incr_counter(name: &'static str, labels: &[(&'static str, String)], by: f64) {
    with_registry(|r| {
        with_series(&mut r.counters, &mut r.dropped, name, labels, |c| {
            let mut a = c.get();
            a.ingest(by);
            c.set(a);
        });
    });
}

/// Sets gauge `name{labels}` on this core. Across cores the most recent set wins.
#[inline]
pub fn set_gauge(name: &'static str, labels: &[(&'static str, String)], value: f64) {
    with_registry(|r| {
        with_series(&mut r.gauges, &mut r.dropped, name, labels, |g| {
            let mut v = g.get();
            v.set(value);
            g.set(v);
        });
    });
}

/// Records one value (a timing in milliseconds, as Consul) in sample `name{labels}`.
#[inline]
pub fn add_sample(name: &'static str, labels: &[(&'static str, String)], value_ms: f64) {
    with_registry(|r| {
        with_series(&mut r.samples, &mut r.dropped, name, labels, |s| {
            s.borrow_mut().add(value_ms);
        });
    });
}

/// Records the milliseconds elapsed since `start` in sample `name{labels}`.
#[inline]
pub fn measure_since(name: &'static str, labels: &[(&'static str, String)], start: Instant) {
    add_sample(name, labels, elapsed_ms(start));
}

fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Pre-resolved counter series of this core. `!Send`: resolve one per core.
#[derive(Clone, Debug)]
pub struct CounterHandle(Rc<Cell<Aggregate>>);

impl CounterHandle {
    #[inline]
    pub fn incr(&self, by: f64) {
        let mut a = self.0.get();
        a.ingest(by);
        self.0.set(a);
    }
}

/// Pre-resolved gauge series of this core. `!Send`: resolve one per core.
#[derive(Clone, Debug)]
pub struct GaugeHandle(Rc<Cell<GaugeValue>>);

impl GaugeHandle {
    #[inline]
    pub fn set(&self, value: f64) {
        let mut v = self.0.get();
        v.set(value);
        self.0.set(v);
    }
}

/// Pre-resolved sample series of this core. `!Send`: resolve one per core.
#[derive(Clone, Debug)]
pub struct SampleHandle(Rc<RefCell<SampleValue>>);

impl SampleHandle {
    /// Records one value (milliseconds for timings).
    #[inline]
    pub fn add(&self, value_ms: f64) {
        self.0.borrow_mut().add(value_ms);
    }

    /// Records the milliseconds elapsed since `start`.
    #[inline]
    pub fn measure_since(&self, start: Instant) {
        self.add(elapsed_ms(start));
    }
}

// A handle for a full family (or resolved during thread teardown) is detached:
// it records into a private cell that no snapshot sees.
fn handle<T: Default>(
    pick: impl FnOnce(&mut Registry) -> (&mut Families<T>, &mut u64),
    name: &'static str,
    labels: &[(&'static str, String)],
) -> Rc<T> {
    with_registry(|r| {
        let (families, dropped) = pick(r);
        let mut found = None;
        with_series(families, dropped, name, labels, |s| {
            found = Some(Rc::clone(s))
        });
        found
    })
    .flatten()
    .unwrap_or_default()
}

/// Resolves (creating at zero) counter `name{labels}` on this core.
pub fn counter(name: &'static str, labels: &[(&'static str, String)]) -> CounterHandle {
    CounterHandle(handle(|r| (&mut r.counters, &mut r.dropped), name, labels))
}

/// Resolves (creating at zero) gauge `name{labels}` on this core.
pub fn gauge(name: &'static str, labels: &[(&'static str, String)]) -> GaugeHandle {
    GaugeHandle(handle(|r| (&mut r.gauges, &mut r.dropped), name, labels))
}

/// Resolves (creating empty) sample `name{labels}` on this core.
pub fn sample(name: &'static str, labels: &[(&'static str, String)]) -> SampleHandle {
    SampleHandle(handle(|r| (&mut r.samples, &mut r.dropped), name, labels))
}

/// Creates each family's unlabelled series at zero on this core and records its
/// help text, so scrapes show the family before its first event (as Consul's
/// Prometheus output does for its known metrics). Calling it on one core is
/// enough since scrapes merge all cores; calling it again is harmless.
pub fn register_defaults(defs: &[MetricDef]) {
    with_registry(|r| {
        for def in defs {
            if !def.help.is_empty() {
                r.help.insert(def.name, def.help);
            }
            match def.kind {
                MetricKind::Counter => {
                    with_series(&mut r.counters, &mut r.dropped, def.name, &[], |_| ());
                }
                MetricKind::Gauge => {
                    with_series(&mut r.gauges, &mut r.dropped, def.name, &[], |_| ());
                }
                MetricKind::Sample => {
                    with_series(&mut r.samples, &mut r.dropped, def.name, &[], |_| ());
                }
            }
        }
    });
}

fn collect<T, V>(families: &Families<T>, read: impl Fn(&T) -> V) -> BTreeMap<SeriesKey, V> {
    let mut out = BTreeMap::new();
    for (&name, series) in families {
        for (labels, cell) in series {
            let key = SeriesKey {
                name,
                labels: labels.clone(),
            };
            out.insert(key, read(cell));
        }
    }
    out
}

/// Copies this core's current values. Cost is proportional to the number of
/// series; meant for scrapes, not for hot paths.
pub fn snapshot_local() -> Snapshot {
    with_registry(|r| {
        let mut snap = Snapshot {
            since: Some(r.since),
            counters: collect(&r.counters, |c| c.get()),
            gauges: collect(&r.gauges, |g| g.get()),
            samples: collect(&r.samples, |s| s.borrow().clone()),
            help: r.help.iter().map(|(&k, &v)| (k, v)).collect(),
        };
        if r.dropped > 0 {
            let mut dropped = Aggregate::default();
            dropped.ingest(r.dropped as f64);
            snap.counters.insert(
                SeriesKey {
                    name: DROPPED_SERIES,
                    labels: Vec::new(),
                },
                dropped,
            );
        }
        snap
    })
    .unwrap_or_default()
}
