//! Configuration errors: every problem found is collected before failing.

use std::fmt;

/// One problem in one source ("/etc/muster.d/a.json", "command-line flags", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file (or "command-line flags", "configuration" for cross-field checks).
    pub source: String,
    /// Dotted config key (`ports.http`) or flag (`-http-port`), when the issue has one.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}: {}: {}", self.source, k, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration was rejected; all issues found are listed.
    #[error("{}", list(.0))]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Invalid(v) => v,
        }
    }
}

fn list(issues: &[ConfigIssue]) -> String {
    let n = issues.len();
    let mut s = format!("{n} error{} occurred:", if n == 1 { "" } else { "s" });
    for i in issues {
        s.push_str("\n\t* ");
        s.push_str(&i.to_string());
    }
    s
}
