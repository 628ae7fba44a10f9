//! Compiles `proto/eddy/v1/*.proto` with `protox` (pure Rust, no system `protoc`) into a
//! descriptor set, and generates the messages and tonic stubs from it.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("eddy/v1"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", root.join("eddy/v1").display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let set = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("eddy_v1_descriptor.bin");
    std::fs::write(&out, set.encode_to_vec())?;
    tonic_prost_build::configure()
        .skip_protoc_run()
        .file_descriptor_set_path(&out)
        .compile_protos(&files, &[root])?;
    Ok(())
}
