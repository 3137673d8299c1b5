//! runtime: placeholder until the integrator's runtime lands (this file is replaced).

/// Why the runtime stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("runtime not built yet")]
    NotBuilt,
}

/// Runs the agent until it is told to stop.
pub fn start(config: crate::config::Config) -> Result<(), RuntimeError> {
    let _ = config;
    Err(RuntimeError::NotBuilt)
}
