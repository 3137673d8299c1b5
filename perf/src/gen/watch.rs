//! Parked blocking queries (`?index=N&wait=..`): open the connections, send every request,
//! then let one task per connection wait for its answer and note when it came.
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Result;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::http;
use super::load::connect_many;

/// How one watcher ended.
#[derive(Clone, Debug, Default)]
pub struct WatchEnd {
    /// When its answer was complete; None if it never came (or failed).
    pub at: Option<Instant>,
    pub status: u16,
    pub index: Option<u64>,
    pub error: Option<String>,
}

/// Watchers whose requests are all written.
pub struct Parked {
    tasks: Vec<JoinHandle<WatchEnd>>,
}

impl Parked {
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// How many have been answered already (early answers mean the index moved).
    pub fn answered(&self) -> usize {
        self.tasks.iter().filter(|t| t.is_finished()).count()
    }

    /// Waits until `deadline` for every answer; unanswered watchers are cancelled.
    pub async fn collect(mut self, deadline: Instant) -> Vec<WatchEnd> {
        let tasks = std::mem::take(&mut self.tasks);
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            let abort = t.abort_handle();
            match tokio::time::timeout_at(deadline, t).await {
                Ok(Ok(end)) => out.push(end),
                Ok(Err(e)) => out.push(WatchEnd {
                    error: Some(e.to_string()),
                    ..WatchEnd::default()
                }),
                Err(_) => {
                    abort.abort();
                    out.push(WatchEnd {
                        error: Some("not answered before the deadline".into()),
                        ..WatchEnd::default()
                    });
                }
            }
        }
        out
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens `n` connections and sends `GET path(i)` on connection `i`.
pub async fn park(
    addr: SocketAddr,
    n: usize,
    sources: &[Ipv4Addr],
    path: impl Fn(usize) -> String,
) -> Result<Parked> {
    let conns = connect_many(addr, n, sources).await?;
    let mut tasks = Vec::with_capacity(n);
    for (i, mut c) in conns.into_iter().enumerate() {
        c.write(&http::get(&path(i))).await?;
        tasks.push(tokio::spawn(async move {
            match c.read_response(false).await {
                Ok(r) => WatchEnd {
                    at: Some(Instant::now()),
                    status: r.status,
                    index: r.index,
                    error: None,
                },
                Err(e) => WatchEnd {
                    error: Some(e.to_string()),
                    ..WatchEnd::default()
                },
            }
        }));
    }
    Ok(Parked { tasks })
}
