//! `muster snapshot save|restore|inspect`, with Consul's messages. The file is the snapshot
//! format of [`crate::raft::snapshot`]; `save` verifies what it received before keeping it, and
//! `inspect` reads a file offline.
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::http::{Client, HttpFlags, Method};
use super::table::{columnize, key_values};
use super::{error_line, info_line};
use crate::raft::snapshot;
use crate::raft::types::term_of;

#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCommand {
    /// Saves snapshot of Consul server state
    Save(FileArgs),
    /// Restores snapshot of Consul server state
    Restore(FileArgs),
    /// Displays information about a Consul snapshot file
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Args)]
pub struct FileArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The snapshot file.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The snapshot file.
    pub file: PathBuf,
}

pub fn run(cmd: SnapshotCommand) -> i32 {
    match cmd {
        SnapshotCommand::Save(a) => save(&a),
        SnapshotCommand::Restore(a) => restore(&a),
        SnapshotCommand::Inspect(a) => inspect(&a.file),
    }
}

fn save(a: &FileArgs) -> i32 {
    let client = match Client::new(&a.http) {
        Ok(c) => c,
        Err(e) => {
            error_line(&format!("Error connecting to Consul agent: {e}"));
            return 1;
        }
    };
    let data = match client.send_ok(Method::Get, "/v1/snapshot", &[], None) {
        Ok(r) => r.body,
        Err(e) => {
            error_line(&format!("Error saving snapshot: {e}"));
            return 1;
        }
    };
    let index = match snapshot::decode(&data) {
        Ok((meta, body)) => match snapshot::check_body(body) {
            Ok(()) => meta.last_log_id.map_or(0, |id| id.index()),
            Err(e) => {
                error_line(&format!("Error verifying snapshot file: {e}"));
                return 1;
            }
        },
        Err(e) => {
            error_line(&format!("Error verifying snapshot file: {e}"));
            return 1;
        }
    };
    if let Err(e) = write_atomically(&a.file, &data) {
        error_line(&format!(
            "Error writing snapshot file {}: {e}",
            a.file.display()
        ));
        return 1;
    }
    info_line(&format!("Saved and verified snapshot to index {index}"));
    0
}

/// Writes under a temporary name and renames, so an interrupted save never leaves a partial
/// file under the requested name.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

fn restore(a: &FileArgs) -> i32 {
    let data = match std::fs::read(&a.file) {
        Ok(d) => d,
        Err(e) => {
            error_line(&format!("Error opening snapshot file: {e}"));
            return 1;
        }
    };
    // Refused here already when corrupt, without sending it (the agent checks again).
    if let Err(e) = snapshot::decode(&data) {
        error_line(&format!("Error restoring snapshot: {e}"));
        return 1;
    }
    let client = match Client::new(&a.http) {
        Ok(c) => c,
        Err(e) => {
            error_line(&format!("Error connecting to Consul agent: {e}"));
            return 1;
        }
    };
    match client.send_ok(Method::Put, "/v1/snapshot", &[], Some(&data)) {
        Ok(_) => {
            info_line("Restored snapshot");
            0
        }
        Err(e) => {
            error_line(&format!("Error restoring snapshot: {e}"));
            1
        }
    }
}

fn inspect(path: &Path) -> i32 {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            error_line(&format!("Error opening snapshot file: {e}"));
            return 1;
        }
    };
    let (meta, body) = match snapshot::decode(&data) {
        Ok(v) => v,
        Err(e) => {
            error_line(&format!("Error extracting snapshot data: {e}"));
            return 1;
        }
    };
    let image = match snapshot::image_from_body(body) {
        Ok(i) => i,
        Err(e) => {
            error_line(&format!("Error extracting snapshot data: {e}"));
            return 1;
        }
    };
    let (index, term) = meta
        .last_log_id
        .map_or((0, 0), |id| (id.index(), term_of(&id)));
    info_line(&key_values(&[
        (" ID", format!("{term}-{index}")),
        (" Size", data.len().to_string()),
        (" Index", index.to_string()),
        (" Term", term.to_string()),
        (" Version", snapshot::VERSION.to_string()),
    ]));
    info_line("");
    let mut rows = vec![
        vec![" Type".to_string(), "Count".into(), "Size".into()],
        vec![" ----".to_string(), "----".into(), "----".into()],
    ];
    let mut total = 0;
    for c in image.counts() {
        total += c.bytes;
        rows.push(vec![
            format!(" {}", c.table),
            c.count.to_string(),
            human_bytes(c.bytes),
        ]);
    }
    rows.push(vec![" ----".to_string(), "----".into(), "----".into()]);
    rows.push(vec![
        " Total".to_string(),
        String::new(),
        human_bytes(total),
    ]);
    info_line(&columnize(&rows));
    0
}

/// Sizes as Consul's inspect prints them (go-humanize's IEC form: "12 B", "3.4 KiB").
fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_consuls() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
    }
}
