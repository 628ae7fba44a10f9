//! Eddy's gRPC API, package `eddy.v1`, generated at build time from the repository's
//! `proto/eddy/v1/*.proto`: the messages, the tonic server traits (implemented by
//! `eddy-grpc`) and clients (used by `eddy-client`), and the encoded descriptor set that
//! server reflection serves.
//!
//! Evolution rules are in ARCHITECTURE.md ("gRPC"); `proto/eddy/v1/fields.lock` lists every
//! field's tag and type, and this crate's tests fail when a listed field changed or vanished
//! without being reserved.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

/// The `eddy.v1` package.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, clippy::nursery)]
    tonic::include_proto!("eddy.v1");
}

/// The encoded `FileDescriptorSet` of `eddy.v1` (what reflection serves).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/eddy_v1_descriptor.bin"));

#[cfg(test)]
mod tests;
