//! Hetzner, for `nix-dabei hetzner`: a Cloud server found or made ([`cloud::provision`]), or a dedicated
//! server put into its rescue system ([`robot::rescue`]), so that `nix-dabei remote` can install it.
//!
//! Credentials live in [`installer::Secret`]s and go into the `Authorization` header only: never into
//! argv, the environment of a child, events or errors. Every request goes through one client
//! ([`http::Client`]), which reads the APIs' errors in their own terms and waits out rate limits.

#![deny(missing_docs)]

pub mod cloud;
pub mod http;
pub mod key;
pub mod robot;

pub use http::{ApiError, Client, Credentials};
pub use key::PublicKey;

/// The first address of an IPv6 network as both APIs write it (`2a01:4f8:1:2::/64` or `2a01:4f8:1:2::`):
/// the one Hetzner's images and rescue systems configure, and SSH reaches.
pub(crate) fn first_address(network: &str) -> String {
    format!("{}1", network.split('/').next().unwrap_or_default())
}

/// What went wrong talking to Hetzner.
#[derive(Debug, thiserror::Error)]
pub enum HetznerError {
    /// The API refused a request.
    #[error("{request}: {error}")]
    Api {
        /// The request (`POST /servers`).
        request: String,
        /// The API's own error.
        error: ApiError,
    },
    /// The API could not be reached.
    #[error("{url}: {problem}")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        problem: String,
    },
    /// An answer was not of the shape the API describes: a changed API, never read as empty.
    #[error("{what}: the answer is not what the API describes: {problem}")]
    Shape {
        /// The request.
        what: String,
        /// serde's words, naming the field.
        problem: String,
    },
    /// An action the API ran failed.
    #[error("the API's {command} action failed: {code}: {message}")]
    Action {
        /// Its command.
        command: String,
        /// The error code.
        code: String,
        /// The message.
        message: String,
    },
    /// Something took longer than allowed.
    #[error("{0}")]
    Timeout(String),
    /// Bad input, found before anything was made.
    #[error("{0}")]
    Input(String),
    /// A server of the name exists that nix-dabei did not make: it is never reused.
    #[error(
        "a server named {name} exists (id {id}) that nix-dabei did not make (no made-by=nix-dabei label): choose \
         another name; nix-dabei never takes over a server it did not make"
    )]
    NotOurs {
        /// The name.
        name: String,
        /// Its id.
        id: u64,
    },
    /// The server was made, then something failed: it exists and costs money.
    #[error(
        "server {name} (id {id}) was made but is not ready: {error}. Run the same command again to continue \
         with it, or delete it: hcloud server delete {id} (or DELETE /v1/servers/{id})"
    )]
    HalfMade {
        /// Its id.
        id: u64,
        /// Its name.
        name: String,
        /// What failed.
        error: Box<HetznerError>,
    },
    /// The user did not confirm.
    #[error("not confirmed: nothing was made")]
    Declined,
}
