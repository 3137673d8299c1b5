//! HTTP/1.1 front end: the connection loop (`server`), requests and responses.
//! Routing and the Consul API modules sit on top of [`Handler`].
pub mod request;
pub mod response;
pub mod server;

pub use request::{Method, Query, Request, RequestError};
pub use response::Response;
pub use server::{serve, Handler, Limits};
