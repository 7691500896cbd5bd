//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so building needs no
//! system `protoc`. The encoded descriptor set is also written to OUT_DIR for the schema test.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "jumpstarter/v1/common.proto",
        "jumpstarter/v1/kubernetes.proto",
        "jumpstarter/v1/router.proto",
        "jumpstarter/v1/jumpstarter.proto",
        "jumpstarter/client/v1/client.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed=proto/{f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .bytes(".jumpstarter.v1.StreamRequest.payload")
        .bytes(".jumpstarter.v1.StreamResponse.payload")
        .compile_fds(fds)?;
    Ok(())
}
