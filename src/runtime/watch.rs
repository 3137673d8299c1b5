//! Blocking-query wait lists of one shard core.
//!
//! A blocking query registers a oneshot under the key, prefix or table it reads, in the same
//! synchronous step as its query ran, so no write can slip in between. A write wakes exactly the
//! waiters whose key, prefix or table it touched; watchers of one service never poll.
use std::collections::HashMap;

use futures::channel::oneshot;
use muster_shards::shard::{Table, Touched};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchKey {
    Key(String),
    Prefix(String),
    Table(Table),
    /// One service's instances or health.
    Service(String),
}

#[derive(Default)]
pub struct Watchers {
    keys: HashMap<String, Vec<oneshot::Sender<()>>>,
    prefixes: HashMap<String, Vec<oneshot::Sender<()>>>,
    tables: HashMap<Table, Vec<oneshot::Sender<()>>>,
    services: HashMap<String, Vec<oneshot::Sender<()>>>,
}

fn push(list: &mut Vec<oneshot::Sender<()>>, tx: oneshot::Sender<()>) {
    // Waiters whose request went away (timeout, client gone) are dropped here, so a key that
    // never changes does not collect dead entries.
    if list.len() >= 8 && list.len().is_power_of_two() {
        list.retain(|t| !t.is_canceled());
    }
    list.push(tx);
}

fn fire(list: Option<Vec<oneshot::Sender<()>>>) {
    for tx in list.into_iter().flatten() {
        let _ = tx.send(());
    }
}

impl Watchers {
    pub fn register(&mut self, key: WatchKey) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        match key {
            WatchKey::Key(k) => push(self.keys.entry(k).or_default(), tx),
            WatchKey::Prefix(p) => push(self.prefixes.entry(p).or_default(), tx),
            WatchKey::Table(t) => push(self.tables.entry(t).or_default(), tx),
            WatchKey::Service(n) => push(self.services.entry(n).or_default(), tx),
        }
        rx
    }

    pub fn len(&self) -> usize {
        self.keys.values().map(Vec::len).sum::<usize>()
            + self.prefixes.values().map(Vec::len).sum::<usize>()
            + self.tables.values().map(Vec::len).sum::<usize>()
            + self.services.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes every waiter: the whole state was replaced (snapshot install or restore).
    pub fn wake_all(&mut self) {
        for list in self
            .keys
            .drain()
            .chain(self.prefixes.drain())
            .chain(self.services.drain())
        {
            fire(Some(list.1));
        }
        for (_, list) in self.tables.drain() {
            fire(Some(list));
        }
    }

    pub fn wake(&mut self, t: &Touched) {
        for table in &t.tables {
            fire(self.tables.remove(table));
        }
        for name in &t.services {
            fire(self.services.remove(name));
        }
        for k in &t.keys {
            if !self.keys.is_empty() {
                fire(self.keys.remove(k));
            }
            if !self.prefixes.is_empty() {
                for (i, _) in k.char_indices().chain(std::iter::once((k.len(), ' '))) {
                    fire(self.prefixes.remove(&k[..i]));
                }
            }
        }
    }
}

/// Wakes every blocking query on every core.
pub async fn wake_all() {
    let c = super::core::core();
    let calls = (0..c.placement.executors).map(|e| {
        c.mesh.call(e, || async {
            super::core::core().watchers.borrow_mut().wake_all();
        })
    });
    futures::future::join_all(calls).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touched(keys: &[&str]) -> Touched {
        Touched {
            keys: keys.iter().map(|s| s.to_string()).collect(),
            tables: vec![Table::Kv],
            ..Touched::default()
        }
    }

    #[test]
    fn wakes_exact_key_and_prefixes_only() {
        let mut w = Watchers::default();
        let mut exact = w.register(WatchKey::Key("a/b".into()));
        let mut other = w.register(WatchKey::Key("a/c".into()));
        let mut pre = w.register(WatchKey::Prefix("a/".into()));
        let mut all = w.register(WatchKey::Prefix(String::new()));
        let mut miss = w.register(WatchKey::Prefix("b/".into()));
        let mut sess = w.register(WatchKey::Table(Table::Sessions));
        w.wake(&touched(&["a/b"]));
        assert_eq!(exact.try_recv(), Ok(Some(())));
        assert_eq!(pre.try_recv(), Ok(Some(())));
        assert_eq!(all.try_recv(), Ok(Some(())));
        assert_eq!(other.try_recv(), Ok(None));
        assert_eq!(miss.try_recv(), Ok(None));
        assert_eq!(sess.try_recv(), Ok(None));
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn wake_all_wakes_every_kind() {
        let mut w = Watchers::default();
        let mut rx = vec![
            w.register(WatchKey::Key("a".into())),
            w.register(WatchKey::Prefix("b/".into())),
            w.register(WatchKey::Table(Table::Nodes)),
            w.register(WatchKey::Service("web".into())),
        ];
        w.wake_all();
        for r in &mut rx {
            assert_eq!(r.try_recv(), Ok(Some(())));
        }
        assert!(w.is_empty());
    }

    #[test]
    fn abandoned_waiters_are_pruned() {
        let mut w = Watchers::default();
        for _ in 0..1000 {
            drop(w.register(WatchKey::Key("k".into())));
        }
        assert!(w.len() < 20, "{}", w.len());
    }
}
