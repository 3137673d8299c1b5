//! Every HTTP error the API answers, with Consul's status codes and texts, in one place.
use super::response::Response;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400, e.g. "Invalid index", "Request decode failed: ...".
    #[error("{0}")]
    BadRequest(String),
    /// 403 "Permission denied".
    #[error("Permission denied")]
    PermissionDenied,
    /// 404 with a text (may be empty, as Consul's KV misses are).
    #[error("{0}")]
    NotFound(String),
    /// 405, with the endpoint's methods for the `Allow` header (Consul lists OPTIONS first).
    #[error("method {method} not allowed")]
    MethodNotAllowed {
        method: String,
        allow: Vec<&'static str>,
    },
    /// Not an error: Consul answers `OPTIONS` on an endpoint with 200, an `Allow` header and no
    /// body, before the handler runs; it travels the error path to stop the handler.
    #[error("")]
    Options(Vec<&'static str>),
    /// 410, Consul's answer on endpoints it removed (the legacy ACL API).
    #[error("{0}")]
    Gone(String),
    /// 413, e.g. an oversized KV value or transaction.
    #[error("{0}")]
    TooLarge(String),
    /// 429: a cross-core queue is full; the client should back off.
    #[error("Rate limit reached, try again later")]
    Busy,
    /// 500: the state machine or raft refused (Consul returns RPC errors as 500 with the text).
    #[error("{0}")]
    Internal(String),
    /// 500, Consul's text when there is no leader to take a write or a consistent read.
    #[error("No cluster leader")]
    NoLeader,
    /// 500, Consul's text for `?dc=` naming an unknown datacenter.
    #[error("No path to datacenter")]
    NoPathToDatacenter,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::PermissionDenied => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Options(_) => 200,
            ApiError::Gone(_) => 410,
            ApiError::TooLarge(_) => 413,
            ApiError::Busy => 429,
            ApiError::Internal(_) | ApiError::NoLeader | ApiError::NoPathToDatacenter => 500,
        }
    }

    pub fn bad(text: impl Into<String>) -> ApiError {
        ApiError::BadRequest(text.into())
    }

    /// Consul's 404 for a path no endpoint serves: no body.
    pub fn unknown_path() -> ApiError {
        ApiError::NotFound(String::new())
    }

    pub fn into_response(self) -> Response {
        let status = self.status();
        let text = self.to_string();
        let mut r = Response::new(status);
        match &self {
            ApiError::MethodNotAllowed { allow, .. } | ApiError::Options(allow) => {
                r = r.with_header("Allow", allow_header(allow));
            }
            _ => {}
        }
        if text.is_empty() {
            r
        } else {
            r.with_body("text/plain; charset=utf-8", text)
        }
    }
}

/// `Allow: OPTIONS,GET,PUT`, as Consul joins it.
fn allow_header(methods: &[&'static str]) -> String {
    std::iter::once("OPTIONS")
        .chain(methods.iter().copied())
        .collect::<Vec<_>>()
        .join(",")
}

impl From<crate::runtime::mesh::CallError> for ApiError {
    fn from(e: crate::runtime::mesh::CallError) -> ApiError {
        match e {
            crate::runtime::mesh::CallError::Busy(_) => ApiError::Busy,
            crate::runtime::mesh::CallError::Unavailable(_) => {
                ApiError::Internal("agent is shutting down".into())
            }
        }
    }
}

impl From<muster_shards::coord::Unavailable> for ApiError {
    fn from(e: muster_shards::coord::Unavailable) -> ApiError {
        match e {
            muster_shards::coord::Unavailable::Busy(_) => ApiError::Busy,
            muster_shards::coord::Unavailable::Gone(_) => {
                ApiError::Internal("agent is shutting down".into())
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
