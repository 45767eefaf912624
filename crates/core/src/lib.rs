//! s3mm-core holds everything s3mm knows about S3 and nothing about how it is
//! invoked: configuration read from the environment, a client built from the
//! standard AWS configuration chain, streamed listings, the mapping from a
//! source key to its destination key, the safe move of one object, bounded
//! concurrent fetches that keep input order, and batched deletes. The Lambda
//! crates and the CLI are thin shells over this crate, so every S3 rule lives
//! in one place and is tested once.

// Errors here name both objects of a copy and what S3 said; they are built
// once per failed request, next to a network round trip, so their size on
// the stack costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod config;
pub mod cost;
pub mod csv_merge;
pub mod delete;
pub mod direct;
pub mod error;
pub mod fetch;
pub mod keys;
pub mod list;
pub mod logging;
pub mod merge;
pub mod transfer;
pub mod upload;

pub use client::{ClientSettings, build_client, client_for_endpoint, load_client, load_client_for};
pub use config::{ConfigError, LogFormat, MergeConfig, MoverConfig};
pub use delete::{DeleteFailure, DeleteReport, delete_many};
pub use error::{CopyError, DeleteError, GetError, HeadError, ListError, MoveError, PutError, S3Failure};
pub use fetch::{Fetched, fetch_many, fetch_many_with};
pub use keys::{KeyError, KeyMapping, decode_event_key, encode_copy_source};
pub use list::{ListOptions, ObjectSummary, list_objects, list_objects_parallel};
pub use transfer::{KeptReason, MoveOutcome, MoveRequest, Mover, SkipReason};
