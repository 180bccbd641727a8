//! Compiles `proto/cairn/v1/*.proto` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/cairn/v1/master.proto",
        "proto/cairn/v1/chunkserver.proto",
        "proto/cairn/v1/master_peer.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Payload fields become `bytes::Bytes`: zero-copy from the socket to the disk.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
