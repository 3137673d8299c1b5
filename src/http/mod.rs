//! The HTTP front end: our own HTTP/1.1 server loop on glommio sockets, and Consul's API on it.
pub mod api;
pub mod blocking;
pub mod body;
pub mod encode;
pub mod error;
pub mod request;
pub mod response;
pub mod server;

pub use request::{Method, Query, Request, RequestError};
pub use response::Response;
pub use server::{serve, Handler, Limits};
